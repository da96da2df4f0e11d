"""OFD.xml, Document.xml, Signatures.xml and Signature.xml as producers actually write them."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from core.errors import MalformedData
from gmpki import sm3
from gmpki.ofd import (
    SEAL,
    SIGN,
    OfdPackage,
    parse_signature_xml,
    read_doc_bodies,
    read_document,
    read_signature_list,
    read_signature_xml,
    read_stamp_annotations,
    write_package,
)

pytestmark = pytest.mark.interop


def _pkg(interop_dir: Path, name: str) -> OfdPackage:
    return OfdPackage((interop_dir / name).read_bytes())


def test_tax_invoice_parts(interop_dir: Path) -> None:
    pkg = _pkg(interop_dir, "ofdrw-sign__v4signed.ofd")
    (body,) = read_doc_bodies(pkg)
    assert body.signatures == "Doc_0/Signs/Signatures.xml"  # written relative in OFD.xml
    assert body.doc_root == "Doc_0/Document.xml"
    doc = read_document(pkg, body.doc_root)
    assert [(p.id, p.index, p.path) for p in doc.pages] == [("1", 0, "Doc_0/Pages/Page_0/Content.xml")]
    stamps = read_stamp_annotations(pkg, doc)
    assert [(s.page_id, s.annot_id, s.subtype) for s in stamps] == [("1", "117", "SignatureInFile")]
    slist = read_signature_list(pkg, body.signatures)
    assert slist.max_sign_id == "1"
    (entry,) = slist.entries
    assert (entry.id, entry.type, entry.type_raw, entry.problem) == ("1", SEAL, None, None)  # Type omitted
    sig = read_signature_xml(pkg, entry.path or "")
    assert sig.raw == pkg.read("Doc_0/Signs/Sign_0/Signature.xml")
    assert sig.provider is not None and sig.provider.name == "gomain_eseal"
    assert sig.check_method == "1.2.156.10197.1.401"
    assert sig.signature_datetime == "20201010151120"
    assert len(sig.references) == 13
    for ref in sig.references:
        assert ref.problem is None and ref.path is not None
        assert ref.check_value == pkg.sm3(ref.path)
    (stamp,) = sig.stamp_annots
    assert (stamp.id, stamp.page_ref, stamp.boundary) == ("1", "1", (90.0, 8.0, 30.0, 20.0))
    assert sig.seal_loc is None and sig.seal_path is None
    assert sig.signed_value_path == "Doc_0/Signs/Sign_0/SignedValue.dat"


def test_ofdrw_element_order(interop_dir: Path) -> None:
    # ofdrw writes SignedValue before SignedInfo, Seal/StampAnnot before References, MaxSignId last.
    pkg = _pkg(interop_dir, "ofdrw-reader__SESV4SignDoc.ofd")
    (body,) = read_doc_bodies(pkg)
    assert body.signatures_loc == "/Doc_0/Signs/Signatures.xml"
    slist = read_signature_list(pkg, body.signatures or "")
    assert slist.max_sign_id == "2"
    assert slist.entries[0].type_raw == "Seal"
    sig = read_signature_xml(pkg, slist.entries[0].path or "")
    assert sig.check_method == "SM3"
    assert [r.path for r in sig.references] == [
        "OFD.xml",
        "Doc_0/PublicRes.xml",
        "Doc_0/Pages/Page_0/Content.xml",
        "Doc_0/Signs/Sign_0/Seal.esl",
        "Doc_0/Document.xml",
    ]
    assert sig.seal_path == "Doc_0/Signs/Sign_0/Seal.esl"
    assert sig.stamp_annots[0].page_ref == "1"


def test_unsigned_document(interop_dir: Path) -> None:
    pkg = _pkg(interop_dir, "ofdrw-sign__helloworld.ofd")
    (body,) = read_doc_bodies(pkg)
    assert body.signatures is None


def _signatures_xml(entries: str) -> bytes:
    return f'<ofd:Signatures xmlns:ofd="http://www.ofdspec.org/2016">{entries}</ofd:Signatures>'.encode()


def test_signature_types_relative_paths_and_problems() -> None:
    data = write_package(
        [
            (
                "Doc_0/Signs/Signatures.xml",
                _signatures_xml(
                    '<ofd:Signature ID="s001" Type="SEAL" BaseLoc="Sign_0/Signature.xml"/>'
                    '<ofd:Signature ID="s002" Type="sign" BaseLoc="/Doc_0/Signs/Sign_1/Signature.xml" '
                    'Relative="s001"/>'
                    '<ofd:Signature ID="s003" Type="Stamp" BaseLoc="x.xml"/>'
                    '<ofd:Signature ID="s004" BaseLoc="../../../x.xml"/>'
                    '<ofd:Signature ID="s005"/>'
                    '<ofd:Signature ID="s001" BaseLoc="y.xml"/>'
                ),
            )
        ]
    )
    entries = read_signature_list(OfdPackage(data), "Doc_0/Signs/Signatures.xml").entries
    first, second, bad_type, escape, no_loc, duplicate = entries
    assert (first.type, first.path, first.problem) == (SEAL, "Doc_0/Signs/Sign_0/Signature.xml", None)
    assert (second.type, second.relative, second.problem) == (SIGN, "s001", None)
    assert bad_type.problem is not None and "Stamp" in bad_type.problem.en
    assert escape.problem is not None and "escapes" in escape.problem.en
    assert no_loc.problem is not None and "BaseLoc" in no_loc.problem.en
    assert duplicate.problem is not None and "twice" in duplicate.problem.en


def test_signature_xml_reference_problems_are_per_reference() -> None:
    good = base64.b64encode(sm3.sm3(b"x")).decode()
    raw = (
        '<Signature><SignedInfo><References CheckMethod=" SM3 ">'
        f'<Reference FileRef="Content.xml"><CheckValue> {good[:20]}\n{good[20:]} </CheckValue></Reference>'
        '<Reference FileRef="/a.xml"><CheckValue>%%%notbase64</CheckValue></Reference>'
        '<Reference FileRef="/../escape.xml"><CheckValue>AAAA</CheckValue></Reference>'
        '<Reference FileRef="/b.xml"/>'
        "</References>"
        '<StampAnnot ID="3" PageRef="21" Boundary="1 2 3" Clip="0 0 10 10"/>'
        "<Seal><BaseLoc>Seal.esl</BaseLoc></Seal>"
        "</SignedInfo><SignedValue>SignedValue.dat</SignedValue></Signature>"
    ).encode()
    sig = parse_signature_xml(raw, "Doc_0/Signs/Sign_0/Signature.xml")
    assert sig.check_method == "SM3"
    ok, bad64, escape, missing = sig.references
    assert ok.problem is None and ok.check_value == sm3.sm3(b"x")
    assert ok.path == "Doc_0/Signs/Sign_0/Content.xml"  # relative to Signature.xml's directory
    assert bad64.problem is not None and "Base64" in bad64.problem.en
    assert escape.problem is not None
    assert missing.problem is not None and "CheckValue" in missing.problem.en
    (stamp,) = sig.stamp_annots
    assert stamp.boundary is None and stamp.boundary_text == "1 2 3"
    assert stamp.clip == (0.0, 0.0, 10.0, 10.0)
    assert sig.seal_path == "Doc_0/Signs/Sign_0/Seal.esl"
    assert sig.signed_value_path == "Doc_0/Signs/Sign_0/SignedValue.dat"


@pytest.mark.parametrize(
    "raw",
    [
        b"<Signature><SignedInfo/></Signature>",  # no SignedValue
        b"<Signature><SignedValue>v.dat</SignedValue></Signature>",  # no SignedInfo
        b"<Other><SignedInfo/><SignedValue>v.dat</SignedValue></Other>",
        b"<Signature><SignedInfo/><SignedValue>../../../../v.dat</SignedValue></Signature>",
    ],
)
def test_unusable_signature_xml(raw: bytes) -> None:
    with pytest.raises(MalformedData):
        parse_signature_xml(raw, "Doc_0/Signs/Sign_0/Signature.xml")


def test_ofd_xml_problems() -> None:
    with pytest.raises(MalformedData, match=r"OFD\.xml"):
        read_doc_bodies(OfdPackage(write_package([("Doc_0/Document.xml", b"<Document/>")])))
    with pytest.raises(MalformedData, match="DocBody"):
        read_doc_bodies(OfdPackage(write_package([("OFD.xml", b"<OFD/>")])))
    two = b"<OFD><DocBody><DocRoot>Doc_0/Document.xml</DocRoot></DocBody>"
    two += b"<DocBody><DocRoot>Doc_1/Document.xml</DocRoot>"
    two += b"<Signatures>Doc_1/Signs/Signatures.xml</Signatures></DocBody></OFD>"
    bodies = read_doc_bodies(OfdPackage(write_package([("OFD.xml", two)])))
    assert [(b.index, b.signatures) for b in bodies] == [(0, None), (1, "Doc_1/Signs/Signatures.xml")]
