"""RFC 3161 time-stamps: requests, responses and tokens, built and parsed; tokens signed and verified.

A token is a CMS SignedData (:mod:`gmpki.cms`) whose content is a DER TSTInfo. For SM2 the token
uses the **RFC 5652 content types** (``id-signedData`` / ``id-ct-TSTInfo``) with the SM algorithms
(SM3, SM2-with-SM3 ``1.2.156.10197.1.501``), not the GB/T 35275 content types: RFC 3161 requires
id-signedData, GM/T 0033 keeps RFC 3161's structures, and OpenSSL (``ts -reply -text``,
``asn1parse``) parses only that form. The signature is SM2 with Z over the default ID; OpenSSL 3.0's
``ts -verify`` computes SM2 without Z, so it cannot verify SM2 tokens (see tests/cms).

The signed attributes carry contentType, messageDigest, signingTime and ESS signingCertificateV2
(RFC 5816; SM3 certificate hash for SM2 TSAs, SHA-256 otherwise), which binds the TSA certificate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Final

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509

from core.errors import CertificateError, CryptoError, InvalidInput, InvalidSignature, MalformedData

from . import oids, sm3
from .cms import (
    CT_TST_INFO,
    DIGESTS,
    SHA256,
    CmsAlgorithm,
    CmsFlavour,
    CmsVerification,
    Content,
    ParsedSignedData,
    SignFunction,
    UnsupportedAlgorithm,
    build_signed_data,
    digest_content,
    parse_signed_data,
    verify_signed_data,
)
from .der import DEFAULT_MAX_SIZE, asn1_guard, load_der
from .x509 import Certificate, load_certificate_der, name_to_string

oids.register()

REQUEST_MAX_SIZE: Final = 64 * 1024
RESPONSE_MAX_SIZE: Final = DEFAULT_MAX_SIZE
ATTR_SIGNING_CERTIFICATE_V2: Final = "1.2.840.113549.1.9.16.2.47"
ATTR_SIGNING_CERTIFICATE: Final = "1.2.840.113549.1.9.16.2.12"
EKU_TIME_STAMPING: Final = oids.EKU_TIME_STAMPING

# Hash algorithm names accepted by the builders: name -> OID.
HASH_OIDS: Final[dict[str, str]] = {name: oid for oid, (name, _size) in DIGESTS.items()}
# Names of digest OIDs that are recognised but never accepted (reported, not parsed as garbage).
_KNOWN_WEAK: Final[dict[str, str]] = {
    "1.2.840.113549.2.5": "md5",
    "1.3.14.3.2.26": "sha1",
}


class FailureInfo(StrEnum):
    """PKIFailureInfo bits (RFC 3161 2.4.2), asn1crypto names."""

    BAD_ALG = "bad_alg"
    BAD_REQUEST = "bad_request"
    BAD_DATA_FORMAT = "bad_data_format"
    TIME_NOT_AVAILABLE = "time_not_available"
    UNACCEPTED_POLICY = "unaccepted_policy"
    UNACCEPTED_EXTENSION = "unaccepted_extensions"
    ADD_INFO_NOT_AVAILABLE = "add_info_not_available"
    SYSTEM_FAILURE = "system_failure"


class TimestampRejected(CryptoError):
    """A time-stamp request was (or must be) refused; ``failure`` is the PKIFailureInfo to report."""

    code: ClassVar[str] = "timestamp_rejected"
    title_zh, title_en = "时间戳请求被拒绝", "Time-stamp request rejected"

    def __init__(self, failure: FailureInfo, message_zh: str, message_en: str) -> None:
        self.failure = failure
        super().__init__(message_zh, message_en, failure=failure.value)


class _TimeStampResp(core.Sequence):  # type: ignore[misc]  # asn1crypto has no stubs
    # asn1crypto declares timeStampToken mandatory; RFC 3161 2.4.2 makes it OPTIONAL (absent in
    # every rejection), so this module reads and writes responses through its own definition.
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def _hash_oid(hash_algorithm: str) -> str:
    oid = HASH_OIDS.get(hash_algorithm, hash_algorithm)
    if oid not in DIGESTS:
        raise UnsupportedAlgorithm(
            f"不支持的摘要算法 {hash_algorithm}", f"Unsupported hash algorithm {hash_algorithm}"
        )
    return oid


def hash_data(data: Content, hash_algorithm: str = "sm3") -> bytes:
    """Digest of ``data`` with ``hash_algorithm`` (a name such as ``sm3``/``sha256`` or an OID)."""
    return digest_content(data, _hash_oid(hash_algorithm))


def _check_digest(oid: str, digest: bytes) -> bytes:
    size = DIGESTS[oid][1]
    if len(digest) != size:
        raise InvalidInput(
            f"摘要长度应为 {size} 字节（实际 {len(digest)}）",
            f"Digest must be {size} bytes (got {len(digest)})",
        )
    return bytes(digest)


def _imprint(hash_oid: str, digest: bytes) -> tsp.MessageImprint:
    return tsp.MessageImprint(
        {"hash_algorithm": algos.DigestAlgorithm({"algorithm": hash_oid}), "hashed_message": digest}
    )


# --- requests ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimeStampRequest:
    version: int
    hash_algorithm: str  # dotted OID
    digest: bytes
    nonce: int | None
    cert_req: bool
    policy: str | None
    extensions: tuple[str, ...]  # dotted OIDs of any request extensions
    message_imprint_der: bytes = field(repr=False)  # as read; echoed into TSTInfo

    @property
    def hash_name(self) -> str | None:
        entry = DIGESTS.get(self.hash_algorithm)
        return entry[0] if entry else _KNOWN_WEAK.get(self.hash_algorithm)


def build_request(
    digest: bytes,
    hash_algorithm: str = "sm3",
    *,
    nonce: int | None = None,
    cert_req: bool = True,
    policy: str | None = None,
) -> bytes:
    """A DER TimeStampReq for ``digest`` (already hashed with ``hash_algorithm``)."""
    oid = _hash_oid(hash_algorithm)
    fields: dict[str, Any] = {"version": "v1", "message_imprint": _imprint(oid, _check_digest(oid, digest))}
    if policy is not None:
        fields["req_policy"] = policy
    if nonce is not None:
        if nonce < 0:
            raise InvalidInput("nonce 必须为非负整数", "nonce must be non-negative")
        fields["nonce"] = nonce
    if cert_req:
        fields["cert_req"] = True
    return bytes(tsp.TimeStampReq(fields).dump())


def parse_request(data: bytes, *, max_size: int = REQUEST_MAX_SIZE) -> TimeStampRequest:
    """Parse a TimeStampReq. MalformedData / InputTooLarge for bad input; algorithms are not judged."""
    req = load_der(
        tsp.TimeStampReq, data, max_size=max_size, what_zh="时间戳请求", what_en="time-stamp request"
    )
    with asn1_guard("时间戳请求", "time-stamp request"):
        imprint = req["message_imprint"]
        policy = req["req_policy"]
        nonce = req["nonce"]
        extensions = req["extensions"]
        version = req["version"].native
        return TimeStampRequest(
            version=int(version[1:]) if isinstance(version, str) else int(version),
            hash_algorithm=imprint["hash_algorithm"]["algorithm"].dotted,
            digest=bytes(imprint["hashed_message"].native),
            nonce=None if isinstance(nonce, core.Void) else int(nonce.native),
            cert_req=bool(req["cert_req"].native),
            policy=None if isinstance(policy, core.Void) else policy.dotted,
            extensions=()
            if isinstance(extensions, core.Void)
            else tuple(e["extn_id"].dotted for e in extensions),
            message_imprint_der=imprint.dump(),
        )


# --- TSTInfo and tokens -----------------------------------------------------------------------------
def build_tst_info(
    *,
    policy: str,
    message_imprint_der: bytes,
    serial_number: int,
    gen_time: datetime,
    accuracy_seconds: int | None = 1,
    nonce: int | None = None,
    tsa_name: asn1_x509.Name | None = None,
) -> bytes:
    """DER TSTInfo. ``message_imprint_der`` is the request's MessageImprint, echoed byte for byte."""
    if gen_time.tzinfo is None:
        raise InvalidInput("genTime 必须带时区", "genTime must be timezone-aware")
    if serial_number <= 0 or serial_number.bit_length() > 159:
        raise InvalidInput(
            "时间戳序列号必须为不超过 160 位的正整数", "Serial must be positive, at most 160 bits"
        )
    fields: dict[str, Any] = {
        "version": "v1",
        "policy": policy,
        "message_imprint": tsp.MessageImprint.load(message_imprint_der),
        "serial_number": serial_number,
        # Whole seconds: RFC 3161 forbids trailing zeros in fractions, and accuracy is 1 s anyway.
        "gen_time": core.GeneralizedTime(gen_time.replace(microsecond=0)),
    }
    if accuracy_seconds is not None:
        fields["accuracy"] = tsp.Accuracy({"seconds": accuracy_seconds})
    if nonce is not None:
        fields["nonce"] = nonce
    if tsa_name is not None:
        fields["tsa"] = asn1_x509.GeneralName(name="directory_name", value=tsa_name)
    return bytes(tsp.TSTInfo(fields).dump())


def _ess_signing_certificate_v2(cert: asn1_x509.Certificate, hash_oid: str) -> cms.CMSAttribute:
    der = cert.dump()
    cert_hash = sm3.sm3(der) if hash_oid == oids.SM3 else hashlib.sha256(der).digest()
    ess: dict[str, Any] = {
        "cert_hash": cert_hash,
        "issuer_serial": {
            "issuer": [asn1_x509.GeneralName(name="directory_name", value=cert.issuer)],
            "serial_number": cert.serial_number,
        },
    }
    if hash_oid != SHA256:
        # DER omits a DEFAULT value: SHA-256 is ESSCertIDv2's default hash (RFC 5035).
        ess["hash_algorithm"] = algos.DigestAlgorithm({"algorithm": hash_oid})
    value = tsp.SigningCertificateV2({"certs": [tsp.ESSCertIDv2(ess)]})
    return cms.CMSAttribute({"type": ATTR_SIGNING_CERTIFICATE_V2, "values": [value]})


def build_token(
    tst_info: bytes,
    *,
    sign: SignFunction,
    algorithm: CmsAlgorithm,
    tsa_certificate: bytes,
    chain: Sequence[bytes] = (),
    include_certificates: bool = True,
    signing_time: datetime | None = None,
) -> bytes:
    """Sign a DER TSTInfo into a time-stamp token (ContentInfo, DER).

    ``include_certificates`` follows the request's certReq: the TSA certificate (and ``chain``)
    are embedded when true. For SM2 the RFC 5652 content types are used (see the module docstring).
    """
    info = load_der(tsp.TSTInfo, tst_info, what_zh="TSTInfo", what_en="TSTInfo")
    cert = load_der(asn1_x509.Certificate, tsa_certificate, what_zh="TSA 证书", what_en="TSA certificate")
    digest_oid = oids.SM3 if CmsAlgorithm(algorithm) is CmsAlgorithm.SM2 else SHA256
    when = signing_time if signing_time is not None else info["gen_time"].native
    return build_signed_data(
        sign=sign,
        algorithm=algorithm,
        certificates=[tsa_certificate, *chain],
        content_digest=digest_content(tst_info, digest_oid),
        econtent_type=CT_TST_INFO,
        econtent=tst_info,
        flavour=CmsFlavour.RFC5652,
        signing_time=when,
        extra_signed_attributes=[_ess_signing_certificate_v2(cert, digest_oid)],
        include_certificates=include_certificates,
    )


# --- responses --------------------------------------------------------------------------------------
def _status_info(
    status: str, texts: Sequence[str] = (), failure: FailureInfo | None = None
) -> tsp.PKIStatusInfo:
    fields: dict[str, Any] = {"status": status}
    if texts:
        fields["status_string"] = list(texts)
    if failure is not None:
        fields["fail_info"] = {failure.value}
    return tsp.PKIStatusInfo(fields)


def build_response(token: bytes) -> bytes:
    """A granted TimeStampResp carrying ``token``."""
    content = load_der(cms.ContentInfo, token, what_zh="时间戳令牌", what_en="time-stamp token")
    return bytes(_TimeStampResp({"status": _status_info("granted"), "time_stamp_token": content}).dump())


def build_rejection(failure: FailureInfo, message_zh: str, message_en: str) -> bytes:
    """A rejection TimeStampResp with ``failure`` and a bilingual status string."""
    return bytes(
        _TimeStampResp({"status": _status_info("rejection", [message_zh, message_en], failure)}).dump()
    )


@dataclass(frozen=True)
class TimeStampResponse:
    status: str  # "granted", "granted_with_mods", "rejection", "waiting", ...
    status_text: tuple[str, ...]
    failure_info: frozenset[str]
    token: bytes | None = field(repr=False)

    @property
    def granted(self) -> bool:
        return self.status in ("granted", "granted_with_mods")


def parse_response(data: bytes, *, max_size: int = RESPONSE_MAX_SIZE) -> TimeStampResponse:
    resp = load_der(
        _TimeStampResp, data, max_size=max_size, what_zh="时间戳响应", what_en="time-stamp response"
    )
    with asn1_guard("时间戳响应", "time-stamp response"):
        status = resp["status"]
        texts = status["status_string"]
        fail = status["fail_info"]
        token = resp["time_stamp_token"]
        status_name = status["status"].native
        if not isinstance(status_name, str):
            raise MalformedData(f"未知的时间戳状态 {status_name}", f"Unknown time-stamp status {status_name}")
        result = TimeStampResponse(
            status=status_name,
            status_text=() if isinstance(texts, core.Void) else tuple(str(t) for t in texts.native),
            failure_info=frozenset()
            if isinstance(fail, core.Void)
            else frozenset(str(b) for b in fail.native),
            token=None if isinstance(token, core.Void) else token.dump(),
        )
    if result.granted and result.token is None:
        raise MalformedData("时间戳响应状态为成功却没有令牌", "Granted time-stamp response carries no token")
    return result


# --- token parsing and verification -----------------------------------------------------------------
@dataclass(frozen=True)
class TimestampVerification:
    """A verified token: signature, imprint, ESS binding and TSA certificate usage all checked."""

    gen_time: datetime
    serial_number: int
    policy: str
    hash_algorithm: str  # name of the imprint's hash
    hashed_message: bytes
    nonce: int | None
    accuracy: timedelta | None
    tsa_certificate: bytes = field(repr=False)
    tsa_subject: str
    signature_algorithm: str
    cms: CmsVerification = field(repr=False)


def _accuracy(value: Any) -> timedelta | None:
    if isinstance(value, core.Void):
        return None
    native = value.native
    return timedelta(
        seconds=native.get("seconds") or 0,
        milliseconds=native.get("millis") or 0,
        microseconds=native.get("micros") or 0,
    )


def check_tsa_certificate(cert: asn1_x509.Certificate) -> None:
    """RFC 3161 2.3: the TSA certificate's EKU is critical and names only id-kp-timeStamping."""
    with asn1_guard("TSA 证书", "TSA certificate"):
        extension = None
        for ext in cert["tbs_certificate"]["extensions"]:
            if ext["extn_id"].dotted == "2.5.29.37":
                extension = ext
        if extension is None:
            raise CertificateError("TSA 证书缺少扩展密钥用途", "TSA certificate lacks extendedKeyUsage")
        purposes = [p.dotted for p in extension["extn_value"].parsed]
        critical = bool(extension["critical"].native)
    if purposes != [EKU_TIME_STAMPING] or not critical:
        raise CertificateError(
            "TSA 证书的扩展密钥用途必须是唯一且关键的 timeStamping",
            "TSA certificate extendedKeyUsage must be critical with timeStamping as its only purpose",
        )


def _check_ess(parsed_info: cms.ContentInfo, cert: asn1_x509.Certificate) -> None:
    signer_info = parsed_info["content"]["signer_infos"][0]
    attrs = {a["type"].dotted: a for a in signer_info["signed_attrs"]}
    der = cert.dump()
    if ATTR_SIGNING_CERTIFICATE_V2 in attrs:
        first = attrs[ATTR_SIGNING_CERTIFICATE_V2]["values"][0]["certs"][0]
        hash_oid = first["hash_algorithm"]["algorithm"].dotted
        if hash_oid not in DIGESTS:
            raise UnsupportedAlgorithm(
                f"不支持的 ESS 摘要算法 {hash_oid}", f"Unsupported ESS hash {hash_oid}"
            )
        expected = digest_content(der, hash_oid)
        actual = bytes(first["cert_hash"].native)
    elif ATTR_SIGNING_CERTIFICATE in attrs:
        first = attrs[ATTR_SIGNING_CERTIFICATE]["values"][0]["certs"][0]
        expected = hashlib.sha1(der, usedforsecurity=False).digest()
        actual = bytes(first["cert_hash"].native)
    else:
        raise MalformedData(
            "时间戳令牌缺少 ESS signingCertificate 属性",
            "Time-stamp token lacks the ESS signingCertificate attribute",
        )
    if expected != actual:
        raise InvalidSignature(
            "时间戳令牌的 ESS 证书摘要与签名证书不符",
            "ESS certificate hash in the token does not match the signer certificate",
        )


@dataclass(frozen=True)
class ParsedToken:
    """A token's TSTInfo, read without verifying anything."""

    tst_info: tsp.TSTInfo = field(repr=False)
    gen_time: datetime
    serial_number: int
    policy: str
    hash_algorithm: str  # dotted
    hashed_message: bytes
    nonce: int | None
    accuracy: timedelta | None


def _read_tst_info(econtent: bytes) -> ParsedToken:
    info = load_der(tsp.TSTInfo, econtent, what_zh="TSTInfo", what_en="TSTInfo")
    with asn1_guard("TSTInfo", "TSTInfo"):
        if info["version"].native != "v1":
            raise MalformedData("TSTInfo 版本必须为 1", "TSTInfo version must be 1")
        gen_time = info["gen_time"].native
        if not isinstance(gen_time, datetime) or gen_time.tzinfo is None:
            raise MalformedData("TSTInfo genTime 无效", "Invalid TSTInfo genTime")
        nonce = info["nonce"]
        imprint = info["message_imprint"]
        return ParsedToken(
            tst_info=info,
            gen_time=gen_time,
            serial_number=int(info["serial_number"].native),
            policy=info["policy"].dotted,
            hash_algorithm=imprint["hash_algorithm"]["algorithm"].dotted,
            hashed_message=bytes(imprint["hashed_message"].native),
            nonce=None if isinstance(nonce, core.Void) else int(nonce.native),
            accuracy=_accuracy(info["accuracy"]),
        )


def parse_token(token: bytes, *, max_size: int = RESPONSE_MAX_SIZE) -> ParsedToken:
    """Read a token's TSTInfo (shape checks only; use :func:`verify_token` to trust it)."""
    parsed = parse_signed_data_token(token, max_size=max_size)
    assert parsed.econtent is not None
    return _read_tst_info(parsed.econtent)


def parse_signed_data_token(
    token: bytes, *, certificates: Sequence[bytes] = (), max_size: int = RESPONSE_MAX_SIZE
) -> ParsedSignedData:
    """The token's SignedData, checked to hold an embedded TSTInfo."""
    parsed = parse_signed_data(token, extra_certificates=certificates, max_size=max_size)
    if parsed.content_type != CT_TST_INFO:
        raise MalformedData(
            f"时间戳令牌的内容类型 {parsed.content_type} 不是 TSTInfo",
            f"Token content type {parsed.content_type} is not TSTInfo",
        )
    if parsed.econtent is None:
        raise MalformedData("时间戳令牌缺少 TSTInfo 内容", "Time-stamp token holds no TSTInfo")
    return parsed


def verify_token(
    token: bytes,
    data: Content | None = None,
    *,
    digest: bytes | None = None,
    nonce: int | None = None,
    certificates: Sequence[bytes] = (),
    trust_anchors: Sequence[Certificate] | None = None,
    max_size: int = RESPONSE_MAX_SIZE,
) -> TimestampVerification:
    """Verify a time-stamp token over ``data`` (hashed here with the imprint's algorithm) or ``digest``.

    Checks: the CMS signature and messageDigest, the messageImprint, the nonce when one is given,
    the ESS signingCertificate(V2) binding, and the TSA certificate's critical timeStamping EKU.
    With ``trust_anchors`` (SM2 certificates) the TSA certificate's path is validated at genTime.
    ``certificates`` supplies the TSA certificate when the token does not embed it.
    Raises InvalidSignature (signature, digest, imprint or nonce mismatch), CertificateError,
    MalformedData / InputTooLarge, UnsupportedAlgorithm.
    """
    if (data is None) == (digest is None):
        raise InvalidInput("必须且只能提供原文或摘要之一", "Give exactly one of data and digest")
    parsed = parse_signed_data_token(token, certificates=certificates, max_size=max_size)
    assert parsed.econtent is not None
    facts = _read_tst_info(parsed.econtent)
    if facts.hash_algorithm not in DIGESTS:
        raise UnsupportedAlgorithm(
            f"不支持的时间戳摘要算法 {facts.hash_algorithm}",
            f"Unsupported imprint hash {facts.hash_algorithm}",
        )
    result = verify_signed_data(parsed)
    if not result.digest_ok:
        raise InvalidSignature("时间戳令牌的 TSTInfo 摘要不符", "Time-stamp token TSTInfo digest mismatch")
    if not result.signature_ok:
        raise InvalidSignature("时间戳令牌签名无效", "Time-stamp token signature does not verify")
    signer_cert = parsed.signer.certificate
    with asn1_guard("时间戳令牌", "time-stamp token"):
        _check_ess(parsed.asn1, signer_cert)
    check_tsa_certificate(signer_cert)
    expected = digest_content(data, facts.hash_algorithm) if data is not None else digest
    assert expected is not None
    if expected != facts.hashed_message:
        raise InvalidSignature(
            "时间戳令牌的消息印记与数据不符", "Time-stamp token message imprint does not match the data"
        )
    if nonce is not None and facts.nonce != nonce:
        raise InvalidSignature(
            "时间戳令牌的 nonce 与请求不符", "Time-stamp token nonce does not match the request"
        )
    if trust_anchors is not None:
        from .path_validation import validate_path

        tsa = load_certificate_der(signer_cert.dump())
        others = [load_certificate_der(c) for c in parsed.certificates if c != signer_cert.dump()]
        validate_path(tsa, trust_anchors=trust_anchors, at=facts.gen_time, intermediates=others)
    return TimestampVerification(
        gen_time=facts.gen_time,
        serial_number=facts.serial_number,
        policy=facts.policy,
        hash_algorithm=DIGESTS[facts.hash_algorithm][0],
        hashed_message=facts.hashed_message,
        nonce=facts.nonce,
        accuracy=facts.accuracy,
        tsa_certificate=signer_cert.dump(),
        tsa_subject=name_to_string(signer_cert.subject),
        signature_algorithm=result.signature_algorithm,
        cms=result,
    )


def verify_signature_timestamp(
    verification: CmsVerification, token: bytes, **kwargs: Any
) -> TimestampVerification:
    """Verify a signatureTimeStampToken: its imprint must cover the CMS signature value (RFC 3161 App. A)."""
    return verify_token(token, verification.signature_value, **kwargs)
