"""Checks: turn the facts about one signature into results, under a policy and a trust source.

Check ids (stable; reports, policies and tests use them):

==================================  ==================================================================
``format.parse``                    the signature, seal and OFD parts decode; consistency warnings
``seal.maker_signature``            the maker's SM2 signature over the seal (v1 or v4 rule, §4.1)
``seal.maker_certificate_validity`` maker certificate valid at the seal's createDate (warning by default)
``seal.maker_certificate_chain``    maker certificate chains to a configured trust anchor
``seal.validity_period``            signing time inside the seal's validStart..validEnd
``seal.status``                     seal state from the trust source (skipped when it has none)
``signer.signature``                signer's SM2 signature over TBS_Sign as read (§4.2)
``signer.in_seal_certificate_list`` signer certificate is in the seal's certList (P2)
``signer.certificate_validity``     signer certificate valid at the signing time; key usage
``signer.certificate_chain``        signer certificate chains to a configured trust anchor
``signer.certificate_revocation``   CRLs from the trust source (skipped when there are none)
``document.data_hash``              TBS_Sign.dataHash = SM3(Signature.xml bytes) or SM3(detached data)
``document.references``             every OFD Reference digest matches the file as stored
``document.seal_file_match``        Seal.esl, when named, equals the embedded seal byte for byte
``document.coverage``               package files no Reference of this signature protects
``timestamp.token``                 time-stamps (signature, seal): token, imprint and TSA chain verified
==================================  ==================================================================

Sign-type OFD signatures (GB/T 35275 SignedData over Signature.xml, §5.4) go through the signer and
document checks; the seal checks do not apply to them and are reported as skipped.

Time rules (seal-formats.md §6): the signer's certificate and the seal are judged at the signing
time ``TBS_Sign.timeInfo`` (Sign type: the signingTime attribute), the maker's certificate at the
seal's ``createDate``. Chains are built at that time, clamped into the end-entity certificate's
validity so that an expired certificate is reported once, by its own validity check, and not a
second time as a broken chain. A verified time-stamp over the signature, from a TSA that chains to
a trust anchor, proves the signature existed at its genTime: the signer certificate is then judged
at that proven time when it was valid then, and a revocation or seal cancellation after it no
longer leaves the signature in doubt. A time-stamp never makes a verdict worse than the claimed
time alone would.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from core.errors import CertificateError, CryptoError, EsealError, InputTooLarge, MalformedData
from gmpki.cms import UnsupportedAlgorithm
from gmpki.crl import CertificateRevocationList
from gmpki.ofd import SIGN
from gmpki.path_validation import (
    PathValidationError,
    ValidatedPath,
    crl_signature_valid,
    validate_path,
)
from gmpki.seal import SignatureCheck, cert_list_contains
from gmpki.sm3 import sm3_hex
from gmpki.x509 import Certificate, load_certificate_der, names_equal

from .evidence import SOURCE_OFD, SOURCE_SEAL, CertificateFacts, SignatureFacts, TimestampFacts
from .policy import Action, Policy
from .report import CheckResult, Result, SubIndication
from .trust import SealState, SealStatusFact, TrustSource, vouched_by

SEAL_CHECKS: tuple[str, ...] = (
    "format.parse",
    "seal.maker_signature",
    "seal.maker_certificate_validity",
    "seal.maker_certificate_chain",
    "seal.status",
    "timestamp.token",
)
SES_CHECKS: tuple[str, ...] = (
    "format.parse",
    "seal.maker_signature",
    "seal.maker_certificate_validity",
    "seal.maker_certificate_chain",
    "seal.validity_period",
    "seal.status",
    "signer.signature",
    "signer.in_seal_certificate_list",
    "signer.certificate_validity",
    "signer.certificate_chain",
    "signer.certificate_revocation",
    "document.data_hash",
    "timestamp.token",
)
OFD_CHECKS: tuple[str, ...] = (
    *SES_CHECKS[:-1],
    "document.references",
    "document.seal_file_match",
    "document.coverage",
    "timestamp.token",
)

# Parser warnings of gmpki.seal, explained.
_PARSER_WARNINGS: dict[str, tuple[str, str]] = {
    "unknown_header_version": (
        "印章头版本号未知，按 v4 规则解码",
        "unknown seal header version, decoded with v4 rules",
    ),
    "header_id_not_es": ("印章头标识不是“ES”", 'seal header id is not "ES"'),
    "tbs_version_mismatch": (
        "TBS_Sign 版本与印章版本不一致",
        "TBS_Sign version differs from the seal version",
    ),
    "ext_datas_untagged": ("TBS_Sign 扩展字段未加 [0] 标签", "TBS_Sign extDatas is untagged"),
    "time_stamp_untagged": ("时间戳字段未加 [0] 标签", "time-stamp field is untagged"),
    "picture_dimension_real": ("印章图片尺寸以 REAL 编码", "seal picture size is encoded as REAL"),
    "time_info_assumed_utc8": (
        "签章时间无时区，按北京时间（UTC+8）解释",
        "signing time has no zone; read as UTC+8",
    ),
    "time_info_unparsed": ("签章时间无法解析", "signing time could not be parsed"),
}


@functools.lru_cache(maxsize=4096)
def fmt_time(value: dt.datetime) -> str:
    # Cached: a report formats the same few times (signing, validity bounds) two dozen times.
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _hex(value: bytes) -> str:
    return value.hex()


@dataclass(frozen=True)
class Context:
    policy: Policy
    trust: TrustSource | None
    at: dt.datetime  # validation time
    # Per-document memo of derived judgements several checks need (a time-stamp's trust).
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


def _r(
    check_id: str,
    result: Result,
    zh: str,
    en: str,
    sub: SubIndication | None = None,
    *,
    vouched_by: str | None = None,
) -> CheckResult:
    return CheckResult(check_id, result, zh, en, sub, vouched_by)


def _not_evaluated(check_id: str, zh_why: str, en_why: str) -> CheckResult:
    return _r(check_id, Result.SKIPPED, f"未检查：{zh_why}", f"not checked: {en_why}")


def _undecodable(check_id: str) -> CheckResult:
    return _not_evaluated(check_id, "签章数据无法解码", "the signed value could not be decoded")


# --- format -------------------------------------------------------------------------------------------------
def check_format(f: SignatureFacts, ctx: Context) -> CheckResult:
    cid = "format.parse"
    if f.problems:
        return _r(
            cid,
            Result.FAILED,
            "；".join(p.zh for p in f.problems),
            "; ".join(p.en for p in f.problems),
            SubIndication.FORMAT_FAILURE,
        )
    notes: list[tuple[str, str]] = []
    codes: list[str] = []
    if f.seal is not None:
        codes += f.seal.parsed.warnings
    if f.ses is not None:
        codes += [w for w in f.ses.warnings if w not in codes]
    for code in codes:
        base = code.split(":", 1)[0]
        if base == "time_without_zone":
            notes.append(
                (
                    f"时间字段 {code[len(base) + 1 :]} 无时区，按 UTC 解释",
                    f"{code[len(base) + 1 :]} has no zone; read as UTC",
                )
            )
        else:
            notes.append(_PARSER_WARNINGS.get(base, (f"解析提示：{code}", f"parser note: {code}")))
    if f.ofd is not None and f.ofd.signature_xml is not None:
        notes += _ofd_consistency(f)
    if f.seal is not None:
        for ext in f.seal.parsed.extensions:
            if ext.critical:
                notes.append(
                    (
                        f"印章含无法识别的关键扩展 {ext.oid}",
                        f"the seal carries an unrecognised critical extension {ext.oid}",
                    )
                )
    what_zh, what_en = _what(f)
    if notes:
        return _r(
            cid,
            Result.WARNING,
            f"{what_zh}已解码，但：" + "；".join(n[0] for n in notes),
            f"{what_en} decoded, but: " + "; ".join(n[1] for n in notes),
        )
    return _r(cid, Result.PASSED, f"{what_zh}已解码", f"{what_en} decoded")


def _what(f: SignatureFacts) -> tuple[str, str]:
    if f.cms is not None:
        path = f.ofd.signature_xml.signed_value_path if f.ofd and f.ofd.signature_xml else None
        standard = "GB/T 35275" if f.cms.parsed.flavour.value == "gbt35275" else "RFC 5652"
        return (
            f"{standard} 签名数据" + (f"（{path}）" if path else ""),
            f"{standard} SignedData" + (f" ({path})" if path else ""),
        )
    if f.ses is not None:
        where_zh = where_en = ""
        if f.ofd is not None and f.ofd.signature_xml is not None:
            where_zh = f"（{f.ofd.signature_xml.signed_value_path}）"
            where_en = f" ({f.ofd.signature_xml.signed_value_path})"
        return (
            f"v{f.ses.version} 电子签章数据{where_zh}及所含 v{f.ses.seal.version} 印章"
            f"（esID {f.ses.seal.es_id}）",
            f"v{f.ses.version} SES signature{where_en} with its v{f.ses.seal.version} seal "
            f"(esID {f.ses.seal.es_id})",
        )
    if f.seal is not None:
        return (
            f"v{f.seal.parsed.version} 电子印章（esID {f.seal.parsed.es_id}）",
            f"v{f.seal.parsed.version} seal (esID {f.seal.parsed.es_id})",
        )
    return ("签名", "signature")


def _ofd_consistency(f: SignatureFacts) -> list[tuple[str, str]]:
    assert f.ofd is not None and f.ofd.signature_xml is not None
    xml = f.ofd.signature_xml
    notes: list[tuple[str, str]] = []
    if f.ses is not None:
        if xml.signature_method and xml.signature_method.strip() != f.ses.signature_algorithm:
            notes.append(
                (
                    f"{xml.path} 的 SignatureMethod {xml.signature_method} 与签章数据中的算法 "
                    f"{f.ses.signature_algorithm} 不一致",
                    f"{xml.path}: SignatureMethod {xml.signature_method} differs from the SES algorithm "
                    f"{f.ses.signature_algorithm}",
                )
            )
        prop = f.ses.property_info.strip()
        if prop.lstrip("/") != xml.path:
            notes.append(
                (
                    f"propertyInfo“{prop}”与签名描述文件 /{xml.path} 不一致",
                    f"propertyInfo {prop!r} does not name the signature file /{xml.path}",
                )
            )
    pages = f.ofd.pages
    for stamp in xml.stamp_annots:
        if stamp.page_ref is None:
            notes.append(
                (
                    f"{xml.path} 中签章外观 {stamp.id} 缺少 PageRef",
                    f"{xml.path}: StampAnnot {stamp.id} has no PageRef",
                )
            )
        elif pages is not None and pages.by_id(stamp.page_ref) is None:
            notes.append(
                (
                    f"签章外观 {stamp.id} 指向不存在的页面 ID {stamp.page_ref}",
                    f"StampAnnot {stamp.id} refers to page ID {stamp.page_ref}, which does not exist",
                )
            )
        if stamp.boundary_text is not None and stamp.boundary is None:
            notes.append(
                (f"签章外观 {stamp.id} 的 Boundary 无效", f"StampAnnot {stamp.id} has an invalid Boundary")
            )
    if f.ofd.entry.relative:
        notes.append(
            (
                f"签名 {f.id} 依赖签名 {f.ofd.entry.relative}（Relative），依赖关系未单独检查",
                f"signature {f.id} is Relative to {f.ofd.entry.relative}; "
                "that link is not checked separately",
            )
        )
    return notes


# --- seal ---------------------------------------------------------------------------------------------------
_RULE = {
    1: (
        "SEQUENCE{印章信息, 证书, 算法}（GM/T 0031 规则）",
        "SEQUENCE{sealInfo, cert, algorithm} (GM/T 0031 rule)",
    ),
    4: ("SES_SealInfo（GB/T 38540 规则）", "SES_SealInfo (GB/T 38540 rule)"),
}


def _signature_outcome(
    check_id: str,
    outcome: SignatureCheck,
    algorithm: str,
    policy: Policy,
    who_zh: str,
    who_en: str,
    cert: CertificateFacts,
    over_zh: str,
    over_en: str,
    sub: SubIndication,
) -> CheckResult:
    if algorithm not in policy.signature_algorithms:
        return _r(
            check_id,
            Result.FAILED,
            f"{who_zh}签名算法 {algorithm} 不被策略接受",
            f"the {who_en} signature algorithm {algorithm} is not accepted by the policy",
            sub,
        )
    described = cert.describe()
    if outcome is SignatureCheck.VALID:
        return _r(
            check_id,
            Result.PASSED,
            f"{who_zh}签名有效（签名数据：{over_zh}），{who_zh}证书 {described}",
            f"{who_en} signature valid over {over_en}, {who_en} certificate {described}",
        )
    reasons = {
        SignatureCheck.INVALID: ("签名值与数据不符", "the signature does not verify"),
        SignatureCheck.UNSUPPORTED_ALGORITHM: (
            f"不支持的签名算法 {algorithm}",
            f"unsupported signature algorithm {algorithm}",
        ),
        SignatureCheck.BAD_CERTIFICATE: (
            "证书无法读取或不含 SM2 公钥" + (f"（{cert.problem.zh}）" if cert.problem else ""),
            "the certificate is unreadable or has no SM2 key"
            + (f" ({cert.problem.en})" if cert.problem else ""),
        ),
        SignatureCheck.BAD_SIGNATURE_ENCODING: ("签名值编码错误", "the signature value is badly encoded"),
    }
    zh, en = reasons[outcome]
    return _r(
        check_id,
        Result.FAILED,
        f"{who_zh}签名无效：{zh}；签名数据 {over_zh}，证书 {described}",
        f"{who_en} signature invalid: {en}; signed data {over_en}, certificate {described}",
        sub,
    )


def check_maker_signature(f: SignatureFacts, ctx: Context) -> CheckResult:
    cid = "seal.maker_signature"
    if f.seal is None:
        return _undecodable(cid)
    seal = f.seal.parsed
    over_zh, over_en = _RULE[1 if seal.version == 1 else 4]
    return _signature_outcome(
        cid,
        f.seal.maker_signature,
        seal.signature_algorithm,
        ctx.policy,
        "制章者",
        "maker",
        f.seal.maker,
        f"印章 {seal.es_id} 的 {over_zh}",
        f"{over_en} of seal {seal.es_id}",
        SubIndication.SEAL_SIGNATURE_FAILURE,
    )


def _validity(
    check_id: str,
    cert: CertificateFacts,
    when: dt.datetime | None,
    who_zh: str,
    who_en: str,
    event_zh: str,
    event_en: str,
) -> CheckResult:
    c = cert.certificate
    if c is None:
        why = cert.problem or None
        return _r(
            check_id,
            Result.INDETERMINATE,
            f"{who_zh}证书无法读取" + (f"：{why.zh}" if why else ""),
            f"the {who_en} certificate cannot be read" + (f": {why.en}" if why else ""),
            SubIndication.FORMAT_FAILURE,
        )
    if when is None:
        return _r(
            check_id,
            Result.INDETERMINATE,
            f"{event_zh}未知，无法判断{who_zh}证书 {c.describe()} 是否有效",
            f"{event_en} is unknown; cannot tell whether the {who_en} certificate {c.describe()} was valid",
            SubIndication.FORMAT_FAILURE,
        )
    span_zh = f"有效期 {fmt_time(c.not_before)} 至 {fmt_time(c.not_after)}"
    span_en = f"valid {fmt_time(c.not_before)} to {fmt_time(c.not_after)}"
    if when < c.not_before:
        return _r(
            check_id,
            Result.FAILED,
            f"{who_zh}证书 {c.describe()} 在{event_zh} {fmt_time(when)} 尚未生效（{span_zh}）",
            f"the {who_en} certificate {c.describe()} was not yet valid at the {event_en} "
            f"{fmt_time(when)} ({span_en})",
            SubIndication.NOT_YET_VALID,
        )
    if when > c.not_after:
        return _r(
            check_id,
            Result.FAILED,
            f"{who_zh}证书 {c.describe()} 在{event_zh} {fmt_time(when)} 已过期（{span_zh}）",
            f"the {who_en} certificate {c.describe()} had expired at the {event_en} "
            f"{fmt_time(when)} ({span_en})",
            SubIndication.OUT_OF_BOUNDS_NO_POE,
        )
    return _r(
        check_id,
        Result.PASSED,
        f"{who_zh}证书 {c.describe()} 在{event_zh} {fmt_time(when)} 有效（{span_zh}）",
        f"the {who_en} certificate {c.describe()} was valid at the {event_en} {fmt_time(when)} ({span_en})",
    )


def check_maker_certificate_validity(f: SignatureFacts, ctx: Context) -> CheckResult:
    if f.seal is None:
        return _undecodable("seal.maker_certificate_validity")
    return _validity(
        "seal.maker_certificate_validity",
        f.seal.maker,
        f.seal.parsed.create_date,
        "制章者",
        "maker",
        "印章制作时间",
        "seal creation time",
    )


def _clamp(when: dt.datetime, cert: Certificate) -> dt.datetime:
    return max(cert.not_before, min(when, cert.not_after))


def _chain_error(check_id: str, exc: PathValidationError, who_zh: str, who_en: str) -> CheckResult:
    if exc.reason == "revoked":
        sub, result = SubIndication.REVOKED, Result.FAILED
    elif exc.reason == "no_trust_anchor":
        sub, result = SubIndication.NO_CERTIFICATE_CHAIN_FOUND, Result.INDETERMINATE
    else:
        sub, result = SubIndication.CHAIN_CONSTRAINTS_FAILURE, Result.INDETERMINATE
    return _r(
        check_id,
        result,
        f"{who_zh}证书链未能验证：{exc.message_zh}",
        f"the {who_en} certificate chain could not be validated: {exc.message_en}",
        sub,
    )


def _validate(
    cert: Certificate,
    when: dt.datetime,
    trust: TrustSource,
    crls: Sequence[CertificateRevocationList] = (),
    require_revocation: bool = False,
    intermediates: Sequence[Certificate] = (),
) -> ValidatedPath:
    return validate_path(
        cert,
        trust_anchors=list(trust.trust_anchors(when)),
        at=_clamp(when, cert),
        intermediates=[*trust.intermediates(when), *intermediates],
        crls=list(crls),
        require_revocation_check=require_revocation,
    )


def _chain(
    check_id: str,
    cert: CertificateFacts,
    when: dt.datetime,
    ctx: Context,
    who_zh: str,
    who_en: str,
    crls: Sequence[CertificateRevocationList] = (),
    *,
    intermediates: Sequence[Certificate] = (),
) -> CheckResult:
    c = cert.certificate
    if c is None:
        return _r(
            check_id,
            Result.INDETERMINATE,
            f"{who_zh}证书无法读取，无法构建证书链",
            f"the {who_en} certificate cannot be read; no chain can be built",
            SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
        )
    if ctx.trust is None or not ctx.trust.trust_anchors(when):
        return _r(
            check_id,
            Result.INDETERMINATE,
            f"未配置信任锚，无法确认{who_zh}证书 {c.describe()} 的签发者 {c.issuer} 是否可信",
            f"no trust anchor is configured: trust in {c.issuer}, issuer of the {who_en} certificate "
            f"{c.describe()}, cannot be established",
            SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
        )
    try:
        path = _validate(c, when, ctx.trust, crls, intermediates=intermediates)
    except PathValidationError as exc:
        return _chain_error(check_id, exc, who_zh, who_en)
    except EsealError as exc:
        return _r(
            check_id,
            Result.INDETERMINATE,
            f"{who_zh}证书链验证出错：{exc.message_zh}",
            f"the {who_en} certificate chain could not be validated: {exc.message_en}",
            SubIndication.CHAIN_CONSTRAINTS_FAILURE,
        )
    anchor = path.trust_anchor
    vouch = vouched_by(ctx.trust, c, anchor)
    by = f"，依据 {vouch}" if vouch else ""
    by_en = f", vouched for by {vouch}" if vouch else ""
    return _r(
        check_id,
        Result.PASSED,
        f"{who_zh}证书 {c.describe()} 可链接到信任锚 {anchor.describe()}"
        f"（验证时间 {fmt_time(path.validated_at)}{by}）",
        f"the {who_en} certificate {c.describe()} chains to trust anchor {anchor.describe()} "
        f"(validated at {fmt_time(path.validated_at)}{by_en})",
        vouched_by=vouch,
    )


def _crls(ctx: Context) -> Sequence[CertificateRevocationList]:
    """The revocation lists available at the validation time. Those speak for every earlier time
    too (a revocation is listed with its date), and they are what later revocations are seen in."""
    return ctx.trust.crls(ctx.at) if ctx.trust is not None else ()


def check_maker_certificate_chain(f: SignatureFacts, ctx: Context) -> CheckResult:
    if f.seal is None:
        return _undecodable("seal.maker_certificate_chain")
    when = f.seal.parsed.create_date
    return _chain("seal.maker_certificate_chain", f.seal.maker, when, ctx, "制章者", "maker", _crls(ctx))


def check_seal_validity_period(f: SignatureFacts, ctx: Context) -> CheckResult:
    cid = "seal.validity_period"
    if f.seal is None or f.ses is None:
        return _undecodable(cid)
    seal = f.seal.parsed
    t = f.ses.time_info
    span_zh = f"印章 {seal.es_id} 有效期 {fmt_time(seal.valid_start)} 至 {fmt_time(seal.valid_end)}"
    span_en = f"seal {seal.es_id} is valid {fmt_time(seal.valid_start)} to {fmt_time(seal.valid_end)}"
    if t is None:
        return _r(
            cid,
            Result.INDETERMINATE,
            f"签章时间无法解析，无法判断是否在印章有效期内（{span_zh}）",
            "the signing time cannot be read; cannot tell whether it lies in the seal's validity "
            f"({span_en})",
            SubIndication.FORMAT_FAILURE,
        )
    if t < seal.valid_start:
        return _r(
            cid,
            Result.FAILED,
            f"签章时间 {fmt_time(t)} 早于印章生效时间（{span_zh}）",
            f"signed at {fmt_time(t)}, before the seal became valid ({span_en})",
            SubIndication.SEAL_NOT_YET_VALID,
        )
    if t > seal.valid_end:
        return _r(
            cid,
            Result.FAILED,
            f"签章时间 {fmt_time(t)} 晚于印章有效期截止时间，印章已过期（{span_zh}）",
            f"signed at {fmt_time(t)}, after the seal expired ({span_en})",
            SubIndication.SEAL_EXPIRED,
        )
    return _r(
        cid,
        Result.PASSED,
        f"签章时间 {fmt_time(t)} 在印章有效期内（{span_zh}）",
        f"signed at {fmt_time(t)}, within the seal's validity ({span_en})",
    )


def check_seal_status(f: SignatureFacts, ctx: Context) -> CheckResult:
    cid = "seal.status"
    if f.seal is None:
        return _undecodable(cid)
    if ctx.trust is None:
        return _not_evaluated(cid, "未配置信任源", "no trust source is configured")
    seal = f.seal.parsed
    try:
        fact = ctx.trust.seal_status(seal.es_id, f.seal.sm3, ctx.at)
    except EsealError as exc:
        return _r(
            cid,
            Result.INDETERMINATE,
            f"无法查询印章 {seal.es_id} 的状态：{exc.message_zh}",
            f"cannot query the status of seal {seal.es_id}: {exc.message_en}",
            SubIndication.TRY_LATER,
        )
    if fact is None:
        return _not_evaluated(cid, "信任源不提供印章状态", "the trust source does not track seal status")
    source = f"（{fact.source}）" if fact.source else ""
    source_en = f" ({fact.source})" if fact.source else ""
    vouch = fact.vouched_by
    if fact.state is SealState.ACTIVE:
        earlier = _inactive_when_signed(f, ctx)
        if earlier is not None:
            past, when, was_proven = earlier
            past_suspended = past.state is SealState.SUSPENDED
            past_zh, past_en = ("暂停", "suspended") if past_suspended else ("注销", "cancelled")
            how_zh, how_en = (
                ("时间戳证明的", "proven by a time-stamp") if was_proven else ("声明的", "claimed")
            )
            return _r(
                cid,
                Result.FAILED,
                f"印章 {seal.es_id} 现状态正常，但在{how_zh}签章时间 {fmt_time(when)} 处于{past_zh}状态"
                + (f"（自 {fmt_time(past.changed_at)} 起）" if past.changed_at else "")
                + source,
                f"seal {seal.es_id} is active now, but was {past_en} at the signing time {fmt_time(when)} "
                f"({how_en})"
                + (f", since {fmt_time(past.changed_at)}" if past.changed_at else "")
                + source_en,
                SubIndication.SEAL_SUSPENDED if past_suspended else SubIndication.SEAL_CANCELLED,
                vouched_by=vouch,
            )
        return _r(
            cid,
            Result.PASSED,
            f"印章 {seal.es_id} 状态正常{source}",
            f"seal {seal.es_id} is active{source_en}",
            vouched_by=vouch,
        )
    if fact.state is SealState.UNKNOWN:
        return _r(
            cid,
            Result.INDETERMINATE,
            f"信任源不认识印章 {seal.es_id}（或其内容与登记的不同）{source}",
            f"the trust source does not know seal {seal.es_id} (or these seal bytes){source_en}",
            SubIndication.SEAL_STATUS_UNKNOWN,
            vouched_by=vouch,
        )
    suspended = fact.state is SealState.SUSPENDED
    state_zh, state_en = ("已暂停", "suspended") if suspended else ("已注销", "cancelled")
    sub = SubIndication.SEAL_SUSPENDED if suspended else SubIndication.SEAL_CANCELLED
    when_zh = f"，自 {fmt_time(fact.changed_at)} 起" if fact.changed_at else ""
    when_en = f" since {fmt_time(fact.changed_at)}" if fact.changed_at else ""
    proven = proven_time(f, ctx)
    if proven is not None and _active_at(f, ctx, proven):
        return _r(
            cid,
            Result.PASSED,
            f"印章 {seal.es_id} {state_zh}{when_zh}，但时间戳证明签章在 {fmt_time(proven)} 已存在，"
            f"当时印章状态正常{source}",
            f"seal {seal.es_id} is {state_en}{when_en}, but a time-stamp proves the signature existed at "
            f"{fmt_time(proven)}, when the seal was active{source_en}",
            vouched_by=vouch,
        )
    t = f.signing_time
    if t is not None and fact.changed_at is not None and fact.changed_at > t:
        return _r(
            cid,
            Result.WARNING,
            f"印章 {seal.es_id} {state_zh}{when_zh}，晚于签章时间 {fmt_time(t)}"
            f"（签章时间由签章者声明，未经时间戳证明）{source}",
            f"seal {seal.es_id} is {state_en}{when_en}, after the signing time {fmt_time(t)} "
            f"(a time claimed by the signer, not proven by a time-stamp){source_en}",
            vouched_by=vouch,
        )
    return _r(
        cid,
        Result.FAILED,
        f"印章 {seal.es_id} {state_zh}{when_zh}{source}",
        f"seal {seal.es_id} is {state_en}{when_en}{source_en}",
        sub,
        vouched_by=vouch,
    )


_ONE_SECOND = dt.timedelta(seconds=1)


def _inactive_when_signed(
    f: SignatureFacts, ctx: Context
) -> tuple[SealStatusFact, dt.datetime, bool] | None:
    """The seal's state at the signing time when it was suspended or cancelled then (and is active
    now): a signature inside a past suspension window, the seal since resumed. The proven time
    (a trusted time-stamp) is used when there is one, else the time the signer claims: the registry
    refuses to sign with a suspended seal, so a signature claiming such a time was not made through
    it. Returns (fact, time, proven) or None."""
    if f.seal is None or ctx.trust is None:
        return None
    proven = proven_time(f, ctx)
    when = proven if proven is not None else f.signing_time
    if when is None or when >= ctx.at:
        return None
    # Signing times are written in whole seconds (SES GeneralizedTime, most time-stamps): a signature
    # made in the second the seal was resumed reads as earlier. Judge the end of that second.
    latest = min(when.replace(microsecond=0) + _ONE_SECOND - dt.timedelta(microseconds=1), ctx.at)
    try:
        fact = ctx.trust.seal_status(f.seal.parsed.es_id, f.seal.sm3, latest)
    except EsealError:
        return None
    if fact is None or fact.state not in (SealState.SUSPENDED, SealState.CANCELLED):
        return None
    return fact, when, proven is not None


def _active_at(f: SignatureFacts, ctx: Context, when: dt.datetime) -> bool:
    """Whether the trust source says the seal was active at ``when`` (False when it cannot say)."""
    if f.seal is None or ctx.trust is None:
        return False
    try:
        fact = ctx.trust.seal_status(f.seal.parsed.es_id, f.seal.sm3, when)
    except EsealError:
        return False
    return fact is not None and fact.state is SealState.ACTIVE


# --- signer -------------------------------------------------------------------------------------------------
_CMS_COVERS: dict[str, tuple[str, str]] = {
    "message_digest": (
        "签名属性（内容类型、签名时间及 Signature.xml 的摘要）",
        "the signed attributes (content type, signing time and the digest of Signature.xml)",
    ),
    "content": ("Signature.xml 本身", "Signature.xml itself"),
    "embedded_digest": ("内嵌的 Signature.xml 摘要", "the embedded digest of Signature.xml"),
}


def _check_cms_signature(f: SignatureFacts, ctx: Context) -> CheckResult:
    cid = "signer.signature"
    assert f.cms is not None
    if f.signer is None or f.signer_signature is None or f.cms.verification is None:
        why = f.cms.problem
        return _r(
            cid,
            Result.FAILED,
            "签名无法验证" + (f"：{why.zh}" if why else ""),
            "the signature cannot be verified" + (f": {why.en}" if why else ""),
            SubIndication.SIG_CRYPTO_FAILURE,
        )
    over_zh, over_en = _CMS_COVERS[f.cms.binding]
    return _signature_outcome(
        cid,
        f.signer_signature,
        f.cms.signature_algorithm,
        ctx.policy,
        "签名者",
        "signer",
        f.signer,
        over_zh,
        over_en,
        SubIndication.SIG_CRYPTO_FAILURE,
    )


def check_signer_signature(f: SignatureFacts, ctx: Context) -> CheckResult:
    cid = "signer.signature"
    if f.cms is not None:
        return _check_cms_signature(f, ctx)
    if f.ses is None or f.signer is None or f.signer_signature is None:
        return _undecodable(cid)
    return _signature_outcome(
        cid,
        f.signer_signature,
        f.ses.signature_algorithm,
        ctx.policy,
        "签章者",
        "signer",
        f.signer,
        "TBS_Sign（含印章、签章时间与 dataHash）",
        "TBS_Sign (seal, signing time and dataHash)",
        SubIndication.SIG_CRYPTO_FAILURE,
    )


def check_signer_in_seal(f: SignatureFacts, ctx: Context) -> CheckResult:
    cid = "signer.in_seal_certificate_list"
    if f.ses is None or f.seal is None or f.signer is None:
        return _undecodable(cid)
    seal = f.seal.parsed
    who = f.signer.describe()
    listed = cert_list_contains(seal, f.ses.signer_cert_der)
    if listed is True:
        return _r(
            cid,
            Result.PASSED,
            f"签章者证书 {who} 在印章 {seal.es_id} 的证书列表中",
            f"the signer certificate {who} is in the certificate list of seal {seal.es_id}",
        )
    if listed is None:
        kinds = ", ".join(sorted({d.digest_type for d in seal.cert_digests}))
        return _r(
            cid,
            Result.INDETERMINATE,
            f"印章 {seal.es_id} 的证书摘要列表使用未知算法（{kinds}），无法判断签章者证书 {who} 是否在列",
            f"seal {seal.es_id} lists certificate digests of unknown type ({kinds}); "
            f"cannot match the signer {who}",
            SubIndication.SIGNER_NOT_IN_SEAL,
        )
    size = len(seal.cert_list) if seal.cert_list_type == 1 else len(seal.cert_digests)
    return _r(
        cid,
        Result.FAILED,
        f"签章者证书 {who} 不在印章 {seal.es_id} 的证书列表中（列表共 {size} 项）：签章者无权使用该印章",
        f"the signer certificate {who} is not in the certificate list of seal {seal.es_id} ({size} entries): "
        "the signer is not entitled to the seal",
        SubIndication.SIGNER_NOT_IN_SEAL,
    )


def _valid_at(cert: CertificateFacts | None, when: dt.datetime | None) -> bool:
    c = cert.certificate if cert is not None else None
    return c is not None and when is not None and c.not_before <= when <= c.not_after


def check_signer_certificate_validity(f: SignatureFacts, ctx: Context) -> CheckResult:
    cid = "signer.certificate_validity"
    if f.signer is None or (f.ses is None and f.cms is None):
        return _undecodable(cid)
    c = f.signer.certificate
    proven = proven_time(f, ctx)
    if c is not None and proven is not None and _valid_at(f.signer, proven):
        claimed = f" (claimed signing time {fmt_time(f.signing_time)})" if f.signing_time else ""
        claimed_zh = f"（声明的签章时间 {fmt_time(f.signing_time)}）" if f.signing_time else ""
        result = _r(
            cid,
            Result.PASSED,
            f"签章者证书 {c.describe()} 在时间戳时间 {fmt_time(proven)} 有效"
            f"（有效期 {fmt_time(c.not_before)} 至 {fmt_time(c.not_after)}），"
            f"时间戳证明签章当时已存在{claimed_zh}",
            f"the signer certificate {c.describe()} was valid at the time-stamp time {fmt_time(proven)} "
            f"(valid {fmt_time(c.not_before)} to {fmt_time(c.not_after)}), when a time-stamp proves the "
            f"signature existed{claimed}",
        )
    elif f.ses is not None:
        result = _validity(cid, f.signer, f.ses.time_info, "签章者", "signer", "签章时间", "signing time")
    elif f.signing_time is not None:
        result = _validity(cid, f.signer, f.signing_time, "签名者", "signer", "签名时间", "signing time")
    else:  # nothing says when it was signed: it must hold now
        result = _validity(cid, f.signer, ctx.at, "签名者", "signer", "验证时间", "validation time")
    if (
        result.result is Result.PASSED
        and c is not None
        and c.key_usage is not None
        and not c.key_usage & {"digital_signature", "non_repudiation"}
    ):
        usage = ", ".join(sorted(c.key_usage))
        return _r(
            cid,
            Result.FAILED,
            f"签章者证书 {c.describe()} 的密钥用途（{usage}）不含 digitalSignature 或 nonRepudiation",
            f"the signer certificate {c.describe()} has key usage ({usage}) without digitalSignature "
            "or nonRepudiation",
            SubIndication.SIG_CONSTRAINTS_FAILURE,
        )
    return result


def _signing_time(f: SignatureFacts, ctx: Context) -> dt.datetime:
    return f.signing_time or ctx.at


def _judging_time(f: SignatureFacts, ctx: Context) -> dt.datetime:
    """The claimed signing time, unless the signer certificate was not valid then (or the time is
    unknown) and a trusted time-stamp proves a time at which it was: then that proven time."""
    proven = proven_time(f, ctx)
    if proven is not None and _valid_at(f.signer, proven) and not _valid_at(f.signer, f.signing_time):
        return proven
    if proven is not None and f.signing_time is None and _valid_at(f.signer, proven):
        return proven
    return _signing_time(f, ctx)


def _embedded_certificates(f: SignatureFacts) -> tuple[Certificate, ...]:
    """SM2 certificates carried by a Sign-type signature: untrusted helpers for path building."""
    if f.cms is None:
        return ()
    out: list[Certificate] = []
    for der in f.cms.parsed.certificates:
        try:
            out.append(load_certificate_der(der))
        except EsealError:
            continue  # not SM2 or unreadable: it cannot be part of an SM2 path anyway
    return tuple(out)


def check_signer_certificate_chain(f: SignatureFacts, ctx: Context) -> CheckResult:
    if f.signer is None:
        return _undecodable("signer.certificate_chain")
    return _chain(
        "signer.certificate_chain",
        f.signer,
        _judging_time(f, ctx),
        ctx,
        "签名者" if f.kind == SIGN else "签章者",
        "signer",
        intermediates=_embedded_certificates(f),
    )


def _later_revocation(
    path: ValidatedPath, crls: Sequence[CertificateRevocationList], after: dt.datetime, until: dt.datetime
) -> tuple[Certificate, dt.datetime] | None:
    """A certificate of the path revoked after the (claimed) signing time, per a CRL its issuer signed."""
    certs = path.certificates
    for child, issuer in itertools.pairwise(certs):
        for crl in crls:
            if not names_equal(crl.issuer_name, child.issuer_name) or not crl_signature_valid(crl, issuer):
                continue
            entry = crl.lookup(child.serial)
            if entry is not None and after < entry.revoked_at <= until and entry.reason != "remove_from_crl":
                return child, entry.revoked_at
    return None


def check_signer_revocation(f: SignatureFacts, ctx: Context) -> CheckResult:
    if f.signer is None:
        return _undecodable("signer.certificate_revocation")
    return signer_revocation(
        f.signer,
        _signing_time(f, ctx),
        ctx,
        proven=proven_time(f, ctx),
        intermediates=_embedded_certificates(f),
    )


def signer_revocation(
    signer: CertificateFacts,
    when: dt.datetime,
    ctx: Context,
    *,
    proven: dt.datetime | None = None,
    intermediates: Sequence[Certificate] = (),
) -> CheckResult:
    """``signer.certificate_revocation`` for an SM2 signer certificate signed at ``when`` (also used
    for SM2 signatures in PDF files, :mod:`verify.pdf`). ``proven``: a trusted time-stamp's time, at
    which the signature is known to have existed; revocations after it do not matter."""
    cid = "signer.certificate_revocation"
    crls = _crls(ctx)
    if not crls:
        if ctx.policy.require_revocation:
            return _r(
                cid,
                Result.INDETERMINATE,
                "没有可用的撤销信息（CRL），无法确认签章者证书未被撤销",
                "no revocation information (CRL) is available for the signer certificate",
                SubIndication.TRY_LATER,
            )
        return _not_evaluated(cid, "未提供证书撤销列表（CRL）", "no certificate revocation list was supplied")
    c = signer.certificate
    if c is None or ctx.trust is None:
        return _r(
            cid,
            Result.INDETERMINATE,
            "签章者证书无法读取，无法检查撤销状态",
            "the signer certificate cannot be read; revocation not checked",
            SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
        )
    try:
        path = _validate(c, when, ctx.trust, crls, require_revocation=True, intermediates=intermediates)
    except PathValidationError as exc:
        if exc.reason == "revoked":
            return _chain_error(cid, exc, "签章者", "signer")
        if exc.reason in ("revocation_unknown", "crl_invalid"):
            return _r(
                cid,
                Result.INDETERMINATE,
                f"签章者证书撤销状态无法确定：{exc.message_zh}",
                f"the revocation status of the signer certificate is unknown: {exc.message_en}",
                SubIndication.TRY_LATER,
            )
        return _r(
            cid,
            Result.INDETERMINATE,
            f"无法构建签章者证书链，撤销状态未检查：{exc.message_zh}",
            f"no chain for the signer certificate, so revocation was not checked: {exc.message_en}",
            SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
        )
    except EsealError as exc:
        return _r(
            cid,
            Result.INDETERMINATE,
            f"撤销检查出错：{exc.message_zh}",
            f"revocation check failed: {exc.message_en}",
            SubIndication.TRY_LATER,
        )
    later = _later_revocation(path, crls, path.validated_at, proven or ctx.at)
    if later is None and proven is not None:
        after = _later_revocation(path, crls, max(path.validated_at, proven), ctx.at)
        note_zh = note_en = ""
        if after is not None:
            cert, revoked_at = after
            note_zh = f"；证书 {cert.describe()} 于 {fmt_time(revoked_at)} 被撤销，晚于时间戳时间"
            note_en = (
                f"; certificate {cert.describe()} was revoked at {fmt_time(revoked_at)}, after the time-stamp"
            )
        return _r(
            cid,
            Result.PASSED,
            f"签章者证书 {c.describe()} 及其证书链在 {fmt_time(path.validated_at)} 未被撤销（依据 CRL），"
            f"时间戳证明签章在 {fmt_time(proven)} 已存在{note_zh}",
            f"the signer certificate {c.describe()} and its chain were not revoked at "
            f"{fmt_time(path.validated_at)} (per CRL), and a time-stamp proves the signature existed at "
            f"{fmt_time(proven)}{note_en}",
        )
    if later is not None:
        cert, revoked_at = later
        return _r(
            cid,
            Result.INDETERMINATE,
            f"证书 {cert.describe()} 于 {fmt_time(revoked_at)} 被撤销，晚于声明的签章时间 {fmt_time(when)}，"
            "但签章时间没有时间戳证明",
            f"certificate {cert.describe()} was revoked at {fmt_time(revoked_at)}, "
            f"after the claimed signing time {fmt_time(when)}, which no time-stamp proves",
            SubIndication.REVOKED_NO_POE,
        )
    return _r(
        cid,
        Result.PASSED,
        f"签章者证书 {c.describe()} 及其证书链在 {fmt_time(path.validated_at)} 未被撤销（依据 CRL）",
        f"the signer certificate {c.describe()} and its chain were not revoked at "
        f"{fmt_time(path.validated_at)} (per CRL)",
    )


# --- document -----------------------------------------------------------------------------------------------
def _cms_data_hash(f: SignatureFacts) -> CheckResult:
    cid = "document.data_hash"
    assert f.cms is not None
    c = f.cms
    path = f.data_hash_source or "Signature.xml"
    if c.verification is None:
        return _not_evaluated(cid, "签名数据无法验证", "the signed data could not be verified")
    alg = c.verification.digest_algorithm.upper()
    if c.binding == "content":
        if c.bound:
            return _r(
                cid,
                Result.PASSED,
                f"签名直接覆盖 {path}，且验证通过",
                f"the signature covers {path} itself and verifies",
            )
        return _r(
            cid,
            Result.FAILED,
            f"对 {path} 的签名验证失败：{path} 已被修改或签名无效",
            f"the signature over {path} does not verify: {path} was modified or the signature is bad",
            SubIndication.HASH_FAILURE,
        )
    digest_attr = c.binding == "message_digest"
    what_zh = "签名属性 messageDigest" if digest_attr else "内嵌摘要"
    what_en = "messageDigest" if digest_attr else "eContent"
    expected = _hex(c.expected) if c.expected is not None else "-"
    actual = _hex(c.actual) if c.actual is not None else "-"
    if c.bound:
        return _r(
            cid,
            Result.PASSED,
            f"{what_zh} 与 {path} 的 {alg} 摘要一致（{actual}）",
            f"{what_en} equals {alg} of {path} ({actual})",
        )
    return _r(
        cid,
        Result.FAILED,
        f"{path} 的 {alg} 摘要为 {actual}，与{what_zh} {expected} 不符：{path} 已被修改",
        f"{alg} of {path} is {actual} but {what_en} is {expected}: {path} was modified",
        SubIndication.HASH_FAILURE,
    )


def check_data_hash(f: SignatureFacts, ctx: Context) -> CheckResult:
    cid = "document.data_hash"
    if f.cms is not None:
        return _cms_data_hash(f)
    if f.ses is None:
        return _undecodable(cid)
    expected = f.ses.data_hash
    if f.data_hash is None:
        return _not_evaluated(
            cid,
            f"未提供原文，dataHash（{_hex(expected)}）无法比对",
            f"no detached data supplied; dataHash {_hex(expected)} not compared",
        )
    source = f.data_hash_source or "data"
    source_zh = "原文" if f.ofd is None else source
    if f.data_hash == expected:
        return _r(
            cid,
            Result.PASSED,
            f"dataHash 与 {source_zh} 的 SM3 摘要一致（{_hex(expected)}）",
            f"dataHash equals SM3 of {source} ({_hex(expected)})",
        )
    return _r(
        cid,
        Result.FAILED,
        f"{source_zh} 的 SM3 摘要为 {_hex(f.data_hash)}，与签章数据中的 dataHash {_hex(expected)} 不符："
        f"{source_zh}已被修改",
        f"SM3 of {source} is {_hex(f.data_hash)} but TBS_Sign.dataHash is {_hex(expected)}: "
        f"{source} was modified",
        SubIndication.HASH_FAILURE,
    )


def check_references(f: SignatureFacts, ctx: Context) -> CheckResult:
    cid = "document.references"
    if f.ofd is None or f.ofd.signature_xml is None:
        return _not_evaluated(cid, "签名描述文件无法读取", "the signature file could not be read")
    xml = f.ofd.signature_xml
    method = xml.check_method
    if method is None:
        return _r(
            cid,
            Result.INDETERMINATE,
            f"{xml.path} 的 References 未声明 CheckMethod，无法校验文件摘要",
            f"{xml.path}: References declares no CheckMethod; file digests cannot be checked",
            SubIndication.CRYPTO_CONSTRAINTS_FAILURE,
        )
    if f.ofd.digest_name is None or ctx.policy.accepts_digest(method) is None:
        return _r(
            cid,
            Result.INDETERMINATE,
            f"{xml.path} 的摘要算法 {method} 不被支持或不被策略接受",
            f"{xml.path}: digest algorithm {method} is unsupported or not accepted by the policy",
            SubIndication.CRYPTO_CONSTRAINTS_FAILURE,
        )
    refs = f.ofd.references
    if not refs:
        return _r(cid, Result.WARNING, f"{xml.path} 不含任何文件引用", f"{xml.path} references no file")
    bad_zh: list[str] = []
    bad_en: list[str] = []
    for ref in refs:
        name = ref.reference.file_ref
        if ref.problem is not None:
            bad_zh.append(f"{name}（{ref.problem.zh}）")
            bad_en.append(f"{name} ({ref.problem.en})")
        elif not ref.matches:
            actual = _hex(ref.actual) if ref.actual else "-"
            expected = ref.reference.check_value_text or "-"
            bad_zh.append(f"{name}（摘要不符：计算值 {actual}，CheckValue {expected}）")
            bad_en.append(f"{name} (digest mismatch: computed {actual}, CheckValue {expected})")
    if bad_zh:
        return _r(
            cid,
            Result.FAILED,
            f"{len(bad_zh)}/{len(refs)} 个被保护文件校验失败：" + "；".join(bad_zh),
            f"{len(bad_en)} of {len(refs)} protected files fail: " + "; ".join(bad_en),
            SubIndication.HASH_FAILURE,
        )
    return _r(
        cid,
        Result.PASSED,
        f"全部 {len(refs)} 个被保护文件的 {method} 摘要一致",
        f"all {len(refs)} protected files match their {method} digests",
    )


def check_seal_file(f: SignatureFacts, ctx: Context) -> CheckResult:
    cid = "document.seal_file_match"
    if f.ofd is None or f.ofd.signature_xml is None:
        return _not_evaluated(cid, "签名描述文件无法读取", "the signature file could not be read")
    xml = f.ofd.signature_xml
    if xml.seal_loc is None and f.ofd.seal_file_problem is None:
        return _not_evaluated(
            cid, f"{xml.path} 未指定印章文件（可选）", f"{xml.path} names no seal file (optional)"
        )
    if f.ofd.seal_file_problem is not None or f.ofd.seal_file is None:
        why = f.ofd.seal_file_problem
        return _r(
            cid,
            Result.FAILED,
            f"印章文件 {xml.seal_loc} 无法读取" + (f"：{why.zh}" if why else ""),
            f"seal file {xml.seal_loc} cannot be read" + (f": {why.en}" if why else ""),
            SubIndication.HASH_FAILURE,
        )
    if f.seal is None:
        return _undecodable(cid)
    embedded = f.seal.parsed.raw
    if f.ofd.seal_file == embedded:
        return _r(
            cid,
            Result.PASSED,
            f"印章文件 {xml.seal_loc} 与签章数据中的印章逐字节一致",
            f"seal file {xml.seal_loc} equals the seal embedded in the signed value, byte for byte",
        )
    shown = f.ofd.seal_file
    return _r(
        cid,
        Result.FAILED,
        f"印章文件 {xml.seal_loc}（{len(shown)} 字节，SM3 {sm3_hex(shown)}）与签章数据中的印章"
        f"（{len(embedded)} 字节，SM3 {sm3_hex(embedded)}）不一致",
        f"seal file {xml.seal_loc} ({len(shown)} bytes, SM3 {sm3_hex(shown)}) differs from the "
        f"embedded seal ({len(embedded)} bytes, SM3 {sm3_hex(embedded)})",
        SubIndication.HASH_FAILURE,
    )


def check_coverage(f: SignatureFacts, ctx: Context) -> CheckResult:
    cid = "document.coverage"
    if f.ofd is None or f.ofd.signature_xml is None:
        return _not_evaluated(cid, "签名描述文件无法读取", "the signature file could not be read")
    uncovered = f.ofd.not_covered
    if not uncovered:
        return _r(
            cid,
            Result.PASSED,
            "除签名文件本身和签名列表外，包内所有文件均受此签名保护",
            "every package file except the signature's own files and the signature list is protected",
        )
    elsewhere = set(f.ofd.covered_elsewhere)
    nowhere = [n for n in uncovered if n not in elsewhere]
    parts_zh = []
    parts_en = []
    if nowhere:
        parts_zh.append("不受任何签名保护：" + "、".join(nowhere))
        parts_en.append("protected by no signature: " + ", ".join(nowhere))
    if elsewhere:
        listed = [n for n in uncovered if n in elsewhere]
        parts_zh.append("仅受其他签名保护：" + "、".join(listed))
        parts_en.append("protected only by another signature: " + ", ".join(listed))
    return _r(
        cid,
        Result.FAILED,
        f"{len(uncovered)} 个包内文件不受此签名保护（可能在签名后加入）—" + "；".join(parts_zh),
        f"{len(uncovered)} package files are not protected by this signature (added after signing?) — "
        + "; ".join(parts_en),
        SubIndication.SIG_CONSTRAINTS_FAILURE,
    )


# --- time-stamps ----------------------------------------------------------------------------------------
# A claimed signing time may trail the time-stamp by the token's accuracy plus this much clock skew
# before the two are reported as inconsistent.
_CLOCK_SKEW = dt.timedelta(minutes=5)
_SEVERITY = {Result.FAILED: 0, Result.INDETERMINATE: 1, Result.WARNING: 2, Result.PASSED: 3}


@dataclass(frozen=True)
class TimestampJudgement:
    """One time-stamp token judged: crypto (from the facts) and its TSA's chain at genTime."""

    result: Result
    sub: SubIndication | None
    zh: str
    en: str
    proven: dt.datetime | None  # genTime, when the token verifies and its TSA is trusted


def _token_failure(t: TimestampFacts) -> TimestampJudgement:
    exc = t.problem
    assert exc is not None
    head_zh, head_en = f"{t.where_zh}时间戳", f"{t.where_en} time-stamp"
    if isinstance(exc, MalformedData | InputTooLarge):
        return TimestampJudgement(
            Result.INDETERMINATE,
            SubIndication.FORMAT_FAILURE,
            f"{head_zh}（{len(t.token)} 字节）无法验证：不是可解析的时间戳令牌（{exc.message_zh}）",
            f"{head_en} ({len(t.token)} bytes) is unverifiable: not a parseable time-stamp token "
            f"({exc.message_en})",
            None,
        )
    if isinstance(exc, UnsupportedAlgorithm):
        sub, result = SubIndication.CRYPTO_CONSTRAINTS_FAILURE, Result.INDETERMINATE
    elif isinstance(exc, CertificateError):
        sub, result = SubIndication.NO_CERTIFICATE_CHAIN_FOUND, Result.INDETERMINATE
    elif isinstance(exc, CryptoError):  # InvalidSignature: signature, digest, imprint or ESS binding
        sub, result = SubIndication.SIG_CRYPTO_FAILURE, Result.FAILED
    else:
        sub, result = SubIndication.FORMAT_FAILURE, Result.INDETERMINATE
    return TimestampJudgement(
        result,
        sub,
        f"{head_zh}无效：{exc.message_zh}",
        f"{head_en} is invalid: {exc.message_en}",
        None,
    )


def _tsa_chain(t: TimestampFacts, ctx: Context) -> tuple[Result, SubIndication, str, str] | None:
    """None when the TSA certificate chains to a trust anchor at genTime, else why not."""
    v = t.verification
    assert v is not None
    at = v.gen_time.astimezone(dt.UTC)
    anchors = list(ctx.trust.trust_anchors(at)) if ctx.trust is not None else []
    if ctx.trust is None or not anchors:
        return (
            Result.INDETERMINATE,
            SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
            "未配置信任锚",
            "no trust anchor is configured",
        )
    try:
        tsa = load_certificate_der(v.tsa_certificate)
        embedded = []
        for der in v.cms.certificates:
            if der != v.tsa_certificate:
                try:
                    embedded.append(load_certificate_der(der))
                except EsealError:
                    continue  # not SM2: cannot be part of the TSA's SM2 path
        validate_path(
            tsa,
            trust_anchors=anchors,
            at=at,
            intermediates=[*ctx.trust.intermediates(at), *embedded],
            crls=list(_crls(ctx)),
        )
    except PathValidationError as exc:
        if exc.reason == "revoked":
            return Result.FAILED, SubIndication.REVOKED, exc.message_zh, exc.message_en
        return Result.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND, exc.message_zh, exc.message_en
    except EsealError as exc:
        return Result.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND, exc.message_zh, exc.message_en
    return None


def judge_timestamp(t: TimestampFacts, f: SignatureFacts, ctx: Context) -> TimestampJudgement:
    """Judge one token (remembered for the document: several checks ask)."""
    key = ("timestamp", id(t))
    found = ctx.memo.get(key)
    if found is not None and found[0] is t:
        judgement: TimestampJudgement = found[1]
        return judgement
    judgement = _judge_timestamp(t, f, ctx)
    ctx.memo[key] = (t, judgement)
    return judgement


def _judge_timestamp(t: TimestampFacts, f: SignatureFacts, ctx: Context) -> TimestampJudgement:
    if t.verification is None:
        return _token_failure(t)
    v = t.verification
    when = fmt_time(v.gen_time)
    head_zh = f"{t.where_zh}时间戳（{when}，{v.tsa_subject}）"
    head_en = f"{t.where_en} time-stamp ({when}, {v.tsa_subject})"
    if not t.imprint_ok and t.of_signature:
        return TimestampJudgement(
            Result.FAILED,
            SubIndication.SIG_CRYPTO_FAILURE,
            f"{head_zh}的消息印记不是签名值的摘要：该时间戳不属于此签名",
            f"{head_en} has an imprint that is not the digest of the signature value: it belongs to "
            "other data",
            None,
        )
    if not t.imprint_ok:
        # What a seal's time-stamp covers is not fixed by GB/T 38540; one over other data proves
        # nothing about this seal, but is no sign of forgery either.
        return TimestampJudgement(
            Result.WARNING,
            None,
            f"{head_zh}有效，但其消息印记不是印章签名值的摘要，不能证明印章的制作时间",
            f"{head_en} verifies, but its imprint is not the digest of the seal's signature value, "
            "so it proves nothing about when the seal was made",
            None,
        )
    chain = _tsa_chain(t, ctx)
    if chain is not None:
        result, sub, zh, en = chain
        return TimestampJudgement(
            result,
            sub,
            f"{head_zh}签名有效，但时间戳服务证书不可信：{zh}",
            f"{head_en} verifies but its TSA is not trusted: {en}",
            None,
        )
    gen_time = v.gen_time.astimezone(dt.UTC)
    claimed = f.signing_time if t.of_signature else None
    slack = (v.accuracy or dt.timedelta(0)) + _CLOCK_SKEW
    if claimed is not None and claimed > gen_time + slack:
        return TimestampJudgement(
            Result.WARNING,
            None,
            f"{head_zh}有效，但声明的签章时间 {fmt_time(claimed)} 晚于时间戳时间",
            f"{head_en} is valid, but the claimed signing time {fmt_time(claimed)} is later than it",
            gen_time,
        )
    return TimestampJudgement(
        Result.PASSED,
        None,
        f"{head_zh}有效：印记覆盖签名值，时间戳服务证书链可信",
        f"{head_en} is valid: its imprint covers the signature value and its TSA chains to a trust anchor",
        gen_time,
    )


def proven_time(f: SignatureFacts, ctx: Context) -> dt.datetime | None:
    """genTime of a valid, trusted time-stamp over the signature: when it is known to have existed."""
    t = f.signature_timestamp
    if t is None:
        return None
    return judge_timestamp(t, f, ctx).proven


def check_timestamp(f: SignatureFacts, ctx: Context) -> CheckResult:
    cid = "timestamp.token"
    if not f.timestamps:
        if f.ses is None and f.seal is None and f.cms is None:
            return _undecodable(cid)
        return _not_evaluated(cid, "没有时间戳", "no time-stamp present")
    judged = [judge_timestamp(t, f, ctx) for t in f.timestamps]
    worst = min(judged, key=lambda j: _SEVERITY[j.result])
    return _r(
        cid,
        worst.result,
        "；".join(j.zh for j in judged),
        "; ".join(j.en for j in judged),
        worst.sub,
    )


_CHECKS: dict[str, Callable[[SignatureFacts, Context], CheckResult]] = {
    "format.parse": check_format,
    "seal.maker_signature": check_maker_signature,
    "seal.maker_certificate_validity": check_maker_certificate_validity,
    "seal.maker_certificate_chain": check_maker_certificate_chain,
    "seal.validity_period": check_seal_validity_period,
    "seal.status": check_seal_status,
    "signer.signature": check_signer_signature,
    "signer.in_seal_certificate_list": check_signer_in_seal,
    "signer.certificate_validity": check_signer_certificate_validity,
    "signer.certificate_chain": check_signer_certificate_chain,
    "signer.certificate_revocation": check_signer_revocation,
    "document.data_hash": check_data_hash,
    "document.references": check_references,
    "document.seal_file_match": check_seal_file,
    "document.coverage": check_coverage,
    "timestamp.token": check_timestamp,
}

# Seal checks, which say nothing about a Sign-type signature (it carries no seal).
_SEAL_ONLY_CHECKS = frozenset(
    {
        "seal.maker_signature",
        "seal.maker_certificate_validity",
        "seal.maker_certificate_chain",
        "seal.validity_period",
        "seal.status",
        "signer.in_seal_certificate_list",
        "document.seal_file_match",
    }
)


def apply_policy(result: CheckResult, policy: Policy) -> CheckResult:
    action = policy.action(result.id)
    if action is Action.IGNORE and result.result is not Result.SKIPPED:
        return replace(
            result,
            result=Result.SKIPPED,
            message_zh=f"按策略忽略：{result.message_zh}",
            message_en=f"ignored by policy: {result.message_en}",
        )
    if action is Action.WARN and result.result in (Result.FAILED, Result.INDETERMINATE):
        return replace(
            result,
            result=Result.WARNING,
            message_zh=f"{result.message_zh}（按策略仅作警告）",
            message_en=f"{result.message_en} (a warning under the policy)",
        )
    return result


def evaluate(f: SignatureFacts, ctx: Context) -> tuple[CheckResult, ...]:
    """Every check that applies to the signature's source, in report order, with the policy applied."""
    ids = SEAL_CHECKS if f.source == SOURCE_SEAL else OFD_CHECKS if f.source == SOURCE_OFD else SES_CHECKS
    out: list[CheckResult] = []
    for check_id in ids:
        if f.kind == SIGN and check_id in _SEAL_ONLY_CHECKS:
            raw = _r(
                check_id,
                Result.SKIPPED,
                "不适用：Sign 类型签名（GB/T 35275）不含电子印章",
                "not applicable: a Sign-type signature (GB/T 35275) carries no seal",
            )
        else:
            raw = _CHECKS[check_id](f, ctx)
        out.append(apply_policy(raw, ctx.policy))
    return tuple(out)
