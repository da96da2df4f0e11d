"""Licence identifiers: the ISO/IEC 7064 MOD 37,36 check character against an independent
implementation written here from the standard's definition, and every way an identifier can be
wrong."""

from __future__ import annotations

import random
import string

import pytest

from licence_store.identifier import (
    ROOT,
    IdentifierInvalid,
    check_type_code,
    make_identifier,
    mod37_36_check,
    mod37_36_valid,
    parse_identifier,
)
from tests.registry.conftest import uscc

# --- an independent MOD 37,36 ----------------------------------------------------------------------------
# ISO/IEC 7064 hybrid system "MOD M+1, M" for M = 36 over the alphabet 0-9 A-Z (values 0..35).
# The standard defines it by what a *valid* string (data followed by its check character) satisfies:
#   P_1 = M;  for j = 1..n+1:  S_j = (P_j mod (M+1)) + a_j;  P_{j+1} = ((S_j ||mod M) * 2) mod (M+1),
# where "x ||mod M" is the remainder of x by M with 0 replaced by M; the string is valid when
# S_{n+1} ||mod M == 1 (i.e. S_{n+1} ≡ 1 mod M). The check character is therefore found here by trying
# all 36 candidates, which shares nothing with the closed form the module uses.
_ALPHABET = string.digits + string.ascii_uppercase


def _hybrid_valid(text: str, m: int = 36) -> bool:
    p = m
    s = 0
    for ch in text:
        s = (p % (m + 1)) + _ALPHABET.index(ch)
        r = s % m or m
        p = (r * 2) % (m + 1)
    return s % m == 1


def independent_check(data: str) -> str:
    found = [c for c in _ALPHABET if _hybrid_valid(data + c)]
    assert len(found) == 1, (data, found)
    return found[0]


# GRid (Global Release Identifier) uses ISO 7064 MOD 37,36; its specification's example identifier
# is A1-2425G-ABC1234002-M.
PUBLISHED = [("A12425GABC1234002", "M")]


@pytest.mark.parametrize(("data", "check"), PUBLISHED)
def test_published_example(data: str, check: str) -> None:
    assert mod37_36_check(data) == check
    assert independent_check(data) == check
    assert mod37_36_valid(data + check)


def _table() -> list[str]:
    rng = random.Random(36_901)
    bodies = ["0", "Z", "00000000", "ZZZZZZZZ", "1234567890", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    for length in (1, 2, 5, 17, 45, 64):
        bodies.extend("".join(rng.choice(_ALPHABET) for _ in range(length)) for _ in range(40))
    # identifier bodies: type code ‖ issuer ‖ serial ‖ version
    for n in range(1, 30):
        bodies.append(f"{uscc(900 + n)}{n:03d}{uscc(n)}110000202{n % 10}{n:08d}{1 + n % 5:03d}")
    return bodies


@pytest.mark.parametrize("data", _table())
def test_check_character_table(data: str) -> None:
    expected = independent_check(data)
    assert mod37_36_check(data) == expected
    assert mod37_36_valid(data + expected)
    assert not any(mod37_36_valid(data + c) for c in _ALPHABET if c != expected)


def test_every_single_substitution_and_adjacent_transposition_is_detected() -> None:
    body = make_identifier(uscc(901) + "001", uscc(1), "110000202400000001", 1).body
    full = body + mod37_36_check(body)
    for i, original in enumerate(full):
        for c in _ALPHABET:
            if c != original:
                assert not mod37_36_valid(full[:i] + c + full[i + 1 :]), (i, c)
    for i in range(len(full) - 1):
        if full[i] != full[i + 1]:
            swapped = full[:i] + full[i + 1] + full[i] + full[i + 2 :]
            assert not mod37_36_valid(swapped), i


# --- identifiers --------------------------------------------------------------------------------------------
def _identifier(version: int = 1) -> str:
    return str(make_identifier(uscc(901) + "001", uscc(1), "110000202400000001", version))


def test_generate_and_parse_round_trip() -> None:
    text = _identifier()
    ident = parse_identifier(text)
    assert str(ident) == text
    assert text.startswith(ROOT + "." + uscc(901) + "001." + uscc(1) + ".110000202400000001.001.")
    assert ident.check == independent_check(ident.body)
    assert ident.body == text[len(ROOT) + 1 : -2].replace(".", "")
    second = ident.with_version(2)
    assert second.base == ident.base and str(second).split(".")[-2] == "002"
    assert second.check == independent_check(second.body)
    assert parse_identifier(f"  {text}  ") == ident


def _reason(text: str) -> str:
    with pytest.raises(IdentifierInvalid) as caught:
        parse_identifier(text)
    assert caught.value.status == 400 and caught.value.code == "licence_identifier_invalid"
    return str(caught.value.details["reason"])


def test_bad_check_character_is_refused_with_the_expected_one() -> None:
    text = _identifier()
    good = text[-1]
    for c in _ALPHABET:
        if c != good:
            with pytest.raises(IdentifierInvalid) as caught:
                parse_identifier(text[:-1] + c)
            assert caught.value.details == {"reason": "bad_check_character", "expected": good}
    assert _reason(text[:-1] + "a") == "bad_check_character"
    assert _reason(text[:-1] + "AB") == "bad_check_character"
    assert _reason(text[:-2]) == "malformed"  # ".": nothing after the last dot


@pytest.mark.parametrize(
    "root",
    ["1.2.156.3005.1", "1.2.156.3006.2", "2.16.156.3005.2", "1.2.156.3005", "1.2.156.3005.2.9", ""],
)
def test_wrong_root(root: str) -> None:
    text = _identifier()
    rest = text[len(ROOT) + 1 :]
    assert _reason(f"{root}.{rest}" if root else rest) in ("wrong_root", "malformed")
    if root in ("1.2.156.3005.1", "1.2.156.3006.2", "2.16.156.3005.2", ""):
        assert _reason(f"{root}.{rest}" if root else rest) == "wrong_root"


def test_each_part_is_checked() -> None:
    parts = _identifier().split(".")
    type_code, issuer, serial, version = parts[5], parts[6], parts[7], parts[8]

    def with_part(index: int, value: str) -> str:
        changed = list(parts)
        changed[index] = value
        return ".".join(changed)

    assert _reason(with_part(5, type_code[:-1])) == "bad_type_code"
    assert _reason(with_part(5, type_code[:17] + "X" + type_code[18:])) == "bad_type_code"  # USCC check
    assert _reason(with_part(5, type_code[:18] + "0A1")) == "bad_type_code"
    assert _reason(with_part(6, issuer.lower())) == "bad_issuer_code"
    assert _reason(with_part(6, issuer[:17] + ("0" if issuer[17] != "0" else "1"))) == "bad_issuer_code"
    assert _reason(with_part(7, serial + "-")) == "bad_serial"
    assert _reason(with_part(7, "x" * 40)) == "bad_serial"
    assert _reason(with_part(8, "000")) == "bad_version"
    assert _reason(with_part(8, "1")) == "bad_version"
    assert _reason(with_part(8, version + "0")) == "bad_version"
    assert _reason(".".join(parts[:-1])) == "malformed"
    assert _reason(".".join([*parts, "X"])) == "malformed"
    assert _reason("x" * 200) == "malformed"


def test_type_codes() -> None:
    assert check_type_code(uscc(901) + "123") == uscc(901) + "123"
    for bad in ("", uscc(901), uscc(901) + "12", uscc(901) + "１２３", "I" * 18 + "123"):
        with pytest.raises(IdentifierInvalid):
            check_type_code(bad)
    with pytest.raises(IdentifierInvalid):
        make_identifier(uscc(901) + "001", uscc(1), "1", 1000)
    with pytest.raises(IdentifierInvalid):
        mod37_36_check("abc")
