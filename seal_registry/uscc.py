"""Unified social credit code (统一社会信用代码, GB 32100-2015): format and check character."""

from __future__ import annotations

from core.errors import InvalidInput

_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I, O, Z, S, V
_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def check_character(first17: str) -> str:
    total = sum(_CHARSET.index(c) * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return _CHARSET[(31 - total % 31) % 31]


def validate_uscc(code: str) -> str:
    """Return the normalised (upper-case) code or raise :class:`InvalidInput` saying what is wrong."""
    code = code.strip().upper()
    if len(code) != 18:
        raise InvalidInput("统一社会信用代码必须为 18 位", "A unified social credit code has 18 characters")
    bad = [c for c in code if c not in _CHARSET]
    if bad:
        raise InvalidInput(
            f"统一社会信用代码含非法字符：{''.join(bad)}",
            f"Unified social credit code has invalid characters: {''.join(bad)}",
        )
    expected = check_character(code[:17])
    if code[17] != expected:
        raise InvalidInput(
            f"统一社会信用代码校验位错误（应为 {expected}）",
            f"Unified social credit code check character is wrong (expected {expected})",
        )
    return code
