"""Fuzzing verify_bytes: random and mutated input yields a report or a typed error, nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import EsealError
from gmpki.ofd import OfdPackage
from verify import DocumentReport, verify_bytes

pytestmark = pytest.mark.interop

DER_SAMPLES = ("ofdrw-gm__UserV1.esl", "ofdrw-gm__UserV4.esl", "ofdrw-gm__SignedValueV4.dat")
OFD_SAMPLES = ("ofdrw-sign__v4signed.ofd", "ofdrw-reader__SESV4SignDoc.ofd")
FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def _sample(interop_dir: Path, name: str) -> bytes:
    return (interop_dir / name).read_bytes()


def _verify(data: bytes, detached: bytes | None = None) -> None:
    try:
        report = verify_bytes(data, detached_data=detached)
    except EsealError:
        return
    assert isinstance(report, DocumentReport)
    report.dumps()  # the JSON form must always be producible


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        out[position % len(out)] = value
    return bytes(out[: max(1, len(out) - cut)])


prefixes = st.sampled_from([b"", b"PK\x03\x04", b"\x30\x82", b"\x30\x80", b"%PDF-1.7", b"<?xml"])
edits = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=8)


@FUZZ
@given(prefix=prefixes, body=st.binary(max_size=2048))
def test_random_bytes(prefix: bytes, body: bytes) -> None:
    _verify(prefix + body)


@FUZZ
@given(
    name=st.sampled_from(DER_SAMPLES),
    edits=edits,
    cut=st.integers(0, 64),
    detached=st.none() | st.binary(max_size=16),
)
def test_mutated_der_samples(
    interop_dir: Path, name: str, edits: list[tuple[int, int]], cut: int, detached: bytes | None
) -> None:
    _verify(_mutate(_sample(interop_dir, name), edits, cut), detached)


@FUZZ
@given(name=st.sampled_from(OFD_SAMPLES), entry_index=st.integers(0, 64), edits=edits, cut=st.integers(0, 32))
def test_mutated_ofd_entries(
    interop_dir: Path, name: str, entry_index: int, edits: list[tuple[int, int]], cut: int
) -> None:
    # Mutating the ZIP bytes mostly trips the CRC; mutating one entry's content reaches the parsers.
    pkg = OfdPackage(_sample(interop_dir, name))
    entry = pkg.names[entry_index % len(pkg.names)]
    _verify(pkg.rewrite({entry: _mutate(pkg.read(entry), edits, cut)}))


@FUZZ
@given(name=st.sampled_from(OFD_SAMPLES), edits=edits)
def test_mutated_ofd_archives(interop_dir: Path, name: str, edits: list[tuple[int, int]]) -> None:
    _verify(_mutate(_sample(interop_dir, name), edits, 0))
