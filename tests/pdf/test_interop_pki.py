"""The PAdES interop hierarchy: certificates built through a key store, checked independently."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from core.errors import CryptoError, InvalidInput
from gmpki.x509 import build_name
from gmpki.x509_interop import (
    interop_key_type,
    issue_interop_root,
    issue_interop_signer,
    load_interop_certificate,
)
from hsm_adapters.keystore import KeyAlgorithm
from seal_registry.pki import CertRole, current_certificate, pades_certificate_for, pades_trust_anchors
from tests.registry.conftest import Registry

from .conftest import Anchors


def test_region_interop_chain_verifies_with_pyca(region: Registry, anchors: Anchors) -> None:
    root = x509.load_der_x509_certificate(anchors.pades_root)
    tsa = x509.load_der_x509_certificate(anchors.pades_tsa)
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    tsa.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)
    eku = tsa.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [x509.ExtendedKeyUsageOID.TIME_STAMPING]
    basic = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    with region.sessions() as s:
        assert pades_trust_anchors(s) == [anchors.pades_root]
        for algorithm, key_type in (
            (KeyAlgorithm.EC_P256, ec.EllipticCurvePublicKey),
            (KeyAlgorithm.RSA_3072, rsa.RSAPublicKey),
        ):
            row = pades_certificate_for(s, region.department.id, algorithm)
            leaf = x509.load_der_x509_certificate(row.der)
            leaf.verify_directly_issued_by(root)
            assert isinstance(leaf.public_key(), key_type)
            usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
            assert usage.digital_signature and usage.content_commitment and not usage.key_cert_sign
            assert row.role == CertRole.PADES_DEPARTMENT.value and row.department_id == region.department.id
        # The SM2 view of the region is untouched: its root is still an SM2 certificate.
        assert load_interop_certificate(current_certificate(s, CertRole.ROOT).der).key_algorithm == "sm2"


def test_builder_refuses_wrong_keys(region: Registry) -> None:
    ks = region.keystore
    a = ks.generate(KeyAlgorithm.EC_P256, "interop-test-a")
    b = ks.generate(KeyAlgorithm.EC_P256, "interop-test-b")
    sm2_key = ks.generate(KeyAlgorithm.SM2, "interop-test-sm2")
    name = build_name("Interop test")
    with pytest.raises(CryptoError):  # signed by b, claiming to be a's self-signed certificate
        issue_interop_root(lambda m: ks.sign(b.id, m), a.public_key_der, name)
    with pytest.raises(InvalidInput):
        interop_key_type(sm2_key.public_key_der)
    root = issue_interop_root(lambda m: ks.sign(a.id, m), a.public_key_der, name)
    leaf = issue_interop_signer(lambda m: ks.sign(a.id, m), root, b.public_key_der, build_name("leaf"))
    with pytest.raises(InvalidInput):  # a leaf is no CA
        issue_interop_signer(lambda m: ks.sign(b.id, m), leaf, a.public_key_der, build_name("x"))
    with pytest.raises(CryptoError):  # the signing key must be the issuer's
        issue_interop_signer(lambda m: ks.sign(b.id, m), root, b.public_key_der, build_name("y"))
    view = load_interop_certificate(leaf)
    assert view.not_after <= load_interop_certificate(root).not_after
    assert view.key_usage == frozenset({"digital_signature", "non_repudiation"})
