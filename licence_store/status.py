"""Licence status codes (national practice) and the transitions between them. Pure: no database.

    01 valid (有效)      ─withhold→ 02 withheld (暂扣) ─return→ 01
    01 | 02 | 05         ─revoke→   03 revoked (撤销, terminal)
    01 | 02 | 05         ─cancel→   04 cancelled (注销, terminal)
    01 | 02              ─expire→   05 expired (过期; automatic at the end of validity)
    01                   ─change→   99 superseded by the new version (变更)
    01 | 05              ─renew→    99 superseded by the new version (延续)

A licence whose validity has ended reads as 05 even before the expiry sweep has run
(:func:`effective_status`).
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Final

from core.errors import IllegalTransition


class LicenceStatus(enum.StrEnum):
    VALID = "01"
    WITHHELD = "02"
    REVOKED = "03"
    CANCELLED = "04"
    EXPIRED = "05"
    OTHER = "99"


STATUS_LABELS: Final = {
    LicenceStatus.VALID: ("有效", "valid"),
    LicenceStatus.WITHHELD: ("暂扣", "withheld"),
    LicenceStatus.REVOKED: ("撤销", "revoked"),
    LicenceStatus.CANCELLED: ("注销", "cancelled"),
    LicenceStatus.EXPIRED: ("过期", "expired"),
    LicenceStatus.OTHER: ("其他（已被新版本取代）", "other (superseded by a newer version)"),
}


class LicenceAction(enum.StrEnum):
    WITHHOLD = "withhold"
    RETURN = "return"
    REVOKE = "revoke"
    CANCEL = "cancel"
    EXPIRE = "expire"
    CHANGE = "change"
    RENEW = "renew"


S = LicenceStatus
TRANSITIONS: Final[dict[LicenceAction, tuple[frozenset[LicenceStatus], LicenceStatus]]] = {
    LicenceAction.WITHHOLD: (frozenset({S.VALID}), S.WITHHELD),
    LicenceAction.RETURN: (frozenset({S.WITHHELD}), S.VALID),
    LicenceAction.REVOKE: (frozenset({S.VALID, S.WITHHELD, S.EXPIRED}), S.REVOKED),
    LicenceAction.CANCEL: (frozenset({S.VALID, S.WITHHELD, S.EXPIRED}), S.CANCELLED),
    LicenceAction.EXPIRE: (frozenset({S.VALID, S.WITHHELD}), S.EXPIRED),
    LicenceAction.CHANGE: (frozenset({S.VALID}), S.OTHER),
    LicenceAction.RENEW: (frozenset({S.VALID, S.EXPIRED}), S.OTHER),
}

# Actions that take a licence away from its holder must say why.
REASON_REQUIRED: Final = frozenset({LicenceAction.WITHHOLD, LicenceAction.REVOKE, LicenceAction.CANCEL})

AUDIT_ACTIONS: Final = {
    LicenceAction.WITHHOLD: "licence.withheld",
    LicenceAction.RETURN: "licence.returned",
    LicenceAction.REVOKE: "licence.revoked",
    LicenceAction.CANCEL: "licence.cancelled",
    LicenceAction.EXPIRE: "licence.expired",
    LicenceAction.CHANGE: "licence.changed",
    LicenceAction.RENEW: "licence.renewed",
}


def label(status: LicenceStatus) -> tuple[str, str]:
    return STATUS_LABELS[status]


def next_status(current: LicenceStatus, action: LicenceAction) -> LicenceStatus:
    allowed, target = TRANSITIONS[action]
    if current not in allowed:
        zh, en = STATUS_LABELS[current]
        raise IllegalTransition(
            f"证照处于“{zh}”状态（{current.value}），不能执行“{action.value}”操作",
            f"a licence in status {current.value} ({en}) cannot take action '{action.value}'",
            status=current.value,
            action=action.value,
        )
    return target


def effective_status(stored: LicenceStatus, valid_until: dt.date | None, today: dt.date) -> LicenceStatus:
    """The status to report: a valid or withheld licence past its validity end is expired."""
    if stored in (S.VALID, S.WITHHELD) and valid_until is not None and valid_until < today:
        return S.EXPIRED
    return stored


__all__ = [
    "AUDIT_ACTIONS",
    "REASON_REQUIRED",
    "STATUS_LABELS",
    "TRANSITIONS",
    "LicenceAction",
    "LicenceStatus",
    "effective_status",
    "label",
    "next_status",
]
