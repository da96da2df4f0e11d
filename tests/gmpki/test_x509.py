"""SM2 X.509 certificates: typed view, signature checks, building, and OpenSSL interoperability."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import keys
from asn1crypto import x509 as asn1_x509

from core.errors import CertificateError, CryptoError, InvalidInput, MalformedData
from gmpki import oids, sm2, sm3
from gmpki.signing import InMemorySigner
from gmpki.x509 import (
    Certificate,
    build_certificate,
    build_name,
    key_identifier,
    load_certificate,
    load_certificate_der,
    load_certificates,
    name_to_string,
    sm2_public_key_from_spki,
    sm2_signature_algorithm,
)
from tests.gmpki.conftest import Pki, forge_certificate, new_party_key, run_openssl

VFY_DISTID = "distid:1234567812345678"


def test_typed_view_of_a_department_certificate(pki: Pki) -> None:
    cert = pki.department.cert
    assert (
        cert.subject == "organizationIdentifier=11110000000000000X,CN=某市市场监督管理局,O=某市人民政府,C=CN"
    )
    assert cert.common_name == "某市市场监督管理局"
    assert cert.issuer == pki.sub.cert.subject
    assert cert.public_key == pki.department.key.public_key
    assert cert.key_usage == frozenset({"digital_signature", "non_repudiation"})
    assert cert.extended_key_usage is None
    assert cert.is_ca is False and cert.path_length is None
    assert cert.subject_key_id == key_identifier(pki.department.key.public_key)
    assert cert.authority_key_id == pki.sub.cert.subject_key_id
    assert cert.critical_extensions == {"2.5.29.19", "2.5.29.15"}
    assert cert.unhandled_critical_extensions == frozenset()
    assert cert.not_before.tzinfo is not None and cert.not_before.utcoffset() == timedelta(0)
    assert cert.not_before < pki.now < cert.not_after
    assert cert.signature_algorithm == oids.SM2_WITH_SM3
    assert cert.fingerprint_sm3 == sm3.sm3(cert.der)
    assert cert.version == 3 and cert.serial > 0
    assert cert.asn1.signature_algo == "sm2" and cert.asn1.hash_algo == "sm3"
    assert re.fullmatch(r".+ \(serial 0x[0-9A-F]+\)", cert.describe())


def test_signature_checks_a_flipped_byte(pki: Pki) -> None:
    cert = pki.department.cert
    issuer_key = pki.sub.key.public_key
    assert cert.verify_signature(issuer_key)
    assert not cert.verify_signature(pki.root.key.public_key)
    # Flip one byte inside the subject common name: still a well-formed certificate, bad signature.
    cn = "某市市场监督管理局".encode()
    pos = cert.der.index(cn)
    tampered = bytearray(cert.der)
    tampered[pos + 2] ^= 0x01
    other = load_certificate_der(bytes(tampered))
    assert other.subject != cert.subject
    assert not other.verify_signature(issuer_key)
    # Flip one byte of the signature value.
    sig_pos = cert.der.rindex(cert.signature) + len(cert.signature) - 5
    tampered = bytearray(cert.der)
    tampered[sig_pos] ^= 0x01
    assert not load_certificate_der(bytes(tampered)).verify_signature(issuer_key)


def test_pem_der_and_bundles(pki: Pki) -> None:
    cert = pki.maker.cert
    assert load_certificate(cert.der) == cert
    assert load_certificate(cert.to_pem().encode()) == cert
    bundle = (pki.root.cert.to_pem() + "some comment\n" + pki.sub.cert.to_pem()).encode()
    assert load_certificates(bundle) == [pki.root.cert, pki.sub.cert]
    with pytest.raises(MalformedData):
        load_certificate(bundle)  # two where one is expected
    with pytest.raises(MalformedData):
        load_certificates(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


def test_names_are_escaped_per_rfc4514() -> None:
    name = build_name('A, "B" + C', organization="x=y;z", country="cn")
    assert name_to_string(name) == 'CN=A\\, \\"B\\" \\+ C,O=x\\=y\\;z,C=CN'
    with pytest.raises(InvalidInput):
        build_name("  ")
    with pytest.raises(InvalidInput):
        build_name("x", country="CHN")
    with pytest.raises(InvalidInput):
        build_name("x", social_credit_code="123")


def test_time_encoding_switches_to_generalized_time_in_2050() -> None:
    key, signer = new_party_key()
    cert = build_certificate(
        signer=signer,
        issuer=None,
        subject=build_name("long lived"),
        subject_public_key=key.public_key,
        serial=7,
        not_before=datetime(2049, 12, 31, tzinfo=UTC),
        not_after=datetime(2051, 1, 1, tzinfo=UTC),
        key_usage={"key_cert_sign", "crl_sign"},
        is_ca=True,
    )
    validity = cert.asn1["tbs_certificate"]["validity"]
    assert validity["not_before"].name == "utc_time"
    assert validity["not_after"].name == "general_time"
    assert cert.not_after == datetime(2051, 1, 1, tzinfo=UTC)


class _BrokenSigner:
    def __init__(self, key: sm2.SM2PrivateKey, mode: str) -> None:
        self._key = key
        self._mode = mode

    @property
    def public_key(self) -> sm2.SM2PublicKey:
        return self._key.public_key

    def sign(self, message: bytes) -> bytes:
        if self._mode == "raw":
            return sm2.der_to_raw(sm2.sign(self._key, message))
        return sm2.sign(self._key, message + b"x")


@pytest.mark.parametrize("mode", ["raw", "wrong"])
def test_builder_checks_what_the_signer_returns(mode: str) -> None:
    key = sm2.SM2PrivateKey.generate()
    now = datetime.now(UTC)
    with pytest.raises(CryptoError):
        build_certificate(
            signer=_BrokenSigner(key, mode),
            issuer=None,
            subject=build_name("x"),
            subject_public_key=key.public_key,
            serial=1,
            not_before=now,
            not_after=now + timedelta(days=1),
            key_usage={"digital_signature"},
        )


def test_builder_refuses_inconsistent_requests(pki: Pki) -> None:
    key, signer = new_party_key()
    now = pki.now
    base: dict[str, Any] = {
        "subject": build_name("x"),
        "subject_public_key": key.public_key,
        "serial": 5,
        "not_before": now,
        "not_after": now + timedelta(days=10),
        "key_usage": {"digital_signature"},
    }
    with pytest.raises(InvalidInput):  # self-signed by another key
        build_certificate(signer=pki.root.signer, issuer=None, **base)
    with pytest.raises(InvalidInput):  # signer is not the issuer's key
        build_certificate(signer=signer, issuer=pki.sub.cert, **base)
    with pytest.raises(InvalidInput):  # issuer is an end entity
        build_certificate(signer=pki.maker.signer, issuer=pki.maker.cert, **base)
    with pytest.raises(InvalidInput):  # outlives the issuer
        build_certificate(
            signer=pki.sub.signer,
            issuer=pki.sub.cert,
            **{**base, "not_after": pki.sub.cert.not_after + timedelta(days=1)},
        )
    bad: dict[str, Any]
    for bad in (
        {"serial": 0},
        {"serial": -3},
        {"serial": 1 << 160},
        {"key_usage": set()},
        {"key_usage": {"sign_everything"}},
        {"path_length": 1},
        {"not_after": now},
        {"not_before": datetime(2030, 1, 1)},
    ):  # a naive time is the point
        with pytest.raises(InvalidInput):
            build_certificate(signer=signer, issuer=None, **{**base, **bad})
    with pytest.raises(InvalidInput):  # a CA without keyCertSign
        build_certificate(signer=signer, issuer=None, is_ca=True, **base)


# --- structural checks on parse ---------------------------------------------------------------------
def test_signature_algorithm_mismatch_is_malformed(pki: Pki) -> None:
    cert = pki.maker.cert
    tbs = asn1_x509.TbsCertificate.load(cert.tbs_der)
    outer = asn1_x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": {"algorithm": oids.NAME_SM2_SIGN},
            "signature_value": cert.signature,
        }
    )
    with pytest.raises(MalformedData):
        load_certificate_der(outer.dump(force=True))


def test_negative_serial_duplicate_extension_and_bad_path_len(pki: Pki) -> None:
    signer = pki.sub.signer
    with pytest.raises(MalformedData):
        forge_certificate(pki.maker.cert, signer, serial_number=-5)
    src = asn1_x509.TbsCertificate.load(pki.maker.cert.tbs_der)
    exts = list(src["extensions"])
    with pytest.raises(MalformedData):
        forge_certificate(pki.maker.cert, signer, extensions=[*exts, exts[0]])
    bc = asn1_x509.Extension(
        {
            "extn_id": "basic_constraints",
            "critical": True,
            "extn_value": {"ca": False, "path_len_constraint": 2},
        }
    )
    with pytest.raises(MalformedData):
        forge_certificate(pki.maker.cert, signer, extensions=[bc, *exts[1:]])


def test_compressed_point_is_read(pki: Pki) -> None:
    pub = pki.maker.key.public_key
    compressed = bytes([2 + (pub.y & 1)]) + pub.point[1:33]
    spki = keys.PublicKeyInfo(
        {
            "algorithm": {
                "algorithm": "ec",
                "parameters": keys.ECDomainParameters(name="named", value="sm2p256v1"),
            },
            "public_key": compressed,
        }
    )
    assert sm2_public_key_from_spki(spki) == pub
    spki_bad = keys.PublicKeyInfo(
        {
            "algorithm": {
                "algorithm": "ec",
                "parameters": keys.ECDomainParameters(name="named", value="sm2p256v1"),
            },
            "public_key": b"\x04" + pub.point[1:64],
        }
    )
    with pytest.raises(MalformedData):
        sm2_public_key_from_spki(spki_bad)


def test_signature_algorithm_identifier_has_absent_parameters() -> None:
    assert sm2_signature_algorithm().dump() == bytes.fromhex("300a06082a811ccf55018375")


# --- OpenSSL interoperability ----------------------------------------------------------------------
def _write(tmp_path: Path, name: str, cert: Certificate) -> Path:
    path = tmp_path / name
    path.write_text(cert.to_pem())
    return path


def test_openssl_reads_our_extensions(openssl: str, tmp_path: Path, pki: Pki) -> None:
    out = run_openssl(openssl, "x509", "-in", _write(tmp_path, "tsa.pem", pki.tsa.cert), "-noout", "-text")
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    assert "Signature Algorithm: SM2-with-SM3" in text
    assert "ASN1 OID: SM2" in text
    assert re.search(r"Basic Constraints: critical\s+CA:FALSE", text)
    assert re.search(r"Key Usage: critical\s+Digital Signature, Non Repudiation", text)
    assert re.search(r"Extended Key Usage: critical\s+Time Stamping", text)


def test_openssl_verifies_each_link_of_our_chain(openssl: str, tmp_path: Path, pki: Pki) -> None:
    """OpenSSL 3.0 checks SM2 certificate signatures with an *empty* ID unless ``-vfyopt distid:``
    is given, and then attaches that ID only to the certificate being verified: the target's link
    verifies, but a link further up is checked with the empty ID and fails. So each link of a
    root -> CA -> leaf chain is verified as its own openssl call; the whole chain in one call works
    only for two levels (the root's self-signature is not checked by default)."""
    root = _write(tmp_path, "root.pem", pki.root.cert)
    sub = _write(tmp_path, "sub.pem", pki.sub.cert)
    for name, party in (("maker", pki.maker), ("department", pki.department), ("tsa", pki.tsa)):
        leaf = _write(tmp_path, f"{name}.pem", party.cert)
        link = run_openssl(openssl, "verify", "-vfyopt", VFY_DISTID, "-partial_chain", "-CAfile", sub, leaf)
        assert link.returncode == 0, (name, link.stdout, link.stderr)
    up = run_openssl(openssl, "verify", "-vfyopt", VFY_DISTID, "-CAfile", root, sub)
    assert up.returncode == 0, up.stderr
    # Without the ID, OpenSSL 3.0 rejects our (standard-conforming) signatures.
    no_id = run_openssl(openssl, "verify", "-CAfile", root, sub)
    assert no_id.returncode != 0
    # The one-call three-level form: passes on an OpenSSL that applies the ID to every link,
    # fails exactly at depth 1 on 3.0.x.
    full = run_openssl(
        openssl,
        "verify",
        "-vfyopt",
        VFY_DISTID,
        "-CAfile",
        root,
        "-untrusted",
        sub,
        _write(tmp_path, "dept.pem", pki.department.cert),
    )
    if full.returncode != 0:
        assert b"error 7 at 1 depth lookup: certificate signature failure" in full.stdout + full.stderr
    # A two-level chain (root -> leaf) verifies in one call.
    _rk, rs = new_party_key()
    from gmpki import ca

    root2 = ca.issue_root_ca(rs, build_name("two-level root"))
    lk, _ = new_party_key()
    leaf2 = ca.issue_department_certificate(rs, root2, lk.public_key, build_name("two-level leaf"))
    two = run_openssl(
        openssl,
        "verify",
        "-vfyopt",
        VFY_DISTID,
        "-CAfile",
        _write(tmp_path, "r2.pem", root2),
        _write(tmp_path, "l2.pem", leaf2),
    )
    assert two.returncode == 0, two.stderr


def test_openssl_made_certificate_parses_and_verifies(openssl: str, tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    assert run_openssl(openssl, "genpkey", "-algorithm", "SM2", "-out", key).returncode == 0
    made = run_openssl(
        openssl,
        "req",
        "-x509",
        "-key",
        key,
        "-sm3",
        "-sigopt",
        VFY_DISTID,
        "-days",
        "30",
        "-subj",
        "/C=CN/O=OpenSSL/CN=openssl sm2 root",
        "-out",
        tmp_path / "c.pem",
    )
    assert made.returncode == 0, made.stderr
    cert = load_certificate((tmp_path / "c.pem").read_bytes())
    assert cert.subject == "CN=openssl sm2 root,O=OpenSSL,C=CN"
    assert cert.is_ca  # OpenSSL's default v3_ca profile
    assert cert.verify_signature(cert.public_key)
    # The same command without -sigopt signs with OpenSSL 3.0's empty default ID: the signature is
    # then only valid under ID "", which eseal (following GB/T 35276) does not use for certificates.
    made = run_openssl(
        openssl,
        "req",
        "-x509",
        "-key",
        key,
        "-sm3",
        "-days",
        "30",
        "-subj",
        "/CN=empty id",
        "-out",
        tmp_path / "e.pem",
    )
    assert made.returncode == 0, made.stderr
    cert = load_certificate((tmp_path / "e.pem").read_bytes())
    assert not cert.verify_signature(cert.public_key)
    assert sm2.verify(cert.public_key, cert.tbs_der, cert.signature, uid=b"")


def test_non_sm2_certificate_is_refused(openssl: str, tmp_path: Path) -> None:
    made = run_openssl(
        openssl,
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        tmp_path / "k.pem",
        "-subj",
        "/CN=p256",
        "-days",
        "1",
        "-out",
        tmp_path / "c.pem",
    )
    assert made.returncode == 0, made.stderr
    with pytest.raises(CertificateError):
        load_certificate((tmp_path / "c.pem").read_bytes())


def test_in_memory_signer_is_a_message_signer(pki: Pki) -> None:
    assert isinstance(pki.root.signer, InMemorySigner)
    assert pki.root.cert.verify_signature(pki.root.signer.public_key)
