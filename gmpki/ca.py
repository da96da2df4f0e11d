"""Certificate profiles of a region's seal PKI, as pure functions.

The hierarchy::

    region root CA (self-signed; cA, keyCertSign + cRLSign)
    └── optional subordinate CA (cA, pathLen 0)
        ├── seal maker  制章者   digitalSignature + nonRepudiation, not a CA: signs seals (SES_SealInfo)
        ├── department  签章者   digitalSignature + nonRepudiation, not a CA: signs documents with a seal
        ├── TSA                  digitalSignature + nonRepudiation, critical EKU timeStamping (RFC 3161)
        └── service             digitalSignature + nonRepudiation: audit-chain heads, trust lists

The seal maker signs *seals*, not certificates, so it is an end entity beside the departments, not
a CA above them. Every issuing function takes the issuer's :class:`MessageSigner` and certificate
(keys stay in their key store) and the subject's public key. Validity windows are clipped to the
issuer's own, so that no certificate outlives the certificate that vouches for it.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Final

from asn1crypto import x509 as asn1_x509

from core.errors import CertificateError

from . import oids, sm2
from .der import DEFAULT_MAX_SIZE
from .signing import MessageSigner
from .x509 import Certificate, build_certificate, load_certificates, now_utc

ROOT_VALIDITY: Final = timedelta(days=20 * 365)
SUBORDINATE_VALIDITY: Final = timedelta(days=10 * 365)
END_ENTITY_VALIDITY: Final = timedelta(days=2 * 365)
BACKDATE: Final = timedelta(minutes=5)  # tolerate relying parties whose clocks run a little slow

_SIGNING_USAGE: Final = frozenset({"digital_signature", "non_repudiation"})
_CA_USAGE: Final = frozenset({"key_cert_sign", "crl_sign"})


def new_serial() -> int:
    """A random positive serial of 16 bytes (128 bits, top bit clear so DER needs no sign byte)."""
    while True:
        value = int.from_bytes(secrets.token_bytes(16), "big") >> 1
        if value.bit_length() > 64:
            return value


def _window(
    issuer: Certificate | None, not_before: datetime | None, validity: timedelta
) -> tuple[datetime, datetime]:
    start = not_before if not_before is not None else now_utc() - BACKDATE
    end = start + validity
    if issuer is not None:
        # An end entity outliving its issuer could not be validated after the issuer expires.
        start = max(start, issuer.not_before)
        end = min(end, issuer.not_after)
    return start, end


def issue_root_ca(
    signer: MessageSigner,
    subject: asn1_x509.Name,
    *,
    not_before: datetime | None = None,
    validity: timedelta = ROOT_VALIDITY,
    path_length: int | None = None,
) -> Certificate:
    """Self-signed region root: cA (critical), keyCertSign + cRLSign."""
    start, end = _window(None, not_before, validity)
    return build_certificate(
        signer=signer,
        issuer=None,
        subject=subject,
        subject_public_key=signer.public_key,
        serial=new_serial(),
        not_before=start,
        not_after=end,
        key_usage=_CA_USAGE,
        is_ca=True,
        path_length=path_length,
    )


def issue_subordinate_ca(
    issuer_signer: MessageSigner,
    issuer: Certificate,
    subject_public_key: sm2.SM2PublicKey,
    subject: asn1_x509.Name,
    *,
    not_before: datetime | None = None,
    validity: timedelta = SUBORDINATE_VALIDITY,
    path_length: int | None = 0,
) -> Certificate:
    """An issuing CA under the root (pathLen 0 by default: it issues end entities only)."""
    start, end = _window(issuer, not_before, validity)
    return build_certificate(
        signer=issuer_signer,
        issuer=issuer,
        subject=subject,
        subject_public_key=subject_public_key,
        serial=new_serial(),
        not_before=start,
        not_after=end,
        key_usage=_CA_USAGE,
        is_ca=True,
        path_length=path_length,
    )


def _end_entity(
    issuer_signer: MessageSigner,
    issuer: Certificate,
    subject_public_key: sm2.SM2PublicKey,
    subject: asn1_x509.Name,
    not_before: datetime | None,
    validity: timedelta,
    extended_key_usage: tuple[str, ...] = (),
    eku_critical: bool = False,
) -> Certificate:
    start, end = _window(issuer, not_before, validity)
    return build_certificate(
        signer=issuer_signer,
        issuer=issuer,
        subject=subject,
        subject_public_key=subject_public_key,
        serial=new_serial(),
        not_before=start,
        not_after=end,
        key_usage=_SIGNING_USAGE,
        extended_key_usage=extended_key_usage,
        extended_key_usage_critical=eku_critical,
    )


def issue_seal_maker_certificate(
    issuer_signer: MessageSigner,
    issuer: Certificate,
    subject_public_key: sm2.SM2PublicKey,
    subject: asn1_x509.Name,
    *,
    not_before: datetime | None = None,
    validity: timedelta = END_ENTITY_VALIDITY,
) -> Certificate:
    """制章者 certificate: signs seals (digitalSignature + nonRepudiation), not a CA."""
    return _end_entity(issuer_signer, issuer, subject_public_key, subject, not_before, validity)


def issue_department_certificate(
    issuer_signer: MessageSigner,
    issuer: Certificate,
    subject_public_key: sm2.SM2PublicKey,
    subject: asn1_x509.Name,
    *,
    not_before: datetime | None = None,
    validity: timedelta = END_ENTITY_VALIDITY,
) -> Certificate:
    """签章者 certificate of a department: signs documents with its seal."""
    return _end_entity(issuer_signer, issuer, subject_public_key, subject, not_before, validity)


def issue_tsa_certificate(
    issuer_signer: MessageSigner,
    issuer: Certificate,
    subject_public_key: sm2.SM2PublicKey,
    subject: asn1_x509.Name,
    *,
    not_before: datetime | None = None,
    validity: timedelta = END_ENTITY_VALIDITY,
) -> Certificate:
    """Time-stamping authority: RFC 3161 2.3 requires the sole, critical EKU id-kp-timeStamping."""
    return _end_entity(
        issuer_signer,
        issuer,
        subject_public_key,
        subject,
        not_before,
        validity,
        extended_key_usage=(oids.EKU_TIME_STAMPING,),
        eku_critical=True,
    )


def issue_service_certificate(
    issuer_signer: MessageSigner,
    issuer: Certificate,
    subject_public_key: sm2.SM2PublicKey,
    subject: asn1_x509.Name,
    *,
    not_before: datetime | None = None,
    validity: timedelta = END_ENTITY_VALIDITY,
) -> Certificate:
    """The service's own signing key: audit chain heads, trust lists, status feeds.

    EKU id-kp-OCSPSigning marks it as the region's status signer, so a verifier of a status snapshot
    can tell it from a department certificate under the same root.
    """
    return _end_entity(
        issuer_signer,
        issuer,
        subject_public_key,
        subject,
        not_before,
        validity,
        extended_key_usage=(oids.EKU_OCSP_SIGNING,),
    )


def import_ca_certificates(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> list[Certificate]:
    """External CA certificates (PEM bundle or one DER) to configure as trust anchors or intermediates.

    Every certificate must be an SM2 CA certificate (cA set, keyCertSign if keyUsage is present);
    anything else is rejected so that an end-entity certificate is never configured as a root.
    """
    certs = load_certificates(data, max_size=max_size)
    seen: set[bytes] = set()
    out: list[Certificate] = []
    for cert in certs:
        if not cert.is_ca or (cert.key_usage is not None and "key_cert_sign" not in cert.key_usage):
            raise CertificateError(
                f"{cert.describe()} 不是 CA 证书，不能作为信任锚导入",
                f"{cert.describe()} is not a CA certificate and cannot be imported as a trust anchor",
            )
        if cert.der not in seen:
            seen.add(cert.der)
            out.append(cert)
    return out
