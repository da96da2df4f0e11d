"""Detached CMS signatures made with keys held in a key store, optionally time-stamped.

SM2 keys give GB/T 35275 SignedData by default (``flavour=CmsFlavour.RFC5652`` for the PKCS#7
content types that OpenSSL-based tools read); P-256 and RSA keys give RFC 5652 SignedData.
With a time-stamp source, the signer info gets an RFC 3161 signatureTimeStampToken
(1.2.840.113549.1.9.16.2.14) over its signature value (RFC 3161 appendix A), hashed with SM3 for
SM2 and SHA-256 otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from core.audit import append as audit_append
from core.errors import InvalidInput
from gmpki.cms import (
    CmsAlgorithm,
    CmsFlavour,
    CmsVerification,
    Content,
    sign_detached,
    verify_detached,
)
from gmpki.sm3 import sm3_hex
from gmpki.tsp import TimestampVerification, hash_data, verify_signature_timestamp
from gmpki.x509 import Certificate
from hsm_adapters.keystore import KeyId, KeyStore
from seal_registry.pki import CertRole, current_certificate
from seal_registry.seals import authorize_use


class TimestampSource(Protocol):
    """Anything that returns an RFC 3161 token over a digest (the built-in TSA, a TSA client)."""

    def timestamp(self, digest: bytes, hash_algorithm: str = ...) -> bytes: ...


def _der(cert: bytes | Certificate) -> bytes:
    return cert.der if isinstance(cert, Certificate) else bytes(cert)


def sign_detached_cms(
    keystore: KeyStore,
    key_id: KeyId,
    cert_chain: Sequence[bytes | Certificate],
    content: Content,
    *,
    algorithm: CmsAlgorithm | None = None,
    flavour: CmsFlavour | None = None,
    tsa: TimestampSource | None = None,
    signing_time: datetime | None = None,
) -> bytes:
    """Detached CMS (DER) over ``content`` (bytes or a binary stream) by ``key_id``.

    ``cert_chain[0]`` is the certificate of ``key_id`` (DER, or a gmpki SM2 Certificate); the rest
    of the chain is embedded too.
    ``algorithm`` defaults to the key's; a mismatch with the key is an InvalidInput.
    """
    key_algorithm = CmsAlgorithm(keystore.public_key(key_id).algorithm.value)
    if algorithm is not None and CmsAlgorithm(algorithm) is not key_algorithm:
        raise InvalidInput(
            f"密钥 {key_id} 的算法为 {key_algorithm.value}，不能用于 {algorithm}",
            f"Key {key_id} is {key_algorithm.value}, not usable for {algorithm}",
        )
    hash_name = "sm3" if key_algorithm is CmsAlgorithm.SM2 else "sha256"

    def sign(message: bytes) -> bytes:
        return keystore.sign(key_id, message)

    def stamp(signature: bytes) -> bytes:
        assert tsa is not None
        return tsa.timestamp(hash_data(signature, hash_name), hash_name)

    return sign_detached(
        content,
        sign=sign,
        algorithm=key_algorithm,
        certificates=[_der(c) for c in cert_chain],
        flavour=flavour,
        signing_time=signing_time,
        signature_timestamp=stamp if tsa is not None else None,
    )


def verify_detached_cms(
    cms_der: bytes,
    content: Content,
    *,
    tsa_trust_anchors: Sequence[Certificate] | None = None,
) -> tuple[CmsVerification, tuple[TimestampVerification, ...]]:
    """Verify a detached CMS and every signatureTimeStampToken it carries.

    The CMS findings come back as data (``digest_ok``, ``signature_ok``); a time-stamp token that
    does not verify raises (InvalidSignature, CertificateError, MalformedData).
    """
    verification = verify_detached(cms_der, content)
    stamps = tuple(
        verify_signature_timestamp(verification, token, trust_anchors=tsa_trust_anchors)
        for token in verification.timestamp_tokens
    )
    return verification, stamps


def seal_cms(
    session: Session,
    keystore: KeyStore,
    content: bytes,
    *,
    es_id: str,
    department_id: str,
    actor: str,
    flavour: CmsFlavour | None = None,
    tsa: TimestampSource | None = None,
    document_name: str | None = None,
) -> bytes:
    """A detached GB/T 35275 CMS over ``content`` by the department key that ``es_id`` lists.

    Like every signing path it asks :func:`seal_registry.seals.authorize_use` first and audits inside
    the caller's transaction, so a suspended or cancelled seal (or a revoked certificate) signs nothing.
    The chain embedded is the signer certificate and the region root.
    """
    grant = authorize_use(session, es_id=es_id, department_id=department_id)
    root = current_certificate(session, CertRole.ROOT)
    cms = sign_detached_cms(
        keystore,
        grant.signer_key_id,
        [grant.signer_certificate_der, root.der],
        content,
        flavour=flavour,
        tsa=tsa,
    )
    audit_append(
        session,
        actor=actor,
        action="signature.made",
        subject_type="seal",
        subject_id=grant.seal_id,
        details={
            "kind": "cms",
            "es_id": es_id,
            "department_id": department_id,
            "document_sm3": sm3_hex(content),
            "document_name": (document_name or "")[:200],
            "time_stamped": tsa is not None,
        },
    )
    return cms
