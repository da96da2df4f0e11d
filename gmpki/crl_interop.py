"""RFC 5280 CRLs of the ECDSA PAdES interop CA (:mod:`gmpki.x509_interop`), built with pyca.

pyca's :class:`~cryptography.x509.CertificateRevocationListBuilder` signs with a private key object;
:class:`CallbackEcKey` is one whose ``sign`` calls a ``sign(message) -> signature`` callable (a key
store, the same callable the interop certificates are signed with), so the key never leaves the key
store. The CRL's signature is verified against the issuer certificate before it is returned.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NoReturn

from asn1crypto import crl as asn1_crl
from asn1crypto import pem
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.errors import CryptoError, InvalidInput, MalformedData

from .crl import CRL_MAX_SIZE, REASONS, CertificateRevocationList, RevokedCertificate, load_crl
from .der import asn1_guard, is_pem, load_der, pem_blocks
from .x509 import SM2_SIGNATURE_OIDS
from .x509_interop import CERT_MAX_SIZE, InteropKeyType, SignFunction, interop_key_type


class CallbackEcKey(ec.EllipticCurvePrivateKey):
    """An ECDSA P-256 private key for pyca builders whose signing is done by ``sign`` (SHA-256 only:
    what the key store's P-256 keys do). Nothing else a private key offers is available."""

    def __init__(self, sign: SignFunction, public_key: ec.EllipticCurvePublicKey) -> None:
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise InvalidInput("仅支持 P-256 密钥", "Only P-256 keys are supported")
        self._sign = sign
        self._public = public_key

    def sign(
        self, data: bytes | bytearray | memoryview, signature_algorithm: ec.EllipticCurveSignatureAlgorithm
    ) -> bytes:
        algorithm = getattr(signature_algorithm, "algorithm", None)
        if not isinstance(signature_algorithm, ec.ECDSA) or not isinstance(algorithm, hashes.SHA256):
            raise InvalidInput(
                "密钥库 P-256 密钥仅支持 ECDSA-SHA256", "Key store P-256 keys sign ECDSA-SHA256 only"
            )
        return bytes(self._sign(bytes(data)))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def _refuse(self) -> NoReturn:
        raise InvalidInput("私钥不离开密钥库", "The private key does not leave the key store")

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        self._refuse()

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        self._refuse()

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,  # pyca's parameter name
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        self._refuse()

    def __copy__(self) -> CallbackEcKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> CallbackEcKey:
        return self


def build_interop_crl(
    *,
    sign: SignFunction,
    issuer_certificate: bytes,
    this_update: datetime,
    next_update: datetime,
    revoked: Iterable[RevokedCertificate],
    crl_number: int,
) -> bytes:
    """A v2 CRL (DER) by the ECDSA P-256 CA ``issuer_certificate`` whose key ``sign`` holds:
    AuthorityKeyIdentifier, cRLNumber, and per entry its date and reason (none for "unspecified",
    as RFC 5280 5.3.1 asks). CryptoError when the signature does not verify with the issuer's key."""
    if len(issuer_certificate) > CERT_MAX_SIZE:
        raise InvalidInput("签发者证书过大", "Issuer certificate too large")
    try:
        issuer = x509.load_der_x509_certificate(issuer_certificate)
        spki = issuer.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidInput("签发者证书无法解析", "The issuer certificate cannot be parsed") from exc
    if interop_key_type(spki) is not InteropKeyType.EC_P256:
        raise InvalidInput("互通 CRL 仅由 P-256 CA 签发", "Interop CRLs are issued by P-256 CAs only")
    public = issuer.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)  # interop_key_type said EC P-256
    this_update, next_update = this_update.replace(microsecond=0), next_update.replace(microsecond=0)
    if next_update <= this_update:
        raise InvalidInput("CRL 下次更新时间必须晚于本次", "nextUpdate must be later than thisUpdate")
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(public)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(aki, critical=False)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
    )
    for entry in sorted(revoked, key=lambda e: (e.revoked_at, e.serial)):
        if entry.reason is not None and entry.reason not in REASONS:
            raise InvalidInput(
                f"未知的撤销原因 {entry.reason!r}", f"Unknown revocation reason {entry.reason!r}"
            )
        item = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at.replace(microsecond=0))
        )
        if entry.reason is not None and entry.reason != "unspecified":
            item = item.add_extension(x509.CRLReason(x509.ReasonFlags[entry.reason]), critical=False)
        builder = builder.add_revoked_certificate(item.build())
    crl = builder.sign(CallbackEcKey(sign, public), hashes.SHA256())
    # A key store that returns a wrong signature (or the wrong key) is caught here, not by a reader.
    if not crl.is_signature_valid(public):
        raise CryptoError(
            "签名器返回的 CRL 签名无法用签发者公钥验证",
            "Signer returned a CRL signature that does not verify",
        )
    return crl.public_bytes(serialization.Encoding.DER)


def interop_crl_pem(der: bytes) -> str:
    """PEM (``X509 CRL``) of a DER CRL."""

    armored: bytes = pem.armor("X509 CRL", der)
    return armored.decode("ascii")


def load_any_crl(data: bytes) -> CertificateRevocationList | bytes:
    """One CRL from DER or PEM: an SM2-signed one as gmpki reads it (:func:`gmpki.crl.load_crl`),
    any other (ECDSA, RSA: for pyhanko-certvalidator) as its DER, once it parses as a CRL."""
    raw = bytes(data)
    der = raw
    if is_pem(raw):
        blocks = pem_blocks(raw, labels=("X509 CRL",), max_size=CRL_MAX_SIZE, what_zh="CRL", what_en="CRL")
        if len(blocks) != 1:
            raise MalformedData(
                f"应为一个 CRL，实际为 {len(blocks)} 个", f"Expected one CRL, found {len(blocks)}"
            )
        der = blocks[0]
    crl = load_der(
        asn1_crl.CertificateList, der, max_size=CRL_MAX_SIZE, what_zh="证书撤销列表", what_en="CRL"
    )
    with asn1_guard("证书撤销列表", "CRL"):
        algorithm = crl["signature_algorithm"]["algorithm"].dotted
        crl["tbs_cert_list"]["issuer"].dump()
    if algorithm in SM2_SIGNATURE_OIDS:
        return load_crl(der)
    return bytes(der)
