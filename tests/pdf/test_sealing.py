"""Sealing PDFs for real: poppler's pdfsig and eseal's verifier both judge the output."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import enumerate_sig_fields

from core.db import transaction
from gmpki.sm3 import sm3_hex
from seal_registry.models import Seal
from signer.pdf_sealing import MM, pades_timestamp_authority, timestamp_authority_for
from signer.tsa import TimeStampAuthority
from tests.registry.conftest import Registry
from verify import Indication, Result, SubIndication, verify_bytes
from verify.pdf import InteropTrustSource

from .conftest import Poppler, make_pdf, seal_document


def _valid_in_pdfsig(poppler: Poppler, pdf: bytes, tmp_path: Path, signatures: int = 1) -> str:
    path = tmp_path / "sealed.pdf"
    path.write_bytes(pdf)
    report = poppler.sig(path)
    assert report.count("Signature Validation: Signature is Valid.") == signatures, report
    if poppler.nss_dir is not None:
        # The interop root is in the NSS database pdfsig reads: the chain is trusted, not "unknown".
        assert "Certificate Validation: Certificate is Trusted." in report, report
    return report


def _all_passed(report_json: dict[str, object], skipped: set[str]) -> None:
    for sig in report_json["signatures"]:  # type: ignore[attr-defined]
        for check in sig["checks"]:
            expected = "skipped" if check["id"] in skipped else "passed"
            assert check["result"] == expected, check


@pytest.mark.parametrize("kind", ["ecdsa", "rsa"])
def test_pades_seal_is_valid_in_pdfsig_and_eseal(
    region: Registry,
    seal: Seal,
    blank_pdf: bytes,
    trust: InteropTrustSource,
    poppler: Poppler,
    tmp_path: Path,
    kind: str,
) -> None:
    before = region.audit_count()
    sealed = seal_document(region, seal, blank_pdf, key_kind=kind)
    assert sealed.startswith(blank_pdf)  # an incremental update: the original bytes are untouched
    pdfsig = _valid_in_pdfsig(poppler, sealed, tmp_path)
    assert "ETSI.CAdES.detached" in pdfsig and "Total document signed" in pdfsig
    report = verify_bytes(sealed, trust=trust)
    assert report.format == "pdf" and report.indication is Indication.PASSED
    sig = report.signatures[0]
    assert sig.type == "sign" and sig.signer is not None and "测试市市场监督管理局" in sig.signer.subject
    mechanism = "sha256_ecdsa" if kind == "ecdsa" else "sha256_rsa"
    assert mechanism in sig.check("signer.signature").message_en
    _all_passed(report.to_json(), {"signer.certificate_revocation", "timestamp.token"})
    # One audit entry, in the same transaction, naming the document that was sealed.
    assert region.audit_count() == before + 1
    entry = region.last_audit()
    details = json.loads(entry.details)
    assert entry.action == "signature.made" and entry.subject_id == seal.id
    assert details["document_sm3"] == sm3_hex(blank_pdf) and details["sealed_sm3"] == sm3_hex(sealed)
    assert details["format"] == "pdf" and details["key_kind"] == kind


def test_sm2_seal_is_verified_by_eseal(
    region: Registry,
    seal: Seal,
    blank_pdf: bytes,
    trust: InteropTrustSource,
    poppler: Poppler,
    tmp_path: Path,
) -> None:
    sealed = seal_document(region, seal, blank_pdf, key_kind="sm2")
    report = verify_bytes(sealed, trust=trust)
    assert report.indication is Indication.PASSED, report.dumps()
    sig = report.signatures[0]
    assert "gbt35275" in sig.check("format.parse").message_en
    assert "SM3" in sig.check("document.data_hash").message_en
    # The SM2 chain goes to the region's SM2 root, not the interop root.
    assert "电子印章根CA" in sig.check("signer.certificate_chain").message_zh
    # Readers do not know GB/T 35275 SignedData: pdfsig finds the field but cannot verify it.
    path = tmp_path / "sm2.pdf"
    path.write_bytes(sealed)
    assert "Signature is Valid." not in poppler.sig(path)


@pytest.mark.parametrize("kind", ["sm2", "ecdsa", "rsa"])
def test_a_byte_changed_inside_the_byte_range_is_a_hash_failure(
    region: Registry, seal: Seal, blank_pdf: bytes, trust: InteropTrustSource, kind: str
) -> None:
    sealed = seal_document(region, seal, blank_pdf, key_kind=kind)
    at = sealed.index(b"144 36 re f")  # the page content, inside the first /ByteRange part
    tampered = sealed[:at] + b"145" + sealed[at + 3 :]
    report = verify_bytes(tampered, trust=trust)
    sig = report.signatures[0]
    assert sig.check("document.data_hash").result is Result.FAILED
    # Only the digest breaks: the signature over the signed attributes still verifies.
    assert sig.check("signer.signature").result is Result.PASSED
    assert sig.check("format.parse").result is Result.PASSED
    assert (report.indication, report.sub_indication) == (Indication.FAILED, SubIndication.HASH_FAILURE)
    assert verify_bytes(sealed, trust=trust).indication is Indication.PASSED


def test_certified_then_approved_both_stay_valid(
    region: Registry,
    seal: Seal,
    blank_pdf: bytes,
    trust: InteropTrustSource,
    poppler: Poppler,
    tmp_path: Path,
) -> None:
    certified = seal_document(region, seal, blank_pdf, key_kind="ecdsa", certify=True)
    both = seal_document(region, seal, certified, key_kind="ecdsa", x_mm=100, y_mm=30)
    assert both.startswith(certified)
    pdfsig = _valid_in_pdfsig(poppler, both, tmp_path, signatures=2)
    assert "Not total document signed" in pdfsig and "Total document signed" in pdfsig
    report = verify_bytes(both, trust=trust)
    assert report.indication is Indication.PASSED, report.dumps()
    first, second = report.signatures
    assert "permitted changes only" in first.check("document.coverage").message_en
    assert second.check("document.coverage").message_en == "the signature covers the whole file"
    # An SM2 approval after the certification is allowed too, and both verify in eseal.
    mixed = seal_document(region, seal, certified, key_kind="sm2", x_mm=100, y_mm=30)
    mixed_report = verify_bytes(mixed, trust=trust)
    assert [s.indication for s in mixed_report.signatures] == [Indication.PASSED, Indication.PASSED]


def test_a_second_certification_is_refused(region: Registry, seal: Seal, blank_pdf: bytes) -> None:
    from core.errors import InvalidInput

    once = seal_document(region, seal, blank_pdf, key_kind="ecdsa")
    before = region.audit_count()
    with pytest.raises(InvalidInput):
        seal_document(region, seal, once, key_kind="ecdsa", certify=True)
    assert region.audit_count() == before


@pytest.mark.parametrize("kind", ["ecdsa", "sm2"])
def test_b_t_time_stamp_is_verified(
    region: Registry, seal: Seal, blank_pdf: bytes, trust: InteropTrustSource, kind: str
) -> None:
    with transaction(region.sessions) as s:
        tsa = timestamp_authority_for(s, region.keystore, kind)
        expected = TimeStampAuthority.from_region(s, region.keystore) if kind == "sm2" else None
        assert expected is None or tsa.certificate_der == expected.certificate_der
        assert (
            kind == "sm2"
            or tsa.certificate_der == pades_timestamp_authority(s, region.keystore).certificate_der
        )
        sealed = seal_document(region, seal, blank_pdf, key_kind=kind, pades_level="B-T", tsa=tsa)
    report = verify_bytes(sealed, trust=trust)
    sig = report.signatures[0]
    stamp = sig.check("timestamp.token")
    assert stamp.result is Result.PASSED, stamp
    assert ("PAdES 时间戳服务" if kind == "ecdsa" else "时间戳服务 TSA") in stamp.message_zh
    assert "time-stamp time" in sig.check("signer.certificate_validity").message_en
    assert report.indication is Indication.PASSED
    # Without the TSA's anchor the token still verifies, but its time is not trusted.
    untrusted = verify_bytes(sealed, trust=InteropTrustSource(None, ()))
    assert untrusted.signatures[0].check("timestamp.token").result is Result.INDETERMINATE


def test_b_t_needs_a_tsa(region: Registry, seal: Seal, blank_pdf: bytes) -> None:
    from core.errors import InvalidInput

    with pytest.raises(InvalidInput):
        seal_document(region, seal, blank_pdf, pades_level="B-T")


def test_visible_seal_is_drawn_where_asked(
    region: Registry, seal: Seal, trust: InteropTrustSource, poppler: Poppler, tmp_path: Path
) -> None:
    pdf = make_pdf(2)
    sealed = seal_document(region, seal, pdf, key_kind="ecdsa", page=1, x_mm=120, y_mm=40)
    path = tmp_path / "visible.pdf"
    path.write_bytes(sealed)
    png = poppler.render(path, tmp_path / "page", dpi=72)
    img = Image.open(png).convert("RGB")
    px_per_mm = img.width / 210.0

    def red(box: tuple[float, float, float, float]) -> int:
        x0, y0, x1, y1 = (round(v * px_per_mm) for v in box)
        count = 0
        for x in range(x0, x1):
            for y in range(y0, y1):
                r, g, b = img.getpixel((x, y))
                count += r > 180 and g < 90 and b < 90
        return count

    # The seal is 40 mm wide (a contract seal): red ink inside its box, none left of it.
    assert red((120, 40, 160, 80)) > 200
    assert red((20, 40, 110, 80)) == 0
    # The stamp text is set in an embedded subset of a CJK font.
    reader = PdfFileReader(io.BytesIO(sealed))
    _name, _value, field_ref = next(iter(enumerate_sig_fields(reader, filled_status=True)))
    field = field_ref.get_object()
    appearance = field["/AP"]["/N"]
    fonts = appearance["/Resources"]["/Font"]
    font = next(iter(fonts.values())).get_object()
    descendant = font["/DescendantFonts"][0].get_object()
    assert "+" in str(descendant["/BaseFont"])  # subset prefix
    assert "/FontFile2" in descendant["/FontDescriptor"] or "/FontFile3" in descendant["/FontDescriptor"]
    rect = [float(v) for v in field["/Rect"]]
    assert abs(rect[0] - 120 * MM) < 1 and abs(rect[3] - (842 - 40 * MM)) < 1
    assert verify_bytes(sealed, trust=trust).indication is Indication.PASSED
