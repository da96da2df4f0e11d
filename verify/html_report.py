"""The verification report as a web page, and the public page that asks for a file.

Everything a submitted file contains (seal names, certificate subjects, paths) is attacker-
controlled: every such value goes through :func:`html.escape`, and seal pictures are inlined only
when their bytes are PNG, GIF or JPEG by magic number (never SVG, never by the declared type).
The pages carry no script; the language switch is a checkbox styled with CSS (and, on the form
page, submitted with the form so the report comes back in the same language). Tests address the
DOM through ``id`` and ``data-*`` attributes: ``#verdict[data-indication]``,
``.signature[data-signature-id][data-indication]``, ``.check[data-check-id][data-result]``.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from core.errors import EsealError
from gmpki.ofd import (
    SEAL,
    ContainerLimits,
    OfdPackage,
    is_zip,
    read_doc_bodies,
    read_signature_list,
    read_signature_xml,
)
from gmpki.seal import ParsedSeal, parse_seal, parse_ses_signature
from gmpki.sm3 import sm3_hex

from .report import (
    CertificateSummary,
    CheckResult,
    DocumentReport,
    Indication,
    Result,
    SignatureReport,
    SubIndication,
    iso,
)

MAX_INLINE_PICTURE: Final = 4 * 1024 * 1024
_IMAGE_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"\xff\xd8\xff", "image/jpeg"),
)


# --- seal pictures ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SealPicture:
    declared_type: str  # as the seal says (png, gif, jpg, ofd, ...): never trusted for display
    data: bytes


def sniff_image(data: bytes) -> str | None:
    """The media type of a PNG, GIF or JPEG by its first bytes; None for anything else."""
    for magic, media in _IMAGE_MAGIC:
        if data.startswith(magic):
            return media
    return None


def picture_data_uri(picture: SealPicture) -> str | None:
    """A ``data:`` URI for a displayable picture, else None (show a placeholder)."""
    media = sniff_image(picture.data)
    if media is None or len(picture.data) > MAX_INLINE_PICTURE:
        return None
    return f"data:{media};base64,{base64.b64encode(picture.data).decode('ascii')}"


def _add(out: dict[str, SealPicture], seal: ParsedSeal) -> None:
    out[sm3_hex(seal.raw)] = SealPicture(seal.picture_type, seal.picture_data)


def _ofd_pictures(pkg: OfdPackage, out: dict[str, SealPicture]) -> None:
    for body in read_doc_bodies(pkg):
        if body.signatures is None:
            continue
        try:
            entries = read_signature_list(pkg, body.signatures).entries
        except EsealError:
            continue
        for entry in entries:
            if entry.path is None or entry.type != SEAL:
                continue
            try:
                xml = read_signature_xml(pkg, entry.path)
                if xml.signed_value_path in pkg:
                    _add(out, parse_ses_signature(pkg.read(xml.signed_value_path)).seal)
            except EsealError:
                continue


def seal_pictures(data: bytes, *, limits: ContainerLimits | None = None) -> dict[str, SealPicture]:
    """The picture of every seal in ``data`` (an OFD, SES signature or seal), keyed by the hex SM3
    of the seal's DER (``SealSummary.sm3``). Best effort: whatever cannot be read is left out."""
    out: dict[str, SealPicture] = {}
    try:
        if is_zip(data):
            _ofd_pictures(OfdPackage(data, limits=limits), out)
        elif data[:1] == b"\x30":
            try:
                _add(out, parse_seal(data))
            except EsealError:
                _add(out, parse_ses_signature(data).seal)
    except EsealError:
        pass
    return out


# --- texts -----------------------------------------------------------------------------------------------
LANGUAGES: Final = ("zh", "en")
_VERDICT: Final = {
    Indication.PASSED: ("通过", "PASSED", "文件中的全部签章有效", "Every signature in the file is valid"),
    Indication.FAILED: (
        "失败",
        "FAILED",
        "至少一个签章无效",
        "At least one signature is not valid",
    ),
    Indication.INDETERMINATE: (
        "无法确定",
        "INDETERMINATE",
        "无法确认签章有效（例如缺少信任的根证书、撤销信息或印章状态）",
        "Validity could not be established (for example no trusted root, revocation data or seal status)",
    ),
    Indication.NOT_SIGNED: ("未签名", "NOT SIGNED", "文件中没有签章", "The file carries no signature"),
}
_SUB: Final[Mapping[SubIndication, tuple[str, str]]] = {
    SubIndication.FORMAT_FAILURE: ("签章数据格式错误", "the signature data is malformed"),
    SubIndication.HASH_FAILURE: ("签章后内容被修改", "the signed content was modified after signing"),
    SubIndication.SIG_CRYPTO_FAILURE: ("签名值校验失败", "a signature value does not verify"),
    SubIndication.REVOKED: ("证书已被撤销", "a certificate was revoked"),
    SubIndication.REVOKED_NO_POE: (
        "证书在声明的签章时间之后被撤销，而签章时间没有时间戳证明",
        "a certificate was revoked after the claimed signing time, which no time-stamp proves",
    ),
    SubIndication.NO_CERTIFICATE_CHAIN_FOUND: (
        "证书不能链接到受信任的根证书",
        "no certificate chain to a trusted root",
    ),
    SubIndication.CHAIN_CONSTRAINTS_FAILURE: (
        "证书链不满足约束",
        "the certificate chain breaks its constraints",
    ),
    SubIndication.SIG_CONSTRAINTS_FAILURE: (
        "签章不满足验证策略",
        "the signature breaks the validation policy",
    ),
    SubIndication.CRYPTO_CONSTRAINTS_FAILURE: ("算法不被接受", "an algorithm is not accepted"),
    SubIndication.OUT_OF_BOUNDS_NO_POE: (
        "签章时证书不在有效期内",
        "a certificate was outside its validity at signing time",
    ),
    SubIndication.NOT_YET_VALID: ("证书尚未生效", "a certificate was not yet valid"),
    SubIndication.TRY_LATER: ("暂时无法获得状态信息", "status information is not available now"),
    SubIndication.SIGNED_DATA_NOT_FOUND: (
        "未提供被签名的原文，无法确认签名覆盖的内容",
        "the signed data was not supplied, so what the signature covers cannot be established",
    ),
    SubIndication.SEAL_SIGNATURE_FAILURE: ("印章的制章者签名无效", "the seal maker's signature is invalid"),
    SubIndication.SEAL_EXPIRED: ("签章时印章已过有效期", "the seal had expired at signing time"),
    SubIndication.SEAL_NOT_YET_VALID: ("签章时印章尚未生效", "the seal was not yet valid at signing time"),
    SubIndication.SEAL_SUSPENDED: ("印章已暂停使用", "the seal is suspended"),
    SubIndication.SEAL_CANCELLED: ("印章已注销", "the seal has been cancelled"),
    SubIndication.SEAL_STATUS_UNKNOWN: ("印章状态未知", "the seal's status is unknown"),
    SubIndication.SIGNER_NOT_IN_SEAL: (
        "签章者证书不在印章的证书列表中（无权使用该印章）",
        "the signer is not in the seal's certificate list (not entitled to the seal)",
    ),
}
_CHECK_NAMES: Final = {
    "format.parse": ("数据解析", "Format"),
    "seal.maker_signature": ("制章者签名", "Seal maker's signature"),
    "seal.maker_certificate_validity": ("制章者证书有效期", "Maker certificate validity"),
    "seal.maker_certificate_chain": ("制章者证书链", "Maker certificate chain"),
    "seal.validity_period": ("印章有效期", "Seal validity period"),
    "seal.status": ("印章状态", "Seal status"),
    "signer.signature": ("签章者签名", "Signer's signature"),
    "signer.in_seal_certificate_list": ("签章者用章权限", "Signer entitled to the seal"),
    "signer.certificate_validity": ("签章者证书有效期", "Signer certificate validity"),
    "signer.certificate_chain": ("签章者证书链", "Signer certificate chain"),
    "signer.certificate_revocation": ("签章者证书撤销状态", "Signer certificate revocation"),
    "document.data_hash": ("原文摘要", "Signed data digest"),
    "document.references": ("受保护文件摘要", "Protected files"),
    "document.seal_file_match": ("印章文件一致", "Seal file matches"),
    "document.coverage": ("签章覆盖范围", "Coverage"),
    "timestamp.token": ("时间戳", "Time-stamp"),
}
_RESULT: Final = {
    Result.PASSED: ("通过", "passed"),
    Result.FAILED: ("失败", "failed"),
    Result.WARNING: ("警告", "warning"),
    Result.INDETERMINATE: ("无法确定", "indeterminate"),
    Result.SKIPPED: ("未检查", "skipped"),
}
_FORMATS: Final = {
    "ofd": ("OFD 文档", "OFD document"),
    "seal": ("电子印章", "electronic seal"),
    "ses": ("电子签章数据", "SES signature"),
    "pdf": ("PDF 文档", "PDF document"),
    "cms": ("CMS 签名（PKCS#7 / GB/T 35275）", "CMS signature (PKCS #7 / GB/T 35275)"),
}

CSS: Final = """
:root{--ok:#1b7f3b;--bad:#c62828;--maybe:#b26a00;--none:#555;--line:#ddd;font-family:system-ui,
"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",sans-serif;color:#222;background:#f6f6f4}
body{margin:0}.page{max-width:60rem;margin:0 auto;padding:1rem 1.25rem 3rem}
header{display:flex;justify-content:space-between;align-items:center;border-bottom:2px solid #a31515}
header h1{font-size:1.35rem;margin:.6rem 0}
.lang-switch{position:absolute;opacity:0;width:1px;height:1px}
.lang-toggle{cursor:pointer;border:1px solid #999;border-radius:4px;padding:.2rem .6rem;background:#fff}
#lang-en:not(:checked)~.page [lang="en"]{display:none}
#lang-en:checked~.page [lang="zh-CN"]{display:none}
.lang-switch:focus-visible~.page .lang-toggle{outline:2px solid #1565c0}
.verdict{margin:1.25rem 0;padding:1.25rem;border-radius:8px;color:#fff;text-align:center}
.verdict-word{font-size:3rem;font-weight:700;letter-spacing:.05em}
.verdict-sub{font-size:1.1rem;margin-top:.4rem}
.verdict-passed{background:var(--ok)}.verdict-failed{background:var(--bad)}
.verdict-indeterminate{background:var(--maybe)}.verdict-not_signed{background:var(--none)}
.verdict-error{background:var(--bad)}
section.signature,section.card{background:#fff;border:1px solid var(--line);border-radius:8px;
padding:1rem;margin:1rem 0}
.sig-head{display:flex;gap:1rem;align-items:flex-start;flex-wrap:wrap}
.seal-picture img{width:9rem;height:9rem;object-fit:contain;border:1px solid var(--line);background:#fff}
.seal-placeholder{width:9rem;height:9rem;display:flex;align-items:center;justify-content:center;
text-align:center;border:1px dashed #999;color:#666;font-size:.85rem}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:0;flex:1}
dl.facts dt{color:#666}dl.facts dd{margin:0;overflow-wrap:anywhere}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:4px;color:#fff;font-weight:600}
.badge-PASSED,.r-passed{background:var(--ok)}.badge-FAILED,.r-failed{background:var(--bad)}
.badge-INDETERMINATE,.r-indeterminate,.r-warning{background:var(--maybe)}.r-skipped{background:#888}
table.checks{width:100%;border-collapse:collapse;margin-top:.75rem;font-size:.95rem}
table.checks td,table.checks th{border-top:1px solid var(--line);padding:.35rem .4rem;text-align:left;
vertical-align:top}
.result{display:inline-block;min-width:4.5rem;text-align:center;padding:.05rem .4rem;border-radius:4px;
color:#fff}
.check-id{font-family:ui-monospace,monospace;font-size:.8rem;color:#666}
.msg{overflow-wrap:anywhere}
form{margin-top:1.25rem;display:grid;gap:.8rem;background:#fff;border:1px solid var(--line);
border-radius:8px;padding:1.25rem}
form label{font-weight:600}
button{font-size:1.1rem;padding:.5rem 1.5rem;background:#a31515;color:#fff;border:0;border-radius:6px;
cursor:pointer;justify-self:start}
.hint{color:#666;font-size:.9rem}
footer{margin-top:2rem;color:#777;font-size:.85rem}
"""
_STYLE_HASH: Final = base64.b64encode(hashlib.sha256(CSS.encode("utf-8")).digest()).decode("ascii")
CONTENT_SECURITY_POLICY: Final = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _t(zh: str, en: str) -> str:
    """A text in both languages; CSS shows the chosen one."""
    return f'<span lang="zh-CN">{_e(zh)}</span><span lang="en">{_e(en)}</span>'


def _lang(lang: str | None) -> str:
    return "en" if lang == "en" else "zh"


_FOOTER: Final = _t(
    "eseal 电子印章验证服务：文件仅用于本次验证，不会保存。",
    "eseal seal verification: files are verified, never stored.",
)
_FILE_HINT: Final = _t(
    "已签章的 OFD 或 PDF 文档、电子签章数据（SignedValue.dat）、分离式 CMS 签名（.p7s）"
    "或电子印章（.esl）。",
    "A sealed OFD or PDF document, an SES signature (SignedValue.dat), a detached CMS signature "
    "(.p7s) or an electronic seal (.esl).",
)
_DATA_HINT: Final = _t(
    "仅在验证单独的电子签章数据或分离式 CMS 签名时需要：签名所保护的原始文件。",
    "Only for a standalone SES signature or a detached CMS signature: the file it protects.",
)
_UNSIGNED_STAMPS: Final = _t(
    "页面上有未被任何签章保护的印章图案：", "Stamp images on pages that no signature accounts for: "
)


def _page(title_zh: str, title_en: str, body: str, *, lang: str, form_id: str | None = None) -> str:
    checked = " checked" if _lang(lang) == "en" else ""
    # On the form page the switch is also a form field, so the report keeps the chosen language.
    field = f' name="lang" value="en" form="{form_id}"' if form_id else ""
    html_lang = "en" if checked else "zh-CN"
    return (
        f'<!DOCTYPE html>\n<html lang="{html_lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title_zh)} / {_e(title_en)}</title><style>{CSS}</style></head><body>"
        f'<input type="checkbox" id="lang-en" class="lang-switch"{field}{checked}>'
        '<div class="page"><header>'
        f"<h1>{_t(title_zh, title_en)}</h1>"
        f'<label for="lang-en" class="lang-toggle" id="lang-toggle">{_t("English", "中文")}</label>'
        f"</header><main>{body}</main>"
        f"<footer>{_FOOTER}</footer>"
        "</div></body></html>"
    )


# --- the form -----------------------------------------------------------------------------------------------
def render_form_page(
    *, lang: str = "zh", action: str = "/verify", max_upload_bytes: int | None = None
) -> str:
    """The public page: pick a sealed OFD or PDF, an SES signature (.dat) or a detached CMS (.p7s),
    each with its data, or a seal (.esl)."""
    limit = ""
    if max_upload_bytes:
        mib = max_upload_bytes / (1024 * 1024)
        limit = _t(f"文件大小上限 {mib:g} MiB。", f"Files up to {mib:g} MiB.")
    body = (
        f'<form id="verify-form" method="post" action="{_e(action)}" enctype="multipart/form-data">'
        f'<label for="file">{_t("要验证的文件", "File to verify")}</label>'
        '<input type="file" id="file" name="file" required>'
        f'<div class="hint">{_FILE_HINT} {limit}</div>'
        f'<label for="data">{_t("原文（可选）", "Signed data (optional)")}</label>'
        '<input type="file" id="data" name="data">'
        f'<div class="hint">{_DATA_HINT}</div>'
        f'<button type="submit" id="submit">{_t("验证", "Verify")}</button>'
        "</form>"
    )
    return _page("电子签章验证", "Electronic seal verification", body, lang=lang, form_id="verify-form")


# --- the report ---------------------------------------------------------------------------------------------
def _cert(c: CertificateSummary | None) -> str:
    if c is None:
        return _t("（无法读取）", "(unreadable)")
    return f'<span class="subject">{_e(c.subject)}</span> <span class="serial">(SN {_e(c.serial)})</span>'


def _fact(name_zh: str, name_en: str, value_html: str, key: str) -> str:
    return f'<dt>{_t(name_zh, name_en)}</dt><dd data-field="{_e(key)}">{value_html}</dd>'


def _picture(sig: SignatureReport, pictures: Mapping[str, SealPicture]) -> str:
    picture = pictures.get(sig.seal.sm3 or "") if sig.seal else None
    if picture is None and sig.seal is None and sig.type == "sign":
        what = _t("数字签名，不含印章", "digital signature, no seal")
        return f'<div class="seal-placeholder" data-picture="none">{what}</div>'
    if picture is None:
        return (
            f'<div class="seal-placeholder" data-picture="none">{_t("无印章图片", "no seal picture")}</div>'
        )
    uri = picture_data_uri(picture)
    kind = _e(picture.declared_type.lower())
    if uri is None:
        what = _t(
            f"印章图片（{picture.declared_type}）无法在此显示",
            f"seal picture ({picture.declared_type}) cannot be shown here",
        )
        attrs = f'data-picture="placeholder" data-picture-type="{kind}"'
        return f'<div class="seal-placeholder" {attrs}>{what}</div>'
    return f'<img src="{uri}" alt="印章图片 seal picture" data-picture="image" data-picture-type="{kind}">'


def _checks_table(checks: Iterable[CheckResult]) -> str:
    rows = []
    for c in checks:
        name_zh, name_en = _CHECK_NAMES.get(c.id, (c.id, c.id))
        label_zh, label_en = _RESULT[c.result]
        rows.append(
            f'<tr class="check" data-check-id="{_e(c.id)}" data-result="{_e(c.result.value)}">'
            f'<td>{_t(name_zh, name_en)}<div class="check-id">{_e(c.id)}</div></td>'
            f'<td><span class="result r-{_e(c.result.value)}">{_t(label_zh, label_en)}</span></td>'
            f'<td class="msg">{_t(c.message_zh, c.message_en)}</td></tr>'
        )
    head = "".join(
        f"<th>{_t(zh, en)}</th>" for zh, en in (("检查项", "Check"), ("结果", "Result"), ("说明", "Reason"))
    )
    head = f"<tr>{head}</tr>"
    return f'<table class="checks">{head}{"".join(rows)}</table>'


def _sub(sub: SubIndication | None) -> str:
    if sub is None:
        return ""
    zh, en = _SUB.get(sub, (sub.value, sub.value))
    return f"{_t(zh, en)} <code>{_e(sub.value)}</code>"


def _signature(index: int, sig: SignatureReport, pictures: Mapping[str, SealPicture]) -> str:
    facts: list[str] = []
    seal = sig.seal
    if seal is not None:
        facts += [
            _fact("印章名称", "Seal name", _e(seal.name), "seal.name"),
            _fact("印章编码", "Seal ID (esID)", _e(seal.es_id), "seal.es_id"),
            _fact("印章类型", "Seal type", _e(seal.type), "seal.type"),
            _fact(
                "印章有效期",
                "Seal validity",
                f"{_e(iso(seal.valid_from))} — {_e(iso(seal.valid_to))}",
                "seal.validity",
            ),
            _fact("制章者", "Seal maker", _cert(seal.maker), "seal.maker"),
        ]
        if seal.sm3:
            facts.append(_fact("印章 SM3", "Seal SM3", f"<code>{_e(seal.sm3)}</code>", "seal.sm3"))
    facts.append(_fact("签章者", "Signer", _cert(sig.signer) if sig.signer else "—", "signer"))
    facts.append(_fact("签章时间", "Signing time", _e(iso(sig.signing_time) or "—"), "signing_time"))
    if sig.version is not None:
        facts.append(_fact("格式版本", "Format version", _e(sig.version), "version"))
    if sig.signature_xml:
        facts.append(
            _fact("签名文件", "Signature file", f"<code>{_e(sig.signature_xml)}</code>", "signature_xml")
        )
    if sig.property_info:
        facts.append(_fact("签章属性", "propertyInfo", _e(sig.property_info), "property_info"))
    word_zh, word_en, _, _ = _VERDICT[sig.indication]
    return (
        f'<section class="signature" id="signature-{index}" data-signature-id="{_e(sig.id)}" '
        f'data-indication="{_e(sig.indication.value)}" '
        f'data-sub-indication="{_e(sig.sub_indication.value if sig.sub_indication else "")}">'
        f"<h2>{_t('签章', 'Signature')} {_e(sig.id)} "
        f'<span class="badge badge-{_e(sig.indication.value)}">{_t(word_zh, word_en)}</span></h2>'
        f'<p class="sig-sub">{_sub(sig.sub_indication)}</p>'
        f'<div class="sig-head"><div class="seal-picture">{_picture(sig, pictures)}</div>'
        f'<dl class="facts">{"".join(facts)}</dl></div>'
        f"{_checks_table(sig.checks)}</section>"
    )


def render_report_page(
    report: DocumentReport,
    *,
    pictures: Mapping[str, SealPicture] | None = None,
    lang: str = "zh",
    file_name: str | None = None,
    home: str = "/verify",
) -> str:
    """The report as a complete HTML page (no script, no external resources)."""
    pictures = pictures or {}
    word_zh, word_en, say_zh, say_en = _VERDICT[report.indication]
    css = report.indication.value.lower()
    sub = report.sub_indication.value if report.sub_indication else ""
    verdict = (
        f'<section id="verdict" class="verdict verdict-{css}" '
        f'data-indication="{_e(report.indication.value)}" '
        f'data-sub-indication="{_e(sub)}"><div class="verdict-word">{_t(word_zh, word_en)}</div>'
        f'<div class="verdict-sub">{_t(say_zh, say_en)}</div>'
        f'<div class="verdict-sub">{_sub(report.sub_indication)}</div></section>'
    )
    fmt_zh, fmt_en = _FORMATS.get(report.format, (report.format, report.format))
    doc_facts = [_fact("文件类型", "Kind", _t(fmt_zh, fmt_en), "format")]
    if file_name:
        doc_facts.insert(0, _fact("文件", "File", _e(file_name), "file_name"))
    doc_facts.append(_fact("签章数", "Signatures", _e(len(report.signatures)), "signature_count"))
    doc_facts.append(
        _fact("验证时间", "Validation time", _e(iso(report.validation_time) or "—"), "validation_time")
    )
    parts = [
        verdict,
        f'<section class="card" id="document" data-format="{_e(report.format)}" '
        f'data-signed="{"true" if report.signed else "false"}"><dl class="facts">{"".join(doc_facts)}</dl>',
    ]
    if report.checks:
        parts.append(_checks_table(report.checks))
    if report.unsigned_stamps:
        listed = ", ".join(_e(s.path) for s in report.unsigned_stamps)
        parts.append(
            f'<p id="unsigned-stamps" data-count="{len(report.unsigned_stamps)}">'
            f"{_UNSIGNED_STAMPS}"
            f"{listed}</p>"
        )
    parts.append("</section>")
    parts += [_signature(i, s, pictures) for i, s in enumerate(report.signatures)]
    again = _t("验证其他文件", "Verify another file")
    parts.append(f'<p><a id="again" href="{_e(home)}?lang={_lang(lang)}">{again}</a></p>')
    return _page("电子签章验证结果", "Verification report", "".join(parts), lang=lang)


def render_error_page(
    code: str, message_zh: str, message_en: str, *, lang: str = "zh", home: str = "/verify"
) -> str:
    """The page for input that could not be verified at all (unknown format, too large, damaged)."""
    body = (
        f'<section id="verdict" class="verdict verdict-error" data-indication="ERROR" data-code="{_e(code)}">'
        f'<div class="verdict-word">{_t("无法验证", "Cannot verify")}</div>'
        f'<div class="verdict-sub" id="error-message">{_t(message_zh, message_en)}</div></section>'
        f'<p><a id="again" href="{_e(home)}?lang={_lang(lang)}">{_t("返回", "Back")}</a></p>'
    )
    return _page("电子签章验证结果", "Verification report", body, lang=lang)
