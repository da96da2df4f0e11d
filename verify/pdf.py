"""Verification of signed PDF documents: every signature field, with the engine's check ids.

The document is read with pyHanko (lazily, with its stream decode limits for untrusted input). For
each signature field that holds a value:

* the ``/ByteRange`` is checked for shape and bounds, ``/Contents`` for a DER CMS followed only by
  zero padding, and the CMS is parsed by :mod:`gmpki.cms` (``format.parse``);
* **ECDSA / RSA** signatures are validated by pyHanko (``validate_pdf_signature``): messageDigest
  against the ``/ByteRange`` digest (``document.data_hash``), the signature (``signer.signature``),
  the certificate path to the *interop* trust anchors (``signer.certificate_chain``), coverage and
  the modifications made after signing under DocMDP (``document.coverage``);
* **SM2** signatures (GB/T 35275 or RFC 5652 content types) are verified by
  :func:`gmpki.cms.verify_signed_data` over the ``/ByteRange`` bytes and their certificate path by
  :mod:`gmpki.path_validation` against the trust source's SM2 anchors, with CRLs; coverage and
  modifications still come from pyHanko's structural analysis;
* ``signer.certificate_validity`` is judged at the signature's best known time: the genTime of a
  verified signature time-stamp, else the signer's claimed time (signingTime or ``/M``);
* ``timestamp.token``: the signatureTimeStampToken is verified by :mod:`gmpki.tsp` (signature,
  imprint over the signature value, TSA certificate usage) and its TSA certificate path by the
  family's validator (SM2: gmpki; ECDSA/RSA: pyhanko-certvalidator).

Trust. ECDSA/RSA signatures chain to the *interop* anchors of :mod:`verify.interop`
(:class:`InteropTrustSource`, re-exported here), SM2 ones to the trust source's SM2 anchors.

Revocation of ECDSA/RSA certificates: the trust source's interop CRLs (``interop_crls``, e.g. the
region's PAdES interop CRL), through :func:`verify.interop.interop_revocation`; skipped when no CRL
covers the issuer. Not verified yet: document time-stamps (``/DocTimeStamp``), reported as
indeterminate.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field
from typing import Any, Final

from asn1crypto import cms, core
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import (
    CatalogModificationRule,
    DocInfoRule,
    DSSCompareRule,
    FormUpdatingRule,
    GenericFieldModificationRule,
    MetadataUpdateRule,
    ModificationLevel,
    ObjectStreamRule,
    SigFieldCreationRule,
    SigFieldModificationRule,
    StandardDiffPolicy,
    XrefStreamRule,
)
from pyhanko.sign.fields import enumerate_sig_fields
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko.sign.validation.status import PdfSignatureStatus, SignatureCoverageLevel

from core.errors import EsealError, InputTooLarge
from gmpki import oids
from gmpki.cms import (
    ATTR_SIGNATURE_TIME_STAMP_TOKEN,
    ParsedSignedData,
    UnsupportedAlgorithm,
    parse_signed_data,
    verify_signed_data,
)
from gmpki.ofd import Problem
from gmpki.tsp import TimestampVerification
from gmpki.x509_interop import InteropCertificate, load_interop_certificate

from .checks import Context, _chain, apply_policy, signer_revocation
from .evidence import certificate_facts
from .interop import (
    InteropAnchorSource,
    InteropTrustSource,
    brief,
    certvalidator_context,
    check_signature_timestamp,
    interop_anchors_of,
    interop_revocation,
    run_blocking,
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

FORMAT: Final = "pdf"
MAX_PDF_SIZE: Final = 64 * 1024 * 1024
MAX_CONTENTS: Final = 4 * 1024 * 1024
PDF_CHECKS: Final[tuple[str, ...]] = (
    "format.parse",
    "signer.signature",
    "signer.certificate_validity",
    "signer.certificate_chain",
    "signer.certificate_revocation",
    "document.data_hash",
    "document.coverage",
    "timestamp.token",
)
# pyHanko's default modification policy, except that a new *visible* signature field after a
# certification signature is allowed, as Acrobat allows it ("form filling and signing"): a
# certified document can then be sealed again.
DIFF_POLICY: Final = StandardDiffPolicy(
    global_rules=[
        CatalogModificationRule(),  # type: ignore[no-untyped-call]
        DocInfoRule().as_qualified(ModificationLevel.LTA_UPDATES),
        XrefStreamRule().as_qualified(ModificationLevel.LTA_UPDATES),
        ObjectStreamRule().as_qualified(ModificationLevel.LTA_UPDATES),
        DSSCompareRule().as_qualified(ModificationLevel.LTA_UPDATES),
        MetadataUpdateRule().as_qualified(ModificationLevel.LTA_UPDATES),  # type: ignore[no-untyped-call]
    ],
    form_rule=FormUpdatingRule(
        field_rules=[
            SigFieldCreationRule(allow_new_visible_after_certify=True),  # type: ignore[no-untyped-call]
            SigFieldModificationRule(),
            GenericFieldModificationRule(),
        ],
    ),
)
_SIGN: Final = "sign"  # a CMS signature: the OFD vocabulary's Sign type (GB/T 35275), never a SES seal


def _problem(exc: BaseException, zh: str, en: str) -> Problem:
    if isinstance(exc, EsealError):
        return Problem(f"{zh}：{exc.message_zh}", f"{en}: {exc.message_en}")
    return Problem(f"{zh}：{brief(exc)}", f"{en}: {brief(exc)}")


def _r(cid: str, result: Result, zh: str, en: str, sub: SubIndication | None = None) -> CheckResult:
    return CheckResult(cid, result, zh, en, sub)


def _skipped(cid: str, zh: str, en: str) -> CheckResult:
    return _r(cid, Result.SKIPPED, f"未检查：{zh}", f"not checked: {en}")


# --- per-signature facts ---------------------------------------------------------------------------------
# Signature algorithm OIDs of SignerInfo.signatureAlgorithm, by family (as gmpki.cms reads them).
_SM2_OIDS: Final = frozenset({oids.SM2_SIGN, oids.SM2_WITH_SM3, oids.SM2_CURVE})


@dataclass
class _Sig:
    """What was read of one signature field; filled step by step, problems instead of exceptions."""

    name: str
    emb: EmbeddedPdfSignature | None = None
    problems: list[Problem] = field(default_factory=list)
    parsed: ParsedSignedData | None = None  # SM2 only: gmpki's reading of the CMS
    content: bytes | None = None
    signer: InteropCertificate | None = None
    family: str | None = None
    subfilter: str | None = None
    claimed_time: dt.datetime | None = None
    signature_value: bytes = b""
    tokens: tuple[bytes, ...] = ()
    timestamp: TimestampVerification | None = None
    coverage: Any = None
    docmdp_ok: bool | None = None
    diff_result: Any = None
    coverage_problem: str | None = None


def _byte_range(emb: EmbeddedPdfSignature, size: int) -> tuple[int, int, int, int]:
    raw = emb.byte_range
    values = [int(v) for v in raw] if len(raw) == 4 else []
    if len(values) != 4:
        raise ValueError("/ByteRange must hold four integers")
    start1, len1, start2, len2 = values
    if start1 != 0 or min(values) < 0 or start1 + len1 > start2 or start2 + len2 > size:
        raise ValueError(f"/ByteRange {values} is out of bounds for a {size}-byte file")
    return start1, len1, start2, len2


def _der_prefix(contents: bytes) -> bytes:
    """The DER CMS at the start of ``/Contents``; only zero padding may follow it."""
    if len(contents) < 2 or contents[0] != 0x30:
        raise ValueError("/Contents does not start with a DER SEQUENCE")
    first = contents[1]
    if first < 0x80:
        length = 2 + first
    else:
        n = first & 0x7F
        if not 1 <= n <= 4 or len(contents) < 2 + n:
            raise ValueError("/Contents has an invalid DER length")
        length = 2 + n + int.from_bytes(contents[2 : 2 + n], "big")
    if length > len(contents):
        raise ValueError("/Contents is shorter than its DER length says")
    if any(contents[length:]):
        raise ValueError("/Contents holds bytes after the CMS other than zero padding")
    return contents[:length]


def _family(signature_oid: str) -> str:
    if signature_oid in _SM2_OIDS:
        return "sm2"
    if signature_oid.startswith("1.2.840.10045."):
        return "ecdsa"
    if signature_oid.startswith("1.2.840.113549.1.1."):
        return "rsa"
    raise UnsupportedAlgorithm(
        f"不支持的签名算法 {signature_oid}", f"unsupported signature algorithm {signature_oid}"
    )


def _read_signature(name: str, sig_field: Any, reader: PdfFileReader, data: bytes) -> _Sig:
    sig = _Sig(name)
    try:
        sig.emb = emb = EmbeddedPdfSignature(reader, sig_field, name)
        sub = emb.sig_object.get("/SubFilter")
        sig.subfilter = str(sub) if sub is not None else None
        start1, len1, start2, len2 = _byte_range(emb, len(data))
        sig.content = data[start1 : start1 + len1] + data[start2 : start2 + len2]
        contents = bytes(emb.pkcs7_content)
        if len(contents) > MAX_CONTENTS:
            raise ValueError(f"/Contents is too large ({len(contents)} bytes)")
        der = _der_prefix(contents)
        si = emb.signer_info
        sig.family = _family(si["signature_algorithm"]["algorithm"].dotted)
        sig.signature_value = bytes(si["signature"].native)
        unsigned = si["unsigned_attrs"]
        if not isinstance(unsigned, core.Void):  # never .native: see _without_unsigned_attributes
            sig.tokens = tuple(
                v.dump()
                for a in unsigned
                if a["type"].dotted == ATTR_SIGNATURE_TIME_STAMP_TOKEN
                for v in a["values"]
            )
        if sig.family == "sm2":
            # gmpki reads SM2 CMS (GB/T 35275 content types included); pyHanko cannot verify SM2.
            sig.parsed = parse_signed_data(der, max_size=MAX_CONTENTS)
            sig.signer = load_interop_certificate(sig.parsed.signer.certificate.dump())
        else:
            sig.signer = load_interop_certificate(emb.signer_cert.dump())
    except EsealError as exc:
        sig.problems.append(_problem(exc, "签名数据无法解析", "the signature cannot be decoded"))
    except Exception as exc:
        sig.problems.append(_problem(exc, "签名结构错误", "malformed signature structure"))
    if sig.emb is not None:
        try:
            claimed = sig.emb.self_reported_timestamp
            sig.claimed_time = claimed.astimezone(dt.UTC) if claimed is not None and claimed.tzinfo else None
        except Exception:
            sig.claimed_time = None
    return sig


def _integrity(sig: _Sig) -> None:
    """Coverage and later modifications (pyHanko's structural analysis), for SM2 signatures."""
    emb = sig.emb
    assert emb is not None
    try:
        if not hasattr(emb, "external_md_algorithm"):
            # GB/T 35275 content types are not "data" to pyHanko: tell it the digest to use.
            emb.external_md_algorithm = "sm3"
        emb.compute_integrity_info(diff_policy=DIFF_POLICY)  # type: ignore[no-untyped-call]
        summary = emb.summarise_integrity_info()
        sig.coverage, sig.docmdp_ok, sig.diff_result = (
            summary["coverage"],
            summary["docmdp_ok"],
            summary["diff_result"],
        )
    except Exception as exc:
        sig.coverage_problem = brief(exc)


# --- time-stamps -----------------------------------------------------------------------------------------
def _check_timestamp(sig: _Sig, ctx: Context) -> CheckResult:
    result, sig.timestamp = check_signature_timestamp(
        sig.tokens,
        sig.signature_value,
        ctx,
        none_zh="签名不含时间戳（PAdES B-B）",
        none_en="the signature carries no time-stamp (PAdES B-B)",
    )
    return result


# --- checks ----------------------------------------------------------------------------------------------
def _best_time(sig: _Sig, ctx: Context) -> dt.datetime:
    if sig.timestamp is not None:
        return sig.timestamp.gen_time
    return sig.claimed_time or ctx.at


def _format_check(sig: _Sig) -> CheckResult:
    cid = "format.parse"
    if sig.problems:
        return _r(
            cid,
            Result.FAILED,
            "；".join(p.zh for p in sig.problems),
            "; ".join(p.en for p in sig.problems),
            SubIndication.FORMAT_FAILURE,
        )
    flavour = f"{sig.parsed.flavour.value} " if sig.parsed is not None else ""
    what = f"{sig.subfilter or '-'}，{flavour}CMS，{sig.family}"
    what_en = f"{sig.subfilter or '-'}, {flavour}CMS, {sig.family}"
    return _r(
        cid,
        Result.PASSED,
        f"签名域 {sig.name} 已解码（{what}）",
        f"signature field {sig.name} decoded ({what_en})",
    )


def _coverage_check(sig: _Sig) -> CheckResult:
    cid = "document.coverage"
    if sig.coverage_problem is not None or sig.coverage is None:
        why = sig.coverage_problem or "-"
        return _r(
            cid,
            Result.INDETERMINATE,
            f"无法分析签名覆盖范围与签名后的修改：{why}",
            f"coverage and later modifications could not be analysed: {why}",
            SubIndication.FORMAT_FAILURE,
        )
    if sig.coverage == SignatureCoverageLevel.ENTIRE_FILE:
        return _r(cid, Result.PASSED, "签名覆盖整个文件", "the signature covers the whole file")
    if sig.coverage != SignatureCoverageLevel.ENTIRE_REVISION:
        return _r(
            cid,
            Result.FAILED,
            f"ByteRange 未完整覆盖签名时的文档版本（{sig.coverage.name}）",
            f"the /ByteRange does not cover the whole signed revision ({sig.coverage.name})",
            SubIndication.SIG_CONSTRAINTS_FAILURE,
        )
    level = getattr(sig.diff_result, "modification_level", None)
    level_name = level.name if isinstance(level, ModificationLevel) else "OTHER"
    if sig.docmdp_ok:
        return _r(
            cid,
            Result.PASSED,
            f"签名覆盖其签名时的文档版本；之后的增量更新仅为允许的修改（{level_name}：增加签名、填写表单或注释）",
            f"the signature covers its revision; later incremental updates are permitted changes only "
            f"({level_name}: signatures, form filling or annotations)",
        )
    detail = str(sig.diff_result) if sig.diff_result is not None else level_name
    detail = " ".join(detail.split())[:300]
    return _r(
        cid,
        Result.FAILED,
        f"签名后文档被修改，且修改不为签名的 DocMDP 设置所允许（{detail}）：所显示的内容不是签名时的内容",
        f"the document was modified after signing in a way its DocMDP settings do not allow ({detail}): "
        "what is displayed is not what was signed",
        SubIndication.SIG_CONSTRAINTS_FAILURE,
    )


def _sm2_checks(sig: _Sig, ctx: Context) -> dict[str, CheckResult]:
    assert sig.parsed is not None and sig.content is not None and sig.signer is not None
    out: dict[str, CheckResult] = {}
    result = verify_signed_data(sig.parsed, sig.content)
    who = sig.signer.describe()
    if SM2_WITH_SM3 not in ctx.policy.signature_algorithms:
        out["signer.signature"] = _r(
            "signer.signature",
            Result.FAILED,
            "签名算法 SM2-with-SM3 不被策略接受",
            "the signature algorithm SM2-with-SM3 is not accepted by the policy",
            SubIndication.SIG_CRYPTO_FAILURE,
        )
    elif result.signature_ok:
        out["signer.signature"] = _r(
            "signer.signature",
            Result.PASSED,
            f"SM2 签名有效（签名属性），签名者证书 {who}",
            f"SM2 signature over the signed attributes valid, signer certificate {who}",
        )
    else:
        out["signer.signature"] = _r(
            "signer.signature",
            Result.FAILED,
            f"SM2 签名无效：签名值与签名属性不符；签名者证书 {who}",
            f"SM2 signature invalid: it does not verify over the signed attributes; signer certificate {who}",
            SubIndication.SIG_CRYPTO_FAILURE,
        )
    out["document.data_hash"] = _data_hash(
        result.digest_ok, result.computed_digest, result.message_digest, "SM3"
    )
    when = _best_time(sig, ctx)
    facts = certificate_facts(sig.signer.der)
    out["signer.certificate_chain"] = _chain("signer.certificate_chain", facts, when, ctx, "签名者", "signer")
    # As for CMS: the claimed time decides REVOKED vs REVOKED_NO_POE; a trusted time-stamp before the
    # revocation proves the signature predates it.
    proven = sig.timestamp.gen_time if sig.timestamp is not None else None
    out["signer.certificate_revocation"] = signer_revocation(
        facts, sig.claimed_time or ctx.at, ctx, proven=proven
    )
    _integrity(sig)
    return out


def _data_hash(ok: bool, computed: bytes | None, signed: bytes | None, name: str) -> CheckResult:
    cid = "document.data_hash"
    shown = computed.hex() if computed else "-"
    if ok:
        return _r(
            cid,
            Result.PASSED,
            f"ByteRange 所覆盖内容的 {name} 摘要与签名中的 messageDigest 一致（{shown}）",
            f"the {name} digest of the /ByteRange content equals the signed messageDigest ({shown})",
        )
    expected = signed.hex() if signed else "-"
    return _r(
        cid,
        Result.FAILED,
        f"ByteRange 所覆盖内容的 {name} 摘要为 {shown}，与签名中的 messageDigest {expected} 不符："
        "文档在签名后被修改",
        f"the {name} digest of the /ByteRange content is {shown} but the signed messageDigest is {expected}: "
        "the document was modified after signing",
        SubIndication.HASH_FAILURE,
    )


def _without_unsigned_attributes(emb: EmbeddedPdfSignature) -> None:
    """Hide the signer's unsigned attributes from pyHanko: eseal verifies time-stamps itself (one
    way for every family; pyHanko cannot read an SM2 TSA's token) and passes their time in."""
    si = emb.signer_info
    # Tested without ".native": once pyHanko is loaded, asn1crypto's native view of a CMS holding
    # a time-stamp token takes a noticeable time.
    if isinstance(si["unsigned_attrs"], core.Void):
        return
    kept = ("version", "sid", "digest_algorithm", "signed_attrs", "signature_algorithm", "signature")
    emb.signer_info = cms.SignerInfo({k: si[k] for k in kept})


def _pyhanko_status(sig: _Sig, ctx: Context) -> PdfSignatureStatus:
    assert sig.signer is not None and sig.emb is not None
    emb = sig.emb
    when = _best_time(sig, ctx)
    # Judged at the signing time, clamped into the certificate's validity: an expired certificate
    # is reported once, by signer.certificate_validity, not again as a broken chain.
    at = max(sig.signer.not_before, min(when, sig.signer.not_after))
    context = certvalidator_context(ctx.trust, at)
    usage = KeyUsageConstraints(
        key_usage={"digital_signature", "non_repudiation"}, match_all_key_usages=False
    )
    _without_unsigned_attributes(emb)
    return run_blocking(
        lambda: validate_pdf_signature(
            emb, signer_validation_context=context, key_usage_settings=usage, diff_policy=DIFF_POLICY
        )
    )


def _pades_checks(sig: _Sig, ctx: Context) -> dict[str, CheckResult]:
    assert sig.signer is not None
    out: dict[str, CheckResult] = {}
    who = sig.signer.describe()
    try:
        status = _pyhanko_status(sig, ctx)
    except Exception as exc:
        why = brief(exc)
        out["signer.signature"] = _r(
            "signer.signature",
            Result.FAILED,
            f"PAdES 签名验证失败：{why}",
            f"PAdES signature validation failed: {why}",
            SubIndication.FORMAT_FAILURE,
        )
        return out
    mechanism = status.pkcs7_signature_mechanism
    if status.valid:
        out["signer.signature"] = _r(
            "signer.signature",
            Result.PASSED,
            f"{mechanism} 签名有效，签名者证书 {who}",
            f"{mechanism} signature valid, signer certificate {who}",
        )
    else:
        out["signer.signature"] = _r(
            "signer.signature",
            Result.FAILED,
            f"{mechanism} 签名无效；签名者证书 {who}",
            f"{mechanism} signature invalid; signer certificate {who}",
            SubIndication.SIG_CRYPTO_FAILURE,
        )
    assert sig.emb is not None
    computed = sig.emb.compute_digest()
    out["document.data_hash"] = _data_hash(status.intact, computed, None, status.md_algorithm.upper())
    out["signer.certificate_chain"] = _pades_chain(status, sig, ctx)
    out["signer.certificate_revocation"] = _pades_revocation(sig, ctx)
    sig.coverage, sig.docmdp_ok, sig.diff_result = status.coverage, status.docmdp_ok, status.diff_result
    return out


def _pades_revocation(sig: _Sig, ctx: Context) -> CheckResult:
    """Judged at the claimed signing time; a verified time-stamp proves the signature existed at its
    time, so a revocation after that does not matter (the CMS verifier's rule)."""
    assert sig.signer is not None and sig.emb is not None
    others = [c.dump() for c in sig.emb.other_embedded_certs]
    proven = sig.timestamp.gen_time if sig.timestamp is not None else None
    return interop_revocation(sig.signer, others, sig.claimed_time or ctx.at, ctx, proven=proven)


def _pades_chain(status: PdfSignatureStatus, sig: _Sig, ctx: Context) -> CheckResult:
    cid = "signer.certificate_chain"
    assert sig.signer is not None
    who = sig.signer.describe()
    if not interop_anchors_of(ctx.trust, ctx.at):
        return _r(
            cid,
            Result.INDETERMINATE,
            f"未配置 ECDSA/RSA 互通信任锚，无法确认签名者证书 {who} 的签发者 {sig.signer.issuer} 是否可信",
            f"no ECDSA/RSA interop trust anchor is configured: trust in {sig.signer.issuer}, issuer of the "
            f"signer certificate {who}, cannot be established",
            SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
        )
    path = status.validation_path
    problem = status.trust_problem_indic
    if path is not None and problem is None:
        anchor = path.first
        name = load_interop_certificate(anchor.dump()).describe() if anchor is not None else "-"
        return _r(
            cid,
            Result.PASSED,
            f"签名者证书 {who} 可链接到信任锚 {name}",
            f"the signer certificate {who} chains to trust anchor {name}",
        )
    indic = getattr(problem, "name", "NO_CERTIFICATE_CHAIN_FOUND")
    if indic == "REVOKED":
        result, sub = Result.FAILED, SubIndication.REVOKED
    elif indic == "NO_CERTIFICATE_CHAIN_FOUND":
        result, sub = Result.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND
    else:
        result, sub = Result.INDETERMINATE, SubIndication.CHAIN_CONSTRAINTS_FAILURE
    return _r(
        cid,
        result,
        f"签名者证书 {who} 的证书链未能验证（{indic}）",
        f"the certificate chain of the signer certificate {who} could not be validated ({indic})",
        sub,
    )


def _undecodable(cid: str) -> CheckResult:
    return _skipped(cid, "签名数据无法解码", "the signature could not be decoded")


def _doc_timestamp_report(sig: _Sig, ctx: Context) -> tuple[CheckResult, ...]:
    checks = [
        _r(
            "format.parse",
            Result.INDETERMINATE,
            f"签名域 {sig.name} 是文档时间戳（/DocTimeStamp），暂不支持验证",
            f"signature field {sig.name} is a document time-stamp (/DocTimeStamp), not yet verified",
            SubIndication.FORMAT_FAILURE,
        )
    ]
    checks += [
        _skipped(c, "文档时间戳暂不支持", "document time-stamps are not yet supported")
        for c in PDF_CHECKS[1:]
    ]
    return tuple(checks)


def _evaluate(sig: _Sig, ctx: Context) -> tuple[CheckResult, ...]:
    if sig.emb is not None and sig.emb.sig_object_type == "/DocTimeStamp":
        return _doc_timestamp_report(sig, ctx)
    results: dict[str, CheckResult] = {"format.parse": _format_check(sig)}
    if sig.problems or sig.signer is None or sig.emb is None or (sig.family == "sm2" and sig.parsed is None):
        results.update({c: _undecodable(c) for c in PDF_CHECKS[1:]})
    else:
        # The time-stamp first: a verified one is the time every certificate is judged at.
        results["timestamp.token"] = _check_timestamp(sig, ctx)
        results.update(_sm2_checks(sig, ctx) if sig.family == "sm2" else _pades_checks(sig, ctx))
        results["signer.certificate_validity"] = signer_validity(
            sig.signer, _best_time(sig, ctx), sig.timestamp is not None
        )
        results["document.coverage"] = _coverage_check(sig)
    return tuple(apply_policy(results.get(c) or _undecodable(c), ctx.policy) for c in PDF_CHECKS)


def _signature_report(sig: _Sig, ctx: Context) -> SignatureReport:
    try:
        checks = _evaluate(sig, ctx)
    except EsealError as exc:
        sig.problems.append(_problem(exc, "签名验证出错", "signature verification failed"))
        checks = _evaluate_failed(sig, ctx)
    except Exception as exc:
        sig.problems.append(_problem(exc, "签名结构错误", "malformed signature structure"))
        checks = _evaluate_failed(sig, ctx)
    indication, sub = judge(checks)
    signer = CertificateSummary(sig.signer.subject, serial_hex(sig.signer.serial)) if sig.signer else None
    when = sig.timestamp.gen_time if sig.timestamp is not None else sig.claimed_time
    return SignatureReport(
        id=sig.name,
        type=_SIGN,
        version=None,
        signing_time=when,
        indication=indication,
        sub_indication=sub,
        seal=None,
        signer=signer,
        checks=checks,
        property_info=sig.subfilter,
    )


def _evaluate_failed(sig: _Sig, ctx: Context) -> tuple[CheckResult, ...]:
    first = apply_policy(_format_check(sig), ctx.policy)
    return (first, *(apply_policy(_undecodable(c), ctx.policy) for c in PDF_CHECKS[1:]))


def _revision(sig: _Sig) -> int:
    try:
        return int(sig.emb.signed_revision) if sig.emb is not None else 1 << 30
    except Exception:
        return 1 << 30


# --- the document ------------------------------------------------------------------------------------------
def _document_failure(zh: str, en: str, data: bytes, ctx: Context) -> DocumentReport:
    check = CheckResult("format.parse", Result.FAILED, zh, en, SubIndication.FORMAT_FAILURE)
    signed = b"/ByteRange" in data
    indication, sub = document_verdict((), (check,), signed)
    return DocumentReport(FORMAT, signed, indication, sub, (), (check,), ctx.at)


def verify_pdf(data: bytes, ctx: Context) -> DocumentReport:
    """Verify every signature of a PDF under ``ctx``; a report, never an exception for bad PDFs.

    An unreadable, truncated or encrypted document is a document-level ``format.parse`` failure
    (FORMAT_FAILURE); a PDF without signature values is NOT_SIGNED. Raises InputTooLarge only.
    """
    data = bytes(data)
    if len(data) > MAX_PDF_SIZE:
        raise InputTooLarge(
            f"PDF 过大（{len(data)} 字节，上限 {MAX_PDF_SIZE}）",
            f"PDF too large ({len(data)} bytes, limit {MAX_PDF_SIZE})",
        )
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        if reader.encrypted:
            return _document_failure(
                "PDF 文件已加密，无法验证其签名",
                "the PDF is encrypted; its signatures cannot be verified",
                data,
                ctx,
            )
        filled = list(enumerate_sig_fields(reader, filled_status=True))
    except EsealError as exc:
        if isinstance(exc, InputTooLarge):
            raise
        return _document_failure(
            f"PDF 无法解析：{exc.message_zh}", f"unreadable PDF: {exc.message_en}", data, ctx
        )
    except Exception as exc:
        return _document_failure(f"PDF 无法解析：{brief(exc)}", f"unreadable PDF: {brief(exc)}", data, ctx)
    # Each field on its own (pyHanko's embedded_signatures stops at the first bad one and skips
    # unknown SubFilters), in signing order where it can be told.
    sigs = [_read_signature(str(name), sig_field, reader, data) for name, _value, sig_field in filled]
    sigs.sort(key=_revision)
    reports = tuple(_signature_report(s, ctx) for s in sigs)
    signed = bool(reports)
    indication, sub = document_verdict(reports, (), signed)
    return DocumentReport(FORMAT, signed, indication, sub, reports, (), ctx.at)


__all__ = [
    "MAX_PDF_SIZE",
    "PDF_CHECKS",
    "InteropAnchorSource",
    "InteropTrustSource",
    "interop_anchors_of",
    "verify_pdf",
]
