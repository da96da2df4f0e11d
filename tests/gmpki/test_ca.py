"""The region CA hierarchy profiles and the import of external CA certificates."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.errors import CertificateError, InvalidInput, MalformedData
from gmpki import ca, oids
from gmpki.path_validation import validate_path
from gmpki.x509 import build_name, name_attribute
from tests.gmpki.conftest import Pki, new_party_key


def test_root_profile(pki: Pki) -> None:
    root = pki.root.cert
    assert root.is_ca and root.path_length is None
    assert root.key_usage == frozenset({"key_cert_sign", "crl_sign"})
    assert root.critical_extensions == {"2.5.29.19", "2.5.29.15"}
    assert root.is_self_issued and root.verify_signature(root.public_key)
    assert root.subject_key_id == root.authority_key_id
    assert name_attribute(root.subject_name, "country_name") == "CN"
    assert name_attribute(root.subject_name, "state_or_province_name") == "测试省"


def test_subordinate_profile(pki: Pki) -> None:
    sub = pki.sub.cert
    assert sub.is_ca and sub.path_length == 0
    assert sub.key_usage == frozenset({"key_cert_sign", "crl_sign"})
    assert sub.authority_key_id == pki.root.cert.subject_key_id
    assert sub.verify_signature(pki.root.key.public_key)


@pytest.mark.parametrize("who", ["maker", "department", "service"])
def test_signing_profiles(pki: Pki, who: str) -> None:
    cert = getattr(pki, who).cert
    assert not cert.is_ca
    assert cert.key_usage == frozenset({"digital_signature", "non_repudiation"})
    # Only the service certificate is marked as the status signer (snapshots, trust lists).
    assert cert.extended_key_usage == (frozenset({"ocsp_signing"}) if who == "service" else None)
    assert cert.verify_signature(pki.sub.key.public_key)


def test_tsa_profile(pki: Pki) -> None:
    cert = pki.tsa.cert
    assert cert.extended_key_usage == frozenset({"time_stamping"})
    assert oids.EKU_TIME_STAMPING not in cert.unhandled_critical_extensions
    assert "2.5.29.37" in cert.critical_extensions  # RFC 3161 2.3: critical, and the only purpose
    assert not cert.is_ca


def test_department_carries_the_social_credit_code(pki: Pki) -> None:
    cert = pki.department.cert
    assert name_attribute(cert.subject_name, "organization_identifier") == "11110000000000000X"
    assert name_attribute(cert.subject_name, "organization_name") == "某市人民政府"


def test_serials_are_random_positive_16_bytes(pki: Pki) -> None:
    serials = [ca.new_serial() for _ in range(200)]
    assert len(set(serials)) == 200
    assert all(64 < s.bit_length() <= 127 for s in serials)
    issued = [pki.root.cert, pki.sub.cert, pki.maker.cert, pki.department.cert, pki.tsa.cert]
    assert len({c.serial for c in issued}) == len(issued)
    assert all(0 < c.serial < 2**127 for c in issued)


def test_validity_is_clipped_to_the_issuer(pki: Pki) -> None:
    key, _ = new_party_key()
    cert = ca.issue_department_certificate(
        pki.sub.signer, pki.sub.cert, key.public_key, build_name("long"), validity=timedelta(days=100 * 365)
    )
    assert cert.not_after == pki.sub.cert.not_after
    early = ca.issue_department_certificate(
        pki.sub.signer,
        pki.sub.cert,
        key.public_key,
        build_name("early"),
        not_before=pki.sub.cert.not_before - timedelta(days=5),
    )
    assert early.not_before == pki.sub.cert.not_before


def test_issuing_needs_a_ca_and_its_key(pki: Pki) -> None:
    key, signer = new_party_key()
    with pytest.raises(InvalidInput):
        ca.issue_department_certificate(pki.maker.signer, pki.maker.cert, key.public_key, build_name("x"))
    with pytest.raises(InvalidInput):
        ca.issue_department_certificate(signer, pki.sub.cert, key.public_key, build_name("x"))


def test_whole_hierarchy_validates(pki: Pki) -> None:
    for party in (pki.maker, pki.department, pki.tsa, pki.service):
        path = validate_path(
            party.cert, trust_anchors=[pki.root.cert], intermediates=[pki.sub.cert], at=pki.now
        )
        assert path.trust_anchor == pki.root.cert


def test_import_ca_certificates(pki: Pki) -> None:
    bundle = (pki.root.cert.to_pem() + pki.sub.cert.to_pem() + pki.root.cert.to_pem()).encode()
    assert ca.import_ca_certificates(bundle) == [pki.root.cert, pki.sub.cert]
    assert ca.import_ca_certificates(pki.root.cert.der) == [pki.root.cert]
    with pytest.raises(CertificateError):
        ca.import_ca_certificates((pki.root.cert.to_pem() + pki.department.cert.to_pem()).encode())
    with pytest.raises(MalformedData):
        ca.import_ca_certificates(pki.root.cert.der[:-1])
    with pytest.raises(MalformedData):
        ca.import_ca_certificates(b"not a certificate")
