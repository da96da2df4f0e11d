"""ECDSA P-256 and RSA X.509 certificates for PAdES interoperability (PDF readers cannot verify SM2).

A region keeps, beside its SM2 seal PKI, a small *interop* hierarchy whose certificates PDF readers
(Adobe, poppler/NSS, pyHanko) understand::

    region PAdES interop root (ECDSA P-256, self-signed; cA, pathLen 0, keyCertSign + cRLSign)
    ├── department PAdES signer   ECDSA P-256 or RSA; digitalSignature + nonRepudiation
    └── PAdES TSA                 ECDSA P-256; digitalSignature, critical EKU timeStamping only

Certificates are built with asn1crypto and signed through a ``sign(message) -> signature`` callable
(a key store: ECDSA-SHA256 DER for P-256 keys, RSASSA-PKCS1-v1_5 with SHA-256 for RSA keys), so no
private key bytes are ever held here. Every signature is checked against the issuer's public key
before the certificate is returned. Key identifiers are the leftmost 160 bits of SHA-256 over the
subjectPublicKey bits (RFC 7093 method 1), which keeps SHA-1 out entirely.

:func:`load_interop_certificate` reads certificates of any key type (SM2, ECDSA, RSA) into a small
view, for trust files that mix the region's SM2 roots with interop roots.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from asn1crypto import core, keys
from asn1crypto import x509 as asn1_x509
from cryptography.exceptions import InvalidSignature as _PycaInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm as _PycaUnsupported
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from core.errors import CertificateError, CryptoError, InvalidInput, MalformedData

from . import oids
from .der import DEFAULT_MAX_SIZE, asn1_guard, is_pem, load_der, pem_blocks
from .x509 import asn1_time, name_to_string, now_utc

oids.register()

ROOT_VALIDITY: Final = timedelta(days=20 * 365)
END_ENTITY_VALIDITY: Final = timedelta(days=2 * 365)
BACKDATE: Final = timedelta(minutes=5)
CERT_MAX_SIZE: Final = 256 * 1024

ECDSA_WITH_SHA256: Final = "sha256_ecdsa"
RSA_WITH_SHA256: Final = "sha256_rsa"
EKU_TIME_STAMPING: Final = "time_stamping"

SignFunction = Callable[[bytes], bytes]
"""``sign(message) -> signature`` with SHA-256: ECDSA DER for P-256 keys, PKCS#1 v1.5 for RSA keys."""


class InteropKeyType(StrEnum):
    """Key types of the interop hierarchy (the values match ``hsm_adapters.KeyAlgorithm``)."""

    EC_P256 = "EC_P256"
    RSA = "RSA_3072"


# --- keys -------------------------------------------------------------------------------------------
def _load_spki(spki_der: bytes) -> keys.PublicKeyInfo:
    return load_der(keys.PublicKeyInfo, spki_der, what_zh="公钥信息", what_en="public key info")


def interop_key_type(spki_der: bytes) -> InteropKeyType:
    """The interop key type of a SubjectPublicKeyInfo; InvalidInput for SM2 or anything else."""
    spki = _load_spki(spki_der)
    with asn1_guard("公钥信息", "public key info"):
        algorithm = spki["algorithm"]["algorithm"].native
        if algorithm == "rsa":
            if spki.bit_size < 2048:
                raise InvalidInput("RSA 密钥至少须 2048 位", "RSA keys must have at least 2048 bits")
            return InteropKeyType.RSA
        if algorithm == "ec":
            params = spki["algorithm"]["parameters"]
            curve = params.chosen.native if params.name == "named" else None
            if curve == "secp256r1":
                return InteropKeyType.EC_P256
            raise InvalidInput(
                f"互通证书仅支持 P-256 椭圆曲线（实际 {curve}）",
                f"Interop certificates support only the P-256 curve (got {curve})",
            )
    raise InvalidInput(
        f"互通证书不支持密钥算法 {algorithm}",
        f"Key algorithm {algorithm} unsupported for interop certificates",
    )


def interop_key_identifier(spki_der: bytes) -> bytes:
    """Leftmost 160 bits of SHA-256 over the subjectPublicKey bits (RFC 7093 method 1)."""
    spki = _load_spki(spki_der)
    with asn1_guard("公钥信息", "public key info"):
        bits = bytes(spki["public_key"].contents[1:])  # skip the unused-bits octet
    return hashlib.sha256(bits).digest()[:20]


def verify_with_spki(spki_der: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is the SHA-256 ECDSA / PKCS#1 v1.5 signature of ``message`` by the key."""
    try:
        key = serialization.load_der_public_key(spki_der)
    except (ValueError, TypeError, _PycaUnsupported):
        return False
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (_PycaInvalidSignature, ValueError):
        return False
    return True


def _signature_algorithm(issuer_key: InteropKeyType) -> dict[str, Any]:
    if issuer_key is InteropKeyType.EC_P256:
        return {"algorithm": ECDSA_WITH_SHA256}
    # PKCS#1 v1.5 with explicit NULL parameters, as RFC 4055 2.1 requires for these OIDs.
    return {"algorithm": RSA_WITH_SHA256, "parameters": core.Null()}


# --- building ---------------------------------------------------------------------------------------
def new_serial() -> int:
    """A random positive 127-bit serial (top bit clear, so DER needs no sign byte)."""
    while True:
        value = int.from_bytes(secrets.token_bytes(16), "big") >> 1
        if value.bit_length() > 64:
            return value


def _ext(name: str, value: Any, critical: bool) -> asn1_x509.Extension:
    return asn1_x509.Extension({"extn_id": name, "critical": critical, "extn_value": value})


def build_interop_certificate(
    *,
    sign: SignFunction,
    issuer_certificate: bytes | None,
    issuer_spki: bytes,
    subject: asn1_x509.Name,
    subject_spki: bytes,
    not_before: datetime,
    not_after: datetime,
    key_usage: Iterable[str],
    is_ca: bool = False,
    path_length: int | None = None,
    extended_key_usage: Sequence[str] = (),
    extended_key_usage_critical: bool = False,
    serial: int | None = None,
) -> bytes:
    """Build and sign one certificate; its DER.

    ``issuer_certificate=None`` makes a self-signed certificate (then ``issuer_spki`` must equal
    ``subject_spki``). ``sign`` must hold the key of ``issuer_spki``; the signature is verified
    against it before anything is returned (CryptoError otherwise).
    """
    issuer_type = interop_key_type(issuer_spki)
    interop_key_type(subject_spki)
    usages = set(key_usage)
    if not usages:
        raise InvalidInput("必须指定密钥用途", "Key usage must not be empty")
    if is_ca and "key_cert_sign" not in usages:
        raise InvalidInput("CA 证书必须包含 keyCertSign 用途", "A CA certificate needs keyCertSign")
    not_before = not_before.replace(microsecond=0)
    not_after = not_after.replace(microsecond=0)
    if not_after <= not_before:
        raise InvalidInput("证书失效时间必须晚于生效时间", "not_after must be later than not_before")
    if issuer_certificate is None:
        if issuer_spki != subject_spki:
            raise InvalidInput(
                "自签名证书的签名密钥必须是主体密钥",
                "A self-signed certificate must be signed by its own key",
            )
        issuer_name = subject
        aki = interop_key_identifier(subject_spki)
    else:
        issuer = load_der(
            asn1_x509.Certificate,
            issuer_certificate,
            max_size=CERT_MAX_SIZE,
            what_zh="签发者证书",
            what_en="issuer certificate",
        )
        with asn1_guard("签发者证书", "issuer certificate"):
            if issuer.public_key.dump() != _load_spki(issuer_spki).dump():
                raise InvalidInput(
                    "签名密钥与签发者证书不匹配", "Signer key does not match the issuer certificate"
                )
            if not issuer.ca:
                raise InvalidInput("签发者不是 CA 证书", "The issuer is not a CA certificate")
            issuer_name = issuer.subject
            aki = issuer.key_identifier or interop_key_identifier(issuer_spki)
            start = issuer["tbs_certificate"]["validity"]["not_before"].native
            end = issuer["tbs_certificate"]["validity"]["not_after"].native
        # No certificate outlives the one that vouches for it.
        not_before, not_after = max(not_before, start), min(not_after, end)
        if not_after <= not_before:
            raise InvalidInput("签发者证书已过期", "The issuer certificate has expired")

    bc: dict[str, Any] = {"ca": is_ca}
    if path_length is not None:
        bc["path_len_constraint"] = path_length
    extensions = [
        _ext("basic_constraints", asn1_x509.BasicConstraints(bc), True),
        _ext("key_usage", asn1_x509.KeyUsage(usages), True),
    ]
    if extended_key_usage:
        extensions.append(
            _ext(
                "extended_key_usage",
                asn1_x509.ExtKeyUsageSyntax(list(extended_key_usage)),
                extended_key_usage_critical,
            )
        )
    extensions.append(_ext("key_identifier", interop_key_identifier(subject_spki), False))
    extensions.append(
        _ext("authority_key_identifier", asn1_x509.AuthorityKeyIdentifier({"key_identifier": aki}), False)
    )
    algorithm = _signature_algorithm(issuer_type)
    tbs = asn1_x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": serial if serial is not None else new_serial(),
            "signature": algorithm,
            "issuer": issuer_name,
            "validity": {"not_before": asn1_time(not_before), "not_after": asn1_time(not_after)},
            "subject": subject,
            "subject_public_key_info": _load_spki(subject_spki),
            "extensions": extensions,
        }
    )
    tbs_der = tbs.dump()
    signature = bytes(sign(tbs_der))
    # A key store that returns a wrong signature (or the wrong key) is caught here, not by a reader.
    if not verify_with_spki(issuer_spki, tbs_der, signature):
        raise CryptoError(
            "签名器返回的证书签名无法用签发者公钥验证",
            "Signer returned a certificate signature that does not verify",
        )
    cert = asn1_x509.Certificate(
        {"tbs_certificate": tbs, "signature_algorithm": algorithm, "signature_value": signature}
    )
    return bytes(cert.dump(force=True))


def _window(not_before: datetime | None, validity: timedelta) -> tuple[datetime, datetime]:
    start = not_before if not_before is not None else now_utc() - BACKDATE
    return start, start + validity


def issue_interop_root(
    sign: SignFunction,
    spki: bytes,
    subject: asn1_x509.Name,
    *,
    not_before: datetime | None = None,
    validity: timedelta = ROOT_VALIDITY,
) -> bytes:
    """Self-signed interop root: cA (critical), pathLen 0, keyCertSign + cRLSign."""
    start, end = _window(not_before, validity)
    return build_interop_certificate(
        sign=sign,
        issuer_certificate=None,
        issuer_spki=spki,
        subject=subject,
        subject_spki=spki,
        not_before=start,
        not_after=end,
        key_usage={"key_cert_sign", "crl_sign"},
        is_ca=True,
        path_length=0,
    )


def issue_interop_signer(
    issuer_sign: SignFunction,
    issuer_certificate: bytes,
    subject_spki: bytes,
    subject: asn1_x509.Name,
    *,
    not_before: datetime | None = None,
    validity: timedelta = END_ENTITY_VALIDITY,
) -> bytes:
    """A document signer: digitalSignature + nonRepudiation (what PAdES validators look for)."""
    start, end = _window(not_before, validity)
    return build_interop_certificate(
        sign=issuer_sign,
        issuer_certificate=issuer_certificate,
        issuer_spki=_issuer_spki(issuer_certificate),
        subject=subject,
        subject_spki=subject_spki,
        not_before=start,
        not_after=end,
        key_usage={"digital_signature", "non_repudiation"},
    )


def issue_interop_tsa(
    issuer_sign: SignFunction,
    issuer_certificate: bytes,
    subject_spki: bytes,
    subject: asn1_x509.Name,
    *,
    not_before: datetime | None = None,
    validity: timedelta = END_ENTITY_VALIDITY,
) -> bytes:
    """A time-stamping authority: digitalSignature, critical EKU timeStamping only (RFC 3161 2.3)."""
    start, end = _window(not_before, validity)
    return build_interop_certificate(
        sign=issuer_sign,
        issuer_certificate=issuer_certificate,
        issuer_spki=_issuer_spki(issuer_certificate),
        subject=subject,
        subject_spki=subject_spki,
        not_before=start,
        not_after=end,
        key_usage={"digital_signature"},
        extended_key_usage=(EKU_TIME_STAMPING,),
        extended_key_usage_critical=True,
    )


def _issuer_spki(issuer_certificate: bytes) -> bytes:
    cert = load_der(
        asn1_x509.Certificate,
        issuer_certificate,
        max_size=CERT_MAX_SIZE,
        what_zh="签发者证书",
        what_en="issuer certificate",
    )
    with asn1_guard("签发者证书", "issuer certificate"):
        return bytes(cert.public_key.dump())


# --- reading ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InteropCertificate:
    """A certificate of any key type (SM2, ECDSA, RSA), parsed for display and bookkeeping only."""

    der: bytes = field(repr=False)
    asn1: asn1_x509.Certificate = field(repr=False)
    subject: str
    issuer: str
    serial: int
    not_before: datetime
    not_after: datetime
    key_algorithm: str  # "sm2", "ec", "rsa", ...
    is_ca: bool
    key_usage: frozenset[str] | None

    def describe(self) -> str:
        return f"{self.subject} (serial 0x{self.serial:X})"

    @property
    def fingerprint_sm3(self) -> bytes:
        from .sm3 import sm3

        return sm3(self.der)


def load_interop_certificate(der: bytes) -> InteropCertificate:
    """Parse one DER certificate of any key type; MalformedData / InputTooLarge when unreadable."""
    cert = load_der(asn1_x509.Certificate, der, max_size=CERT_MAX_SIZE, what_zh="证书", what_en="certificate")
    with asn1_guard("证书", "certificate"):
        tbs = cert["tbs_certificate"]
        algorithm = tbs["subject_public_key_info"]["algorithm"]
        kind = algorithm["algorithm"].native
        if kind == "ec":
            params = algorithm["parameters"]
            if params.name == "named" and params.chosen.dotted == oids.SM2_CURVE:
                kind = "sm2"
        key_usage = cert.key_usage_value
        view = InteropCertificate(
            der=bytes(der),
            asn1=cert,
            subject=name_to_string(tbs["subject"]),
            issuer=name_to_string(tbs["issuer"]),
            serial=int(tbs["serial_number"].native),
            not_before=tbs["validity"]["not_before"].native,
            not_after=tbs["validity"]["not_after"].native,
            key_algorithm=str(kind),
            is_ca=bool(cert.ca),
            key_usage=frozenset(key_usage.native) if key_usage is not None else None,
        )
    if view.serial < 0:
        raise MalformedData("证书序列号为负数", "Certificate serial number is negative")
    return view


def load_interop_certificates(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> list[InteropCertificate]:
    """All certificates of a PEM bundle, or the one certificate of a DER input, of any key type."""
    if isinstance(data, bytes | bytearray | memoryview) and is_pem(bytes(data)):
        blocks = pem_blocks(
            bytes(data), labels=("CERTIFICATE",), max_size=max_size, what_zh="证书", what_en="certificate"
        )
        return [load_interop_certificate(b) for b in blocks]
    return [load_interop_certificate(bytes(data))]


def require_ca(cert: InteropCertificate) -> InteropCertificate:
    """CertificateError unless ``cert`` is a CA certificate (trust anchors must be)."""
    if not cert.is_ca or (cert.key_usage is not None and "key_cert_sign" not in cert.key_usage):
        raise CertificateError(
            f"证书 {cert.describe()} 不是 CA 证书，不能作为信任锚",
            f"Certificate {cert.describe()} is not a CA certificate and cannot be a trust anchor",
        )
    return cert
