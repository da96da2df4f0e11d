"""The access log: every read, download, verification, authorised use and refusal of a licence.

Each use is an audit-chain entry (``licence.read``, ``licence.downloaded``, ``licence.verified``,
``licence.copy_made``, ``licence.access_denied``; subject: the licence's base identifier) and a
:class:`LicenceAccess` row that points at it (``audit_seq``) and carries the columns queries filter
on. The audit entry makes the log tamper-evident; the row makes it searchable.

A refusal must be logged even though the request fails, so callers record it in a transaction of
its own before raising (:func:`record_refusal`).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from core.audit import append as audit_append
from core.db import transaction
from core.errors import InvalidInput

from .models import Licence, LicenceAccess

MAX_PAGE: Final = 500


class AccessAction(enum.StrEnum):
    READ = "read"
    DOWNLOAD = "download"
    VERIFY = "verify"
    COPY = "copy"  # an annotated copy was made
    DENIED = "denied"


_AUDIT_ACTION: Final = {
    AccessAction.READ: "licence.read",
    AccessAction.DOWNLOAD: "licence.downloaded",
    AccessAction.VERIFY: "licence.verified",
    AccessAction.COPY: "licence.copy_made",
    AccessAction.DENIED: "licence.access_denied",
}


@dataclass(frozen=True)
class Accessor:
    """Who uses a licence: the audit actor, their department (if any) and where from."""

    actor: str
    department_id: str | None = None
    client: str | None = None


def _clip(value: str | None, limit: int) -> str | None:
    return None if value is None else value[:limit]


def record(
    session: Session,
    *,
    action: AccessAction,
    identifier: str,
    base_identifier: str,
    who: Accessor,
    licence: Licence | None = None,
    purpose: str | None = None,
    grant_id: str | None = None,
    outcome: str = "allowed",
    details: dict[str, Any] | None = None,
) -> LicenceAccess:
    """Append the audit entry and the log row in the caller's transaction."""
    facts: dict[str, Any] = {"identifier": identifier, "outcome": outcome}
    if purpose:
        facts["purpose"] = purpose[:500]
    if grant_id:
        facts["grant_id"] = grant_id
    if who.department_id:
        facts["department_id"] = who.department_id
    if who.client:
        facts["client"] = who.client[:64]
    facts.update(details or {})
    entry = audit_append(
        session,
        actor=who.actor[:255],
        action=_AUDIT_ACTION[action],
        subject_type="licence",
        subject_id=base_identifier[:255],
        details=facts,
    )
    row = LicenceAccess(
        audit_seq=entry.seq,
        at=entry.time,
        action=action.value,
        outcome=outcome,
        identifier=identifier[:128],
        base_identifier=base_identifier[:128],
        holder_code=licence.holder_code if licence is not None else None,
        issuer_department_id=licence.issuer_department_id if licence is not None else None,
        actor=who.actor[:255],
        actor_department_id=who.department_id,
        purpose=_clip(purpose, 500),
        grant_id=grant_id,
        client=_clip(who.client, 64),
    )
    session.add(row)
    session.flush()
    return row


def record_refusal(
    sessions: sessionmaker[Session],
    *,
    identifier: str,
    base_identifier: str,
    who: Accessor,
    reason_code: str,
    licence_id: str | None = None,
    purpose: str | None = None,
    grant_id: str | None = None,
) -> None:
    """Log a refused use in a transaction of its own (the request itself is about to fail)."""
    with transaction(sessions) as s:
        licence = s.get(Licence, licence_id) if licence_id is not None else None
        record(
            s,
            action=AccessAction.DENIED,
            identifier=identifier,
            base_identifier=base_identifier,
            who=who,
            licence=licence,
            purpose=purpose,
            grant_id=grant_id,
            outcome="denied",
            details={"reason": reason_code},
        )


@dataclass(frozen=True)
class AccessQuery:
    base_identifier: str | None = None
    holder_code: str | None = None
    department_id: str | None = None  # the issuing or the using department
    action: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def query(
    session: Session, q: AccessQuery, *, limit: int = 100, offset: int = 0
) -> tuple[list[LicenceAccess], int]:
    """Matching log rows, newest first, and how many match in all."""
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise InvalidInput(
            f"每页 1–{MAX_PAGE} 条，偏移量不能为负", f"limit must be 1–{MAX_PAGE} and offset ≥ 0"
        )
    cond: list[ColumnElement[bool]] = []
    if q.base_identifier:
        cond.append(LicenceAccess.base_identifier == q.base_identifier)
    if q.holder_code:
        cond.append(LicenceAccess.holder_code == q.holder_code)
    if q.department_id:
        cond.append(
            or_(
                LicenceAccess.issuer_department_id == q.department_id,
                LicenceAccess.actor_department_id == q.department_id,
            )
        )
    if q.action:
        try:
            AccessAction(q.action)
        except ValueError:
            names = ", ".join(a.value for a in AccessAction)
            raise InvalidInput(
                f"未知的访问类型 {q.action!r}（{names}）", f"unknown access action {q.action!r} ({names})"
            ) from None
        cond.append(LicenceAccess.action == q.action)
    for bound in (q.since, q.until):
        if bound is not None and bound.tzinfo is None:
            raise InvalidInput("时间须带时区", "times must be timezone-aware")
    if q.since is not None:
        cond.append(LicenceAccess.at >= q.since)
    if q.until is not None:
        cond.append(LicenceAccess.at < q.until)
    total = int(session.scalar(select(func.count()).select_from(LicenceAccess).where(*cond)) or 0)
    rows = list(
        session.scalars(
            select(LicenceAccess)
            .where(*cond)
            .order_by(LicenceAccess.audit_seq.desc())
            .limit(limit)
            .offset(offset)
        )
    )
    return rows, total


def access_dict(row: LicenceAccess) -> dict[str, Any]:
    return {
        "audit_seq": row.audit_seq,
        "at": row.at.isoformat(),
        "action": row.action,
        "outcome": row.outcome,
        "identifier": row.identifier,
        "base_identifier": row.base_identifier,
        "actor": row.actor,
        "actor_department_id": row.actor_department_id,
        "issuer_department_id": row.issuer_department_id,
        "purpose": row.purpose,
        "grant_id": row.grant_id,
    }


__all__ = [
    "AccessAction",
    "AccessQuery",
    "Accessor",
    "access_dict",
    "query",
    "record",
    "record_refusal",
]
