"""SM2-signed CRLs: build, parse, look up, verify; OpenSSL reads them."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from asn1crypto import crl as asn1_crl

from core.errors import InvalidInput, MalformedData
from gmpki import oids
from gmpki.crl import CertificateRevocationList, RevokedCertificate, build_crl, load_crl, load_crl_der
from gmpki.x509 import key_identifier
from tests.gmpki.conftest import Pki, run_openssl


def _crl(pki: Pki, revoked: list[RevokedCertificate], number: int = 1) -> CertificateRevocationList:
    return build_crl(
        signer=pki.sub.signer,
        issuer=pki.sub.cert,
        this_update=pki.now,
        next_update=pki.now + timedelta(days=7),
        revoked=revoked,
        crl_number=number,
    )


def test_build_parse_and_look_up(pki: Pki) -> None:
    when = pki.now - timedelta(hours=2)
    revoked = [
        RevokedCertificate(pki.department.cert.serial, when, "key_compromise"),
        RevokedCertificate(12345, when - timedelta(days=1), None),
    ]
    crl = _crl(pki, revoked, number=42)
    assert crl.issuer == pki.sub.cert.subject
    assert crl.this_update == pki.now and crl.next_update == pki.now + timedelta(days=7)
    assert crl.crl_number == 42
    assert crl.authority_key_id == key_identifier(pki.sub.key.public_key)
    assert crl.signature_algorithm == oids.SM2_WITH_SM3
    entry = crl.lookup(pki.department.cert.serial)
    assert entry == RevokedCertificate(pki.department.cert.serial, when, "key_compromise")
    assert crl.lookup(12345) == RevokedCertificate(12345, when - timedelta(days=1), None)
    assert crl.lookup(pki.maker.cert.serial) is None
    assert crl.is_revoked(12345) and not crl.is_revoked(12346)
    assert crl.verify_signature(pki.sub.key.public_key)
    assert not crl.verify_signature(pki.root.key.public_key)
    assert crl.may_be_issued_by(pki.sub.cert) and not crl.may_be_issued_by(pki.root.cert)
    assert crl.unhandled_critical_extensions == frozenset()
    assert load_crl(crl.to_pem().encode()) == crl
    assert load_crl(crl.der) == crl


def test_empty_crl_omits_the_revoked_list(pki: Pki) -> None:
    crl = _crl(pki, [])
    assert not crl.entries
    tbs = asn1_crl.TbsCertList.load(crl.tbs_der)
    assert tbs["revoked_certificates"].native is None  # absent, as RFC 5280 5.1.2.6 requires


def test_flipped_byte_in_entry_breaks_only_the_signature(pki: Pki) -> None:
    serial = pki.department.cert.serial
    crl = _crl(pki, [RevokedCertificate(serial, pki.now, "superseded")])
    serial_bytes = serial.to_bytes((serial.bit_length() + 8) // 8, "big")
    pos = crl.der.index(serial_bytes)
    tampered = bytearray(crl.der)
    tampered[pos + len(serial_bytes) - 1] ^= 0x01
    other = load_crl_der(bytes(tampered))
    assert other.lookup(serial) is None and other.lookup(serial ^ 1) is not None
    assert not other.verify_signature(pki.sub.key.public_key)


def test_builder_refusals(pki: Pki) -> None:
    with pytest.raises(InvalidInput):  # signer does not hold the issuer key
        build_crl(
            signer=pki.root.signer,
            issuer=pki.sub.cert,
            this_update=pki.now,
            next_update=pki.now + timedelta(days=1),
            revoked=[],
            crl_number=1,
        )
    with pytest.raises(InvalidInput):  # issuer without cRLSign
        build_crl(
            signer=pki.maker.signer,
            issuer=pki.maker.cert,
            this_update=pki.now,
            next_update=pki.now + timedelta(days=1),
            revoked=[],
            crl_number=1,
        )
    with pytest.raises(InvalidInput):
        _crl(pki, [RevokedCertificate(1, pki.now), RevokedCertificate(1, pki.now)])
    with pytest.raises(InvalidInput):
        _crl(pki, [RevokedCertificate(1, pki.now, "because")])
    with pytest.raises(InvalidInput):
        build_crl(
            signer=pki.sub.signer,
            issuer=pki.sub.cert,
            this_update=pki.now,
            next_update=pki.now - timedelta(days=1),
            revoked=[],
            crl_number=1,
        )


def test_duplicate_serial_in_a_parsed_crl_is_malformed(pki: Pki) -> None:
    crl = _crl(pki, [RevokedCertificate(1, pki.now), RevokedCertificate(2, pki.now)])
    tbs = asn1_crl.TbsCertList.load(crl.tbs_der)
    entries = list(tbs["revoked_certificates"])
    fields = {
        k: tbs[k] for k in ("version", "signature", "issuer", "this_update", "next_update", "crl_extensions")
    }
    fields["revoked_certificates"] = [entries[0], entries[0]]
    forged = asn1_crl.CertificateList(
        {
            "tbs_cert_list": asn1_crl.TbsCertList(fields),
            "signature_algorithm": crl.asn1["signature_algorithm"],
            "signature": crl.signature,
        }
    )
    with pytest.raises(MalformedData):
        load_crl_der(forged.dump(force=True))


def test_openssl_reads_our_crl(openssl: str, tmp_path: Path, pki: Pki) -> None:
    serial = pki.department.cert.serial
    crl = _crl(pki, [RevokedCertificate(serial, pki.now, "key_compromise")], number=9)
    (tmp_path / "c.crl").write_text(crl.to_pem())
    out = run_openssl(openssl, "crl", "-in", tmp_path / "c.crl", "-noout", "-text")
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    listed = [int(m, 16) for m in re.findall(r"Serial Number: ([0-9A-F]+)", text)]
    assert listed == [serial]
    assert "Key Compromise" in text
    assert "X509v3 CRL Number" in text and "9" in text
    assert "SM2-with-SM3" in text
