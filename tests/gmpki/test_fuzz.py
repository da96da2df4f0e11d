"""Property-based fuzzing of the DER entry points: only typed eseal errors may come out.

Random bytes and mutations (flips, insertions, deletions, truncations) of valid certificates, CRLs
and PKCS#12 files. Example counts are bounded so the module runs in seconds.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from datetime import timedelta
from functools import cache
from pathlib import Path

import pytest
from asn1crypto import cms, keys, pkcs12
from asn1crypto import x509 as asn1_x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import CertificateError, EsealError, InputTooLarge, MalformedData, WrongPassword
from gmpki import ca, sm2
from gmpki.crl import RevokedCertificate, build_crl, load_crl
from gmpki.der import load_der
from gmpki.pkcs12 import load_pkcs12
from gmpki.signing import InMemorySigner
from gmpki.x509 import Certificate, build_name, load_certificate, now_utc
from tests.gmpki.conftest import openssl_path

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PARSE_ERRORS = (MalformedData, InputTooLarge, CertificateError)


@cache
def _chain() -> tuple[sm2.SM2PublicKey, Certificate, bytes]:
    """(root public key, TSA leaf issued by the root, CRL of the root listing the leaf)."""
    key = sm2.SM2PrivateKey.generate()
    signer = InMemorySigner(key)
    root = ca.issue_root_ca(signer, build_name("fuzz root", organization="fuzz"))
    leaf_key = sm2.SM2PrivateKey.generate()
    leaf = ca.issue_tsa_certificate(signer, root, leaf_key.public_key, build_name("fuzz leaf"))
    now = now_utc()
    crl = build_crl(
        signer=signer,
        issuer=root,
        this_update=now,
        next_update=now + timedelta(days=1),
        crl_number=7,
        revoked=[RevokedCertificate(leaf.serial, now, "key_compromise")],
    )
    return key.public_key, leaf, crl.der


@cache
def _small_p12() -> bytes | None:
    """A PKCS#12 with one KDF iteration so that mutated files reach the decryption code cheaply."""
    openssl = openssl_path()
    if openssl is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)

        def run(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run([openssl, *map(str, args)], capture_output=True, check=False)

        if run("genpkey", "-algorithm", "SM2", "-out", d / "k.pem").returncode:
            return None
        if run(
            "req",
            "-x509",
            "-key",
            d / "k.pem",
            "-sm3",
            "-sigopt",
            "distid:1234567812345678",
            "-days",
            "1",
            "-subj",
            "/CN=fuzz",
            "-out",
            d / "c.pem",
        ).returncode:
            return None
        if run(
            "pkcs12",
            "-export",
            "-inkey",
            d / "k.pem",
            "-in",
            d / "c.pem",
            "-passout",
            "pass:pw",
            "-iter",
            "1",
            "-maciter",
            "-keypbe",
            "PBE-SHA1-3DES",
            "-certpbe",
            "PBE-SHA1-3DES",
            "-out",
            d / "f.p12",
        ).returncode:
            return None
        return (d / "f.p12").read_bytes()


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]))
        if not data:
            break
        pos = draw(st.integers(min_value=0, max_value=len(data) - 1))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif kind == "set":
            data[pos] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0x84, 0xFF]))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(min_value=1, max_value=4))]
        elif kind == "truncate":
            del data[pos:]
        else:
            data[pos:pos] = data[pos : pos + draw(st.integers(min_value=1, max_value=16))]
    return bytes(data)


def _cert_mutations() -> st.SearchStrategy[bytes]:
    return mutated(_chain()[1].der)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_to_every_entry_point(data: bytes) -> None:
    for parse in (load_certificate, load_crl):
        with contextlib.suppress(*PARSE_ERRORS):
            parse(data)
    for cls in (asn1_x509.Certificate, keys.PrivateKeyInfo, cms.ContentInfo, pkcs12.Pfx):
        with contextlib.suppress(MalformedData):
            load_der(cls, data)
    with contextlib.suppress(*PARSE_ERRORS, WrongPassword):
        load_pkcs12(data, "pw")


@FUZZ
@given(_cert_mutations())
def test_mutated_certificates(data: bytes) -> None:
    root_key, leaf, _ = _chain()
    try:
        cert = load_certificate(data)
    except PARSE_ERRORS:
        return
    # whatever parses is a full, typed view, and the signature holds only over the original tbs
    assert isinstance(cert, Certificate)
    assert isinstance(cert.public_key, sm2.SM2PublicKey)
    if cert.verify_signature(root_key):
        assert cert.tbs_der == leaf.tbs_der


@FUZZ
@given(st.data())
def test_mutated_crls(data: st.DataObject) -> None:
    raw = data.draw(mutated(_chain()[2]))
    try:
        crl = load_crl(raw)
    except PARSE_ERRORS:
        return
    assert crl.entries is not None
    for serial, entry in crl.entries.items():
        assert entry.serial == serial


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_pkcs12(data: st.DataObject) -> None:
    p12 = _small_p12()
    if p12 is None:
        pytest.skip("OpenSSL CLI unavailable to make the PKCS#12 seed")
    raw = data.draw(mutated(p12))
    try:
        contents = load_pkcs12(raw, "pw", max_iterations=16)
    except (*PARSE_ERRORS, WrongPassword):
        return
    assert contents.key.public_key == contents.certificate.public_key


def test_seeds_are_valid() -> None:
    _, leaf, crl_der = _chain()
    assert load_certificate(leaf.der) == leaf
    assert load_crl(crl_der).lookup(leaf.serial) is not None
    p12 = _small_p12()
    if p12 is not None:
        assert load_pkcs12(p12, "pw", max_iterations=16).certificate.subject == "CN=fuzz"


def test_only_eseal_errors_are_typed() -> None:
    for exc in (*PARSE_ERRORS, WrongPassword):
        assert issubclass(exc, EsealError)
