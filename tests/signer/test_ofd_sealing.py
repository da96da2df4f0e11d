"""Sealed OFD documents: verified by the project's verifier AND by an independent reader (zipfile,
ElementTree, hashlib SM3, OpenSSL), several seals, protect-all, placement by keyword and riding."""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from core.audit import AuditEntry
from core.errors import InvalidInput, MalformedData
from gmpki import seal as ses
from gmpki.ofd import OfdPackage
from gmpki.sm3 import sm3
from seal_registry.models import Seal
from signer.ofd_sealing import (
    DocumentFullyProtected,
    add_signatures_to_ofd_xml,
    analyse_ofd,
    assemble_sealed,
    check_prepared,
    check_sealed_package,
    prepare_seal,
)
from signer.placement import AtKeyword, AtPosition, Riding
from tests.registry.conftest import Registry
from verify import FileTrustSource, Indication, verify_bytes

from .conftest import SIGNER, make_zip, seal_document, two_page_ofd, utc, zip_entries
from .independent import NS, check_sealed_ofd

pytestmark = pytest.mark.interop


def _picture_size(seal: Seal) -> tuple[float, float]:
    assert seal.seal_der is not None
    parsed = ses.parse_seal(seal.seal_der)
    return float(parsed.picture_width), float(parsed.picture_height)


def _stamps(data: bytes, xml_path: str) -> list[dict[str, str]]:
    root = ET.fromstring(zip_entries(data)[xml_path])
    return [dict(s.attrib) for s in root.findall("ofd:SignedInfo/ofd:StampAnnot", NS)]


def _box(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split())


def _passed(data: bytes, trust: FileTrustSource) -> None:
    report = verify_bytes(data, trust=trust)
    failing = [
        (s.id, c.id, c.message_en)
        for s in report.signatures
        for c in s.checks
        if c.result.value not in ("passed", "skipped", "warning")
    ]
    assert report.indication is Indication.PASSED, failing
    assert all(s.indication is Indication.PASSED for s in report.signatures)


def test_helloworld_sealed_verifies_in_verifier_and_independently(
    region: Registry, seal: Seal, trust: FileTrustSource, helloworld: bytes, tmp_path: Path
) -> None:
    before = region.audit_count()
    sealed = seal_document(region, seal, helloworld, AtPosition(1, 120, 200))
    _passed(sealed, trust)

    checks = check_sealed_ofd(sealed, tmp_path)
    assert len(checks) == 1 and checks[0].all_ok, checks
    check = checks[0]
    assert check.signature_xml == "Doc_0/Signs/Sign_0/Signature.xml"
    entries = zip_entries(sealed)
    # Every file is protected except the signature list (continue mode) and the signature's own files.
    assert set(check.references) == set(entries) - {
        "Doc_0/Signs/Signatures.xml",
        "Doc_0/Signs/Sign_0/Signature.xml",
        "Doc_0/Signs/Sign_0/SignedValue.dat",
    }
    # The seal is written verbatim; the original entries keep their bytes; OFD.xml only gains the list.
    assert entries["Doc_0/Signs/Sign_0/Seal.esl"] == seal.seal_der
    original = zip_entries(helloworld)
    for name, value in original.items():
        if name != "OFD.xml":
            assert entries[name] == value, name
    added = b"<ofd:Signatures>Doc_0/Signs/Signatures.xml</ofd:Signatures>"
    assert entries["OFD.xml"] == original["OFD.xml"].replace(b"</ofd:DocBody>", added + b"</ofd:DocBody>")

    raw = entries["Doc_0/Signs/Sign_0/Signature.xml"]
    assert raw.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?>\n<ofd:Signature xmlns:ofd="http://www.ofdspec.org/2016">'
    )
    root = ET.fromstring(raw)
    provider = root.find("ofd:SignedInfo/ofd:Provider", NS)
    assert provider is not None and provider.get("ProviderName") == "eseal"
    assert provider.get("Version") and provider.get("Company")
    assert root.findtext("ofd:SignedInfo/ofd:SignatureMethod", namespaces=NS) == "1.2.156.10197.1.501"
    assert re.fullmatch(
        r"\d{14}Z", root.findtext("ofd:SignedInfo/ofd:SignatureDateTime", namespaces=NS) or ""
    )
    width, height = _picture_size(seal)
    assert check.stamps == [{"ID": "2", "PageRef": "1", "Boundary": f"120 200 {width:g} {height:g}"}]
    listing = ET.fromstring(entries["Doc_0/Signs/Signatures.xml"])
    assert listing.findtext("ofd:MaxSignId", namespaces=NS) == "2"
    assert [dict(e.attrib) for e in listing.findall("ofd:Signature", NS)] == [
        {"ID": "1", "Type": "Seal", "BaseLoc": "/Doc_0/Signs/Sign_0/Signature.xml"}
    ]

    # One audit entry: seal, document SM3, the signed Signature.xml, the requester.
    assert region.audit_count() == before + 1
    entry: AuditEntry = region.last_audit()
    details = entry.details_dict()
    assert (entry.action, entry.actor, entry.subject_id) == ("signature.made", SIGNER, seal.id)
    assert details["es_id"] == seal.es_id and details["document_sm3"] == sm3(helloworld).hex()
    assert details["data_sm3"] == sm3(raw).hex()
    assert details["property_info"] == "/Doc_0/Signs/Sign_0/Signature.xml"


def _replace(data: bytes, name: str, value: bytes) -> bytes:
    entries = zip_entries(data)
    entries[name] = value
    return make_zip(entries)


def test_independent_reader_catches_each_tampering(
    region: Registry, seal: Seal, helloworld: bytes, tmp_path: Path
) -> None:
    """The independent reader is not vacuous: each change fails exactly its own check."""
    sealed = seal_document(region, seal, helloworld, AtPosition(1, 10, 10))
    entries = zip_entries(sealed)
    page = "Doc_0/Pages/Page_0/Content.xml"

    changed_page = check_sealed_ofd(
        _replace(sealed, page, entries[page].replace(b"OFD", b"0FD")), tmp_path / "a"
    )[0]
    assert changed_page.references[page] is False
    assert all(ok for name, ok in changed_page.references.items() if name != page)
    assert changed_page.data_hash_ok and changed_page.signer_signature_ok and changed_page.maker_signature_ok

    xml = "Doc_0/Signs/Sign_0/Signature.xml"
    moved = entries[xml].replace(b'Boundary="10 10', b'Boundary="11 10')
    assert moved != entries[xml]
    changed_xml = check_sealed_ofd(_replace(sealed, xml, moved), tmp_path / "b")[0]
    assert not changed_xml.data_hash_ok
    assert all(changed_xml.references.values()) and changed_xml.signer_signature_ok

    value = bytearray(entries["Doc_0/Signs/Sign_0/SignedValue.dat"])
    value[-5] ^= 0x01  # inside the signer's signature value
    flipped = check_sealed_ofd(
        _replace(sealed, "Doc_0/Signs/Sign_0/SignedValue.dat", bytes(value)), tmp_path / "c"
    )[0]
    assert not flipped.signer_signature_ok
    assert flipped.maker_signature_ok and flipped.data_hash_ok and all(flipped.references.values())


def test_two_seals_then_protect_all_then_refused(
    region: Registry, seal: Seal, trust: FileTrustSource, helloworld: bytes, tmp_path: Path
) -> None:
    first = seal_document(region, seal, helloworld, AtPosition(1, 20, 40))
    second = seal_document(region, seal, first, AtKeyword("Reader"))
    _passed(second, trust)
    checks = check_sealed_ofd(second, tmp_path / "two")
    assert [c.signature_xml for c in checks] == [
        "Doc_0/Signs/Sign_0/Signature.xml",
        "Doc_0/Signs/Sign_1/Signature.xml",
    ]
    assert all(c.all_ok for c in checks), checks
    # The earlier signature's files are untouched and now protected by the later one.
    one, two = zip_entries(first), zip_entries(second)
    for name in ("Doc_0/Signs/Sign_0/Signature.xml", "Doc_0/Signs/Sign_0/SignedValue.dat", "OFD.xml"):
        assert one[name] == two[name] and name in checks[1].references
    listing = ET.fromstring(two["Doc_0/Signs/Signatures.xml"])
    assert listing.findtext("ofd:MaxSignId", namespaces=NS) == "4"
    assert [e.get("ID") for e in listing.findall("ofd:Signature", NS)] == ["1", "3"]
    assert checks[1].stamps[0]["ID"] == "4"

    third = seal_document(region, seal, second, AtPosition(1, 150, 250), mode="protect_all")
    _passed(third, trust)
    locked = check_sealed_ofd(third, tmp_path / "three")
    assert all(c.all_ok for c in locked)
    assert "Doc_0/Signs/Signatures.xml" in locked[2].references
    assert "Doc_0/Signs/Signatures.xml" not in locked[0].references

    before = region.audit_count()
    with pytest.raises(DocumentFullyProtected) as refused:
        seal_document(region, seal, third, AtPosition(1, 60, 60))
    assert refused.value.code == "document_fully_protected" and refused.value.status == 409
    assert "整个文档" in refused.value.message_zh and "no further seal" in refused.value.message_en
    assert region.audit_count() == before


def test_protect_all_on_first_seal_refuses_the_next(
    region: Registry, seal: Seal, trust: FileTrustSource, helloworld: bytes
) -> None:
    locked = seal_document(region, seal, helloworld, AtPosition(1, 20, 20), mode="protect_all")
    _passed(locked, trust)
    before = region.audit_count()
    with pytest.raises(DocumentFullyProtected):
        seal_document(region, seal, locked, None, mode="protect_all")
    with pytest.raises(InvalidInput):
        seal_document(region, seal, helloworld, None, mode="lock-everything")
    assert region.audit_count() == before


def test_keyword_placement_centres_the_stamp_on_the_word(
    region: Registry, seal: Seal, trust: FileTrustSource, helloworld: bytes
) -> None:
    # helloworld's only text: TextObject Boundary="31.7 25.4 40.5 5" Size="3",
    # TextCode X="0" Y="3" DeltaX="3 3 3 3 1.5 …": "你好呀，OFD Reader&Writer！"
    sealed = seal_document(region, seal, helloworld, AtKeyword("OFD"))
    _passed(sealed, trust)
    (stamp,) = _stamps(sealed, "Doc_0/Signs/Sign_0/Signature.xml")
    x, y, w, h = _box(stamp["Boundary"])
    cx, cy = x + w / 2, y + h / 2
    assert stamp["PageRef"] == "1" and (w, h) == _picture_size(seal)
    # "OFD" starts after four full-width glyphs (4 × 3 mm) and spans three 1.5 mm glyphs.
    assert 31.7 + 12 <= cx <= 31.7 + 12 + 4.5
    assert 25.4 <= cy <= 25.4 + 5
    # A word further right lands further right.
    later = seal_document(region, seal, helloworld, AtKeyword("Writer"))
    (stamp2,) = _stamps(later, "Doc_0/Signs/Sign_0/Signature.xml")
    assert _box(stamp2["Boundary"])[0] > x + 6

    before = region.audit_count()
    with pytest.raises(InvalidInput) as missing:
        seal_document(region, seal, helloworld, AtKeyword("不存在的词"))
    assert "找不到关键字" in missing.value.message_zh and "not found" in missing.value.message_en
    assert region.audit_count() == before


def test_riding_seal_gives_one_slice_per_page(
    region: Registry, seal: Seal, trust: FileTrustSource, helloworld: bytes, tmp_path: Path
) -> None:
    document = two_page_ofd(helloworld)
    sealed = seal_document(region, seal, document, Riding())
    _passed(sealed, trust)
    (check,) = check_sealed_ofd(sealed, tmp_path)
    assert check.all_ok
    width, height = _picture_size(seal)
    stamps = check.stamps
    assert [s["PageRef"] for s in stamps] == ["1", "5"] and [s["ID"] for s in stamps] == ["2", "3"]
    half = width / 2
    # Page 1 is A4 portrait (Document.xml), page 2 declares its own landscape PhysicalBox.
    for stamp, (page_w, page_h), index in zip(stamps, ((210, 297), (297, 210)), (0, 1), strict=True):
        x, y, w, h = _box(stamp["Boundary"])
        assert (w, h) == (width, height)
        assert x == pytest.approx(page_w - half * (index + 1))
        assert y == pytest.approx((page_h - height) / 2)
        clip = _box(stamp["Clip"])
        assert clip == pytest.approx((index * half, 0, half, height))
        # The visible slice always ends at the page's right edge; the rest of the stamp lies beyond it
        # on every page but the last.
        assert x + clip[0] == pytest.approx(page_w - half)
        assert x + w > page_w if index == 0 else x + w == pytest.approx(page_w)

    with pytest.raises(InvalidInput):
        seal_document(region, seal, helloworld, Riding())  # one page


def test_invisible_signature_and_page_checks(
    region: Registry, seal: Seal, trust: FileTrustSource, helloworld: bytes
) -> None:
    sealed = seal_document(region, seal, helloworld, None)
    _passed(sealed, trust)
    assert _stamps(sealed, "Doc_0/Signs/Sign_0/Signature.xml") == []
    for bad in (AtPosition(2, 10, 10), AtPosition(1, 500, 10), AtPosition(1, float("nan"), 10)):
        with pytest.raises(InvalidInput):
            seal_document(region, seal, helloworld, bad)


def test_sealing_over_a_third_party_signature(
    region: Registry, seal: Seal, trust: FileTrustSource, interop_dir: Path, tmp_path: Path
) -> None:
    """ofdrw's SESV4SignDoc.ofd (continue mode, expired seal): ours is appended and verifies; theirs
    stays cryptographically intact (its verdict is still FAILED for the expired seal, as before)."""
    document = (interop_dir / "ofdrw-reader__SESV4SignDoc.ofd").read_bytes()
    before = verify_bytes(document)
    sealed = seal_document(region, seal, document, AtPosition(1, 100, 100))
    report = verify_bytes(sealed, trust=trust)
    theirs, ours = report.signatures
    assert ours.indication is Indication.PASSED
    assert theirs.indication is before.signatures[0].indication
    for check_id in ("document.references", "document.data_hash", "signer.signature"):
        assert theirs.check(check_id).result.value == "passed"
    # ofdrw used IDs 1 (signature) and 2 (stamp, MaxSignId 2): ours continue at 3 and 4, in Sign_1.
    assert ours.id == "3" and ours.signature_xml == "Doc_0/Signs/Sign_1/Signature.xml"
    assert [s["ID"] for s in _stamps(sealed, "Doc_0/Signs/Sign_1/Signature.xml")] == ["4"]
    listing = ET.fromstring(zip_entries(sealed)["Doc_0/Signs/Signatures.xml"])
    assert listing.findtext("ofd:MaxSignId", namespaces=NS) == "4"
    assert check_sealed_ofd(sealed, tmp_path)[-1].all_ok


def test_prepared_signature_xml_is_deterministic(seal: Seal, helloworld: bytes) -> None:
    assert seal.seal_der is not None
    when = utc(2026, 1, 2, 3, 4, 5)
    target = analyse_ofd(helloworld, placement=AtPosition(1, 30, 40))
    a = prepare_seal(target, seal.seal_der, when)
    b = prepare_seal(analyse_ofd(helloworld, placement=AtPosition(1, 30, 40)), seal.seal_der, when)
    assert a.signature_xml == b.signature_xml and dict(a.changes) == dict(b.changes)
    assert b"<ofd:SignatureDateTime>20260102030405Z</ofd:SignatureDateTime>" in a.signature_xml
    assert a.data_hash == sm3(a.signature_xml) and a.property_info == "/Doc_0/Signs/Sign_0/Signature.xml"


def test_self_checks_refuse_what_was_not_meant(seal: Seal, helloworld: bytes) -> None:
    assert seal.seal_der is not None
    when = utc(2026, 1, 2, 3, 4, 5)
    target = analyse_ofd(helloworld, placement=AtPosition(1, 30, 40))
    parsed = ses.parse_seal(seal.seal_der)
    prepared = prepare_seal(target, seal.seal_der, when, parsed_seal=parsed)
    assert prepared.signature_xml == prepare_seal(target, seal.seal_der, when).signature_xml
    with pytest.raises(InvalidInput):
        prepare_seal(target, seal.seal_der, when, parsed_seal=dataclasses.replace(parsed, raw=b"another"))

    # Prepared parts are read back: wrong digests or a list without this signature are refused.
    wrong_digest = (bytes(32), *prepared.reference_digests[1:])
    with pytest.raises(MalformedData):
        check_prepared(dataclasses.replace(prepared, reference_digests=wrong_digest))
    listing = prepared.target.signatures_path
    other_list = {**prepared.changes, listing: prepared.changes[listing].replace(b'ID="1"', b'ID="7"')}
    with pytest.raises(MalformedData):
        check_prepared(dataclasses.replace(prepared, changes=other_list))

    # The sealed package is re-read: any entry other than what was meant is refused.
    signed_value = b"\x30\x03\x02\x01\x01"  # the bytes are compared, not parsed, here
    sealed = assemble_sealed(prepared, signed_value)
    check_sealed_package(sealed, prepared, signed_value)
    page = "Doc_0/Pages/Page_0/Content.xml"
    for tampered, value in (
        (OfdPackage(sealed).rewrite({page: b"<ofd:Page/>"}), signed_value),
        (OfdPackage(sealed).rewrite({prepared.seal_path: b"other seal"}), signed_value),
        (OfdPackage(sealed).rewrite({"Doc_0/extra.xml": b"<x/>"}), signed_value),
        (OfdPackage(sealed).rewrite({"Doc_0/PublicRes.xml": None}), signed_value),
        (sealed, signed_value + b"\x00"),
    ):
        with pytest.raises(MalformedData):
            check_sealed_package(tampered, prepared, value)


@pytest.mark.parametrize(
    ("ofd_xml", "element", "closing"),
    [
        (  # bare namespace as default namespace, no prefix
            b'<?xml version="1.0"?><OFD xmlns="http://www.ofdspec.org"><DocBody><DocRoot>Doc_0/Document.xml'
            b"</DocRoot></DocBody></OFD>",
            b"<Signatures>Doc_0/Signs/Signatures.xml</Signatures>",
            b"</DocBody>",
        ),
        (  # another prefix, Versions present, a second DocBody left alone
            b'<o:OFD xmlns:o="http://www.ofdspec.org/2016"><o:DocBody><o:DocRoot>Doc_0/Document.xml</o:DocRoot>'
            b"<o:Versions/></o:DocBody><o:DocBody><o:DocRoot>Doc_1/Document.xml</o:DocRoot></o:DocBody></o:OFD>",
            b"<o:Signatures>Doc_0/Signs/Signatures.xml</o:Signatures>",
            b"</o:DocBody>",
        ),
    ],
)
def test_ofd_xml_gains_the_list_in_its_own_dialect(ofd_xml: bytes, element: bytes, closing: bytes) -> None:
    updated = add_signatures_to_ofd_xml(ofd_xml, "Doc_0/Signs/Signatures.xml")
    assert updated == ofd_xml.replace(closing, element + closing, 1)


def test_ofd_xml_insertion_changes_nothing_else() -> None:
    raw = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016">'
        b"<!-- keep me --><ofd:DocBody><ofd:DocInfo><ofd:DocID>x</ofd:DocID></ofd:DocInfo>"
        b"<ofd:DocRoot>Doc_0/Document.xml</ofd:DocRoot></ofd:DocBody></ofd:OFD>"
    )
    element = b"<ofd:Signatures>Doc_0/Signs/Signatures.xml</ofd:Signatures>"
    assert add_signatures_to_ofd_xml(raw, "Doc_0/Signs/Signatures.xml") == raw.replace(
        b"</ofd:DocBody>", element + b"</ofd:DocBody>"
    )
