"""Reading licences: by identifier, the current version of a licence, search with pagination, and the
plain views the API and CLI return."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from core.errors import InvalidInput, NotFound, PermissionDenied

from .identifier import parse_identifier
from .metadata import LicenceMetadata, today_in_china
from .models import Licence
from .status import LicenceStatus, effective_status, label

MAX_PAGE_SIZE: Final = 200


def get_licence(session: Session, identifier: str) -> Licence:
    """One version by its full identifier (the identifier is checked first: a typo is a 400, not a 404)."""
    ident = parse_identifier(identifier)
    row = session.scalar(select(Licence).where(Licence.identifier == str(ident)))
    if row is None:
        raise NotFound(f"证照 {ident} 不存在", f"licence {ident} not found", identifier=str(ident))
    return row


def lock_licence(session: Session, identifier: str) -> Licence:
    """The version row locked for update until the caller's transaction ends."""
    ident = str(parse_identifier(identifier))
    if session.get_bind().dialect.name == "sqlite":
        # No row locks in SQLite: a no-op write takes the database write lock before the read.
        session.execute(
            update(Licence).where(Licence.identifier == ident).values(status=Licence.status),
            execution_options={"synchronize_session": False},
        )
    row = session.scalar(
        select(Licence)
        .where(Licence.identifier == ident)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if row is None:
        raise NotFound(f"证照 {ident} 不存在", f"licence {ident} not found", identifier=ident)
    return row


def current_version(session: Session, base_identifier: str) -> Licence:
    row = session.scalar(
        select(Licence)
        .where(Licence.base_identifier == base_identifier, Licence.superseded_by.is_(None))
        .order_by(Licence.version.desc())
        .limit(1)
    )
    if row is None:
        raise NotFound(f"证照 {base_identifier} 不存在", f"licence {base_identifier} not found")
    return row


def versions(session: Session, base_identifier: str) -> list[Licence]:
    return list(
        session.scalars(
            select(Licence).where(Licence.base_identifier == base_identifier).order_by(Licence.version)
        )
    )


def check_issuer_scope(row: Licence, department_id: str | None) -> None:
    """``department_id`` None: not scoped (administrators, the CLI). Otherwise it must be the issuer."""
    if department_id is not None and row.issuer_department_id != department_id:
        raise PermissionDenied(
            "只能管理本部门颁发的证照",
            "a department may only manage the licences it issued",
            identifier=row.identifier,
        )


def status_of(row: Licence, today: dt.date | None = None) -> LicenceStatus:
    return effective_status(LicenceStatus(row.status), row.valid_until, today or today_in_china())


def metadata_of(row: Licence) -> LicenceMetadata:
    fields: dict[str, Any] = json.loads(row.fields_json)
    return LicenceMetadata(
        licence_number=row.licence_number,
        name=row.name,
        holder_name=row.holder_name,
        holder_code=row.holder_code,
        holder_code_type=row.holder_code_type,
        issue_date=row.issue_date,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        area_code=row.area_code,
        service_item=row.service_item,
        fields=fields,
    )


def licence_dict(row: Licence, *, today: dt.date | None = None) -> dict[str, Any]:
    """The full GB/T 36903 core set of one version, plus file and lifecycle facts."""
    status = status_of(row, today)
    zh, en = label(status)
    return {
        "identifier": row.identifier,
        "base_identifier": row.base_identifier,
        "licence_number": row.licence_number,
        "name": row.name,
        "type_code": row.type_code,
        "type_name": row.type_name,
        "issuer_name": row.issuer_name,
        "issuer_code": row.issuer_code,
        "issuer_department_id": row.issuer_department_id,
        "issue_date": row.issue_date.isoformat(),
        "valid_from": row.valid_from.isoformat(),
        "valid_until": None if row.valid_until is None else row.valid_until.isoformat(),
        "holder_name": row.holder_name,
        "holder_code": row.holder_code,
        "holder_code_type": row.holder_code_type,
        "area_code": row.area_code,
        "service_item": row.service_item,
        "status": status.value,
        "status_zh": zh,
        "status_en": en,
        "stored_status": row.status,
        "version": row.version,
        "previous_identifier": row.previous_identifier,
        "superseded_by": row.superseded_by,
        "fields": json.loads(row.fields_json),
        "es_id": row.es_id,
        "file_sm3": row.ofd_sm3,
        "file_size": row.ofd_size,
        "pdf_sm3": row.pdf_sm3,
        "pdf_size": row.pdf_size,
        "issued_at": row.issued_at.isoformat(),
        "status_changed_at": row.status_changed_at.isoformat(),
    }


@dataclass(frozen=True)
class SearchFilter:
    holder_code: str | None = None
    type_code: str | None = None
    issuer_code: str | None = None
    issuer_department_id: str | None = None
    status: str | None = None
    issued_from: dt.date | None = None
    issued_to: dt.date | None = None
    current_only: bool = True


@dataclass(frozen=True)
class Page:
    items: list[Licence]
    total: int
    page: int
    page_size: int


def _conditions(f: SearchFilter) -> list[ColumnElement[bool]]:
    cond: list[ColumnElement[bool]] = []
    if f.holder_code:
        cond.append(Licence.holder_code == f.holder_code.strip())
    if f.type_code:
        cond.append(Licence.type_code == f.type_code.strip())
    if f.issuer_code:
        cond.append(Licence.issuer_code == f.issuer_code.strip().upper())
    if f.issuer_department_id:
        cond.append(Licence.issuer_department_id == f.issuer_department_id)
    if f.status:
        try:
            LicenceStatus(f.status)
        except ValueError:
            raise InvalidInput(
                f"状态码 {f.status!r} 无效（01–05、99）", f"unknown status code {f.status!r} (01–05, 99)"
            ) from None
        cond.append(Licence.status == f.status)
    if f.issued_from:
        cond.append(Licence.issue_date >= f.issued_from)
    if f.issued_to:
        cond.append(Licence.issue_date <= f.issued_to)
    if f.current_only:
        cond.append(Licence.superseded_by.is_(None))
    return cond


def search(session: Session, f: SearchFilter, *, page: int = 1, page_size: int = 50) -> Page:
    """Licences matching every given filter, newest first. ``status`` filters on the stored code."""
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(
            f"页码须 ≥ 1，每页 1–{MAX_PAGE_SIZE} 条", f"page must be ≥ 1 and page_size 1–{MAX_PAGE_SIZE}"
        )
    cond = _conditions(f)
    stmt = select(Licence).where(*cond).order_by(Licence.issued_at.desc(), Licence.identifier)
    total = int(session.scalar(select(func.count()).select_from(Licence).where(*cond)) or 0)
    items = list(session.scalars(stmt.limit(page_size).offset((page - 1) * page_size)))
    return Page(items, total, page, page_size)


__all__ = [
    "MAX_PAGE_SIZE",
    "Page",
    "SearchFilter",
    "check_issuer_scope",
    "current_version",
    "get_licence",
    "licence_dict",
    "lock_licence",
    "metadata_of",
    "search",
    "status_of",
    "versions",
]
