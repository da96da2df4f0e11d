"""Licence identifiers (电子证照标识, GB/T 36904 as practised) and their ISO/IEC 7064 MOD 37,36 check.

    1.2.156.3005.2.<type code>.<issuer code>.<serial>.<version>.<check>

``1.2.156.3005.2`` is the root arc for electronic licences. The type code is the defining
authority's unified social credit code (18 characters) followed by a 3-digit type number; the issuer
code is the issuing authority's unified social credit code; the serial is what the issuer numbers
its licences with (this service uses jurisdiction area (6) ‖ year (4) ‖ sequence (8)); the version
is three digits, ``001`` for the first issue and one more for every change or renewal. The check
character is computed with ISO/IEC 7064 MOD 37,36 over the identifier **without the root and without
the dots**, over the alphabet ``0-9A-Z`` (values 0–35).

MOD 37,36 is a hybrid system (M = 36, M + 1 = 37): start with P = M; for every character a,
S = (P + a) mod M, with 0 read as M, and P = 2·S mod (M + 1); the check character c is the one with
(P + c) mod M = 1. It detects every single substitution and every adjacent transposition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from core.errors import InvalidInput
from seal_registry.uscc import check_character as uscc_check_character

ROOT: Final = "1.2.156.3005.2"
ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_M: Final = 36
MAX_IDENTIFIER: Final = 128
MAX_VERSION: Final = 999
_USCC_CHARSET: Final = frozenset("0123456789ABCDEFGHJKLMNPQRTUWXY")
_SERIAL: Final = re.compile(r"[0-9A-Z]{1,32}")
_VERSION: Final = re.compile(r"\d{3}")


class IdentifierInvalid(InvalidInput):
    """A licence identifier that is not well formed; ``details["reason"]`` says which part is wrong."""

    code = "licence_identifier_invalid"
    title_zh, title_en = "证照标识无效", "Invalid licence identifier"


def mod37_36_check(data: str) -> str:
    """The ISO/IEC 7064 MOD 37,36 check character of ``data`` (characters of ``0-9A-Z``)."""
    p = _M
    for char in data:
        value = ALPHABET.find(char)
        if value < 0:
            raise IdentifierInvalid(
                f"字符 {char!r} 不在 0-9A-Z 范围内",
                f"character {char!r} is not in 0-9A-Z",
                reason="bad_character",
            )
        s = (p + value) % _M or _M
        p = (2 * s) % (_M + 1)
    return ALPHABET[(_M + 1 - p) % _M]


def mod37_36_valid(data_with_check: str) -> bool:
    """True when the last character is the MOD 37,36 check character of the rest."""
    if len(data_with_check) < 2 or any(c not in ALPHABET for c in data_with_check):
        return False
    return mod37_36_check(data_with_check[:-1]) == data_with_check[-1]


def _uscc_problem(code: str) -> tuple[str, str] | None:
    if len(code) != 18:
        return "须为 18 位统一社会信用代码", "must be an 18-character unified social credit code"
    if any(c not in _USCC_CHARSET for c in code):
        return (
            "含统一社会信用代码不允许的字符",
            "contains characters a unified social credit code cannot have",
        )
    if uscc_check_character(code[:17]) != code[17]:
        return "统一社会信用代码校验位错误", "has a wrong unified social credit code check character"
    return None


def check_type_code(type_code: str) -> str:
    """A licence type code: the defining authority's USCC (18) and a 3-digit type number."""
    code = (type_code or "").strip()
    if len(code) != 21 or not code[18:].isdigit() or not code[18:].isascii():
        raise IdentifierInvalid(
            f"证照类型代码 {code!r} 须为 18 位统一社会信用代码加 3 位数字",
            f"licence type code {code!r} must be an 18-character unified social credit code and 3 digits",
            reason="bad_type_code",
        )
    problem = _uscc_problem(code[:18])
    if problem is not None:
        raise IdentifierInvalid(
            f"证照类型代码的定义机构代码{problem[0]}",
            f"the defining authority code of the licence type code {problem[1]}",
            reason="bad_type_code",
        )
    return code


def check_issuer_code(issuer_code: str) -> str:
    code = (issuer_code or "").strip()
    problem = _uscc_problem(code)
    if problem is not None:
        raise IdentifierInvalid(
            f"颁证机构代码 {code!r} {problem[0]}",
            f"issuer code {code!r} {problem[1]}",
            reason="bad_issuer_code",
        )
    return code


@dataclass(frozen=True)
class LicenceIdentifier:
    type_code: str
    issuer_code: str
    serial: str
    version: int
    check: str

    @property
    def body(self) -> str:
        """What the check character is computed over: no root, no dots, no check."""
        return f"{self.type_code}{self.issuer_code}{self.serial}{self.version:03d}"

    @property
    def base(self) -> str:
        """The identifier of the licence across its versions: root, type, issuer, serial."""
        return f"{ROOT}.{self.type_code}.{self.issuer_code}.{self.serial}"

    def __str__(self) -> str:
        return f"{self.base}.{self.version:03d}.{self.check}"

    def with_version(self, version: int) -> LicenceIdentifier:
        return make_identifier(self.type_code, self.issuer_code, self.serial, version)


def make_identifier(type_code: str, issuer_code: str, serial: str, version: int = 1) -> LicenceIdentifier:
    """A new identifier with its check character; every part is checked first."""
    type_code = check_type_code(type_code)
    issuer_code = check_issuer_code(issuer_code)
    if _SERIAL.fullmatch(serial or "") is None:
        raise IdentifierInvalid(
            f"证照序号 {serial!r} 须为 1–32 位数字或大写字母",
            f"serial {serial!r} must be 1–32 digits or capital letters",
            reason="bad_serial",
        )
    if not 1 <= version <= MAX_VERSION:
        raise IdentifierInvalid(
            f"版本号须在 1–{MAX_VERSION} 之间", f"version must be 1–{MAX_VERSION}", reason="bad_version"
        )
    body = f"{type_code}{issuer_code}{serial}{version:03d}"
    return LicenceIdentifier(type_code, issuer_code, serial, version, mod37_36_check(body))


def parse_identifier(text: str) -> LicenceIdentifier:
    """Parse and check an identifier; :class:`IdentifierInvalid` names the part that is wrong
    (``wrong_root``, ``malformed``, ``bad_type_code``, ``bad_issuer_code``, ``bad_serial``,
    ``bad_version``, ``bad_check_character``)."""
    if not isinstance(text, str) or len(text) > MAX_IDENTIFIER:
        raise IdentifierInvalid(
            f"证照标识不能超过 {MAX_IDENTIFIER} 个字符",
            f"an identifier has at most {MAX_IDENTIFIER} characters",
            reason="malformed",
        )
    text = text.strip()
    if not text.startswith(ROOT + "."):
        raise IdentifierInvalid(
            f"证照标识须以根标识 {ROOT} 开头",
            f"a licence identifier must start with the root {ROOT}",
            reason="wrong_root",
        )
    parts = text[len(ROOT) + 1 :].split(".")
    if len(parts) != 5:
        raise IdentifierInvalid(
            "证照标识须为 根.类型代码.颁证机构代码.序号.版本.校验位",
            "an identifier is root.type code.issuer code.serial.version.check",
            reason="malformed",
        )
    type_code, issuer_code, serial, version, check = parts
    if _VERSION.fullmatch(version) is None or version == "000":
        raise IdentifierInvalid(
            f"版本号 {version!r} 须为 001–999 的 3 位数字",
            f"version {version!r} must be three digits, 001–999",
            reason="bad_version",
        )
    expected = make_identifier(type_code, issuer_code, serial, int(version))
    if len(check) != 1 or check not in ALPHABET:
        raise IdentifierInvalid(
            f"校验位 {check!r} 须为一个 0-9A-Z 字符",
            f"check character {check!r} must be one character of 0-9A-Z",
            reason="bad_check_character",
        )
    if check != expected.check:
        raise IdentifierInvalid(
            f"证照标识校验位错误：{check}（按 ISO/IEC 7064 MOD 37,36 应为 {expected.check}）",
            f"wrong check character {check} (ISO/IEC 7064 MOD 37,36 gives {expected.check})",
            reason="bad_check_character",
            expected=expected.check,
        )
    return expected


def is_valid_identifier(text: str) -> bool:
    try:
        parse_identifier(text)
    except IdentifierInvalid:
        return False
    return True


__all__ = [
    "ALPHABET",
    "ROOT",
    "IdentifierInvalid",
    "LicenceIdentifier",
    "check_issuer_code",
    "check_type_code",
    "is_valid_identifier",
    "make_identifier",
    "mod37_36_check",
    "mod37_36_valid",
    "parse_identifier",
]
