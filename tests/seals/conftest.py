"""Fixtures for the seal tests: interop sample bytes, fresh SM2 keys with minimal certificates, and an
independent DER walker (deliberately not the project's parser) for cross-checks."""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import keys, x509

from gmpki import sm2
from gmpki.signing import InMemorySigner

SM2_WITH_SM3 = "1.2.156.10197.1.501"
SM2_CURVE = "1.2.156.10197.1.301"


@dataclass(frozen=True)
class Party:
    """A key holder for tests: the signer and its self-signed certificate."""

    signer: InMemorySigner
    cert_der: bytes


def make_certificate(signer: InMemorySigner, cn: str, serial: int) -> bytes:
    """A minimal self-signed SM2 certificate built straight with asn1crypto (no project code)."""
    name = x509.Name.build({"common_name": cn, "organization_name": "eseal seal tests"})
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    tbs = x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": serial,
            "signature": {"algorithm": SM2_WITH_SM3},
            "issuer": name,
            "validity": {
                "not_before": x509.Time(name="utc_time", value=start),
                "not_after": x509.Time(name="utc_time", value=start + dt.timedelta(days=3650)),
            },
            "subject": name,
            "subject_public_key_info": keys.PublicKeyInfo(
                {
                    "algorithm": {
                        "algorithm": "ec",
                        "parameters": keys.ECDomainParameters(name="named", value=SM2_CURVE),
                    },
                    "public_key": signer.public_key.point,
                }
            ),
        }
    )
    signature = signer.sign(tbs.dump())
    cert = x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": {"algorithm": SM2_WITH_SM3},
            "signature_value": signature,
        }
    )
    return bytes(cert.dump())


def _party(cn: str, serial: int) -> Party:
    signer = InMemorySigner(sm2.SM2PrivateKey.generate())
    return Party(signer, make_certificate(signer, cn, serial))


@pytest.fixture(scope="session")
def maker() -> Party:
    return _party("Test Seal Maker", 0x5EA1)


@pytest.fixture(scope="session")
def holder() -> Party:
    return _party("Test Seal Holder", 0x401D)


@pytest.fixture(scope="session")
def stranger() -> Party:
    return _party("Not In The Cert List", 0xBAD)


# --- interop samples -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def seal_v1(interop_dir: Path) -> bytes:
    return (interop_dir / "ofdrw-gm__UserV1.esl").read_bytes()


@pytest.fixture(scope="session")
def seal_v4(interop_dir: Path) -> bytes:
    return (interop_dir / "ofdrw-gm__UserV4.esl").read_bytes()


@pytest.fixture(scope="session")
def signed_value_v4(interop_dir: Path) -> bytes:
    return (interop_dir / "ofdrw-gm__SignedValueV4.dat").read_bytes()


@pytest.fixture(scope="session")
def ofd_entry(interop_dir: Path) -> Callable[[str, str], bytes]:
    """Read one entry of an interop OFD package (a ZIP)."""

    def read(ofd_name: str, entry: str) -> bytes:
        with zipfile.ZipFile(interop_dir / ofd_name) as package:
            return package.read(entry)

    return read


# --- an independent DER walker ------------------------------------------------------------------------
@dataclass(frozen=True)
class Tlv:
    tag: int
    start: int
    body: int
    end: int
    children: tuple[Tlv, ...]

    def raw(self, data: bytes) -> bytes:
        return data[self.start : self.end]

    def content(self, data: bytes) -> bytes:
        return data[self.body : self.end]


def walk_der(data: bytes, pos: int = 0, end: int | None = None) -> Tlv:
    """Strict DER walk (definite, minimal lengths), descending into constructed tags only."""
    end = len(data) if end is None else end
    tag = data[pos]
    first = data[pos + 1]
    if first < 0x80:
        length, header = first, 2
    else:
        n = first & 0x7F
        assert 1 <= n <= 4
        length = int.from_bytes(data[pos + 2 : pos + 2 + n], "big")
        assert length >= 0x80 and length >> (8 * (n - 1)) != 0, "non-minimal length"
        header = 2 + n
    stop = pos + header + length
    assert stop <= end
    children: list[Tlv] = []
    if tag & 0x20:
        p = pos + header
        while p < stop:
            child = walk_der(data, p, stop)
            children.append(child)
            p = child.end
    return Tlv(tag, pos, pos + header, stop, tuple(children))


def der_tlv(tag: int, body: bytes) -> bytes:
    """Encode one DER element by hand (definite, minimal length)."""
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = (n.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + n.to_bytes(size, "big") + body


def shape(node: Tlv) -> str:
    """``30{02,16}``-style rendering of the tag tree."""
    if not node.children:
        return f"{node.tag:02X}"
    return f"{node.tag:02X}{{{','.join(shape(c) for c in node.children)}}}"
