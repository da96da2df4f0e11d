"""Detached CMS signatures: GB/T 35275 SignedData for SM2, RFC 5652 SignedData for ECDSA and RSA.

Two SM2 encodings are built and read:

* **GB/T 35275** (GM/T 0010): ContentInfo ``1.2.156.10197.6.1.4.2.2`` (signedData), eContentType
  ``1.2.156.10197.6.1.4.2.1`` (data), digestAlgorithm SM3, digestEncryptionAlgorithm SM2-1
  (``1.2.156.10197.1.301.1``). This is what Chinese tools (ofdrw, GmSSL, BJCA/Koal clients) expect.
* **RFC 5652 with SM algorithms**: the PKCS#7 content types (``1.2.840.113549.1.7.2`` / ``.7.1``)
  with SM3 and SM2-with-SM3 (``1.2.156.10197.1.501``), which is what OpenSSL 3.2+ writes. OpenSSL
  does not know the GB/T content types at all, so this is the encoding to hand to OpenSSL-based
  verifiers (OpenSSL 3.0.x can neither make nor verify SM2 CMS; see tests/cms/test_cms_interop.py).

In both, the SM2 signature covers the DER of the signed attributes re-tagged as ``SET OF`` (RFC 5652
5.4) with the SM2 Z pre-hash over the default ID ``1234567812345678``; the signed attributes are
contentType, messageDigest (SM3 of the content) and signingTime.

ECDSA P-256 (ecdsa-with-SHA256) and RSA (PKCS#1 v1.5 with SHA-256, rsaEncryption) follow RFC 5652.

The builder never sees key bytes: it takes a ``sign(message) -> DER signature`` callable (a key
store) and checks the result against the signer certificate before returning anything.
Verification reads the signed attributes exactly as they are in the input and never re-encodes
them, so a signature over non-canonical bytes is checked over those same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Final, Protocol

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography.exceptions import InvalidSignature as _CryptographyInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm as _CryptographyUnsupported
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from core.errors import CertificateError, CryptoError, InvalidInput, MalformedData

from . import oids, sm2, sm3
from .der import DEFAULT_MAX_SIZE, asn1_guard, load_der
from .x509 import asn1_time, name_to_string, now_utc, sm2_public_key_from_spki

oids.register()

# --- object identifiers ------------------------------------------------------------------------------
PKCS7_DATA: Final = "1.2.840.113549.1.7.1"
PKCS7_SIGNED_DATA: Final = "1.2.840.113549.1.7.2"
CT_TST_INFO: Final = "1.2.840.113549.1.9.16.1.4"
ATTR_CONTENT_TYPE: Final = "1.2.840.113549.1.9.3"
ATTR_MESSAGE_DIGEST: Final = "1.2.840.113549.1.9.4"
ATTR_SIGNING_TIME: Final = "1.2.840.113549.1.9.5"
ATTR_SIGNATURE_TIME_STAMP_TOKEN: Final = "1.2.840.113549.1.9.16.2.14"

SHA256: Final = "2.16.840.1.101.3.4.2.1"
SHA384: Final = "2.16.840.1.101.3.4.2.2"
SHA512: Final = "2.16.840.1.101.3.4.2.3"
RSA_ENCRYPTION: Final = "1.2.840.113549.1.1.1"
ECDSA_WITH_SHA256: Final = "1.2.840.10045.4.3.2"

CMS_MAX_SIZE: Final = DEFAULT_MAX_SIZE
_CHUNK: Final = 1024 * 1024

# Digest algorithms a signature may use, by OID: (asn1crypto-style name, digest size).
DIGESTS: Final[dict[str, tuple[str, int]]] = {
    oids.SM3: ("sm3", 32),
    SHA256: ("sha256", 32),
    SHA384: ("sha384", 48),
    SHA512: ("sha512", 64),
}

# Signature algorithm OIDs read in SignerInfo.signatureAlgorithm: family and, where the OID names
# one, the digest it implies (which must then equal SignerInfo.digestAlgorithm).
_SIGNATURE_OIDS: Final[dict[str, tuple[str, str | None]]] = {
    oids.SM2_SIGN: ("sm2", oids.SM3),
    oids.SM2_WITH_SM3: ("sm2", oids.SM3),
    oids.SM2_CURVE: ("sm2", oids.SM3),  # the bare "SM2 algorithm" OID, written by some tools
    oids.EC_PUBLIC_KEY: ("ecdsa", None),  # id-ecPublicKey, written by some older tools
    ECDSA_WITH_SHA256: ("ecdsa", SHA256),
    "1.2.840.10045.4.3.3": ("ecdsa", SHA384),
    "1.2.840.10045.4.3.4": ("ecdsa", SHA512),
    RSA_ENCRYPTION: ("rsa", None),
    "1.2.840.113549.1.1.11": ("rsa", SHA256),
    "1.2.840.113549.1.1.12": ("rsa", SHA384),
    "1.2.840.113549.1.1.13": ("rsa", SHA512),
}

_CRYPTOGRAPHY_HASHES: Final[dict[str, Callable[[], hashes.HashAlgorithm]]] = {
    SHA256: hashes.SHA256,
    SHA384: hashes.SHA384,
    SHA512: hashes.SHA512,
}


class UnsupportedAlgorithm(CryptoError):
    """Well-formed input that uses an algorithm eseal does not verify (MD5, SHA-1, DSA...)."""

    code: ClassVar[str] = "unsupported_algorithm"
    title_zh, title_en = "不支持的算法", "Unsupported algorithm"


class CmsAlgorithm(StrEnum):
    """Signature algorithms eseal signs CMS with; the values match ``hsm_adapters.KeyAlgorithm``."""

    SM2 = "SM2"  # SM3 digest, SM2 signature with Z (default ID)
    EC_P256 = "EC_P256"  # SHA-256 digest, ecdsa-with-SHA256
    RSA = "RSA_3072"  # SHA-256 digest, RSASSA-PKCS1-v1_5 (rsaEncryption), any modulus size


class CmsFlavour(StrEnum):
    GBT35275 = "gbt35275"  # GM content-type OIDs (SM2 only)
    RFC5652 = "rfc5652"  # PKCS#7 content-type OIDs


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


Content = bytes | bytearray | memoryview | Readable
SignFunction = Callable[[bytes], bytes]
"""``sign(message) -> DER signature``: SM2 with Z for SM2, ECDSA/RSA over SHA-256 of ``message``."""


@dataclass(frozen=True)
class _Profile:
    digest_oid: str
    signature_oid: dict[CmsFlavour, str]
    signature_params_null: bool


_PROFILES: Final[dict[CmsAlgorithm, _Profile]] = {
    CmsAlgorithm.SM2: _Profile(
        oids.SM3,
        {CmsFlavour.GBT35275: oids.SM2_SIGN, CmsFlavour.RFC5652: oids.SM2_WITH_SM3},
        False,
    ),
    CmsAlgorithm.EC_P256: _Profile(SHA256, {CmsFlavour.RFC5652: ECDSA_WITH_SHA256}, False),
    # rsaEncryption with NULL parameters is what OpenSSL writes and every verifier reads.
    CmsAlgorithm.RSA: _Profile(SHA256, {CmsFlavour.RFC5652: RSA_ENCRYPTION}, True),
}


# --- digests ----------------------------------------------------------------------------------------
def _new_hasher(digest_oid: str) -> Any:
    name = DIGESTS[digest_oid][0]
    return sm3.new() if name == "sm3" else hashlib.new(name)


def digest_content(content: Content, digest_oid: str = oids.SM3) -> bytes:
    """Digest of ``content`` (bytes, or a binary stream read in 1 MiB chunks) with ``digest_oid``."""
    if digest_oid not in DIGESTS:
        raise UnsupportedAlgorithm(
            f"不支持的摘要算法 {digest_oid}", f"Unsupported digest algorithm {digest_oid}"
        )
    h = _new_hasher(digest_oid)
    _feed(content, [h])
    return bytes(h.digest())


def _feed(content: Content, hashers: Sequence[Any]) -> None:
    if isinstance(content, bytes | bytearray | memoryview):
        for h in hashers:
            h.update(bytes(content))
        return
    read = getattr(content, "read", None)
    if read is None:
        raise InvalidInput("待签内容必须为字节串或二进制流", "Content must be bytes or a binary stream")
    while True:
        block = read(_CHUNK)
        if not block:
            return
        if not isinstance(block, bytes | bytearray | memoryview):
            raise InvalidInput("待签内容流必须返回字节串", "Content stream must return bytes")
        for h in hashers:
            h.update(bytes(block))


# --- key checks shared by building and verifying ----------------------------------------------------
def _spki(cert: asn1_x509.Certificate) -> Any:
    return cert["tbs_certificate"]["subject_public_key_info"]


def _verify_raw(family: str, digest_oid: str, spki: Any, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``family``'s signature of ``message`` by the key in ``spki``."""
    if family == "sm2":
        public = sm2_public_key_from_spki(spki)
        try:
            sig = sm2.normalize_signature(signature)
        except CryptoError:
            return False
        return sm2.verify(public, message, sig)
    return _verify_pyca(family, digest_oid, spki, signature, message, prehashed=False)


def _load_pyca_key(family: str, spki: Any) -> Any:
    try:
        key = serialization.load_der_public_key(spki.dump())
    except (ValueError, TypeError, _CryptographyUnsupported) as exc:
        raise CertificateError(
            "签名者证书的公钥无法解析或不受支持", "Signer certificate public key is unreadable or unsupported"
        ) from exc
    wanted = ec.EllipticCurvePublicKey if family == "ecdsa" else rsa.RSAPublicKey
    if not isinstance(key, wanted):
        raise CertificateError(
            f"签名者证书的公钥类型与签名算法（{family}）不符",
            f"Signer certificate key does not match the signature algorithm ({family})",
        )
    return key


def _verify_pyca(
    family: str, digest_oid: str, spki: Any, signature: bytes, data: bytes, *, prehashed: bool
) -> bool:
    key = _load_pyca_key(family, spki)
    if digest_oid not in _CRYPTOGRAPHY_HASHES:
        raise UnsupportedAlgorithm(
            f"{family} 签名不支持摘要算法 {digest_oid}", f"{family} signatures with digest {digest_oid}"
        )
    hash_alg = _CRYPTOGRAPHY_HASHES[digest_oid]()
    algorithm: Any = Prehashed(hash_alg) if prehashed else hash_alg
    try:
        if family == "ecdsa":
            key.verify(signature, data, ec.ECDSA(algorithm))
        else:
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
    except (_CryptographyInvalidSignature, ValueError):
        return False
    return True


# --- building ---------------------------------------------------------------------------------------
def _load_certs(certificates: Sequence[bytes]) -> list[asn1_x509.Certificate]:
    if not certificates:
        raise InvalidInput("至少需要签名者证书", "The signer certificate is required")
    out = []
    for der in certificates:
        out.append(
            load_der(
                asn1_x509.Certificate, bytes(der), max_size=256 * 1024, what_zh="证书", what_en="certificate"
            )
        )
    return out


def cms_time(when: datetime) -> cms.Time:
    """UTCTime through 2049, GeneralizedTime from 2050 (RFC 5652 11.3), whole seconds, UTC."""
    chosen = asn1_time(when)
    return cms.Time(name=chosen.name, value=chosen.chosen.native)


def _attribute(oid: str, value: core.Asn1Value) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": oid, "values": [value]})


def signed_attributes_message(signed_attrs: cms.CMSAttributes) -> bytes:
    """The bytes a signature over ``signed_attrs`` covers: their encoding re-tagged ``SET OF``.

    ``signed_attrs`` as read keeps its original encoding, so the result is the input's bytes with
    the ``[0] IMPLICIT`` tag byte replaced by ``0x31`` (RFC 5652 5.4), never a re-encoding.
    """
    raw = signed_attrs.dump()
    if len(raw) < 2 or raw[0] != 0xA0:
        raise MalformedData("签名属性标签无效", "Invalid signed attributes tag")
    if raw[1] == 0x80:
        raise MalformedData("签名属性使用了不定长编码", "Signed attributes use an indefinite length")
    return b"\x31" + bytes(raw[1:])


def build_signed_data(
    *,
    sign: SignFunction,
    algorithm: CmsAlgorithm,
    certificates: Sequence[bytes],
    content_digest: bytes,
    econtent_type: str | None = None,
    econtent: bytes | None = None,
    flavour: CmsFlavour | None = None,
    signing_time: datetime | None = None,
    extra_signed_attributes: Sequence[cms.CMSAttribute] = (),
    signature_timestamp: Callable[[bytes], bytes] | None = None,
    include_certificates: bool = True,
) -> bytes:
    """One-signer SignedData in a ContentInfo, DER.

    ``certificates[0]`` is the signer; the rest (its chain) are embedded as well. ``content_digest``
    is the digest of the content with the algorithm's digest (SM3 for SM2, SHA-256 otherwise);
    ``econtent`` embeds the content (time-stamp tokens), otherwise the signature is detached.
    ``econtent_type`` defaults to data (GB/T or PKCS#7 per flavour). ``flavour`` defaults to
    GB/T 35275 for SM2 and RFC 5652 otherwise. ``signature_timestamp(signature_value)`` may return
    a time-stamp token, added as the unsigned attribute signatureTimeStampToken.
    ``include_certificates=False`` leaves the certificates out (the signer is still identified by
    ``certificates[0]``'s issuer and serial).
    """
    algorithm = CmsAlgorithm(algorithm)
    profile = _PROFILES[algorithm]
    flavour = CmsFlavour(flavour) if flavour is not None else _default_flavour(algorithm)
    if flavour not in profile.signature_oid:
        raise InvalidInput(
            f"{algorithm.value} 签名不能使用 GB/T 35275 格式",
            f"{algorithm.value} cannot use the GB/T 35275 flavour",
        )
    size = DIGESTS[profile.digest_oid][1]
    if len(content_digest) != size:
        raise InvalidInput(f"内容摘要必须为 {size} 字节", f"Content digest must be {size} bytes")
    gm = flavour is CmsFlavour.GBT35275
    data_oid = oids.GM_DATA if gm else PKCS7_DATA
    econtent_type = econtent_type or data_oid
    certs = _load_certs(certificates)
    signer_cert = certs[0]
    when = signing_time if signing_time is not None else now_utc()

    attributes = [
        _attribute(ATTR_CONTENT_TYPE, cms.ContentType(econtent_type)),
        _attribute(ATTR_SIGNING_TIME, cms_time(when)),
        _attribute(ATTR_MESSAGE_DIGEST, core.OctetString(bytes(content_digest))),
        *extra_signed_attributes,
    ]
    # DER requires SET OF elements in ascending order of their encodings (X.690 11.6); OpenSSL
    # re-sorts before verifying, so an unsorted SET would not verify there.
    encoded = sorted(a.dump() for a in attributes)
    signed_attrs = cms.CMSAttributes([cms.CMSAttribute.load(e) for e in encoded])
    message = signed_attrs.dump(force=True)  # universal SET OF tag: exactly what gets signed
    signature = bytes(sign(message))

    family = {CmsAlgorithm.SM2: "sm2", CmsAlgorithm.EC_P256: "ecdsa", CmsAlgorithm.RSA: "rsa"}[algorithm]
    if family == "sm2":
        try:
            signature = sm2.normalize_signature(signature)
        except CryptoError as exc:
            raise CryptoError(
                "签名器返回的签名编码无效", "Signer returned a badly encoded signature"
            ) from exc
    # A key that does not belong to the certificate is caught here, not by a relying party later.
    if not _verify_raw(family, profile.digest_oid, _spki(signer_cert), message, signature):
        raise CryptoError(
            "签名无法用签名者证书的公钥验证（密钥与证书不匹配？）",
            "Signature does not verify with the signer certificate (key and certificate mismatch?)",
        )

    sig_alg: dict[str, Any] = {"algorithm": profile.signature_oid[flavour]}
    if profile.signature_params_null:
        sig_alg["parameters"] = core.Null()
    signer_info: dict[str, Any] = {
        "version": "v1",
        "sid": cms.SignerIdentifier(
            name="issuer_and_serial_number",
            value=cms.IssuerAndSerialNumber(
                {
                    "issuer": signer_cert["tbs_certificate"]["issuer"],
                    "serial_number": signer_cert["tbs_certificate"]["serial_number"],
                }
            ),
        ),
        "digest_algorithm": algos.DigestAlgorithm({"algorithm": profile.digest_oid}),
        "signed_attrs": signed_attrs,
        "signature_algorithm": algos.SignedDigestAlgorithm(sig_alg),
        "signature": signature,
    }
    if signature_timestamp is not None:
        token = load_der(
            cms.ContentInfo, signature_timestamp(signature), what_zh="时间戳令牌", what_en="time-stamp token"
        )
        signer_info["unsigned_attrs"] = cms.CMSAttributes(
            [_attribute(ATTR_SIGNATURE_TIME_STAMP_TOKEN, token)]
        )

    # RFC 5652 5.1: version 3 when the content is not id-data; GB/T 35275 keeps PKCS#7's 1.
    # asn1crypto reads a v1 encapContentInfo as a PKCS#7 ContentInfo, so build it as one too.
    version = "v1" if econtent_type in (PKCS7_DATA, oids.GM_DATA) else "v3"
    encap: cms.ContentInfo | cms.EncapsulatedContentInfo
    if version == "v1":
        encap = cms.ContentInfo({"content_type": econtent_type})
        if econtent is not None:
            encap["content"] = core.OctetString(bytes(econtent))
    else:
        encap = cms.EncapsulatedContentInfo({"content_type": econtent_type})
        if econtent is not None:
            encap["content"] = core.ParsableOctetString(bytes(econtent))
    fields: dict[str, Any] = {
        "version": version,
        "digest_algorithms": [algos.DigestAlgorithm({"algorithm": profile.digest_oid})],
        "encap_content_info": encap,
    }
    if include_certificates:
        fields["certificates"] = [cms.CertificateChoices(name="certificate", value=c) for c in certs]
    fields["signer_infos"] = [cms.SignerInfo(signer_info)]
    signed_data = cms.SignedData(fields)
    outer = oids.GM_SIGNED_DATA if gm else PKCS7_SIGNED_DATA
    return bytes(cms.ContentInfo({"content_type": outer, "content": signed_data}).dump())


def _default_flavour(algorithm: CmsAlgorithm) -> CmsFlavour:
    return CmsFlavour.GBT35275 if algorithm is CmsAlgorithm.SM2 else CmsFlavour.RFC5652


def sign_detached(
    content: Content,
    *,
    sign: SignFunction,
    algorithm: CmsAlgorithm,
    certificates: Sequence[bytes],
    flavour: CmsFlavour | None = None,
    signing_time: datetime | None = None,
    signature_timestamp: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """Detached SignedData over ``content`` (bytes or a binary stream), DER. See build_signed_data."""
    digest = digest_content(content, _PROFILES[CmsAlgorithm(algorithm)].digest_oid)
    return build_signed_data(
        sign=sign,
        algorithm=algorithm,
        certificates=certificates,
        content_digest=digest,
        flavour=flavour,
        signing_time=signing_time,
        signature_timestamp=signature_timestamp,
    )


# --- parsing ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignerView:
    """One SignerInfo, parsed and checked for shape, with its certificate (not yet verified)."""

    certificate: asn1_x509.Certificate = field(repr=False)
    digest_oid: str
    signature_oid: str
    family: str  # "sm2" | "ecdsa" | "rsa"
    signature: bytes = field(repr=False)
    signed_attributes: bytes | None = field(repr=False)  # the SET OF bytes the signature covers
    message_digest: bytes | None
    content_type_attribute: str | None
    signing_time: datetime | None
    signed_attribute_types: tuple[str, ...]
    timestamp_tokens: tuple[bytes, ...] = field(repr=False)


@dataclass(frozen=True)
class ParsedSignedData:
    """A SignedData (in its ContentInfo) parsed and checked for shape; nothing verified yet."""

    flavour: CmsFlavour
    content_type: str  # eContentType, dotted
    econtent: bytes | None = field(repr=False)
    certificates: tuple[bytes, ...] = field(repr=False)
    signer: SignerView
    asn1: cms.ContentInfo = field(repr=False)


def _check_params(alg: Any, what_zh: str, what_en: str) -> None:
    params = alg["parameters"]
    if not isinstance(params, core.Void) and not (
        isinstance(params, core.Any | core.Null) and params.native is None
    ):
        raise MalformedData(f"{what_zh}不应带参数", f"{what_en} must have no parameters")


def _single_value(attr: Any, name_zh: str, name_en: str) -> Any:
    values = attr["values"]
    if len(values) != 1:
        raise MalformedData(
            f"签名属性 {name_zh} 必须恰有一个值", f"Signed attribute {name_en} must have one value"
        )
    return values[0]


def _read_signed_attributes(si: cms.SignerInfo) -> tuple[bytes, bytes, str, datetime | None, tuple[str, ...]]:
    attrs = si["signed_attrs"]
    message = signed_attributes_message(attrs)
    seen: dict[str, Any] = {}
    for attr in attrs:
        oid = attr["type"].dotted
        if oid in seen:
            raise MalformedData(f"签名属性 {oid} 重复", f"Signed attribute {oid} appears twice")
        seen[oid] = attr
    if ATTR_MESSAGE_DIGEST not in seen or ATTR_CONTENT_TYPE not in seen:
        raise MalformedData(
            "签名属性缺少 contentType 或 messageDigest", "Signed attributes lack contentType or messageDigest"
        )
    digest_value = _single_value(seen[ATTR_MESSAGE_DIGEST], "messageDigest", "messageDigest")
    content_type = _single_value(seen[ATTR_CONTENT_TYPE], "contentType", "contentType")
    if not isinstance(digest_value, core.OctetString) or not isinstance(content_type, core.ObjectIdentifier):
        raise MalformedData("签名属性值类型错误", "Signed attribute value has the wrong type")
    signing_time: datetime | None = None
    if ATTR_SIGNING_TIME in seen:
        value = _single_value(seen[ATTR_SIGNING_TIME], "signingTime", "signingTime").native
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise MalformedData("签名时间无效", "Invalid signingTime")
        signing_time = value
    return message, bytes(digest_value.native), content_type.dotted, signing_time, tuple(sorted(seen))


def _timestamp_tokens(si: cms.SignerInfo) -> tuple[bytes, ...]:
    unsigned = si["unsigned_attrs"]
    if isinstance(unsigned, core.Void):
        return ()
    out: list[bytes] = []
    for attr in unsigned:
        if attr["type"].dotted == ATTR_SIGNATURE_TIME_STAMP_TOKEN:
            out.extend(v.dump() for v in attr["values"])
    return tuple(out)


def _econtent(value: Any) -> bytes | None:
    if isinstance(value, core.Void):
        return None
    if isinstance(value, core.OctetString):  # also ParsableOctetString (CMS v3)
        return bytes(value.contents or b"") if isinstance(value, core.ParsableOctetString) else value.native
    # PKCS#7 content of another type: the digest covers its contents octets (PKCS#7 9.3).
    return bytes(value.contents or b"")


def _find_signer(sid: Any, certs: Sequence[asn1_x509.Certificate]) -> asn1_x509.Certificate:
    if sid.name == "issuer_and_serial_number":
        issuer = sid.chosen["issuer"]
        serial = sid.chosen["serial_number"].native
        for cert in certs:
            tbs = cert["tbs_certificate"]
            if tbs["serial_number"].native == serial and tbs["issuer"] == issuer:
                return cert
        who = f"{name_to_string(issuer)} (serial 0x{serial:X})"
    else:
        key_id = bytes(sid.chosen.native)
        for cert in certs:
            ski = cert.key_identifier
            if ski is not None and bytes(ski) == key_id:
                return cert
        who = f"subjectKeyIdentifier {key_id.hex()}"
    raise CertificateError(f"找不到签名者证书 {who}", f"Signer certificate {who} not found")


def parse_signed_data(
    data: bytes,
    *,
    extra_certificates: Sequence[bytes] = (),
    max_size: int = CMS_MAX_SIZE,
) -> ParsedSignedData:
    """Parse a ContentInfo holding SignedData with one signer; locate the signer certificate.

    The signer certificate is looked up (issuer and serial, or subject key identifier) among the
    embedded certificates, then ``extra_certificates``. Raises MalformedData / InputTooLarge for
    bad input, CertificateError when the signer certificate is missing, UnsupportedAlgorithm for
    algorithms eseal does not verify.
    """
    info = load_der(
        cms.ContentInfo, data, max_size=max_size, what_zh="CMS 签名数据", what_en="CMS signed data"
    )
    with asn1_guard("CMS 签名数据", "CMS signed data"):
        outer = info["content_type"].dotted
        if outer == oids.GM_SIGNED_DATA:
            flavour = CmsFlavour.GBT35275
        elif outer == PKCS7_SIGNED_DATA:
            flavour = CmsFlavour.RFC5652
        else:
            raise MalformedData(
                f"CMS 内容类型 {outer} 不是 signedData", f"CMS content type {outer} is not signedData"
            )
        signed_data = info["content"]
        if not isinstance(signed_data, cms.SignedData):
            raise MalformedData("CMS 缺少 SignedData", "CMS holds no SignedData")
        encap = signed_data["encap_content_info"]
        content_type = encap["content_type"].dotted
        econtent = _econtent(encap["content"])

        certs: list[asn1_x509.Certificate] = [
            c.chosen for c in signed_data["certificates"] if c.name == "certificate"
        ]
        cert_ders = tuple(c.dump() for c in certs)
        for der in extra_certificates:
            certs.append(load_der(asn1_x509.Certificate, bytes(der), what_zh="证书", what_en="certificate"))

        infos = signed_data["signer_infos"]
        if len(infos) != 1:
            raise MalformedData(
                f"仅支持一个签名者（实际 {len(infos)} 个）",
                f"Exactly one signer is supported (found {len(infos)})",
            )
        si = infos[0]
        digest_oid = si["digest_algorithm"]["algorithm"].dotted
        signature_oid = si["signature_algorithm"]["algorithm"].dotted
        if digest_oid not in DIGESTS:
            raise UnsupportedAlgorithm(
                f"不支持的摘要算法 {digest_oid}", f"Unsupported digest algorithm {digest_oid}"
            )
        if signature_oid not in _SIGNATURE_OIDS:
            raise UnsupportedAlgorithm(
                f"不支持的签名算法 {signature_oid}", f"Unsupported signature algorithm {signature_oid}"
            )
        _check_params(si["digest_algorithm"], "摘要算法", "Digest algorithm")
        _check_params(si["signature_algorithm"], "签名算法", "Signature algorithm")
        family, implied = _SIGNATURE_OIDS[signature_oid]
        if implied is not None and implied != digest_oid:
            raise MalformedData(
                f"签名算法 {signature_oid} 与摘要算法 {digest_oid} 不一致",
                f"Signature algorithm {signature_oid} does not match digest algorithm {digest_oid}",
            )
        if family == "sm2" and digest_oid != oids.SM3:
            raise MalformedData("SM2 签名必须使用 SM3 摘要", "SM2 signatures must use the SM3 digest")
        listed = {a["algorithm"].dotted for a in signed_data["digest_algorithms"]}
        if digest_oid not in listed:
            raise MalformedData(
                "签名者的摘要算法未列在 digestAlgorithms 中",
                "Signer digest algorithm missing from digestAlgorithms",
            )
        signature = bytes(si["signature"].native)
        if isinstance(si["signed_attrs"], core.Void):
            attrs_message: bytes | None = None
            message_digest: bytes | None = None
            attr_content_type: str | None = None
            signing_time: datetime | None = None
            attr_types: tuple[str, ...] = ()
        else:
            attrs_message, message_digest, attr_content_type, signing_time, attr_types = (
                _read_signed_attributes(si)
            )
            if attr_content_type != content_type:
                raise MalformedData(
                    f"签名属性 contentType（{attr_content_type}）与内容类型（{content_type}）不一致",
                    f"contentType attribute {attr_content_type} differs from eContentType {content_type}",
                )
        signer_cert = _find_signer(si["sid"], certs)
        view = SignerView(
            certificate=signer_cert,
            digest_oid=digest_oid,
            signature_oid=signature_oid,
            family=family,
            signature=signature,
            signed_attributes=attrs_message,
            message_digest=message_digest,
            content_type_attribute=attr_content_type,
            signing_time=signing_time,
            signed_attribute_types=attr_types,
            timestamp_tokens=_timestamp_tokens(si),
        )
    return ParsedSignedData(
        flavour=flavour,
        content_type=content_type,
        econtent=econtent,
        certificates=cert_ders,
        signer=view,
        asn1=info,
    )


# --- verifying --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CmsVerification:
    """What verifying a SignedData found. Cryptographic facts only: the signer certificate's path,
    validity and revocation are the caller's to check (gmpki.path_validation for SM2)."""

    flavour: CmsFlavour
    content_type: str
    digest_algorithm: str  # "sm3", "sha256", ...
    signature_algorithm: str  # "sm2", "ecdsa", "rsa"
    signature_algorithm_oid: str
    signer_certificate: bytes = field(repr=False)  # DER
    signer_subject: str
    certificates: tuple[bytes, ...] = field(repr=False)
    signing_time: datetime | None
    message_digest: bytes | None  # from the signed attributes (None when there are none)
    computed_digest: bytes
    digest_ok: bool
    signature_ok: bool
    signature_value: bytes = field(repr=False)
    timestamp_tokens: tuple[bytes, ...] = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.digest_ok and self.signature_ok


def verify_signed_data(parsed: ParsedSignedData, content: Content | None = None) -> CmsVerification:
    """Verify a parsed SignedData over ``content`` (detached) or over its own eContent."""
    if content is not None and parsed.econtent is not None:
        raise MalformedData(
            "CMS 已包含内容，不应再提供外部内容", "CMS embeds its content; no detached content expected"
        )
    if content is None:
        if parsed.econtent is None:
            raise InvalidInput("分离式签名需要提供原文", "A detached signature needs the signed content")
        content = parsed.econtent
    signer = parsed.signer
    spki = _spki(signer.certificate)
    with asn1_guard("签名者证书", "signer certificate"):
        content_hasher = _new_hasher(signer.digest_oid)
        hashers = [content_hasher]
        z_hasher = None
        if signer.signed_attributes is None and signer.family == "sm2":
            # Without signed attributes the SM2 signature covers the content itself: e = SM3(Z ‖ M).
            public = sm2_public_key_from_spki(spki)
            z_hasher = sm3.new(public.z())
            hashers.append(z_hasher)
        _feed(content, hashers)
        computed = bytes(content_hasher.digest())
        if signer.signed_attributes is not None:
            assert signer.message_digest is not None
            digest_ok = signer.message_digest == computed
            signature_ok = _verify_raw(
                signer.family, signer.digest_oid, spki, signer.signed_attributes, signer.signature
            )
        elif z_hasher is not None:
            public = sm2_public_key_from_spki(spki)
            try:
                sig = sm2.normalize_signature(signer.signature)
                signature_ok = sm2.verify_digest(public, bytes(z_hasher.digest()), sig)
            except CryptoError:
                signature_ok = False
            digest_ok = signature_ok
        else:
            signature_ok = _verify_pyca(
                signer.family, signer.digest_oid, spki, signer.signature, computed, prehashed=True
            )
            digest_ok = signature_ok
        subject = name_to_string(signer.certificate.subject)
    return CmsVerification(
        flavour=parsed.flavour,
        content_type=parsed.content_type,
        digest_algorithm=DIGESTS[signer.digest_oid][0],
        signature_algorithm=signer.family,
        signature_algorithm_oid=signer.signature_oid,
        signer_certificate=signer.certificate.dump(),
        signer_subject=subject,
        certificates=parsed.certificates,
        signing_time=signer.signing_time,
        message_digest=signer.message_digest,
        computed_digest=computed,
        digest_ok=digest_ok,
        signature_ok=signature_ok,
        signature_value=signer.signature,
        timestamp_tokens=signer.timestamp_tokens,
    )


def verify_signed_attributes(parsed: ParsedSignedData) -> bool:
    """Whether the signer's signature over its signed attributes verifies, without the content.

    For a detached signature whose content is not at hand: the signature can still be checked, the
    messageDigest inside the attributes cannot. InvalidInput when there are no signed attributes
    (the signature then covers the content itself); CertificateError / UnsupportedAlgorithm as
    :func:`verify_signed_data`.
    """
    signer = parsed.signer
    if signer.signed_attributes is None:
        raise InvalidInput(
            "签名不含签名属性，直接覆盖原文：需要原文才能验证",
            "The signature has no signed attributes and covers the content itself: the content is needed",
        )
    with asn1_guard("签名者证书", "signer certificate"):
        return _verify_raw(
            signer.family,
            signer.digest_oid,
            _spki(signer.certificate),
            signer.signed_attributes,
            signer.signature,
        )


def verify_detached(
    cms_der: bytes,
    content: Content,
    *,
    extra_certificates: Sequence[bytes] = (),
    max_size: int = CMS_MAX_SIZE,
) -> CmsVerification:
    """Verify a detached CMS signature over ``content`` (bytes or a binary stream).

    Returns the findings (``digest_ok``, ``signature_ok``); raises MalformedData / InputTooLarge for
    malformed input, CertificateError when the signer certificate is missing or unusable, and
    UnsupportedAlgorithm for algorithms outside SM2/SM3, ECDSA and RSA with SHA-2.
    """
    parsed = parse_signed_data(cms_der, extra_certificates=extra_certificates, max_size=max_size)
    if parsed.econtent is not None:
        raise MalformedData("CMS 不是分离式签名（包含原文）", "CMS is not detached (it embeds the content)")
    return verify_signed_data(parsed, content)
