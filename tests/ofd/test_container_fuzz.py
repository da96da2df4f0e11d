"""Differential fuzzing of the container reader against the standard library's zipfile.

The reader inflates entries itself (from the local header, with zlib); on any mutated archive it
must raise a typed error or return, for every entry, exactly what zipfile returns for it (an entry
zipfile refuses must be refused too). Mutations
target the headers (local, central directory, end record), where a reader's own parsing can go
wrong, as well as the data.
"""

from __future__ import annotations

import io
import warnings
import zipfile
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import EsealError
from gmpki.ofd import OfdPackage

from .conftest import make_zip

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_SAMPLE = make_zip(
    [
        ("OFD.xml", b"<ofd:OFD xmlns:ofd='http://www.ofdspec.org/2016'>" + b"<a/>" * 40 + b"</ofd:OFD>"),
        ("Doc_0/Document.xml", bytes(range(256)) * 3),
        ("Doc_0/Res/blank.bin", b""),
    ]
)
_STORED = make_zip(
    [("OFD.xml", b"<OFD/>" * 30), ("Doc_0/Content.xml", b"<Content/>" * 20)], method=zipfile.ZIP_STORED
)


def _header_positions(data: bytes) -> list[int]:
    """Offsets of the bytes of every local header, central directory record and end record."""
    positions: list[int] = []
    for signature, size in ((b"PK\x03\x04", 30), (b"PK\x01\x02", 46), (b"PK\x05\x06", 22)):
        start = data.find(signature)
        while start >= 0:
            positions.extend(range(start, min(start + size, len(data))))
            start = data.find(signature, start + 1)
    return positions


def _zipfile_read(data: bytes, name_as_stored: str) -> bytes | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                return archive.read(name_as_stored)
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        ValueError,
        KeyError,
        NotImplementedError,
        RuntimeError,
        OverflowError,
        UnicodeError,
    ):
        return None


def _check(data: bytes) -> None:
    try:
        pkg = OfdPackage(data)
    except EsealError:
        return
    for name in pkg.names:
        try:
            ours = pkg.read(name)
        except EsealError:
            continue
        # Names are plain ASCII here, so the stored name is the package name.
        theirs = _zipfile_read(data, name)
        # Never more lenient than zipfile: whatever we read, zipfile reads, byte for byte.
        assert theirs == ours, name


@FUZZ
@given(
    sample=st.sampled_from([_SAMPLE, _STORED]),
    edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=4),
    anywhere=st.booleans(),
)
def test_mutated_archives_read_as_zipfile_reads_them_or_fail_typed(
    sample: bytes, edits: list[tuple[int, int]], anywhere: bool
) -> None:
    positions = _header_positions(sample)
    out = bytearray(sample)
    for index, value in edits:
        position = index % len(out) if anywhere else positions[index % len(positions)]
        out[position] = value
    _check(bytes(out))


@FUZZ
@given(sample=st.sampled_from([_SAMPLE, _STORED]), cut=st.integers(1, 400))
def test_truncated_archives_fail_typed(sample: bytes, cut: int) -> None:
    _check(sample[: max(0, len(sample) - cut)])
