"""Hostile and broken inputs end in a typed error or a FORMAT_FAILURE report — never a crash or a hang."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import pytest

from core.errors import InputTooLarge, MalformedData
from gmpki.ofd import OfdPackage, write_package
from verify import Indication, Result, SubIndication, UnusableInput, detect, verify_bytes
from verify.engine import InputKind

from .conftest import Pki, seal_ofd

pytestmark = pytest.mark.interop

TAX, EXPIRED = "ofdrw-sign__v4signed.ofd", "ofdrw-reader__SESV4SignDoc.ofd"
SIGNATURES = "Doc_0/Signs/Signatures.xml"
SIG0 = "Doc_0/Signs/Sign_0"
NS = 'xmlns:ofd="http://www.ofdspec.org/2016"'


def _with(data: bytes, changes: dict[str, bytes | None]) -> bytes:
    return OfdPackage(data).rewrite(changes)


def _signatures(*entries: str) -> bytes:
    return f"<ofd:Signatures {NS}>{''.join(entries)}</ofd:Signatures>".encode()


# --- detection ----------------------------------------------------------------------------------------
def test_detect_by_content(interop_file: Callable[[str], bytes]) -> None:
    assert detect(interop_file(TAX)) is InputKind.OFD
    assert detect(interop_file("ofdrw-gm__UserV4.esl")) is InputKind.SEAL
    assert detect(interop_file("ofdrw-gm__UserV1.esl")) is InputKind.SEAL
    assert detect(interop_file("ofdrw-gm__SignedValueV4.dat")) is InputKind.SES
    assert detect(b"%PDF-1.7\n...") is InputKind.PDF
    assert detect(write_package([("mimetype", b"application/zip")])) is InputKind.UNKNOWN
    assert detect(b"") is InputKind.UNKNOWN


@pytest.mark.parametrize("data", [b"", b"hello", b"\x30", b"\x30\x03\x02\x01\x01", bytes(64)])
def test_unknown_input(data: bytes) -> None:
    with pytest.raises(UnusableInput):
        verify_bytes(data)


def _minimal_pdf(body: bytes = b"<< /Type /Catalog /Pages 2 0 R >>") -> bytes:
    """A one-page PDF written by hand, with a correct cross-reference table."""
    objects = [body, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", b"<< /Type /Page /Parent 2 0 R >>"]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, obj)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_broken_pdf_is_a_format_failure() -> None:
    report = verify_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    assert (report.format, report.indication) == ("pdf", Indication.FAILED)
    assert report.sub_indication is SubIndication.FORMAT_FAILURE
    assert report.checks[0].id == "format.parse" and report.checks[0].result is Result.FAILED


def test_unsigned_pdf_is_not_signed() -> None:
    report = verify_bytes(_minimal_pdf())
    assert (report.format, report.signed, report.indication) == ("pdf", False, Indication.NOT_SIGNED)
    assert report.signatures == () and report.checks == ()


def test_non_ofd_zip() -> None:
    with pytest.raises(UnusableInput):
        verify_bytes(write_package([("word/document.xml", b"<w/>"), ("[Content_Types].xml", b"<x/>")]))


@pytest.mark.parametrize("cut", [1, 10, 100, 5000])
def test_truncated_der(interop_file: Callable[[str], bytes], cut: int) -> None:
    for name in ("ofdrw-gm__UserV4.esl", "ofdrw-gm__SignedValueV4.dat"):
        with pytest.raises(UnusableInput):
            verify_bytes(interop_file(name)[:-cut])


def test_trailing_garbage_after_seal(interop_file: Callable[[str], bytes]) -> None:
    with pytest.raises(UnusableInput):
        verify_bytes(interop_file("ofdrw-gm__UserV4.esl") + b"\x00")


# --- container ----------------------------------------------------------------------------------------------
def test_zip_bomb() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("OFD.xml", b"<ofd:OFD/>")
        z.writestr("Doc_0/Res/bomb.bin", bytes(128 * 1024 * 1024))
    with pytest.raises(InputTooLarge):
        verify_bytes(out.getvalue())


def test_parent_path_entry() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("OFD.xml", b"<ofd:OFD/>")
        z.writestr("../../etc/cron.d/evil", b"x")
    with pytest.raises(MalformedData):
        verify_bytes(out.getvalue())


def test_broken_zip() -> None:
    with pytest.raises(MalformedData):
        verify_bytes(b"PK\x03\x04" + bytes(200))


# --- XML ----------------------------------------------------------------------------------------------------
XXE = f"""<?xml version="1.0"?><!DOCTYPE s [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<ofd:Signatures {NS}><ofd:Signature ID="&x;" BaseLoc="/{SIG0}/Signature.xml"/></ofd:Signatures>""".encode()


def test_xxe_in_signatures_xml(interop_file: Callable[[str], bytes]) -> None:
    report = verify_bytes(_with(interop_file(TAX), {SIGNATURES: XXE}))
    assert (report.indication, report.sub_indication) == (Indication.FAILED, SubIndication.FORMAT_FAILURE)
    assert report.signed and report.signatures == ()
    (finding,) = report.checks
    assert finding.id == "format.parse" and SIGNATURES in finding.message_en and "DTD" in finding.message_en


def test_billion_laughs_in_signature_xml(interop_file: Callable[[str], bytes]) -> None:
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]><Signature>&c;</Signature>'
    )
    report = verify_bytes(_with(interop_file(TAX), {f"{SIG0}/Signature.xml": laughs}))
    (sig,) = report.signatures
    assert (sig.indication, sig.sub_indication) == (Indication.FAILED, SubIndication.FORMAT_FAILURE)
    assert f"{SIG0}/Signature.xml" in sig.check("format.parse").message_en


def test_deeply_nested_ofd_xml(interop_file: Callable[[str], bytes]) -> None:
    deep = b"<ofd:OFD " + NS.encode() + b">" + b"<a>" * 50_000 + b"</a>" * 50_000 + b"</ofd:OFD>"
    report = verify_bytes(_with(interop_file(TAX), {"OFD.xml": deep}))
    assert (report.indication, report.sub_indication) == (Indication.FAILED, SubIndication.FORMAT_FAILURE)
    assert "nesting" in report.checks[0].message_en


def test_missing_signature_list(interop_file: Callable[[str], bytes]) -> None:
    report = verify_bytes(_with(interop_file(TAX), {SIGNATURES: None}))
    assert (report.indication, report.sub_indication) == (Indication.FAILED, SubIndication.FORMAT_FAILURE)
    assert SIGNATURES in report.checks[0].message_en


# --- one broken signature among good ones ------------------------------------------------------------
def test_truncated_signed_value_in_ofd(interop_file: Callable[[str], bytes]) -> None:
    original = OfdPackage(interop_file(TAX))
    truncated = original.read(f"{SIG0}/SignedValue.dat")[:-40]
    report = verify_bytes(original.rewrite({f"{SIG0}/SignedValue.dat": truncated}))
    (sig,) = report.signatures
    assert (sig.indication, sig.sub_indication) == (Indication.FAILED, SubIndication.FORMAT_FAILURE)
    # What does not depend on the signed value is still checked.
    assert sig.check("document.references").result is Result.PASSED
    assert sig.check("signer.signature").result is Result.SKIPPED


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (f'<ofd:Signature ID="2" Type="Stamp" BaseLoc="/{SIG0}/Signature.xml"/>', "Stamp"),
        ('<ofd:Signature ID="2" BaseLoc="/../../x.xml"/>', "escapes"),
        ('<ofd:Signature ID="2" BaseLoc="/Doc_0/Signs/Sign_9/Signature.xml"/>', "Sign_9"),
        ('<ofd:Signature ID="2"/>', "BaseLoc"),
    ],
)
def test_bad_second_signature_does_not_hide_the_first(
    interop_file: Callable[[str], bytes], entry: str, expected: str
) -> None:
    original = interop_file(TAX)
    (baseline,) = verify_bytes(original).signatures
    good = f'<ofd:Signature ID="1" BaseLoc="/{SIG0}/Signature.xml"/>'
    report = verify_bytes(_with(original, {SIGNATURES: _signatures(good, entry)}))
    first, second = report.signatures
    assert first.results() == baseline.results()  # Signatures.xml is not referenced (continue mode)
    assert (second.indication, second.sub_indication) == (Indication.FAILED, SubIndication.FORMAT_FAILURE)
    assert expected in second.check("format.parse").message_en
    assert report.indication is Indication.FAILED  # the worst signature decides


def test_missing_signed_value(interop_file: Callable[[str], bytes]) -> None:
    report = verify_bytes(_with(interop_file(EXPIRED), {f"{SIG0}/SignedValue.dat": None}))
    (sig,) = report.signatures
    assert sig.sub_indication is SubIndication.FORMAT_FAILURE
    assert "SignedValue.dat" in sig.check("format.parse").message_en
    assert sig.check("document.references").result is Result.PASSED


def test_seal_type_value_labelled_sign_is_a_format_failure(interop_file: Callable[[str], bytes]) -> None:
    # An SES_Signature under Type="Sign" is not GB/T 35275 SignedData: mislabelled, never verified.
    entry = f'<ofd:Signature ID="1" Type="Sign" BaseLoc="/{SIG0}/Signature.xml"/>'
    report = verify_bytes(_with(interop_file(TAX), {SIGNATURES: _signatures(entry)}))
    (sig,) = report.signatures
    assert sig.type == "sign"
    assert (sig.indication, sig.sub_indication) == (Indication.FAILED, SubIndication.FORMAT_FAILURE)
    assert sig.check("format.parse").result is Result.FAILED
    assert "CMS" in sig.check("format.parse").message_en
    assert sig.check("document.references").result is Result.PASSED
    assert sig.check("signer.signature").result is Result.SKIPPED  # nothing decodable to verify
    assert sig.check("seal.maker_signature").result is Result.SKIPPED


def test_broken_sign_type_signature_fails(interop_file: Callable[[str], bytes]) -> None:
    entry = '<ofd:Signature ID="1" Type="Sign" BaseLoc="/Doc_0/Signs/Sign_7/Signature.xml"/>'
    (sig,) = verify_bytes(_with(interop_file(TAX), {SIGNATURES: _signatures(entry)})).signatures
    assert (sig.indication, sig.sub_indication) == (Indication.FAILED, SubIndication.FORMAT_FAILURE)
    assert "Sign_7" in sig.check("format.parse").message_en


def test_stamp_on_missing_page_is_a_warning(interop_file: Callable[[str], bytes]) -> None:
    # Signature.xml changes, so dataHash fails too; the format finding is what this test is about.
    pkg = OfdPackage(interop_file(TAX))
    xml = pkg.read(f"{SIG0}/Signature.xml").replace(b'PageRef="1"', b'PageRef="99"')
    (sig,) = verify_bytes(pkg.rewrite({f"{SIG0}/Signature.xml": xml})).signatures
    finding = sig.check("format.parse")
    assert finding.result is Result.WARNING and "page ID 99" in finding.message_en


def test_every_doc_body_is_verified(pki: Pki, interop_file: Callable[[str], bytes]) -> None:
    hello = OfdPackage(interop_file("ofdrw-sign__helloworld.ofd"))
    ofd_xml = hello.read("OFD.xml")
    body = ofd_xml[
        ofd_xml.index(b"<ofd:DocBody>") : ofd_xml.index(b"</ofd:DocBody>") + len(b"</ofd:DocBody>")
    ]
    two_bodies = hello.rewrite({"OFD.xml": ofd_xml.replace(body, body + body)})
    report = verify_bytes(seal_ofd(two_bodies, pki), trust=pki.trust())
    assert [s.doc_body for s in report.signatures] == [0, 1]
    assert report.indication is Indication.PASSED
