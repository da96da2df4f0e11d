"""A licence after issue: change (变更), renewal (延续), withholding (暂扣) and return, revocation
(撤销), cancellation (注销) and expiry.

Change and renewal make a **new version**: the same serial with the next version number (so a new
identifier and check character), a new file rendered and sealed anew by the issuing department (with
its print PDF, for types with ``print_pdf``: :func:`issuing.make_version` does both), the new row
linked to the old one (``previous_identifier``) and the old one marked superseded (status 99,
``superseded_by``). The other actions change the status only; the sealed file stays as issued.

Every function works in the caller's transaction, locks the version row first, writes the rows and
the :class:`LicenceEvent`, and appends one audit entry (subject: the licence's base identifier, so
``core.audit.history("licence", base)`` tells the whole story across versions).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session

from core.audit import append as audit_append
from core.db import utcnow
from core.errors import Conflict, InvalidInput
from seal_registry.departments import get_department

from .catalogue import validate_for_type
from .identifier import parse_identifier
from .issuing import LicenceServices, add_event, check_number_free, choose_seal, make_version
from .metadata import today_in_china
from .models import Licence, LicenceType
from .records import check_issuer_scope, lock_licence, metadata_of, status_of
from .status import AUDIT_ACTIONS, REASON_REQUIRED, LicenceAction, LicenceStatus, next_status

MAX_REASON: Final = 1000
SYSTEM_ACTOR: Final = "system:licence-expiry"
_EXPIRABLE: Final = (LicenceStatus.VALID.value, LicenceStatus.WITHHELD.value)


def _reason(reason: str, action: LicenceAction) -> str:
    reason = (reason or "").strip()
    if action in REASON_REQUIRED and not reason:
        raise InvalidInput(f"“{action.value}”操作必须说明理由", f"action '{action.value}' requires a reason")
    if len(reason) > MAX_REASON or "\x00" in reason:
        raise InvalidInput(
            f"理由须不超过 {MAX_REASON} 个字符且不含 NUL",
            f"reason must be at most {MAX_REASON} characters, no NUL",
        )
    return reason


def _audit(session: Session, row: Licence, action: str, actor: str, details: Mapping[str, Any]) -> None:
    session.flush()
    audit_append(
        session,
        actor=actor,
        action=action,
        subject_type="licence",
        subject_id=row.base_identifier,
        details={"identifier": row.identifier, "version": row.version, **details},
    )


def _current(row: Licence) -> None:
    if row.superseded_by is not None:
        raise Conflict(
            f"证照 {row.identifier} 已被新版本 {row.superseded_by} 取代，请对最新版本操作",
            f"licence {row.identifier} is superseded by {row.superseded_by}; act on the latest version",
            superseded_by=row.superseded_by,
        )


# --- status-only actions --------------------------------------------------------------------------------
def _set_status(
    session: Session,
    identifier: str,
    action: LicenceAction,
    *,
    actor: str,
    reason: str,
    department_id: str | None,
    today: dt.date | None = None,
) -> Licence:
    reason = _reason(reason, action)
    row = lock_licence(session, identifier)
    check_issuer_scope(row, department_id)
    return _change_status(session, row, action, actor=actor, reason=reason, today=today)


def _change_status(
    session: Session,
    row: Licence,
    action: LicenceAction,
    *,
    actor: str,
    reason: str,
    today: dt.date | None = None,
) -> Licence:
    """The status change on ``row``, which the caller has locked."""
    _current(row)
    today = today or today_in_china()
    # Judge by the effective status: a licence past its end is expired even before the sweep ran.
    stored = LicenceStatus(row.status)
    current = stored if action is LicenceAction.EXPIRE else status_of(row, today)
    target = next_status(current, action)
    before = row.status
    now = utcnow()
    row.status = target.value
    row.status_changed_at = now
    add_event(session, row, action.value, before, actor, reason, now)
    _audit(session, row, AUDIT_ACTIONS[action], actor, {"from": before, "to": target.value, "reason": reason})
    return row


def withhold(
    session: Session, identifier: str, *, actor: str, reason: str, department_id: str | None = None
) -> Licence:
    """01 → 02 (暂扣). A reason is required."""
    return _set_status(
        session, identifier, LicenceAction.WITHHOLD, actor=actor, reason=reason, department_id=department_id
    )


def return_licence(
    session: Session, identifier: str, *, actor: str, reason: str = "", department_id: str | None = None
) -> Licence:
    """02 → 01 (发还)."""
    return _set_status(
        session, identifier, LicenceAction.RETURN, actor=actor, reason=reason, department_id=department_id
    )


def revoke(
    session: Session, identifier: str, *, actor: str, reason: str, department_id: str | None = None
) -> Licence:
    """01 | 02 | 05 → 03 (撤销, terminal). A reason is required."""
    return _set_status(
        session, identifier, LicenceAction.REVOKE, actor=actor, reason=reason, department_id=department_id
    )


def cancel(
    session: Session, identifier: str, *, actor: str, reason: str, department_id: str | None = None
) -> Licence:
    """01 | 02 | 05 → 04 (注销, terminal). A reason is required."""
    return _set_status(
        session, identifier, LicenceAction.CANCEL, actor=actor, reason=reason, department_id=department_id
    )


def expire_due(
    session: Session, *, today: dt.date | None = None, actor: str = SYSTEM_ACTOR, limit: int = 1000
) -> list[str]:
    """Mark valid or withheld licences whose validity ended before ``today`` as expired (05).

    Returns the identifiers changed; run it repeatedly until it returns fewer than ``limit``.

    Safe to run in several processes at once (the server's scheduler runs in every worker): each
    row is locked and checked again before it changes, so a licence another sweep (or an officer)
    changed since the query is skipped, never expired or audited twice. Rows are taken in
    identifier order, so concurrent sweeps wait for each other instead of deadlocking.
    """
    today = today or today_in_china()
    due = session.scalars(
        select(Licence.identifier)
        .where(_expiry_due(today))
        .order_by(Licence.identifier)
        .limit(limit)
    ).all()
    done: list[str] = []
    for identifier in due:
        row = lock_licence(session, identifier)
        if not _still_due(row, today):
            continue
        _change_status(
            session, row, LicenceAction.EXPIRE, actor=actor, reason="有效期届满 validity ended", today=today
        )
        done.append(identifier)
    return done


def _expiry_due(today: dt.date) -> ColumnElement[bool]:
    return and_(
        Licence.status.in_(_EXPIRABLE),
        Licence.valid_until.is_not(None),
        Licence.valid_until < today,
        Licence.superseded_by.is_(None),
    )


def _still_due(row: Licence, today: dt.date) -> bool:
    """The query's condition, on the locked row as it is now."""
    return (
        row.status in _EXPIRABLE
        and row.valid_until is not None
        and row.valid_until < today
        and row.superseded_by is None
    )


# --- new versions ---------------------------------------------------------------------------------------
def _merge(old: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(old)
    for key, value in changes.items():
        if key == "fields" and isinstance(value, Mapping) and isinstance(merged.get("fields"), Mapping):
            fields = dict(merged["fields"])
            for name, item in value.items():
                if item is None:
                    fields.pop(name, None)  # null removes an optional field
                else:
                    fields[name] = item
            merged["fields"] = fields
        else:
            merged[key] = value
    return merged


def _new_version(
    session: Session,
    services: LicenceServices,
    old: Licence,
    action: LicenceAction,
    data: Mapping[str, Any],
    *,
    actor: str,
    reason: str,
    es_id: str | None,
    now: dt.datetime,
) -> Licence:
    lt = session.get(LicenceType, old.type_id)
    assert lt is not None  # foreign key
    dept = get_department(session, old.issuer_department_id)
    meta = validate_for_type(lt, data, dept, today=today_in_china(now))
    check_number_free(session, lt, dept, meta.licence_number, old.base_identifier)
    seal = choose_seal(session, dept, lt.seal_type, es_id, now)
    ident = parse_identifier(old.identifier).with_version(old.version + 1)
    new = make_version(
        session,
        services,
        lt=lt,
        dept=dept,
        meta=meta,
        ident=ident,
        es_id=seal,
        actor=actor,
        now=now,
        previous=old,
    )
    before = old.status
    old.status = LicenceStatus.OTHER.value
    old.superseded_by = new.identifier
    old.status_changed_at = now
    session.flush()
    add_event(session, old, f"superseded_by_{action.value}", before, actor, reason, now)
    add_event(session, new, action.value, None, actor, reason, now)
    _audit(
        session,
        new,
        AUDIT_ACTIONS[action],
        actor,
        {
            "previous_identifier": old.identifier,
            "previous_status": before,
            "reason": reason,
            "es_id": seal,
            "file_sm3": new.ofd_sm3,
            **({"pdf_sm3": new.pdf_sm3} if new.pdf_sm3 is not None else {}),
        },
    )
    return new


def change(
    session: Session,
    services: LicenceServices,
    identifier: str,
    changes: Mapping[str, Any],
    *,
    actor: str,
    reason: str = "",
    department_id: str | None = None,
    es_id: str | None = None,
    now: dt.datetime | None = None,
) -> Licence:
    """变更: a new version with ``changes`` applied to the current metadata (``fields`` merged key by
    key, ``null`` removing an optional field). The issue date becomes today unless given."""
    now = (now or utcnow()).replace(microsecond=0)
    reason = _reason(reason, LicenceAction.CHANGE)
    if not changes:
        raise InvalidInput("没有要变更的内容", "nothing to change")
    old = lock_licence(session, identifier)
    check_issuer_scope(old, department_id)
    _current(old)
    next_status(status_of(old, today_in_china(now)), LicenceAction.CHANGE)
    data = _merge(metadata_of(old).to_input(), changes)
    if "issue_date" not in changes:
        data["issue_date"] = today_in_china(now).isoformat()
    return _new_version(
        session, services, old, LicenceAction.CHANGE, data, actor=actor, reason=reason, es_id=es_id, now=now
    )


def renew(
    session: Session,
    services: LicenceServices,
    identifier: str,
    *,
    valid_until: dt.date | None,
    actor: str,
    reason: str = "",
    department_id: str | None = None,
    es_id: str | None = None,
    now: dt.datetime | None = None,
) -> Licence:
    """延续: a new version valid until ``valid_until`` (None: long-term), issued today."""
    now = (now or utcnow()).replace(microsecond=0)
    reason = _reason(reason, LicenceAction.RENEW)
    old = lock_licence(session, identifier)
    check_issuer_scope(old, department_id)
    _current(old)
    next_status(status_of(old, today_in_china(now)), LicenceAction.RENEW)
    if valid_until is not None and old.valid_until is not None and valid_until <= old.valid_until:
        raise InvalidInput(
            f"延续后的有效期须晚于原截止日期 {old.valid_until.isoformat()}",
            f"the renewed validity must end after {old.valid_until.isoformat()}",
        )
    data = metadata_of(old).to_input()
    data["issue_date"] = today_in_china(now).isoformat()
    data["valid_until"] = None if valid_until is None else valid_until.isoformat()
    return _new_version(
        session, services, old, LicenceAction.RENEW, data, actor=actor, reason=reason, es_id=es_id, now=now
    )


__all__ = [
    "cancel",
    "change",
    "expire_due",
    "renew",
    "return_licence",
    "revoke",
    "withhold",
]
