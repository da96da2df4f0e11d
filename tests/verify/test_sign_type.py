"""Sign-type OFD signatures (GB/T 35275 SignedData over Signature.xml): verified like seals' signer
side, and each tampering fails exactly the check that guards it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gmpki.cms import parse_signed_data
from gmpki.ofd import OfdPackage
from verify import Indication, Result, SubIndication, verify_bytes
from verify.report import SignatureReport

from .conftest import SIGN_DIR, Pki, flip, rewrite_entry, sign_type_ofd

pytestmark = pytest.mark.interop

HELLOWORLD = "ofdrw-sign__helloworld.ofd"
SIGNATURE_XML = f"{SIGN_DIR}/Signature.xml"
SIGNED_VALUE = f"{SIGN_DIR}/SignedValue.dat"
SEAL_ONLY = {
    "seal.maker_signature",
    "seal.maker_certificate_validity",
    "seal.maker_certificate_chain",
    "seal.validity_period",
    "seal.status",
    "signer.in_seal_certificate_list",
    "document.seal_file_match",
}
NOT_CONFIGURED = {"signer.certificate_revocation", "timestamp.token"}  # no CRL, no time-stamp


@pytest.fixture(scope="module", params=["detached", "embedded"])
def signed(request: pytest.FixtureRequest, pki: Pki, interop_file: Callable[[str], bytes]) -> bytes:
    return sign_type_ofd(
        interop_file(HELLOWORLD), pki.department, pki.department_signer, embedded=request.param == "embedded"
    )


def _only(report_sig: SignatureReport) -> dict[str, Result]:
    return {k: v for k, v in report_sig.results().items() if k not in SEAL_ONLY | NOT_CONFIGURED}


def test_sign_type_signature_passes_with_the_anchor(signed: bytes, pki: Pki) -> None:
    report = verify_bytes(signed, trust=pki.trust())
    (sig,) = report.signatures
    assert (report.indication, sig.indication, sig.type) == (Indication.PASSED, Indication.PASSED, "sign")
    assert set(_only(sig).values()) == {Result.PASSED}, sig.results()
    assert set(_only(sig)) == {
        "format.parse",
        "signer.signature",
        "signer.certificate_validity",
        "signer.certificate_chain",
        "document.data_hash",
        "document.references",
        "document.coverage",
    }
    for check_id in SEAL_ONLY:
        assert sig.check(check_id).result is Result.SKIPPED
        assert "not applicable" in sig.check(check_id).message_en
    assert sig.signer is not None and "测试局办公室" in sig.signer.subject
    assert sig.signing_time is not None and sig.seal is None
    assert "GB/T 35275" in sig.check("format.parse").message_en
    assert SIGNATURE_XML in sig.check("document.data_hash").message_en


def test_without_the_anchor_the_chain_is_indeterminate(signed: bytes) -> None:
    (sig,) = verify_bytes(signed).signatures
    assert (sig.indication, sig.sub_indication) == (
        Indication.INDETERMINATE,
        SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
    )
    assert sig.check("signer.certificate_chain").result is Result.INDETERMINATE
    assert sig.check("signer.signature").result is Result.PASSED


def _failed(data: bytes, pki: Pki) -> tuple[SignatureReport, set[str]]:
    (sig,) = verify_bytes(data, trust=pki.trust()).signatures
    return sig, {k for k, v in sig.results().items() if v is Result.FAILED}


def test_changed_document_file_fails_references_only(signed: bytes, pki: Pki) -> None:
    page = next(n for n in OfdPackage(signed).names if n.endswith("Content.xml"))
    sig, failed = _failed(rewrite_entry(signed, page, lambda b: b.replace(b"</", b" </", 1)), pki)
    assert failed == {"document.references"}
    assert (sig.indication, sig.sub_indication) == (Indication.FAILED, SubIndication.HASH_FAILURE)
    assert page in sig.check("document.references").message_en


def test_changed_signature_xml_fails_the_data_binding(signed: bytes, pki: Pki) -> None:
    tampered = rewrite_entry(signed, SIGNATURE_XML, lambda b: b.replace(b'Version="0.1"', b'Version="0.2"'))
    sig, failed = _failed(tampered, pki)
    assert failed == {"document.data_hash"}
    assert (sig.indication, sig.sub_indication) == (Indication.FAILED, SubIndication.HASH_FAILURE)
    assert "was modified" in sig.check("document.data_hash").message_en


def test_flipped_signature_value_fails_the_signature_only(signed: bytes, pki: Pki) -> None:
    value = OfdPackage(signed).read(SIGNED_VALUE)
    signature = parse_signed_data(value).signer.signature
    at = value.index(signature) + len(signature) - 1  # the last byte of s: still a valid INTEGER
    sig, failed = _failed(rewrite_entry(signed, SIGNED_VALUE, lambda b: flip(b, at)), pki)
    assert failed == {"signer.signature"}
    assert (sig.indication, sig.sub_indication) == (Indication.FAILED, SubIndication.SIG_CRYPTO_FAILURE)


def test_garbage_signed_value_is_a_format_failure(signed: bytes, pki: Pki) -> None:
    sig, failed = _failed(rewrite_entry(signed, SIGNED_VALUE, lambda b: b[: len(b) // 2]), pki)
    assert "format.parse" in failed
    assert (sig.indication, sig.sub_indication) == (Indication.FAILED, SubIndication.FORMAT_FAILURE)
    assert sig.check("document.references").result is Result.PASSED


def test_file_added_after_signing_is_reported(signed: bytes, pki: Pki) -> None:
    extended = OfdPackage(signed).rewrite({"Doc_0/Attachs/late.txt": b"added later"})
    (sig,) = verify_bytes(extended, trust=pki.trust()).signatures
    coverage = sig.check("document.coverage")
    assert coverage.result is Result.WARNING  # the default policy warns on unprotected files
    assert "Doc_0/Attachs/late.txt" in coverage.message_en
    assert sig.indication is Indication.PASSED
