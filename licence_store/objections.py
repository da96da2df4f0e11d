"""Objections and corrections (异议处理、反馈纠错).

The holder, or a department that has been granted use of the licence, files an objection naming a
field, what is wrong with it and optional evidence (text). The issuing department decides before the
deadline (``OBJECTION_DAYS`` after filing): it **accepts** with the corrected values, which makes a
new version through :func:`licence_store.lifecycle.change` in the same transaction, or **rejects**
with a reason. An open objection past its deadline is reported ``overdue``. Every step is audited.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from core.audit import append as audit_append
from core.db import utcnow
from core.errors import IllegalTransition, InvalidInput, NotFound

from .catalogue import type_schema
from .grants import list_grants
from .identifier import parse_identifier
from .issuing import LicenceServices
from .lifecycle import change
from .metadata import CORE_FIELDS
from .models import Licence, LicenceObjection, LicenceType
from .records import check_issuer_scope, current_version

OBJECTION_DAYS: Final = 15
MAX_CLAIM: Final = 2000
MAX_EVIDENCE: Final = 20_000


class ObjectionState(enum.StrEnum):
    OPEN = "open"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


def _text(value: str | None, limit: int, zh: str, en: str, *, required: bool) -> str | None:
    value = (value or "").strip()
    if not value:
        if required:
            raise InvalidInput(f"{zh}不能为空", f"{en} must not be empty")
        return None
    if len(value) > limit or "\x00" in value:
        raise InvalidInput(f"{zh}不能超过 {limit} 个字符", f"{en} must be at most {limit} characters")
    return value


def _check_field(session: Session, licence: Licence, field: str) -> str:
    field = (field or "").strip()
    lt = session.get(LicenceType, licence.type_id)
    own = set(type_schema(lt).get("properties", {})) if lt is not None else set()
    allowed = {*CORE_FIELDS, *(f"fields.{k}" for k in own), "other"} - {"fields"}
    if field not in allowed:
        raise InvalidInput(
            f"异议字段 {field!r} 不是该证照的字段（核心字段、fields.<专有字段> 或 other）",
            f"objection field {field!r} is not a field of this licence "
            "(a core field, fields.<name> or other)",
        )
    return field


def file_objection(
    session: Session,
    *,
    identifier: str,
    field: str,
    claim: str,
    evidence: str | None = None,
    filer_kind: str,
    filer_ref: str,
    actor: str,
    now: dt.datetime | None = None,
) -> LicenceObjection:
    """``filer_kind`` ``holder`` (``filer_ref``: holder code) or ``department`` (department id, which
    must hold or have held a grant for the licence)."""
    now = now or utcnow()
    licence = current_version(session, parse_identifier(identifier).base)
    if filer_kind == "holder":
        if licence.holder_code != filer_ref:
            raise NotFound(f"证照 {identifier} 不存在", f"licence {identifier} not found")
    elif filer_kind == "department":
        if not list_grants(session, base_identifier=licence.base_identifier, grantee_department_id=filer_ref):
            raise NotFound(f"证照 {identifier} 不存在", f"licence {identifier} not found")
    else:
        raise InvalidInput(
            "异议人须为持证主体或用证部门", "an objection is filed by the holder or a using department"
        )
    row = LicenceObjection(
        id=str(uuid.uuid4()),
        licence_id=licence.id,
        identifier=licence.identifier,
        issuer_department_id=licence.issuer_department_id,
        filed_by=actor,
        filer_kind=filer_kind,
        filer_ref=filer_ref,
        field=_check_field(session, licence, field),
        claim=_text(claim, MAX_CLAIM, "异议内容", "the claim", required=True) or "",
        evidence=_text(evidence, MAX_EVIDENCE, "证据", "the evidence", required=False),
        state=ObjectionState.OPEN.value,
        deadline=now + dt.timedelta(days=OBJECTION_DAYS),
        created_at=now,
    )
    session.add(row)
    session.flush()
    audit_append(
        session,
        actor=actor,
        action="licence.objection_filed",
        subject_type="licence",
        subject_id=licence.base_identifier,
        details={
            "objection_id": row.id,
            "identifier": licence.identifier,
            "field": row.field,
            "deadline": row.deadline.isoformat(),
        },
    )
    return row


def _open_for_update(session: Session, objection_id: str, department_id: str | None) -> LicenceObjection:
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(LicenceObjection)
            .where(LicenceObjection.id == objection_id)
            .values(state=LicenceObjection.state),
            execution_options={"synchronize_session": False},
        )
    row = session.scalar(
        select(LicenceObjection)
        .where(LicenceObjection.id == objection_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if row is None:
        raise NotFound(f"异议 {objection_id} 不存在", f"objection {objection_id} not found")
    if department_id is not None and row.issuer_department_id != department_id:
        raise NotFound(f"异议 {objection_id} 不存在", f"objection {objection_id} not found")
    if row.state != ObjectionState.OPEN.value:
        raise IllegalTransition(
            f"异议已处理（{row.state}）", f"the objection is already decided ({row.state})", state=row.state
        )
    return row


def accept_objection(
    session: Session,
    services: LicenceServices,
    objection_id: str,
    *,
    corrections: Mapping[str, Any],
    actor: str,
    reason: str = "",
    department_id: str | None = None,
) -> tuple[LicenceObjection, Licence]:
    """Accept and correct: a new version with ``corrections`` (as for a change), linked to the objection."""
    row = _open_for_update(session, objection_id, department_id)
    if not corrections:
        raise InvalidInput("受理异议须给出更正内容", "accepting an objection needs the corrected values")
    old = session.get(Licence, row.licence_id)
    assert old is not None  # foreign key
    current = current_version(session, old.base_identifier)
    check_issuer_scope(current, department_id)
    note = _text(reason, MAX_CLAIM, "处理意见", "the reason", required=False) or ""
    new = change(
        session,
        services,
        current.identifier,
        corrections,
        actor=actor,
        reason=f"异议更正 objection {row.id}" + (f"：{note}" if note else ""),
        department_id=department_id,
    )
    row.state = ObjectionState.ACCEPTED.value
    row.decided_at = utcnow()
    row.decided_by = actor
    row.decision_reason = note
    row.corrected_identifier = new.identifier
    session.flush()
    audit_append(
        session,
        actor=actor,
        action="licence.objection_accepted",
        subject_type="licence",
        subject_id=new.base_identifier,
        details={"objection_id": row.id, "corrected_identifier": new.identifier},
    )
    return row, new


def reject_objection(
    session: Session, objection_id: str, *, reason: str, actor: str, department_id: str | None = None
) -> LicenceObjection:
    row = _open_for_update(session, objection_id, department_id)
    row.decision_reason = _text(reason, MAX_CLAIM, "驳回理由", "the reason", required=True)
    row.state = ObjectionState.REJECTED.value
    row.decided_at = utcnow()
    row.decided_by = actor
    session.flush()
    licence = session.get(Licence, row.licence_id)
    assert licence is not None
    audit_append(
        session,
        actor=actor,
        action="licence.objection_rejected",
        subject_type="licence",
        subject_id=licence.base_identifier,
        details={"objection_id": row.id, "reason": row.decision_reason},
    )
    return row


def get_objection(session: Session, objection_id: str) -> LicenceObjection:
    row = session.get(LicenceObjection, objection_id) if len(objection_id) <= 36 else None
    if row is None:
        raise NotFound(f"异议 {objection_id} 不存在", f"objection {objection_id} not found")
    return row


def list_objections(
    session: Session,
    *,
    issuer_department_id: str | None = None,
    filer: tuple[str, str] | None = None,
    state: str | None = None,
    overdue_only: bool = False,
    now: dt.datetime | None = None,
) -> list[LicenceObjection]:
    cond: list[ColumnElement[bool]] = []
    if issuer_department_id is not None:
        cond.append(LicenceObjection.issuer_department_id == issuer_department_id)
    if filer is not None:
        cond.append(LicenceObjection.filer_kind == filer[0])
        cond.append(LicenceObjection.filer_ref == filer[1])
    if state is not None:
        try:
            ObjectionState(state)
        except ValueError:
            raise InvalidInput(f"未知的异议状态 {state!r}", f"unknown objection state {state!r}") from None
        cond.append(LicenceObjection.state == state)
    if overdue_only:
        cond.append(LicenceObjection.state == ObjectionState.OPEN.value)
        cond.append(LicenceObjection.deadline < (now or utcnow()))
    return list(
        session.scalars(
            select(LicenceObjection).where(*cond).order_by(LicenceObjection.created_at.desc()).limit(500)
        )
    )


def objection_dict(row: LicenceObjection, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    return {
        "id": row.id,
        "identifier": row.identifier,
        "field": row.field,
        "claim": row.claim,
        "evidence": row.evidence,
        "filer_kind": row.filer_kind,
        "filed_by": row.filed_by,
        "state": row.state,
        "deadline": row.deadline.isoformat(),
        "overdue": row.state == ObjectionState.OPEN.value and row.deadline < now,
        "created_at": row.created_at.isoformat(),
        "decided_at": None if row.decided_at is None else row.decided_at.isoformat(),
        "decided_by": row.decided_by,
        "decision_reason": row.decision_reason,
        "corrected_identifier": row.corrected_identifier,
    }


__all__ = [
    "OBJECTION_DAYS",
    "ObjectionState",
    "accept_objection",
    "file_objection",
    "get_objection",
    "list_objections",
    "objection_dict",
    "reject_objection",
]
