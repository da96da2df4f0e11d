"""The verification engine: detect what was submitted, collect evidence, run the checks, report.

Input is recognised by its content, never by a file name: a ZIP holding ``OFD.xml`` is an OFD
package, a DER structure shaped like a seal or an SES signature is one, ``%PDF`` is a PDF (its
signature fields are verified by :mod:`verify.pdf`), a ContentInfo holding signedData (DER, or PEM
``CMS``/``PKCS7``) is a CMS signature, verified with its detached data by :mod:`verify.detached_cms`.
Everything is verified over the bytes as read, never over a re-encoding.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import replace
from typing import ClassVar, Final

from core.errors import InputTooLarge, InvalidInput, MalformedData
from gmpki.ofd import ContainerLimits, OfdPackage, is_zip
from gmpki.seal import DEFAULT_MAX_SIZE as DER_MAX_SIZE
from gmpki.seal import detect_seal_version, detect_signature_version

from .checks import Context, evaluate
from .detached_cms import is_cms_pem, probe_signed_data, verify_cms
from .evidence import DocumentFacts, SignatureFacts, collect_ofd, collect_seal, collect_ses
from .policy import DEFAULT_POLICY, Policy
from .report import (
    CertificateSummary,
    CheckResult,
    DocumentReport,
    Result,
    SealSummary,
    SignatureReport,
    StampPlacement,
    SubIndication,
    UnsignedStamp,
    document_verdict,
    judge,
    serial_hex,
)
from .trust import MemoTrustSource, TrustSource

_PDF_WINDOW: Final = 1024  # PDF readers accept the header anywhere in the first KiB


class UnusableInput(InvalidInput):
    """The input is none of the formats the verifier knows."""

    code: ClassVar[str] = "unusable_input"
    status: ClassVar[int] = 415
    title_zh, title_en = "无法验证的输入", "Unusable input"


class UnsupportedFormat(UnusableInput):
    """A known format the verifier does not handle yet."""

    code: ClassVar[str] = "unsupported_format"
    title_zh, title_en = "暂不支持的格式", "Format not yet supported"


class InputKind(enum.StrEnum):
    OFD = "ofd"
    SEAL = "seal"
    SES = "ses"
    PDF = "pdf"
    CMS = "cms"
    UNKNOWN = "unknown"


def _der_kind(data: bytes) -> InputKind:
    if len(data) > DER_MAX_SIZE:
        raise InputTooLarge(
            f"数据过大（{len(data)} 字节，上限 {DER_MAX_SIZE}）",
            f"input too large ({len(data)} bytes, limit {DER_MAX_SIZE})",
        )
    for kind, probe in (
        (InputKind.CMS, probe_signed_data),  # first: it reads only the header and contentType
        (InputKind.SEAL, detect_seal_version),
        (InputKind.SES, detect_signature_version),
    ):
        try:
            probe(data)
        except MalformedData:
            continue
        return kind
    return InputKind.UNKNOWN


def _detect(data: bytes, limits: ContainerLimits | None) -> tuple[InputKind, OfdPackage | None]:
    if is_zip(data):
        pkg = OfdPackage(data, limits=limits)  # an unreadable or hostile ZIP raises here
        return (InputKind.OFD, pkg) if "OFD.xml" in pkg else (InputKind.UNKNOWN, None)
    if b"%PDF-" in data[:_PDF_WINDOW]:
        return InputKind.PDF, None
    if data[:1] == b"\x30":
        return _der_kind(data), None
    if is_cms_pem(data):
        return InputKind.CMS, None
    return InputKind.UNKNOWN, None


def detect(data: bytes, *, limits: ContainerLimits | None = None) -> InputKind:
    """What ``data`` is, by content. A damaged or hostile ZIP raises MalformedData / InputTooLarge."""
    return _detect(bytes(data), limits)[0]


# --- report assembly -------------------------------------------------------------------------------------
def _cert_summary(facts: SignatureFacts, which: str) -> CertificateSummary | None:
    cert_facts = facts.signer if which == "signer" else facts.seal.maker if facts.seal else None
    if cert_facts is None or cert_facts.certificate is None:
        return None
    c = cert_facts.certificate
    return CertificateSummary(c.subject, serial_hex(c.serial))


def _seal_summary(facts: SignatureFacts) -> SealSummary | None:
    if facts.seal is None:
        return None
    s = facts.seal.parsed
    return SealSummary(
        es_id=s.es_id,
        name=s.name,
        type=s.seal_type,
        valid_from=s.valid_start,
        valid_to=s.valid_end,
        maker=_cert_summary(facts, "maker"),
        created=s.create_date,
        version=s.version,
        sm3=facts.seal.sm3.hex(),
    )


def _stamps(facts: SignatureFacts) -> tuple[StampPlacement, ...]:
    if facts.ofd is None or facts.ofd.signature_xml is None:
        return ()
    pages = facts.ofd.pages
    out: list[StampPlacement] = []
    for stamp in facts.ofd.signature_xml.stamp_annots:
        page = pages.by_id(stamp.page_ref) if pages is not None and stamp.page_ref else None
        out.append(StampPlacement(stamp.page_ref, page.index if page else None, stamp.boundary, stamp.clip))
    return tuple(out)


def _signature_report(facts: SignatureFacts, ctx: Context) -> SignatureReport:
    checks = evaluate(facts, ctx)
    indication, sub = judge(checks)
    version = facts.ses.version if facts.ses else facts.seal.parsed.version if facts.seal else None
    return SignatureReport(
        id=facts.id,
        type=facts.kind,
        version=version,
        signing_time=facts.signing_time,
        indication=indication,
        sub_indication=sub,
        seal=_seal_summary(facts),
        signer=_cert_summary(facts, "signer"),
        checks=checks,
        doc_body=facts.ofd.doc_body if facts.ofd else None,
        signature_xml=facts.ofd.entry.path if facts.ofd else None,
        property_info=facts.ses.property_info if facts.ses else None,
        stamps=_stamps(facts),
    )


def _document_report(doc: DocumentFacts, ctx: Context) -> DocumentReport:
    signatures = tuple(_signature_report(s, ctx) for s in doc.signatures)
    own = tuple(
        CheckResult("format.parse", Result.FAILED, p.zh, p.en, SubIndication.FORMAT_FAILURE)
        for p in doc.problems
    )
    indication, sub = document_verdict(signatures, own, doc.signed)
    return DocumentReport(
        format=doc.format,
        signed=doc.signed,
        indication=indication,
        sub_indication=sub,
        signatures=signatures,
        checks=own,
        validation_time=ctx.at,
        unsigned_stamps=tuple(
            UnsignedStamp(body, s.page_id, s.annot_id, s.path) for body, s in doc.unsigned_stamps
        ),
    )


def verify_bytes(
    data: bytes,
    *,
    detached_data: bytes | None = None,
    trust: TrustSource | None = None,
    policy: Policy | None = None,
    at: dt.datetime | None = None,
    limits: ContainerLimits | None = None,
) -> DocumentReport:
    """Verify a seal (.esl), an SES signature or a CMS signature (each with optional detached data),
    an OFD document or a signed PDF.

    ``at`` (default: the policy's time, else now) is the validation time; signatures are judged at
    their own signing time (``TBS_Sign.timeInfo``; for PDF the time-stamp or the claimed time).
    Raises :class:`UnusableInput` for unknown input and MalformedData / InputTooLarge for an
    unreadable or hostile container; every problem inside a recognised format (a PDF that cannot be
    parsed included) is reported, not raised.
    """
    data = bytes(data)
    policy = policy or DEFAULT_POLICY
    when = at or policy.at or dt.datetime.now(dt.UTC)
    if when.tzinfo is None:
        raise InvalidInput("验证时间必须带时区", "the validation time must be timezone-aware")
    ctx = Context(policy=policy, trust=trust, at=when.astimezone(dt.UTC))
    kind, pkg = _detect(data, limits)
    if trust is not None and kind is not InputKind.PDF:
        ctx = replace(ctx, trust=MemoTrustSource(trust))
    if kind is InputKind.OFD:
        assert pkg is not None
        doc = collect_ofd(pkg)
    elif kind is InputKind.SEAL:
        doc = collect_seal(data)
    elif kind is InputKind.SES:
        doc = collect_ses(data, detached_data)
    elif kind is InputKind.PDF:
        # Imported here: pyHanko is heavy and only PDF input needs it.
        from .pdf import verify_pdf

        return verify_pdf(data, ctx)
    elif kind is InputKind.CMS:
        return verify_cms(data, detached_data, ctx)
    else:
        raise UnusableInput(
            "无法识别的输入：不是 OFD 或 PDF 文档、电子印章、电子签章数据或 CMS 签名",
            "unrecognised input: not an OFD or PDF document, an electronic seal, an SES signature or a "
            "CMS signature",
        )
    return _document_report(doc, ctx)
