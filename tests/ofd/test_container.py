"""The OFD container: exact lookups, ST_Loc resolution, streaming digests, limits, hostile archives."""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
from pathlib import Path

import pytest

from core.errors import InputTooLarge, MalformedData
from gmpki import sm3
from gmpki.ofd import ContainerLimits, OfdPackage, check_entry_name, resolve_loc, write_package

from .conftest import make_zip, patch_name, set_declared_size, set_flags


# --- reading -------------------------------------------------------------------------------------------
def test_names_lookup_and_raw_bytes(simple_package: bytes) -> None:
    pkg = OfdPackage(simple_package)
    assert pkg.names == ("OFD.xml", "Doc_0/Document.xml", "Doc_0/Res/big.bin")
    assert pkg.directories == frozenset({"Doc_0"})
    assert "Doc_0/Document.xml" in pkg
    assert "/Doc_0/Document.xml" not in pkg  # lookups are exact on normalised names
    assert "doc_0/document.xml" not in pkg
    assert pkg.read("Doc_0/Document.xml") == b"<Document/>"
    with pytest.raises(MalformedData, match=r"Doc_0/Missing\.xml"):
        pkg.read("Doc_0/Missing.xml")


def test_streaming_digests_match_one_shot(simple_package: bytes) -> None:
    pkg = OfdPackage(simple_package)
    big = bytes(range(256)) * 4096
    assert pkg.sm3("Doc_0/Res/big.bin") == sm3.sm3(big)
    assert pkg.digest("Doc_0/Res/big.bin", "sha256") == hashlib.sha256(big).digest()
    with pytest.raises(MalformedData, match="md5"):
        pkg.digest("OFD.xml", "md5")


def test_interop_packages_open(interop_dir: Path) -> None:
    pkg = OfdPackage((interop_dir / "ofdrw-sign__v4signed.ofd").read_bytes())
    assert len(pkg.names) == 16
    assert "Doc_0/Signs/Sign_0/SignedValue.dat" in pkg
    # Every interop package is directory-free or lists its directories separately.
    pkg2 = OfdPackage((interop_dir / "ofdrw-reader__SESV4SignDoc.ofd").read_bytes())
    assert "Doc_0/Signs/Sign_0" in pkg2.directories
    assert all(not n.endswith("/") for n in pkg2.names)


def test_gbk_entry_name_without_utf8_flag_is_decoded() -> None:
    placeholder = b"ABCD.xml"
    gbk = "附件.xml".encode("gbk")
    assert len(gbk) == len(placeholder)
    data = patch_name(make_zip([("ABCD.xml", b"x")], method=zipfile.ZIP_STORED), placeholder, gbk)
    pkg = OfdPackage(data)
    assert pkg.names == ("附件.xml",)
    assert pkg.read("附件.xml") == b"x"


# --- ST_Loc ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("loc", "base", "expected"),
    [
        ("/Doc_0/Signs/Signatures.xml", "OFD.xml", "Doc_0/Signs/Signatures.xml"),
        ("Doc_0/Signs/Signatures.xml", "OFD.xml", "Doc_0/Signs/Signatures.xml"),
        ("Sign_0/Signature.xml", "Doc_0/Signs/Signatures.xml", "Doc_0/Signs/Sign_0/Signature.xml"),
        ("SignedValue.dat", "Doc_0/Signs/Sign_0/Signature.xml", "Doc_0/Signs/Sign_0/SignedValue.dat"),
        ("../Pages/Page_0/Content.xml", "Doc_0/Signs/x.xml", "Doc_0/Pages/Page_0/Content.xml"),
        ("./Pages//Page_0/Content.xml", "Doc_0/Document.xml", "Doc_0/Pages/Page_0/Content.xml"),
        ("  /OFD.xml ", None, "OFD.xml"),
    ],
)
def test_resolve_loc(loc: str, base: str | None, expected: str) -> None:
    assert resolve_loc(loc, base) == expected


@pytest.mark.parametrize(
    "loc", ["../OFD.xml", "/../x", "Doc_0\\a.xml", "C:/x.xml", "", "/", "a/\x00b", "file://x"]
)
def test_resolve_loc_rejects_escapes(loc: str) -> None:
    with pytest.raises(MalformedData):
        resolve_loc(loc, "OFD.xml")


def test_resolve_loc_escape_from_nested_base() -> None:
    with pytest.raises(MalformedData, match="escapes"):
        resolve_loc("../../../OFD.xml", "Doc_0/Signs/Signatures.xml")


# --- hostile archives -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "../evil.xml",
        "Doc_0/../../evil.xml",
        "/OFD.xml",
        "Doc_0\\evil.xml",
        "C:/evil.xml",
        "a//b.xml",
        "./a.xml",
    ],
)
def test_unsafe_entry_names_are_rejected(name: str) -> None:
    with pytest.raises(MalformedData):
        OfdPackage(make_zip([(name, b"x")]))
    with pytest.raises(MalformedData):
        check_entry_name(name)


def test_nul_in_entry_name_is_rejected() -> None:
    # zipfile silently truncates names at NUL; the original name must be checked.
    data = patch_name(make_zip([("OFD.xmlX", b"x")]), b"OFD.xmlX", b"OFD.xml\x00")
    with pytest.raises(MalformedData, match="NUL"):
        OfdPackage(data)


def test_duplicate_entries_are_rejected() -> None:
    with pytest.raises(MalformedData, match="duplicate"):
        OfdPackage(make_zip([("OFD.xml", b"1"), ("OFD.xml", b"2")]))


def test_directory_entry_with_data_is_rejected() -> None:
    with pytest.raises(MalformedData, match="directory"):
        OfdPackage(make_zip([("OFD.xml", b"<OFD/>"), ("Doc_0/", b"hidden content")]))


def test_encrypted_entries_are_rejected() -> None:
    with pytest.raises(MalformedData, match="encrypted"):
        OfdPackage(set_flags(make_zip([("OFD.xml", b"x")]), 0x1))


@pytest.mark.parametrize("data", [b"", b"hello", b"PK\x03\x04" + bytes(100), b"%PDF-1.7"])
def test_not_a_zip(data: bytes) -> None:
    with pytest.raises(MalformedData):
        OfdPackage(data)


def test_unsupported_compression_is_rejected() -> None:
    data = make_zip([("OFD.xml", b"x" * 100)], method=zipfile.ZIP_BZIP2)
    with pytest.raises(MalformedData, match="compression"):
        OfdPackage(data)


def test_zip_bomb_is_refused_before_inflating() -> None:
    bomb = make_zip([("OFD.xml", b"<a/>"), ("Doc_0/Res/zero.bin", bytes(64 * 1024 * 1024))])
    assert len(bomb) < 100_000
    with pytest.raises(InputTooLarge, match="ZIP bomb"):
        OfdPackage(bomb)


def test_lying_size_header_cannot_inflate_more_than_declared() -> None:
    # The header claims 1000 bytes; the stream holds 4 MiB. Reading stops one byte past the claim.
    data = set_declared_size(make_zip([("OFD.xml", b"A" * (4 * 1024 * 1024))]), 1000)
    pkg = OfdPackage(data)
    with pytest.raises(MalformedData, match="past its declared size of 1000 bytes"):
        pkg.read("OFD.xml")
    assert pkg._inflated.get("OFD.xml", 0) <= 1001


def test_corrupted_entry_is_a_typed_error() -> None:
    data = bytearray(make_zip([("OFD.xml", b"hello world " * 50)]))
    data[45] ^= 0xFF  # inside the deflate stream
    pkg = OfdPackage(bytes(data))
    with pytest.raises(MalformedData):
        pkg.read("OFD.xml")


def test_entry_read_checks_crc_and_declared_size_whatever_the_method() -> None:
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        good = make_zip([("OFD.xml", b"<OFD>" + b"x" * 200 + b"</OFD>")], method=method)
        assert OfdPackage(good).read("OFD.xml").startswith(b"<OFD>")
        crc_at = good.rfind(b"PK\x01\x02") + 16
        bad_crc = bytearray(good)
        bad_crc[crc_at] ^= 0x01
        with pytest.raises(MalformedData, match="CRC"):
            OfdPackage(bytes(bad_crc)).read("OFD.xml")
        with pytest.raises(MalformedData, match=r"declared|past"):
            OfdPackage(set_declared_size(good, 100)).read("OFD.xml")


def test_truncated_deflate_stream_is_a_typed_error() -> None:
    data = bytearray(make_zip([("OFD.xml", bytes(range(256)) * 40)]))
    central = data.rfind(b"PK\x01\x02")
    (compressed,) = struct.unpack_from("<I", data, central + 20)
    # Both headers say the stream is 40 bytes shorter: the reader sees a deflate stream that stops.
    struct.pack_into("<I", data, 18, compressed - 40)
    struct.pack_into("<I", data, central + 20, compressed - 40)
    pkg = OfdPackage(bytes(data))
    with pytest.raises(MalformedData, match=r"ends early|CRC|declared"):
        pkg.read("OFD.xml")


def test_overlapping_entries_are_refused() -> None:
    # Two central directory records pointing at one local header: the overlapping-ZIP bomb shape.
    data = bytearray(make_zip([("a.xml", b"<a/>" * 100), ("b.xml", b"<b/>" * 100)]))
    central = data.rfind(b"PK\x01\x02")  # b.xml's record
    struct.pack_into("<I", data, central + 42, 0)  # its local header offset: a.xml's
    pkg = OfdPackage(bytes(data))
    with pytest.raises(MalformedData):
        pkg.read("b.xml")


def test_local_header_naming_another_file_is_refused() -> None:
    data = bytearray(make_zip([("OFD.xml", b"<OFD/>")]))
    data[30:37] = b"EVIL.xm"  # the local header's name, not the central directory's
    with pytest.raises(MalformedData, match="local header"):
        OfdPackage(bytes(data)).read("OFD.xml")


def test_patched_data_entries_are_rejected() -> None:
    with pytest.raises(MalformedData, match="patch"):
        OfdPackage(set_flags(make_zip([("OFD.xml", b"x")]), 0x20))


def test_limits_entries_total_and_entry_size() -> None:
    many = make_zip([(f"f{i}.xml", b"") for i in range(20)])
    with pytest.raises(InputTooLarge, match="too many"):
        OfdPackage(many, limits=ContainerLimits(max_entries=10))
    OfdPackage(many, limits=ContainerLimits(max_entries=20))
    two = make_zip([("a.bin", bytes(range(256)) * 64), ("b.bin", bytes(range(256)) * 64)])
    with pytest.raises(InputTooLarge, match="total"):
        OfdPackage(two, limits=ContainerLimits(max_total_size=20_000))
    with pytest.raises(InputTooLarge, match="inflates too far"):
        OfdPackage(two, limits=ContainerLimits(max_entry_size=10_000))
    with pytest.raises(InputTooLarge):
        OfdPackage(two, limits=ContainerLimits(max_input_size=100))


def test_default_entry_limit_is_checked_from_the_end_record() -> None:
    data = make_zip([(f"e{i}", b"") for i in range(10_001)], method=zipfile.ZIP_STORED)
    with pytest.raises(InputTooLarge, match="10001"):
        OfdPackage(data)


# --- writing --------------------------------------------------------------------------------------------
def test_rewrite_preserves_other_entries_and_order(interop_dir: Path) -> None:
    original = OfdPackage((interop_dir / "ofdrw-reader__SESV4SignDoc.ofd").read_bytes())
    new = OfdPackage(
        original.rewrite(
            {
                "Doc_0/Pages/Page_0/Content.xml": b"<changed/>",
                "Doc_0/Signs/Sign_0/Seal.esl": None,
                "Doc_0/Attachs/new.txt": b"added",
            }
        )
    )
    expected = [n for n in original.names if n != "Doc_0/Signs/Sign_0/Seal.esl"] + ["Doc_0/Attachs/new.txt"]
    assert list(new.names) == expected
    assert new.directories == original.directories
    for name in original.names:
        if name not in ("Doc_0/Pages/Page_0/Content.xml", "Doc_0/Signs/Sign_0/Seal.esl"):
            assert new.read(name) == original.read(name)
    assert new.read("Doc_0/Pages/Page_0/Content.xml") == b"<changed/>"
    assert new.read("Doc_0/Attachs/new.txt") == b"added"


def test_rewrite_copies_kept_entries_as_stored_and_writes_a_plain_zip(interop_dir: Path) -> None:
    original = OfdPackage((interop_dir / "ofdrw-sign__v4signed.ofd").read_bytes())
    changed = "Doc_0/Pages/Page_0/Content.xml"
    output = original.rewrite({changed: b"<changed/>" * 50, "Doc_0/附件.txt": b"\x00" * 3})
    new = OfdPackage(output)
    for name in original.names:
        if name != changed:  # compressed bytes, CRC and size carried over untouched
            assert new.stored_entry(name) == original.stored_entry(name)
    assert new.stored_entry(changed).method == zipfile.ZIP_DEFLATED
    # The standard library reads it all back (CRCs checked), names in UTF-8 with the flag set.
    with zipfile.ZipFile(io.BytesIO(output)) as archive:
        assert archive.testzip() is None
        info = archive.getinfo("Doc_0/附件.txt")
        assert info.flag_bits & 0x800 and archive.read(info) == b"\x00" * 3
        assert archive.read(changed) == b"<changed/>" * 50
        assert [i.filename for i in archive.infolist()] == [*original.names, "Doc_0/附件.txt"]


def test_rewrite_never_copies_an_entry_it_could_not_read() -> None:
    data = bytearray(make_zip([("OFD.xml", b"<OFD/>"), ("Doc_0/a.xml", b"hello world " * 50)]))
    central = data.find(b"PK\x01\x02")  # OFD.xml's, the first
    crc = struct.unpack_from("<I", data, central + 16)[0]
    struct.pack_into("<I", data, central + 16, crc ^ 1)  # the central CRC of OFD.xml no longer matches
    with pytest.raises(MalformedData):
        OfdPackage(bytes(data)).rewrite({"Doc_0/a.xml": b"<x/>"})
    bomb = make_zip([("OFD.xml", b"<OFD/>"), ("big.bin", bytes(4 * 1024 * 1024))])
    with pytest.raises(InputTooLarge):
        OfdPackage(bomb, limits=ContainerLimits(max_ratio=100)).rewrite({"OFD.xml": b"<OFD/>"})


def test_draft_finishes_like_rewrite_and_stays_reusable(simple_package: bytes) -> None:
    pkg = OfdPackage(simple_package)
    stamp = (2026, 1, 2, 3, 4, 6)
    changes = {"Doc_0/Document.xml": b"<Document>changed</Document>", "Doc_0/Signs/a.xml": b"<a/>"}
    draft = pkg.draft(changes, date_time=stamp)
    last = {"Doc_0/Signs/SignedValue.dat": bytes(range(256))}
    once = draft.finish(last)
    assert once == pkg.rewrite({**changes, **last}, date_time=stamp)
    assert draft.finish(last) == once
    assert OfdPackage(draft.finish()).names == (*pkg.names, "Doc_0/Signs/a.xml")
    new = OfdPackage(once)
    assert new.read("Doc_0/Signs/SignedValue.dat") == bytes(range(256))
    assert (
        new.stored_entry("Doc_0/Signs/SignedValue.dat").method == zipfile.ZIP_STORED
    )  # deflate did not help
    assert new.directories == pkg.directories
    with pytest.raises(MalformedData, match="duplicate"):
        draft.finish({"Doc_0/Signs/a.xml": b"again"})
    with pytest.raises(MalformedData):
        draft.finish({"../escape": b""})


def test_write_package_round_trip_and_name_checks() -> None:
    data = write_package([("OFD.xml", b"<OFD/>"), ("Doc_0/附件.xml", "中文".encode())])
    pkg = OfdPackage(data)
    assert pkg.names == ("OFD.xml", "Doc_0/附件.xml")
    assert pkg.read("Doc_0/附件.xml") == "中文".encode()
    with pytest.raises(MalformedData):
        write_package([("../x", b"")])
    with pytest.raises(MalformedData):
        write_package([("a", b""), ("a", b"")])


def test_a_file_may_not_run_into_the_directory_entry_after_it() -> None:
    data = bytearray(make_zip([("a.xml", b"<a/>" * 50), ("Doc_0/", b""), ("b.xml", b"<b/>")]))
    central = data.find(b"PK\x01\x02")  # a.xml's record: claim 10 more stored bytes than it has
    (compressed,) = struct.unpack_from("<I", data, central + 20)
    struct.pack_into("<I", data, central + 20, compressed + 10)
    with pytest.raises(MalformedData, match="overlaps"):
        OfdPackage(bytes(data)).read("a.xml")
