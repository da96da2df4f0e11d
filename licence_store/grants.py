"""Holder authorisation (精准授权): a holder lets a named department use a licence for a purpose until
a time, and may withdraw that at any moment.

A grant covers the licence across its versions (it names the base identifier): a department always
receives the current version. ``allow_original`` lets the department fetch the issuer-sealed file
itself; without it only annotated copies (加注件) are given.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any, Final

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from core.audit import append as audit_append
from core.db import utcnow
from core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from seal_registry.departments import get_department

from .identifier import parse_identifier
from .models import LicenceGrant
from .records import current_version

MAX_GRANT_DAYS: Final = 3650
MAX_PURPOSE: Final = 500


class GrantRefused(PermissionDenied):
    """No valid grant covers this use; ``details["reason"]`` says which check failed."""

    code = "licence_grant_required"
    title_zh, title_en = "未获持证主体授权", "No valid holder authorisation"


class GrantState(enum.StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


def grant_state(grant: LicenceGrant, now: dt.datetime | None = None) -> GrantState:
    if grant.withdrawn_at is not None:
        return GrantState.WITHDRAWN
    if grant.valid_until <= (now or utcnow()):
        return GrantState.EXPIRED
    return GrantState.ACTIVE


def check_purpose(purpose: str) -> str:
    purpose = (purpose or "").strip()
    if not purpose or len(purpose) > MAX_PURPOSE or not purpose.isprintable():
        raise InvalidInput(
            f"用途须为 1–{MAX_PURPOSE} 个可打印字符", f"purpose must be 1–{MAX_PURPOSE} printable characters"
        )
    return purpose


def create_grant(
    session: Session,
    *,
    holder_code: str,
    identifier: str,
    grantee_department_id: str,
    purpose: str,
    valid_until: dt.datetime,
    allow_original: bool = False,
    actor: str,
    now: dt.datetime | None = None,
) -> LicenceGrant:
    """Grant ``grantee_department_id`` use of the holder's licence; audited ``licence.grant_created``."""
    now = now or utcnow()
    purpose = check_purpose(purpose)
    if valid_until.tzinfo is None:
        raise InvalidInput("授权截止时间须带时区", "the grant's end must be timezone-aware")
    if valid_until <= now:
        raise InvalidInput("授权截止时间须晚于现在", "the grant must end in the future")
    if valid_until > now + dt.timedelta(days=MAX_GRANT_DAYS):
        raise InvalidInput(
            f"授权期限不能超过 {MAX_GRANT_DAYS} 天", f"a grant lasts at most {MAX_GRANT_DAYS} days"
        )
    base = parse_identifier(identifier).base
    licence = current_version(session, base)
    if licence.holder_code != holder_code:
        # Same answer as for an unknown licence: a holder must not learn about others' licences.
        raise NotFound(f"证照 {identifier} 不存在", f"licence {identifier} not found")
    dept = get_department(session, grantee_department_id)
    grant = LicenceGrant(
        id=str(uuid.uuid4()),
        base_identifier=base,
        holder_code=holder_code,
        grantee_department_id=dept.id,
        purpose=purpose,
        allow_original=allow_original,
        valid_until=valid_until,
        created_by=actor,
        created_at=now,
        withdrawn_at=None,
    )
    session.add(grant)
    session.flush()
    audit_append(
        session,
        actor=actor,
        action="licence.grant_created",
        subject_type="licence",
        subject_id=base,
        details={
            "grant_id": grant.id,
            "department_id": dept.id,
            "purpose": purpose,
            "valid_until": valid_until.isoformat(),
            "allow_original": allow_original,
        },
    )
    return grant


def get_grant(session: Session, grant_id: str) -> LicenceGrant:
    grant = session.get(LicenceGrant, grant_id) if len(grant_id) <= 36 else None
    if grant is None:
        raise NotFound(f"授权 {grant_id} 不存在", f"grant {grant_id} not found")
    return grant


def withdraw_grant(session: Session, grant_id: str, *, holder_code: str | None, actor: str) -> LicenceGrant:
    """Withdraw a grant (``holder_code`` None: an administrator acting); audited."""
    grant = get_grant(session, grant_id)
    if holder_code is not None and grant.holder_code != holder_code:
        raise NotFound(f"授权 {grant_id} 不存在", f"grant {grant_id} not found")
    if grant.withdrawn_at is not None:
        raise Conflict(f"授权 {grant_id} 已撤回", f"grant {grant_id} is already withdrawn")
    grant.withdrawn_at = utcnow()
    session.flush()
    audit_append(
        session,
        actor=actor,
        action="licence.grant_withdrawn",
        subject_type="licence",
        subject_id=grant.base_identifier,
        details={"grant_id": grant.id, "department_id": grant.grantee_department_id},
    )
    return grant


def list_grants(
    session: Session,
    *,
    holder_code: str | None = None,
    base_identifier: str | None = None,
    grantee_department_id: str | None = None,
) -> list[LicenceGrant]:
    cond: list[ColumnElement[bool]] = []
    if holder_code is not None:
        cond.append(LicenceGrant.holder_code == holder_code)
    if base_identifier is not None:
        cond.append(LicenceGrant.base_identifier == base_identifier)
    if grantee_department_id is not None:
        cond.append(LicenceGrant.grantee_department_id == grantee_department_id)
    return list(session.scalars(select(LicenceGrant).where(*cond).order_by(LicenceGrant.created_at.desc())))


def _refused(reason: str, zh: str, en: str, grant_id: str | None) -> GrantRefused:
    return GrantRefused(zh, en, reason=reason, **({"grant_id": grant_id} if grant_id else {}))


def check_grant(
    session: Session,
    *,
    base_identifier: str,
    department_id: str | None,
    grant_id: str | None,
    want_original: bool,
    now: dt.datetime | None = None,
) -> LicenceGrant:
    """The grant that lets ``department_id`` use the licence now, or :class:`GrantRefused`."""
    now = now or utcnow()
    if department_id is None:
        raise _refused(
            "no_department",
            "只有部门可凭授权使用证照",
            "only a department can use a licence under a grant",
            grant_id,
        )
    if grant_id is None:
        active = [
            g
            for g in list_grants(
                session, base_identifier=base_identifier, grantee_department_id=department_id
            )
            if grant_state(g, now) is GrantState.ACTIVE
        ]
        if not active:
            raise _refused(
                "no_grant",
                "持证主体未授权本部门使用该证照",
                "the holder has not authorised this department",
                None,
            )
        usable = [g for g in active if g.allow_original or not want_original]
        if not usable:
            raise _refused(
                "original_not_granted",
                "现有授权只允许获取加注件，不允许获取原件",
                "the grants allow annotated copies only, not the original file",
                None,
            )
        return max(usable, key=lambda g: g.valid_until)
    try:
        grant = get_grant(session, grant_id)
    except NotFound:
        raise _refused("no_grant", "授权不存在", "no such grant", grant_id) from None
    if grant.base_identifier != base_identifier or grant.grantee_department_id != department_id:
        raise _refused(
            "grant_mismatch",
            "该授权不适用于本部门或本证照",
            "the grant is for another department or licence",
            grant_id,
        )
    state = grant_state(grant, now)
    if state is GrantState.WITHDRAWN:
        raise _refused("grant_withdrawn", "授权已被持证主体撤回", "the holder withdrew the grant", grant_id)
    if state is GrantState.EXPIRED:
        raise _refused("grant_expired", "授权已过期", "the grant has expired", grant_id)
    if want_original and not grant.allow_original:
        raise _refused(
            "original_not_granted",
            "该授权只允许获取加注件，不允许获取原件",
            "the grant allows annotated copies only, not the original file",
            grant_id,
        )
    return grant


def grant_dict(grant: LicenceGrant, now: dt.datetime | None = None) -> dict[str, Any]:
    return {
        "id": grant.id,
        "base_identifier": grant.base_identifier,
        "grantee_department_id": grant.grantee_department_id,
        "purpose": grant.purpose,
        "allow_original": grant.allow_original,
        "valid_until": grant.valid_until.isoformat(),
        "created_at": grant.created_at.isoformat(),
        "withdrawn_at": None if grant.withdrawn_at is None else grant.withdrawn_at.isoformat(),
        "state": grant_state(grant, now).value,
    }


__all__ = [
    "GrantRefused",
    "GrantState",
    "check_grant",
    "check_purpose",
    "create_grant",
    "get_grant",
    "grant_dict",
    "grant_state",
    "list_grants",
    "withdraw_grant",
]
