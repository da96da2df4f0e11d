"""Fixtures for the CMS and time-stamp tests: a soft key store, SM2 / P-256 / RSA PKIs, OpenSSL.

Keys that sign CMS live in a real soft key store (``hsm_adapters.soft``); only the CA keys, which
no code under test touches, are in memory. The P-256 and RSA certificates are made with pyca
``cryptography`` (eseal's own builders only make SM2 certificates).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509 as pyca_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import create_engine

from core.db import make_session_factory
from gmpki import ca, sm2
from gmpki.signing import InMemorySigner
from gmpki.x509 import Certificate, build_name, now_utc
from hsm_adapters.keystore import KeyAlgorithm, KeyStore
from hsm_adapters.soft import ScryptParams, SoftKeyStore
from tests.api.conftest import LiveServer, live_server
from tests.gmpki.conftest import openssl, run_openssl

__all__ = ["LiveServer", "live_server", "openssl", "run_openssl"]


@pytest.fixture(scope="session")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyStore]:
    path = tmp_path_factory.mktemp("keystore") / "keys.db"
    engine = create_engine(f"sqlite:///{path}")
    store = SoftKeyStore(
        make_session_factory(engine), "cms tests", create_tables=True, scrypt_params=ScryptParams(n=2**10)
    )
    yield store
    store.close()
    engine.dispose()


@dataclass(frozen=True)
class Sm2Pki:
    root_key: sm2.SM2PrivateKey
    root: Certificate
    signer_key_id: str  # in the key store
    signer: Certificate  # department (签章者) certificate of signer_key_id
    tsa_key_id: str
    tsa: Certificate
    other_key: sm2.SM2PrivateKey  # in memory, for "wrong certificate" cases
    other: Certificate  # department certificate of other_key


@pytest.fixture(scope="session")
def sm2_pki(keystore: KeyStore) -> Sm2Pki:
    now = now_utc()
    root_key = sm2.SM2PrivateKey.generate()
    root_signer = InMemorySigner(root_key)
    root = ca.issue_root_ca(
        root_signer,
        build_name("CMS 测试根CA", organization="eseal tests"),
        not_before=now - timedelta(days=1),
    )
    signer_info = keystore.generate(KeyAlgorithm.SM2, "cms-sm2-signer")
    signer = ca.issue_department_certificate(
        root_signer,
        root,
        signer_info.sm2_public_key,
        build_name(
            "某市市场监督管理局", organization="某市人民政府", social_credit_code="11110000000000000X"
        ),
    )
    tsa_info = keystore.generate(KeyAlgorithm.SM2, "cms-sm2-tsa")
    tsa = ca.issue_tsa_certificate(root_signer, root, tsa_info.sm2_public_key, build_name("测试时间戳服务"))
    other_key = sm2.SM2PrivateKey.generate()
    other = ca.issue_department_certificate(root_signer, root, other_key.public_key, build_name("另一部门"))
    return Sm2Pki(root_key, root, signer_info.id, signer, tsa_info.id, tsa, other_key, other)


@dataclass(frozen=True)
class PycaPki:
    """A self-signed CA and a leaf for a key-store key (P-256 or RSA), DER and PEM on disk."""

    key_id: str
    ca_der: bytes
    leaf_der: bytes
    ca_pem: Path
    leaf_pem: Path


def _name(cn: str) -> pyca_x509.Name:
    return pyca_x509.Name([pyca_x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pyca_pki(keystore: KeyStore, algorithm: KeyAlgorithm, directory: Path) -> PycaPki:
    ca_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if algorithm is KeyAlgorithm.EC_P256:
        ca_key = ec.generate_private_key(ec.SECP256R1())
    else:
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = now_utc()
    ca_cert = (
        pyca_x509.CertificateBuilder()
        .subject_name(_name(f"{algorithm.value} test CA"))
        .issuer_name(_name(f"{algorithm.value} test CA"))
        .public_key(ca_key.public_key())
        .serial_number(pyca_x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(pyca_x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            pyca_x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    info = keystore.generate(algorithm, f"cms-{algorithm.value.lower()}-signer")
    leaf_public = serialization.load_der_public_key(info.public_key_der)
    assert isinstance(leaf_public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    leaf = (
        pyca_x509.CertificateBuilder()
        .subject_name(_name(f"{algorithm.value} signer"))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_public)
        .serial_number(pyca_x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=10))
        .add_extension(pyca_x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = directory / f"{algorithm.value}-ca.pem"
    leaf_pem = directory / f"{algorithm.value}-leaf.pem"
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    leaf_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    return PycaPki(
        key_id=info.id,
        ca_der=ca_cert.public_bytes(serialization.Encoding.DER),
        leaf_der=leaf.public_bytes(serialization.Encoding.DER),
        ca_pem=ca_pem,
        leaf_pem=leaf_pem,
    )


@pytest.fixture(scope="session")
def ec_pki(keystore: KeyStore, tmp_path_factory: pytest.TempPathFactory) -> PycaPki:
    return _pyca_pki(keystore, KeyAlgorithm.EC_P256, tmp_path_factory.mktemp("ec-pki"))


@pytest.fixture(scope="session")
def rsa_pki(keystore: KeyStore, tmp_path_factory: pytest.TempPathFactory) -> PycaPki:
    return _pyca_pki(keystore, KeyAlgorithm.RSA_3072, tmp_path_factory.mktemp("rsa-pki"))
