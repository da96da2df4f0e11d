"""Helpers for the OFD container tests: build ZIP archives by hand, patch their headers."""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
from collections.abc import Iterable

import pytest


def make_zip(entries: Iterable[tuple[str, bytes]], *, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A ZIP written with the standard library, bypassing every check of the code under test."""
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names, which some tests want
        with zipfile.ZipFile(out, "w", method) as archive:
            for name, data in entries:
                info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
                archive.writestr(info, data, compress_type=method)
    return out.getvalue()


def patch_name(data: bytes, old: bytes, new: bytes) -> bytes:
    """Replace an entry name (same length) in both the local and the central header."""
    assert len(old) == len(new)
    assert data.count(old) == 2
    return data.replace(old, new)


def set_flags(data: bytes, flags: int) -> bytes:
    """Set the general-purpose flags of the first entry in both headers."""
    patched = bytearray(data)
    struct.pack_into("<H", patched, 6, flags)
    central = patched.rfind(b"PK\x01\x02")
    struct.pack_into("<H", patched, central + 8, flags)
    return bytes(patched)


def set_declared_size(data: bytes, size: int) -> bytes:
    """Make the first entry declare ``size`` uncompressed bytes (a lying header)."""
    patched = bytearray(data)
    struct.pack_into("<I", patched, 22, size)
    central = patched.rfind(b"PK\x01\x02")
    struct.pack_into("<I", patched, central + 24, size)
    return bytes(patched)


@pytest.fixture
def simple_package() -> bytes:
    return make_zip(
        [
            ("OFD.xml", b"<ofd:OFD xmlns:ofd='http://www.ofdspec.org/2016'/>"),
            ("Doc_0/", b""),
            ("Doc_0/Document.xml", b"<Document/>"),
            ("Doc_0/Res/big.bin", bytes(range(256)) * 4096),
        ]
    )
