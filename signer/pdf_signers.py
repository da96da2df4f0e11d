"""pyHanko signers backed by a key store, and a pyHanko time-stamper over eseal's time-stamp sources.

* :class:`KeyStorePdfSigner` — ECDSA P-256 (ecdsa-with-SHA256) or RSA (PKCS#1 v1.5 with SHA-256)
  keys: pyHanko builds the CMS (PAdES signed attributes, ESS signing-certificate-v2, algorithm
  protection) and asks :meth:`async_sign_raw` for the raw signature, which the key store makes.
* :class:`Sm2PdfSigner` — SM2 keys. pyHanko has no SM2 signature mechanism, so this signer replaces
  pyHanko's whole CMS step (:meth:`async_sign`): the SignedData is built by :mod:`gmpki.cms` over the
  SM3 ``/ByteRange`` digest pyHanko computed (GB/T 35275 content types by default) and pyHanko only
  embeds it into ``/Contents``. Readers do not verify SM2; eseal's verifier does.
* :class:`SourceTimeStamper` — a pyHanko :class:`TimeStamper` answering from any eseal
  time-stamp source (the built-in :class:`signer.tsa.TimeStampAuthority`, a TSA client), without HTTP.

Key stores sign synchronously; pyHanko calls these coroutines from its own event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, Protocol

from asn1crypto import algos, cms
from asn1crypto import x509 as asn1_x509
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes, Signer
from pyhanko.sign.timestamps import TimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

from core.errors import EsealError, InvalidInput, KeyStoreError, MalformedData
from gmpki import oids
from gmpki.cms import CmsAlgorithm, CmsFlavour, build_signed_data
from gmpki.der import load_der
from gmpki.tsp import _ess_signing_certificate_v2, hash_data
from hsm_adapters.keystore import KeyAlgorithm, KeyId, KeyStore

# Upper bound of a DER ECDSA P-256 signature: SEQUENCE of two INTEGERs of at most 33 bytes each.
_ECDSA_P256_MAX_DER: Final = 72


class TimestampSource(Protocol):
    """Anything that returns an RFC 3161 token over a digest (the built-in TSA, a TSA client)."""

    def timestamp(self, digest: bytes, hash_algorithm: str = ...) -> bytes: ...


class PdfSigningError(EsealError):
    """pyHanko refused to sign or produced something unusable (a bug or a hostile document)."""

    code = "pdf_signing_failed"
    status = 422
    title_zh, title_en = "PDF 签章失败", "PDF signing failed"


def _certificate(der: bytes) -> asn1_x509.Certificate:
    return load_der(asn1_x509.Certificate, der, max_size=256 * 1024, what_zh="证书", what_en="certificate")


class KeyStorePdfSigner(Signer):
    """A pyHanko signer whose ECDSA P-256 or RSA key lives in ``keystore`` under ``key_id``.

    ``certificate`` is the key's certificate (DER); ``chain`` its issuers, embedded for validators
    that need them. The key store hashes with SHA-256, so SHA-256 is the only digest offered.
    """

    def __init__(
        self, keystore: KeyStore, key_id: KeyId, certificate: bytes, chain: Sequence[bytes] = ()
    ) -> None:
        info = keystore.public_key(key_id)
        if info.algorithm is KeyAlgorithm.EC_P256:
            mechanism = "sha256_ecdsa"
        elif info.algorithm is KeyAlgorithm.RSA_3072:
            mechanism = "sha256_rsa"
        else:
            raise InvalidInput(
                f"密钥 {key_id} 的算法为 {info.algorithm.value}，"
                "不能用于 PAdES 签名（须为 EC_P256 或 RSA_3072）",
                f"Key {key_id} is {info.algorithm.value}; PAdES signing needs EC_P256 or RSA_3072",
            )
        cert = _certificate(certificate)
        if cert.public_key.dump() != info.public_key_der:
            raise KeyStoreError(
                f"密钥 {key_id} 与签名证书不匹配", f"Key {key_id} does not match the signing certificate"
            )
        super().__init__(
            signing_cert=cert,
            cert_registry=SimpleCertificateStore.from_certs(  # type: ignore[no-untyped-call]
                [cert, *(_certificate(c) for c in chain)]
            ),
            signature_mechanism=algos.SignedDigestAlgorithm({"algorithm": mechanism}),
        )
        self.keystore = keystore
        self.key_id = key_id
        self.algorithm = info.algorithm
        self._placeholder_size = (
            _ECDSA_P256_MAX_DER
            if info.algorithm is KeyAlgorithm.EC_P256
            else (cert.public_key.bit_size + 7) // 8
        )

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        if digest_algorithm != "sha256":
            raise InvalidInput(
                f"密钥存储仅支持 SHA-256 摘要（请求 {digest_algorithm}）",
                f"The key store signs SHA-256 digests only (asked for {digest_algorithm})",
            )
        if dry_run:
            # Size estimation only: the longest signature this key can produce.
            return bytes(self._placeholder_size)
        return self.keystore.sign(self.key_id, data)


class Sm2PdfSigner(Signer):
    """A pyHanko signer for SM2 keys: the CMS comes from :func:`gmpki.cms.build_signed_data`.

    The signed attributes are contentType, signingTime, messageDigest (SM3 over the ``/ByteRange``)
    and ESS signing-certificate-v2 with the SM3 of the signer certificate; with ``timestamp`` the
    unsigned attribute signatureTimeStampToken covers the signature value (SM3 imprint).
    pyHanko must be told ``md_algorithm="sm3"`` and a ``bytes_reserved`` (no dry run is offered).
    """

    def __init__(
        self,
        keystore: KeyStore,
        key_id: KeyId,
        certificate: bytes,
        chain: Sequence[bytes] = (),
        *,
        flavour: CmsFlavour = CmsFlavour.GBT35275,
        timestamp: TimestampSource | None = None,
        signing_time: datetime | None = None,
    ) -> None:
        info = keystore.public_key(key_id)
        if info.algorithm is not KeyAlgorithm.SM2:
            raise InvalidInput(
                f"密钥 {key_id} 的算法为 {info.algorithm.value}，不是 SM2",
                f"Key {key_id} is {info.algorithm.value}, not SM2",
            )
        cert = _certificate(certificate)
        super().__init__(
            signing_cert=cert,
            cert_registry=SimpleCertificateStore.from_certs(  # type: ignore[no-untyped-call]
                [cert]
            ),
        )
        self.keystore = keystore
        self.key_id = key_id
        self.certificates = (bytes(certificate), *(bytes(c) for c in chain))
        self.flavour = CmsFlavour(flavour)
        self.timestamp_source = timestamp
        self.signing_time = signing_time
        self.signature_der: bytes | None = None

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        raise NotImplementedError("Sm2PdfSigner builds the whole CMS in async_sign")

    async def async_sign(
        self,
        data_digest: bytes,
        digest_algorithm: str,
        dry_run: bool = False,
        use_pades: bool = False,
        timestamper: TimeStamper | None = None,
        signed_attr_settings: PdfCMSSignedAttributes | None = None,
        is_pdf_sig: bool = True,
        encap_content_info: Any = None,
    ) -> cms.ContentInfo:
        if digest_algorithm != "sm3" or dry_run or encap_content_info is not None:
            raise InvalidInput(
                "SM2 PDF 签名须使用 SM3 摘要并预留签名空间",
                "SM2 PDF signatures need the SM3 digest and a reserved size (no dry run)",
            )
        source = self.timestamp_source

        def stamp(signature: bytes) -> bytes:
            assert source is not None
            return source.timestamp(hash_data(signature, "sm3"), "sm3")

        def sign(message: bytes) -> bytes:
            return self.keystore.sign(self.key_id, message)

        der = build_signed_data(
            sign=sign,
            algorithm=CmsAlgorithm.SM2,
            certificates=self.certificates,
            content_digest=bytes(data_digest),
            flavour=self.flavour,
            signing_time=self.signing_time,
            extra_signed_attributes=[
                # Reused from the TSA builder: one ESS encoder for the project.
                _ess_signing_certificate_v2(_certificate(self.certificates[0]), oids.SM3)
            ],
            signature_timestamp=stamp if source is not None else None,
        )
        self.signature_der = der
        # Our own DER, checked by build_signed_data: loaded as is, pyHanko dumps these same bytes.
        return cms.ContentInfo.load(der)


class SourceTimeStamper(TimeStamper):
    """pyHanko's time-stamper interface over an eseal :class:`TimestampSource` (no HTTP)."""

    def __init__(self, source: TimestampSource) -> None:
        super().__init__(include_nonce=False)  # type: ignore[no-untyped-call]
        self.source = source

    async def async_timestamp(self, message_digest: bytes, md_algorithm: str) -> cms.ContentInfo:
        token = self.source.timestamp(bytes(message_digest), md_algorithm)
        # Loaded lazily, not through gmpki.der.load_der: a fully parsed (".native") value makes
        # asn1crypto re-encode it over and over once pyHanko nests it in the CMS. The sources
        # verify their tokens; the shape is checked here.
        if len(token) > 1024 * 1024:
            raise MalformedData("时间戳令牌过大", "time-stamp token too large")
        info = cms.ContentInfo.load(bytes(token), strict=True)
        if info["content_type"].native != "signed_data":
            raise MalformedData("时间戳令牌不是 SignedData", "time-stamp token is not SignedData")
        return info
