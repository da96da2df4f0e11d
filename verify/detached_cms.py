"""Verification of a CMS SignedData on its own, usually detached, together with the data it signs.

Recognised by content: a DER ``ContentInfo`` whose contentType is signedData in the RFC 5652 OID
(``1.2.840.113549.1.7.2``) or the GB/T 35275 one (``1.2.156.10197.6.1.4.2.2``), or the same in a
PEM ``CMS`` / ``PKCS7`` block (what ``openssl cms -outform PEM`` writes). The CMS is parsed and
its signature verified by :mod:`gmpki.cms` (SM2 with SM3, ECDSA and RSA with SHA-2), over the
signed attributes exactly as read. Checks, with the engine's ids:

* ``format.parse`` — the ContentInfo, SignedData and its one SignerInfo decode, the signer
  certificate is found among the embedded ones;
* ``signer.signature`` — the signature over the signed attributes (or, without them, over the
  data itself); SM2 only when the policy accepts SM2-with-SM3;
* ``document.data_hash`` — the messageDigest attribute against the SM3 / SHA-2 digest of the data
  supplied (or of the embedded content). A detached CMS without its data is indeterminate
  (``SIGNED_DATA_NOT_FOUND``): the signature may be genuine, but over *what* cannot be told;
* ``signer.certificate_validity`` — at the time a trusted signatureTimeStampToken proves, else the
  signingTime attribute, else the validation time;
* ``signer.certificate_chain`` — SM2: :mod:`gmpki.path_validation` to the trust source's SM2
  anchors (embedded certificates help build the path); ECDSA/RSA: pyhanko-certvalidator to the
  interop anchors (:mod:`verify.interop`), as for PDF;
* ``signer.certificate_revocation`` — SM2: the trust source's CRLs; ECDSA/RSA: its interop CRLs;
* ``timestamp.token`` — the first signatureTimeStampToken: signature, imprint over the signature
  value, TSA chain.

The report's one signature is of type ``sign``: a CMS carries a certificate, never a seal. Even one
made by :func:`signer.cms_signing.seal_cms` names no seal (it embeds the department certificate and
the region root), and one department certificate may be listed by several seals.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Final

from core.errors import EsealError, InputTooLarge, MalformedData
from gmpki.cms import (
    DIGESTS,
    ParsedSignedData,
    parse_signed_data,
    verify_signed_attributes,
    verify_signed_data,
)
from gmpki.der import pem_blocks
from gmpki.ofd import Problem
from gmpki.tsp import TimestampVerification
from gmpki.x509 import Certificate, load_certificate_der
from gmpki.x509_interop import InteropCertificate, load_interop_certificate

from .checks import Context, _chain, apply_policy, signer_revocation
from .evidence import certificate_facts
from .interop import (
    brief,
    check_signature_timestamp,
    interop_chain,
    interop_revocation,
    signer_validity,
)
from .policy import SM2_WITH_SM3
from .report import (
    CertificateSummary,
    CheckResult,
    DocumentReport,
    Result,
    SignatureReport,
    SubIndication,
    document_verdict,
    judge,
    serial_hex,
)

FORMAT: Final = "cms"
MAX_CMS_SIZE: Final = 16 * 1024 * 1024  # the engine's DER ceiling: embedded content may be large
CMS_CHECKS: Final[tuple[str, ...]] = (
    "format.parse",
    "signer.signature",
    "signer.certificate_validity",
    "signer.certificate_chain",
    "signer.certificate_revocation",
    "document.data_hash",
    "timestamp.token",
)
# ContentInfo.contentType = signedData, DER-encoded (tag, length, value), in both OIDs.
_SIGNED_DATA_OIDS: Final = (
    bytes.fromhex("06092a864886f70d010702"),  # 1.2.840.113549.1.7.2 (RFC 5652 / PKCS #7)
    bytes.fromhex("060a2a811ccf550601040202"),  # 1.2.156.10197.6.1.4.2.2 (GB/T 35275)
)
_PEM_LABELS: Final = ("CMS", "PKCS7")
_PEM_WINDOW: Final = 256  # a PEM block may follow a few lines of text (OpenSSL writes none)
_SIGN: Final = "sign"
_ID: Final = "cms"
_FAMILY_NAMES: Final = {"sm2": "SM2", "ecdsa": "ECDSA", "rsa": "RSA"}


# --- detection --------------------------------------------------------------------------------------------
def probe_signed_data(data: bytes) -> None:
    """MalformedData unless ``data`` starts like a DER ContentInfo holding signedData.

    Only the outer header and the contentType are read, so a truncated or damaged CMS is still
    recognised (and then reported as a ``format.parse`` failure, not refused as unknown input).
    """
    if len(data) < 2 or data[0] != 0x30:
        raise MalformedData("不是 CMS 签名数据", "not a CMS ContentInfo")
    first = data[1]
    if first < 0x80 or first == 0x80:  # short form, or BER indefinite length
        start = 2
    else:
        count = first & 0x7F
        if count > 4:
            raise MalformedData("不是 CMS 签名数据", "not a CMS ContentInfo")
        start = 2 + count
    if not any(data[start : start + len(oid)] == oid for oid in _SIGNED_DATA_OIDS):
        raise MalformedData("不是 CMS 签名数据", "not a CMS ContentInfo")


def is_cms_pem(data: bytes) -> bool:
    """Whether ``data`` holds a PEM ``CMS`` or ``PKCS7`` block near its start."""
    head = data[:_PEM_WINDOW]
    return any(b"-----BEGIN " + label.encode() + b"-----" in head for label in _PEM_LABELS)


# --- what was read ----------------------------------------------------------------------------------------
@dataclass
class _Cms:
    """What was read of the CMS; filled step by step, problems instead of exceptions."""

    problems: list[Problem] = field(default_factory=list)
    parsed: ParsedSignedData | None = None
    signer: InteropCertificate | None = None
    pem: bool = False
    timestamp: TimestampVerification | None = None


def _problem(exc: EsealError, zh: str, en: str) -> Problem:
    return Problem(f"{zh}：{exc.message_zh}", f"{en}: {exc.message_en}")


def _der(data: bytes, cms: _Cms) -> bytes | None:
    if not is_cms_pem(data):
        return data
    cms.pem = True
    if len(data) > 2 * MAX_CMS_SIZE:
        raise InputTooLarge(
            f"PEM 数据过大（{len(data)} 字节，上限 {2 * MAX_CMS_SIZE}）",
            f"PEM input too large ({len(data)} bytes, limit {2 * MAX_CMS_SIZE})",
        )
    try:
        blocks = pem_blocks(
            data, labels=_PEM_LABELS, max_size=2 * MAX_CMS_SIZE, what_zh="PEM 数据", what_en="PEM data"
        )
    except MalformedData as exc:
        cms.problems.append(_problem(exc, "PEM 数据无法解码", "the PEM data cannot be decoded"))
        return None
    if len(blocks) != 1:
        cms.problems.append(
            Problem(
                f"PEM 数据应恰含一个 CMS 块（实际 {len(blocks)} 个）",
                f"the PEM data must hold exactly one CMS block (found {len(blocks)})",
            )
        )
        return None
    return blocks[0]


def _read(data: bytes) -> _Cms:
    cms = _Cms()
    der = _der(data, cms)
    if der is None:
        return cms
    try:
        cms.parsed = parse_signed_data(der, max_size=MAX_CMS_SIZE)
        cms.signer = load_interop_certificate(cms.parsed.signer.certificate.dump())
    except InputTooLarge:
        raise
    except EsealError as exc:
        cms.problems.append(_problem(exc, "CMS 签名数据无法解析", "the CMS signed data cannot be decoded"))
    return cms


# --- checks -----------------------------------------------------------------------------------------------
def _r(cid: str, result: Result, zh: str, en: str, sub: SubIndication | None = None) -> CheckResult:
    return CheckResult(cid, result, zh, en, sub)


def _skipped(cid: str, zh: str, en: str) -> CheckResult:
    return _r(cid, Result.SKIPPED, f"未检查：{zh}", f"not checked: {en}")


def _format_check(cms: _Cms, supplied: bool) -> CheckResult:
    cid = "format.parse"
    if cms.problems or cms.parsed is None:
        return _r(
            cid,
            Result.FAILED,
            "；".join(p.zh for p in cms.problems),
            "; ".join(p.en for p in cms.problems),
            SubIndication.FORMAT_FAILURE,
        )
    p = cms.parsed
    standard = "GB/T 35275" if p.flavour.value == "gbt35275" else "RFC 5652"
    family = _FAMILY_NAMES.get(p.signer.family, p.signer.family)
    pem_zh, pem_en = ("PEM 编码的", "PEM-encoded ") if cms.pem else ("", "")
    if p.econtent is None:
        kind_zh, kind_en = "分离式", f"detached {standard} SignedData"
    else:
        kind_zh, kind_en = "内含原文的", f"{standard} SignedData with embedded content"
    message_zh = (
        f"{pem_zh}{kind_zh} {standard} 签名数据已解码（{family} 签名，"
        f"{len(p.certificates)} 张内嵌证书，内容类型 {p.content_type}）"
    )
    message_en = (
        f"{pem_en}{kind_en} decoded ({family} signature, "
        f"{len(p.certificates)} embedded certificates, content type {p.content_type})"
    )
    if p.econtent is not None and supplied:
        return _r(
            cid,
            Result.WARNING,
            f"{message_zh}；签名数据已含原文，另行提供的原文按其与签名的一致性检查",
            f"{message_en}; the CMS embeds its content, so the data supplied is checked against the "
            "signature in its place",
        )
    return _r(cid, Result.PASSED, message_zh, message_en)


def _digest_label(oid: str) -> str:
    name = DIGESTS[oid][0]  # "sm3", "sha256", ...
    return name.upper() if name == "sm3" else f"SHA-{name[3:]}"


def _signature_checks(cms: _Cms, detached_data: bytes | None, ctx: Context) -> dict[str, CheckResult]:
    """``signer.signature`` and ``document.data_hash``, over the data supplied, else the content
    the CMS embeds, else (detached, nothing supplied) over the signed attributes alone."""
    assert cms.parsed is not None and cms.signer is not None
    parsed = cms.parsed
    signer = parsed.signer
    content = detached_data if detached_data is not None else parsed.econtent
    who = cms.signer.describe()
    family = _FAMILY_NAMES.get(signer.family, signer.family)
    out: dict[str, CheckResult] = {}
    if signer.family == "sm2" and SM2_WITH_SM3 not in ctx.policy.signature_algorithms:
        out["signer.signature"] = _r(
            "signer.signature",
            Result.FAILED,
            "签名算法 SM2-with-SM3 不被策略接受",
            "the signature algorithm SM2-with-SM3 is not accepted by the policy",
            SubIndication.SIG_CRYPTO_FAILURE,
        )
        out["document.data_hash"] = _skipped(
            "document.data_hash", "签名算法不被接受", "the signature algorithm is not accepted"
        )
        return out
    try:
        if content is not None:
            # The content to check: the data supplied, else what the CMS embeds (verify_signed_data
            # refuses outside content for an embedding CMS, so the embedded copy is set aside).
            result = verify_signed_data(replace(parsed, econtent=None), content)
            signature_ok, digest_ok = result.signature_ok, result.digest_ok
            computed: bytes | None = result.computed_digest
        elif signer.signed_attributes is not None:
            signature_ok, digest_ok, computed = verify_signed_attributes(parsed), None, None
        else:
            signature_ok, digest_ok, computed = None, None, None
    except EsealError as exc:
        out["signer.signature"] = _r(
            "signer.signature",
            Result.FAILED,
            f"{family} 签名无法验证：{exc.message_zh}；签名者证书 {who}",
            f"the {family} signature cannot be verified: {exc.message_en}; signer certificate {who}",
            SubIndication.SIG_CRYPTO_FAILURE,
        )
        out["document.data_hash"] = _skipped(
            "document.data_hash", "签名无法验证", "the signature could not be verified"
        )
        return out
    attributes = signer.signed_attributes is not None
    over_zh, over_en = ("签名属性", "the signed attributes") if attributes else ("原文", "the data")
    if signature_ok is None:
        out["signer.signature"] = _r(
            "signer.signature",
            Result.INDETERMINATE,
            f"{family} 签名不含签名属性，直接覆盖原文：未提供原文，无法验证；签名者证书 {who}",
            f"the {family} signature has no signed attributes and covers the data itself, which was not "
            f"supplied: it cannot be verified; signer certificate {who}",
            SubIndication.SIGNED_DATA_NOT_FOUND,
        )
    elif signature_ok:
        out["signer.signature"] = _r(
            "signer.signature",
            Result.PASSED,
            f"{family} 签名有效（{over_zh}），签名者证书 {who}",
            f"{family} signature over {over_en} valid, signer certificate {who}",
        )
    else:
        out["signer.signature"] = _r(
            "signer.signature",
            Result.FAILED,
            f"{family} 签名无效：签名值与{over_zh}不符；签名者证书 {who}",
            f"{family} signature invalid: it does not verify over {over_en}; signer certificate {who}",
            SubIndication.SIG_CRYPTO_FAILURE,
        )
    embedded = detached_data is None and content is not None
    out["document.data_hash"] = _data_hash(cms, content, embedded, digest_ok, computed, bool(signature_ok))
    return out


def _data_hash(
    cms: _Cms,
    content: bytes | None,
    embedded: bool,
    digest_ok: bool | None,
    computed: bytes | None,
    signature_ok: bool,
) -> CheckResult:
    cid = "document.data_hash"
    assert cms.parsed is not None
    signer = cms.parsed.signer
    digest_name = _digest_label(signer.digest_oid)
    expected = signer.message_digest.hex() if signer.message_digest is not None else None
    if content is None:
        said_zh = f"（messageDigest {expected}）" if expected else ""
        said_en = f" (messageDigest {expected})" if expected else ""
        return _r(
            cid,
            Result.INDETERMINATE,
            f"分离式签名未提供原文，无法确认签名覆盖的是哪份数据{said_zh}：请同时提供被签名的原文"
            "（命令行 --data，接口 data 字段）",
            f"a detached signature without its data: what it signs cannot be established{said_en}; "
            "supply the signed data (--data on the command line, the data part of POST /v1/verify)",
            SubIndication.SIGNED_DATA_NOT_FOUND,
        )
    what_zh, what_en = ("内含原文", "the embedded content") if embedded else ("原文", "the data supplied")
    if expected is None:  # no signed attributes: the signature is over the data itself
        if signature_ok:
            return _r(
                cid,
                Result.PASSED,
                f"签名直接覆盖{what_zh}（{len(content)} 字节），且验证通过",
                f"the signature covers {what_en} ({len(content)} bytes) itself and verifies",
            )
        return _r(
            cid,
            Result.FAILED,
            f"对{what_zh}的签名验证失败：{what_zh}不是被签名的数据、已被修改，或签名无效",
            f"the signature over {what_en} does not verify: it is not the signed data, was modified, or "
            "the signature is bad",
            SubIndication.HASH_FAILURE,
        )
    shown = computed.hex() if computed is not None else "-"
    if digest_ok:
        return _r(
            cid,
            Result.PASSED,
            f"签名属性 messageDigest 与{what_zh}（{len(content)} 字节）的 {digest_name} 摘要一致（{shown}）",
            f"messageDigest equals the {digest_name} digest of {what_en} ({len(content)} bytes, {shown})",
        )
    return _r(
        cid,
        Result.FAILED,
        f"{what_zh}（{len(content)} 字节）的 {digest_name} 摘要为 {shown}，"
        f"与签名属性 messageDigest {expected} 不符：{what_zh}不是被签名的数据，或在签名后被修改",
        f"the {digest_name} digest of {what_en} ({len(content)} bytes) is {shown} but the signed "
        f"messageDigest is {expected}: it is not the signed data, or was modified after signing",
        SubIndication.HASH_FAILURE,
    )


def _embedded_sm2(parsed: ParsedSignedData) -> tuple[Certificate, ...]:
    """SM2 certificates the CMS carries: untrusted helpers for building the signer's path."""
    out: list[Certificate] = []
    for der in parsed.certificates:
        try:
            out.append(load_certificate_der(der))
        except EsealError:
            continue  # not SM2, or unreadable: it cannot be part of an SM2 path
    return tuple(out)


def _trust_checks(cms: _Cms, ctx: Context) -> dict[str, CheckResult]:
    """``signer.certificate_validity``, ``_chain`` and ``_revocation``, at the best known time."""
    assert cms.parsed is not None and cms.signer is not None
    parsed = cms.parsed
    claimed = parsed.signer.signing_time.astimezone(dt.UTC) if parsed.signer.signing_time else None
    proven = cms.timestamp.gen_time.astimezone(dt.UTC) if cms.timestamp is not None else None
    when = proven or claimed or ctx.at
    out = {
        "signer.certificate_validity": signer_validity(
            cms.signer, when, proven is not None, claimed=claimed is not None
        )
    }
    if parsed.signer.family == "sm2":
        facts = certificate_facts(cms.signer.der)
        embedded = _embedded_sm2(parsed)
        out["signer.certificate_chain"] = _chain(
            "signer.certificate_chain", facts, when, ctx, "签名者", "signer", intermediates=embedded
        )
        out["signer.certificate_revocation"] = signer_revocation(
            facts, claimed or ctx.at, ctx, proven=proven, intermediates=embedded
        )
    else:
        out["signer.certificate_chain"] = interop_chain(
            "signer.certificate_chain", cms.signer, parsed.certificates, when, ctx
        )
        out["signer.certificate_revocation"] = interop_revocation(
            cms.signer, parsed.certificates, claimed or ctx.at, ctx, proven=proven
        )
    return out


def _undecodable(cid: str) -> CheckResult:
    return _skipped(cid, "签名数据无法解码", "the signed data could not be decoded")


def _evaluate(cms: _Cms, detached_data: bytes | None, ctx: Context) -> tuple[CheckResult, ...]:
    results = {"format.parse": _format_check(cms, detached_data is not None)}
    if results["format.parse"].result is not Result.FAILED:
        assert cms.parsed is not None
        # The time-stamp first: a verified one is the time the certificate is judged at.
        results["timestamp.token"], cms.timestamp = check_signature_timestamp(
            cms.parsed.signer.timestamp_tokens,
            cms.parsed.signer.signature,
            ctx,
            none_zh="签名不含时间戳",
            none_en="the signature carries no time-stamp",
        )
        results.update(_signature_checks(cms, detached_data, ctx))
        results.update(_trust_checks(cms, ctx))
    return tuple(apply_policy(results.get(c) or _undecodable(c), ctx.policy) for c in CMS_CHECKS)


def verify_cms(data: bytes, detached_data: bytes | None, ctx: Context) -> DocumentReport:
    """Verify a CMS SignedData (DER or PEM), over ``detached_data`` when given, under ``ctx``.

    A report, never an exception, for a damaged CMS; raises InputTooLarge only.
    """
    cms = _read(bytes(data))
    try:
        checks = _evaluate(cms, detached_data, ctx)
    except EsealError as exc:
        # Whatever the checks could not foresee is a finding about this input, not a crash.
        cms.problems.append(_problem(exc, "签名验证出错", "signature verification failed"))
        checks = _evaluate(cms, detached_data, ctx)
    except Exception as exc:  # library errors on hostile input (asn1crypto, certvalidator)
        why = brief(exc)
        cms.problems.append(Problem(f"签名结构错误：{why}", f"malformed signature structure: {why}"))
        checks = _evaluate(cms, detached_data, ctx)
    indication, sub = judge(checks)
    signer = cms.signer
    when = cms.timestamp.gen_time if cms.timestamp is not None else None
    if when is None and cms.parsed is not None:
        when = cms.parsed.signer.signing_time
    report = SignatureReport(
        id=_ID,
        type=_SIGN,
        version=None,
        signing_time=when,
        indication=indication,
        sub_indication=sub,
        seal=None,
        signer=CertificateSummary(signer.subject, serial_hex(signer.serial)) if signer is not None else None,
        checks=checks,
    )
    doc_indication, doc_sub = document_verdict((report,), (), True)
    return DocumentReport(FORMAT, True, doc_indication, doc_sub, (report,), (), ctx.at)


__all__ = ["CMS_CHECKS", "FORMAT", "MAX_CMS_SIZE", "is_cms_pem", "probe_signed_data", "verify_cms"]
