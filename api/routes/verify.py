"""Public verification: ``POST /v1/verify`` (JSON or, for browsers, HTML) and the web page ``/verify``.

Anyone may verify; no token. The upload limit (``ESEAL_MAX_UPLOAD_BYTES``) is enforced while the
body streams in, so an oversized upload is refused before it is stored anywhere. Trust comes from
the running registry: its root and imported anchors, its current CRL and the life of its seals.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from core.errors import EsealError, InputTooLarge, InvalidInput
from seal_registry.trust_source import RegistryTrustSource
from verify import DocumentReport, UnusableInput, verify_bytes
from verify.html_report import (
    CONTENT_SECURITY_POLICY,
    render_error_page,
    render_form_page,
    render_report_page,
    seal_pictures,
)

from ..context import ServiceContext
from ..problems import PROBLEM_JSON
from ..security import get_context
from ..uploads import media_type, multipart_form, read_body, read_part
from .federation import federated_trust

router = APIRouter(tags=["verify"])

# Room for the multipart framing, the optional data part's headers and the language field.
_HTML_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
JSON_MEDIA: Final = "application/json"
# Inputs up to this size are verified on the event loop itself (a few milliseconds); larger ones in
# a worker thread so the loop keeps serving. See _run for why small ones do not go to a thread.
INLINE_VERIFY_BYTES: Final = 256 * 1024


@dataclass(frozen=True)
class Submission:
    data: bytes
    detached: bytes | None
    file_name: str | None
    lang: str


async def read_submission(request: Request, limit: int) -> Submission:
    """The file (and optional detached data) from a multipart form or a raw body."""
    if media_type(request) != "multipart/form-data":
        body = await read_body(request, limit)
        if not body:
            raise InvalidInput("请求体为空：请上传要验证的文件", "Empty body: send the file to verify")
        return Submission(body, None, None, "zh")
    async with multipart_form(request, limit, max_files=2, max_fields=4) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("缺少文件字段 file", "The form has no file field named 'file'")
        data = await read_part(upload, limit)
        if not data:
            raise InvalidInput("上传的文件为空", "The uploaded file is empty")
        extra = form.get("data")
        detached = None
        if isinstance(extra, UploadFile) and (extra.filename or extra.size):
            detached = await read_part(extra, limit)
        lang = form.get("lang")
        return Submission(data, detached, upload.filename, lang if lang == "en" else "zh")


def parse_at(value: str | None) -> dt.datetime | None:
    if value is None or not value.strip():
        return None
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"验证时间格式无效：{value[:40]!r}（应为 ISO 8601，如 2024-05-01T00:00:00Z）",
            f"Invalid validation time {value[:40]!r} (ISO 8601 expected, e.g. 2024-05-01T00:00:00Z)",
        ) from None
    if when.tzinfo is None:
        raise InvalidInput(
            "验证时间必须带时区（如 Z 或 +08:00）", "The validation time needs a zone (e.g. Z or +08:00)"
        )
    return when.astimezone(dt.UTC)


def registry_trust(request: Request, ctx: ServiceContext) -> RegistryTrustSource:
    """One trust source per app, so its CRL cache lives as long as the service."""
    trust = getattr(request.app.state, "registry_trust", None)
    if not isinstance(trust, RegistryTrustSource):
        # The local registry first, then peer regions' last good trust lists.
        trust = federated_trust(ctx)
        request.app.state.registry_trust = trust
    return trust


def wants_html(request: Request) -> bool:
    """Browsers ask for text/html first; API clients (``*/*``, JSON) get JSON."""
    accept = request.headers.get("accept", "").lower()
    html_at = accept.find("text/html")
    json_at = accept.find(JSON_MEDIA)
    return html_at >= 0 and (json_at < 0 or html_at < json_at)


def _verify(
    trust: RegistryTrustSource, sub: Submission, at: dt.datetime | None, html: bool
) -> tuple[DocumentReport, str | None]:
    try:
        report = verify_bytes(sub.data, detached_data=sub.detached, trust=trust, at=at)
    except (UnusableInput, InputTooLarge):
        raise
    except InvalidInput as exc:  # a damaged container: as unusable as an unknown format
        raise UnusableInput(
            f"无法读取文件：{exc.message_zh}", f"The file cannot be read: {exc.message_en}"
        ) from exc
    if not html:
        return report, None
    page = render_report_page(
        report, pictures=seal_pictures(sub.data), lang=sub.lang, file_name=sub.file_name
    )
    return report, page


def _html(page: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(page, status_code=status, headers=_HTML_HEADERS)


def _error_page(exc: EsealError, lang: str) -> HTMLResponse:
    return _html(render_error_page(exc.code, exc.message_zh, exc.message_en, lang=lang), exc.status)


async def _run(request: Request, ctx: ServiceContext, at: str | None, html: bool) -> Response:
    lang = "en" if request.query_params.get("lang") == "en" else "zh"
    try:
        when = parse_at(at)
        sub = await read_submission(request, ctx.settings.max_upload_bytes)
        lang = sub.lang if sub.lang == "en" else lang
        sub = Submission(sub.data, sub.detached, sub.file_name, lang)
        trust = registry_trust(request, ctx)
        if len(sub.data) + len(sub.detached or b"") <= INLINE_VERIFY_BYTES:
            report, page = _verify(trust, sub, when, html)
        else:
            report, page = await run_in_threadpool(_verify, trust, sub, when, html)
    except EsealError as exc:
        if html:
            return _error_page(exc, lang)
        raise
    if page is not None:
        return _html(page)
    return Response(report.dumps(indent=None), media_type=JSON_MEDIA, headers={"Cache-Control": "no-store"})


_REPORT_DOC: Final = (
    "验证电子印章（.esl）、电子签章数据（SES_Signature，可附原文 data）、分离式 CMS 签名（DER 或 PEM，"
    "GB/T 35275 SM2 或 RFC 5652 ECDSA/RSA，原文放在 data 字段）或已签章的 OFD / PDF 文档。"
    "无需令牌。`Accept: text/html` 时返回报告页面，否则返回 JSON 报告。\n\n"
    "Verify a seal (.esl), an SES signature (optionally with its detached `data`), a detached CMS "
    "signature (DER or PEM; GB/T 35275 SM2 or RFC 5652 ECDSA/RSA; the signed data in `data`, without "
    "which `document.data_hash` is indeterminate) or a sealed OFD or PDF document. Public: no token. "
    "Send multipart/form-data (`file`, optional `data`) or the raw file as the body. With "
    "`Accept: text/html` the report is a web page, otherwise JSON. Unusable input is "
    "problem+json `unusable_input` (415; `unsupported_format`, a subtype, for a known format not "
    "handled yet); an upload over the limit is `input_too_large` (413)."
)


@router.post(
    "/v1/verify",
    summary="验证签章 Verify a seal, SES or CMS signature, or a sealed OFD or PDF (public)",
    description=_REPORT_DOC,
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "data": {"type": "string", "format": "binary"},
                        },
                    }
                },
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
    responses={
        200: {"description": "Verification report", "content": {JSON_MEDIA: {}, "text/html": {}}},
        400: {"description": "Bad request (form, `at`)", "content": {PROBLEM_JSON: {}}},
        413: {"description": "Upload over the limit", "content": {PROBLEM_JSON: {}}},
        415: {"description": "Unusable or unsupported input", "content": {PROBLEM_JSON: {}}},
    },
)
async def verify_document(
    request: Request,
    at: str | None = Query(
        default=None,
        max_length=64,
        description="验证时间（ISO 8601，带时区）/ validation time (ISO 8601 with zone); default now",
    ),
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
) -> Response:
    return await _run(request, ctx, at, wants_html(request))


# --- the web page ----------------------------------------------------------------------------------------
@router.get("/", include_in_schema=False)
def home(request: Request) -> RedirectResponse:
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/verify{query}", status_code=303)


@router.get("/verify", include_in_schema=False, response_class=HTMLResponse)
def verify_page(
    lang: str = Query(default="zh", max_length=8),
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
) -> HTMLResponse:
    return _html(
        render_form_page(lang=lang, action="/verify", max_upload_bytes=ctx.settings.max_upload_bytes)
    )


@router.post("/verify", include_in_schema=False, response_class=HTMLResponse)
async def verify_page_submit(
    request: Request,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
) -> Response:
    return await _run(request, ctx, None, True)
