"""A changed byte fails exactly the check that covers it; every other check keeps its result."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gmpki.seal import parse_ses_signature
from verify import Indication, Result, SubIndication, verify_bytes
from verify.report import SignatureReport

from .conftest import flip, rewrite_entry

pytestmark = pytest.mark.interop

TAX, EXPIRED = "ofdrw-sign__v4signed.ofd", "ofdrw-reader__SESV4SignDoc.ofd"
PAGE = "Doc_0/Pages/Page_0/Content.xml"
SIGNATURE_XML = "Doc_0/Signs/Sign_0/Signature.xml"
SIGNED_VALUE = "Doc_0/Signs/Sign_0/SignedValue.dat"


def _signature(data: bytes) -> SignatureReport:
    (sig,) = verify_bytes(data).signatures
    return sig


def _changed(before: SignatureReport, after: SignatureReport) -> dict[str, Result]:
    assert [c.id for c in before.checks] == [c.id for c in after.checks]
    return {c.id: c.result for c, b in zip(after.checks, before.checks, strict=True) if c.result != b.result}


def _page_byte(content: bytes) -> bytes:
    i = len(content) // 2
    return content[:i] + (b"X" if content[i : i + 1] != b"X" else b"Y") + content[i + 1 :]


def _comment(xml: bytes) -> bytes:
    # Same XML meaning, different bytes: dataHash covers the bytes, not the infoset.
    head, sep, rest = xml.partition(b"?>")
    return head + sep + b"<!-- edited -->" + rest


def _signer_bit(signed_value: bytes) -> bytes:
    assert signed_value.endswith(parse_ses_signature(signed_value).signature)
    return flip(signed_value, len(signed_value) - 1)  # last byte of s in the signer's SM2Signature


def _picture_byte(signed_value: bytes) -> bytes:
    picture = parse_ses_signature(signed_value).seal.picture_data
    start = signed_value.index(picture)
    return flip(signed_value, start + len(picture) // 2, 0x40)


F = Result.FAILED
CASES = [
    (TAX, PAGE, _page_byte, {"document.references": F}),
    (EXPIRED, PAGE, _page_byte, {"document.references": F}),
    (TAX, SIGNATURE_XML, _comment, {"document.data_hash": F}),
    (EXPIRED, SIGNATURE_XML, _comment, {"document.data_hash": F}),
    (TAX, SIGNED_VALUE, _signer_bit, {"signer.signature": F}),
    (EXPIRED, SIGNED_VALUE, _signer_bit, {"signer.signature": F}),
    (TAX, SIGNED_VALUE, _picture_byte, {"seal.maker_signature": F, "signer.signature": F}),
    # This package also carries Seal.esl, which no longer equals the (altered) embedded seal.
    (
        EXPIRED,
        SIGNED_VALUE,
        _picture_byte,
        {"seal.maker_signature": F, "signer.signature": F, "document.seal_file_match": F},
    ),
]


@pytest.mark.parametrize(("sample", "entry", "change", "expected"), CASES)
def test_tamper_fails_exactly_its_check(
    interop_file: Callable[[str], bytes],
    tmp_path: Path,
    sample: str,
    entry: str,
    change: Callable[[bytes], bytes],
    expected: dict[str, Result],
) -> None:
    original = interop_file(sample)
    copy = tmp_path / sample
    copy.write_bytes(rewrite_entry(original, entry, change))
    before = _signature(original)
    after = _signature(copy.read_bytes())
    assert _changed(before, after) == expected
    assert after.indication is Indication.FAILED


def test_reference_failure_names_the_file(interop_file: Callable[[str], bytes]) -> None:
    sig = _signature(rewrite_entry(interop_file(TAX), PAGE, _page_byte))
    message = sig.check("document.references")
    assert f"/{PAGE}" in message.message_en and f"/{PAGE}" in message.message_zh
    assert "1 of 13" in message.message_en
    assert sig.sub_indication is SubIndication.HASH_FAILURE


def test_seal_picture_tamper_verdict(interop_file: Callable[[str], bytes]) -> None:
    sig = _signature(rewrite_entry(interop_file(TAX), SIGNED_VALUE, _picture_byte))
    # Both signatures fail; the maker's names the cause (the seal inside TBS_Sign was altered).
    assert sig.sub_indication is SubIndication.SEAL_SIGNATURE_FAILURE
    assert "does not verify" in sig.check("seal.maker_signature").message_en


def test_data_hash_message_names_the_signature_file(interop_file: Callable[[str], bytes]) -> None:
    sig = _signature(rewrite_entry(interop_file(TAX), SIGNATURE_XML, _comment))
    assert SIGNATURE_XML in sig.check("document.data_hash").message_en
    assert sig.sub_indication is SubIndication.HASH_FAILURE


def test_added_file_is_an_unprotected_warning(interop_file: Callable[[str], bytes]) -> None:
    original = interop_file(TAX)
    pkg_bytes = rewrite_entry(original, PAGE, lambda b: b)  # identical content, fresh archive
    from gmpki.ofd import OfdPackage

    added = OfdPackage(pkg_bytes).rewrite({"Doc_0/Attachs/added_later.xml": b"<x/>"})
    before, after = _signature(original), _signature(added)
    assert _changed(before, after) == {"document.coverage": Result.WARNING}
    assert "Doc_0/Attachs/added_later.xml" in after.check("document.coverage").message_en
    assert after.indication is before.indication  # a warning does not change the verdict


def test_removed_file_fails_references(interop_file: Callable[[str], bytes]) -> None:
    from gmpki.ofd import OfdPackage

    removed = OfdPackage(interop_file(EXPIRED)).rewrite({"Doc_0/PublicRes.xml": None})
    sig = _signature(removed)
    message = sig.check("document.references")
    assert (
        message.result is F
        and "/Doc_0/PublicRes.xml" in message.message_en
        and "missing" in message.message_en
    )


def test_seal_file_swapped(interop_file: Callable[[str], bytes]) -> None:
    other_seal = interop_file("ofdrw-gm__UserV1.esl")
    before = _signature(interop_file(EXPIRED))
    after = _signature(
        rewrite_entry(interop_file(EXPIRED), "Doc_0/Signs/Sign_0/Seal.esl", lambda _: other_seal)
    )
    # Seal.esl is itself a referenced file, so its CheckValue breaks too.
    assert _changed(before, after) == {"document.seal_file_match": F, "document.references": F}
