"""The seal state machine and seal types. Pure: no database, so the rules are testable on their own.

applied ─review→ reviewed ─make→ made ─file→ filed ─issue→ issued ⇄ suspended
   └───────reject────┘                                  │            │
every non-terminal state ─cancel→ cancelled (注销, terminal)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from core.errors import IllegalTransition, InvalidInput


class SealState(enum.StrEnum):
    APPLIED = "applied"  # 已申请
    REVIEWED = "reviewed"  # 已审核
    REJECTED = "rejected"  # 已驳回 (terminal)
    MADE = "made"  # 已制作
    FILED = "filed"  # 已备案
    ISSUED = "issued"  # 已发放 (the only state in which a seal may sign)
    SUSPENDED = "suspended"  # 已暂停
    CANCELLED = "cancelled"  # 已注销 (terminal)


STATE_LABELS_ZH = {
    SealState.APPLIED: "已申请",
    SealState.REVIEWED: "已审核",
    SealState.REJECTED: "已驳回",
    SealState.MADE: "已制作",
    SealState.FILED: "已备案",
    SealState.ISSUED: "已发放",
    SealState.SUSPENDED: "已暂停",
    SealState.CANCELLED: "已注销",
}

TERMINAL = frozenset({SealState.REJECTED, SealState.CANCELLED})


class SealAction(enum.StrEnum):
    REVIEW = "review"
    REJECT = "reject"
    MAKE = "make"
    FILE = "file"
    ISSUE = "issue"
    SUSPEND = "suspend"
    RESUME = "resume"
    CANCEL = "cancel"


_NON_TERMINAL = tuple(s for s in SealState if s not in TERMINAL)

TRANSITIONS: dict[SealAction, tuple[tuple[SealState, ...], SealState]] = {
    SealAction.REVIEW: ((SealState.APPLIED,), SealState.REVIEWED),
    SealAction.REJECT: ((SealState.APPLIED, SealState.REVIEWED), SealState.REJECTED),
    SealAction.MAKE: ((SealState.REVIEWED,), SealState.MADE),
    SealAction.FILE: ((SealState.MADE,), SealState.FILED),
    SealAction.ISSUE: ((SealState.FILED,), SealState.ISSUED),
    SealAction.SUSPEND: ((SealState.ISSUED,), SealState.SUSPENDED),
    SealAction.RESUME: ((SealState.SUSPENDED,), SealState.ISSUED),
    SealAction.CANCEL: (_NON_TERMINAL, SealState.CANCELLED),
}


def next_state(current: SealState, action: SealAction) -> SealState:
    """The state after ``action``, or :class:`IllegalTransition` naming both."""
    allowed_from, target = TRANSITIONS[action]
    if current not in allowed_from:
        raise IllegalTransition(
            f"印章处于“{STATE_LABELS_ZH[current]}”状态，不能执行“{action.value}”操作",
            f"A seal in state '{current.value}' cannot take action '{action.value}'",
            state=current.value,
            action=action.value,
        )
    return target


@dataclass(frozen=True)
class SealType:
    code: str  # two digits, part of the esID
    key: str
    name_zh: str
    name_en: str
    picture_style: str  # round | oval | square
    default_width_mm: int
    default_height_mm: int


SEAL_TYPES: tuple[SealType, ...] = (
    SealType("01", "official", "公章", "Official seal", "round", 42, 42),
    SealType("02", "contract", "合同专用章", "Contract seal", "round", 40, 40),
    SealType("03", "invoice", "发票专用章", "Invoice seal", "oval", 40, 30),
    SealType("04", "business", "业务专用章", "Business seal", "round", 40, 40),
    SealType("05", "finance", "财务专用章", "Finance seal", "round", 38, 38),
    SealType("06", "legal_representative", "法定代表人名章", "Legal-person name seal", "square", 20, 20),
    SealType("99", "other", "其他专用章", "Other special seal", "round", 40, 40),
)
_BY_KEY = {t.key: t for t in SEAL_TYPES}


def seal_type(key: str) -> SealType:
    try:
        return _BY_KEY[key]
    except KeyError:
        names = ", ".join(_BY_KEY)
        raise InvalidInput(
            f"未知印章类型 {key!r}（可选：{names}）", f"Unknown seal type {key!r} (one of: {names})"
        ) from None
