"""Signing: seal an OFD document, make a detached SES signature, or sign a digest (two-step).

Who may sign: only ``department_signer`` tokens, and only with their own department's seals
(:func:`seal_registry.seals.authorize_use` is the one decision; a seal of another department is
403). Administrators and seal officers cannot sign on a department's behalf: the people who make
and issue seals do not use them (separation of duties); they get 403 too.

Every signature is authorised, made and audited (seal, document SM3, time, requester) in one
transaction; the response is built only after it commits, so a refused or failed request leaves
neither a signature nor an audit entry behind. Uploads are limited to ``ESEAL_MAX_UPLOAD_BYTES``
while they stream in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from core.db import transaction
from core.errors import InvalidInput, PermissionDenied
from core.tokens import Principal, Role
from gmpki.ofd import ContainerLimits
from signer.batch import signature_timestamper
from signer.ofd_sealing import OFD_MEDIA_TYPE, SealMode, seal_ofd, sealing_mode
from signer.placement import Placement, placement_from_options
from signer.ses_signing import SES_MEDIA_TYPE, default_property_info, parse_digest_hex, sign_data
from signer.tsa import TimeStampAuthority
from signer.two_step import result_to_json, sign_digest

from ..context import ServiceContext
from ..problems import PROBLEM_JSON
from ..security import check_department_scope, get_context, require_roles
from ..uploads import media_type, multipart_form, read_body, read_part

router = APIRouter(prefix="/v1/sign", tags=["sign"])

MAX_FIELD: Final = 1024
_FIELDS: Final = (
    "es_id",
    "department_id",
    "mode",
    "page",
    "x",
    "y",
    "keyword",
    "occurrence",
    "riding",
    "property_info",
    "name",
    "timestamp",
)


# --- who may sign ---------------------------------------------------------------------------------------
def signer_principal(
    who: Principal = Depends(require_roles(Role.DEPARTMENT_SIGNER)),  # noqa: B008
) -> Principal:
    """A department signer with a department; admin passes require_roles but may not sign."""
    if who.role is not Role.DEPARTMENT_SIGNER or not who.department_id:
        raise PermissionDenied(
            "只有部门签章人员（department_signer 令牌）可以签章；管理员和印章管理员不能代部门签章",
            "Only a department signer may sign; administrators and seal officers cannot sign "
            "for a department",
        )
    return who


def _department(who: Principal, requested: str | None) -> str:
    if requested:
        check_department_scope(who, requested)
    assert who.department_id is not None  # signer_principal guarantees it
    return who.department_id


# --- reading requests -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Upload:
    data: bytes
    file_name: str | None
    fields: Mapping[str, str]


def _field(name: str, value: str) -> str:
    if len(value) > MAX_FIELD:
        raise InvalidInput(f"字段 {name} 过长", f"Field {name} is too long")
    return value


async def read_upload(request: Request, limit: int) -> Upload:
    """The file and the signing fields: a multipart form (``file`` + fields) or a raw body (+ query)."""
    if media_type(request) != "multipart/form-data":
        body = await read_body(request, limit)
        if not body:
            raise InvalidInput("请求体为空：请上传要签章的文件", "Empty body: send the file to sign")
        fields = {k: _field(k, v) for k, v in request.query_params.items() if k in _FIELDS}
        return Upload(body, fields.get("name"), fields)
    async with multipart_form(
        request, limit, max_files=1, max_fields=len(_FIELDS), max_part_size=MAX_FIELD
    ) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("缺少文件字段 file", "The form has no file field named 'file'")
        data = await read_part(upload, limit)
        if not data:
            raise InvalidInput("上传的文件为空", "The uploaded file is empty")
        fields = {k: _field(k, v) for k, v in form.items() if k in _FIELDS and isinstance(v, str)}
        return Upload(data, fields.get("name") or upload.filename, fields)


def _required(fields: Mapping[str, str], name: str) -> str:
    value = (fields.get(name) or "").strip()
    if not value:
        raise InvalidInput(f"缺少字段 {name}", f"Missing field {name}")
    return value


def _number(fields: Mapping[str, str], name: str) -> float | None:
    text = (fields.get(name) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"字段 {name} 不是数字", f"Field {name} is not a number") from None
    if not math.isfinite(value):
        raise InvalidInput(f"字段 {name} 不是有限数值", f"Field {name} is not a finite number")
    return value


def _integer(fields: Mapping[str, str], name: str) -> int | None:
    text = (fields.get(name) or "").strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > 9:
        raise InvalidInput(f"字段 {name} 须为正整数", f"Field {name} must be a positive integer")
    return int(text)


def _flag(fields: Mapping[str, str], name: str) -> bool:
    text = (fields.get(name) or "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise InvalidInput(f"字段 {name} 须为 true 或 false", f"Field {name} must be true or false")


def placement_of(fields: Mapping[str, str]) -> Placement | None:
    return placement_from_options(
        page=_integer(fields, "page"),
        x=_number(fields, "x"),
        y=_number(fields, "y"),
        keyword=fields.get("keyword"),
        occurrence=_integer(fields, "occurrence") or 1,
        riding=_flag(fields, "riding"),
    )


def _attachment(name: str | None, default: str, suffix: str) -> str:
    stem = (name or "").replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0].strip() or default
    file_name = f"{stem}.sealed{suffix}"
    return f"attachment; filename=\"{default}.sealed{suffix}\"; filename*=UTF-8''{quote(file_name, safe='')}"


# --- OFD ------------------------------------------------------------------------------------------------
_FORM_FIELDS: Final[dict[str, Any]] = {
    "es_id": {"type": "string", "description": "印章编码 / seal esID"},
    "department_id": {"type": "string", "description": "可省略，须为本部门 / optional, must be yours"},
    "mode": {"type": "string", "enum": ["continue", "protect_all"], "default": "continue"},
    "page": {"type": "integer", "description": "页码（从 1 开始）/ 1-based page"},
    "x": {"type": "number", "description": "印章左上角 x（毫米）/ stamp's left edge, mm"},
    "y": {"type": "number", "description": "印章左上角 y（毫米）/ stamp's top edge, mm"},
    "keyword": {"type": "string", "description": "以关键字为中心盖章 / centre the stamp on this text"},
    "occurrence": {"type": "integer", "default": 1},
    "riding": {"type": "boolean", "description": "骑缝章 / riding seal across all pages"},
    "timestamp": {
        "type": "boolean",
        "default": False,
        "description": "加盖 RFC 3161 时间戳（覆盖签名值）/ "
        "add an RFC 3161 time-stamp over the signature value",
    },
}


def _body_doc(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "es_id"],
                        "properties": {"file": {"type": "string", "format": "binary"}, **fields},
                    }
                },
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    }


def _do_seal_ofd(ctx: ServiceContext, who: Principal, upload: Upload) -> bytes:
    fields = upload.fields
    es_id = _required(fields, "es_id")
    department_id = _department(who, fields.get("department_id"))
    mode = sealing_mode(fields.get("mode") or SealMode.CONTINUE)
    placement = placement_of(fields)
    stamped = _flag(fields, "timestamp")
    limits = ContainerLimits(max_input_size=ctx.settings.max_upload_bytes)
    with transaction(ctx.sessions) as s:
        sealed = seal_ofd(
            s,
            ctx.keystore,
            upload.data,
            es_id=es_id,
            department_id=department_id,
            placement=placement,
            mode=mode,
            actor=who.actor,
            limits=limits,
            document_name=upload.file_name,
            time_stamp=signature_timestamper(ctx.settings, s, ctx.keystore) if stamped else None,
        )
    return sealed


@router.post(
    "/ofd",
    summary="OFD 文档签章 Seal an OFD document",
    description=(
        "为 OFD 文档（第一个 DocBody）加盖电子印章。multipart/form-data（`file` 与各字段）或原始请求体"
        "（字段作查询参数）。位置：`page`+`x`+`y`（毫米，左上角），或 `keyword`，或 `riding=true`（骑缝章），"
        "都不给则为不可见签章。`mode=protect_all` 时签名列表也受保护，此后不能再签章。\n\n"
        "Seal the first document of an OFD package. Send multipart/form-data (`file` plus fields) or the "
        "raw file with the fields as query parameters. Placement: `page`+`x`+`y` (mm, top-left corner), "
        "`keyword`, or `riding=true`; none gives an invisible signature. `mode=protect_all` also protects "
        "the signature list, after which no further seal can be added (409 `document_fully_protected`). "
        "`timestamp=true` puts an RFC 3161 token over the signature value into SES_Signature.timeStamp "
        "(configured TSAs first, then the region's built-in TSA)."
    ),
    response_class=Response,
    openapi_extra=_body_doc(_FORM_FIELDS),
    responses={
        200: {"description": "The sealed OFD", "content": {OFD_MEDIA_TYPE: {}}},
        400: {"description": "Bad input (fields, placement, malformed OFD)", "content": {PROBLEM_JSON: {}}},
        403: {"description": "Not a department signer, or not this department's seal"},
        409: {"description": "Seal not usable, or document fully protected", "content": {PROBLEM_JSON: {}}},
        413: {"description": "Upload over the limit", "content": {PROBLEM_JSON: {}}},
    },
)
async def sign_ofd(
    request: Request,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(signer_principal),  # noqa: B008
) -> Response:
    upload = await read_upload(request, ctx.settings.max_upload_bytes)
    sealed = await run_in_threadpool(_do_seal_ofd, ctx, who, upload)
    return Response(
        sealed,
        media_type=OFD_MEDIA_TYPE,
        headers={
            "Content-Disposition": _attachment(upload.file_name, "document", ".ofd"),
            "Cache-Control": "no-store",
        },
    )


# --- detached SES ---------------------------------------------------------------------------------------
def _do_sign_ses(ctx: ServiceContext, who: Principal, upload: Upload) -> bytes:
    fields = upload.fields
    es_id = _required(fields, "es_id")
    department_id = _department(who, fields.get("department_id"))
    stamped = _flag(fields, "timestamp")
    with transaction(ctx.sessions) as s:
        result = sign_data(
            s,
            ctx.keystore,
            upload.data,
            es_id=es_id,
            department_id=department_id,
            actor=who.actor,
            property_info=(fields.get("property_info") or "").strip() or None,
            name=upload.file_name,
            time_stamp=signature_timestamper(ctx.settings, s, ctx.keystore) if stamped else None,
        )
    return result.signature


@router.post(
    "/ses",
    summary="电子签章数据 Detached SES signature over any data",
    description=(
        "对任意数据生成电子签章数据（SES_Signature，DER），dataHash = SM3(数据)。"
        "propertyInfo 默认为文件名。\n\n"
        "An SES_Signature (DER) over the uploaded bytes: dataHash = SM3(data); propertyInfo defaults to "
        "`file:<name>` or `sm3:<hex>`. Multipart (`file`, `es_id`, optional `property_info`) or raw body "
        "with query parameters."
    ),
    response_class=Response,
    openapi_extra=_body_doc(
        {
            "es_id": _FORM_FIELDS["es_id"],
            "department_id": _FORM_FIELDS["department_id"],
            "property_info": {"type": "string", "description": "ASCII"},
            "timestamp": _FORM_FIELDS["timestamp"],
        }
    ),
    responses={200: {"description": "SES_Signature DER", "content": {SES_MEDIA_TYPE: {}}}},
)
async def sign_ses(
    request: Request,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(signer_principal),  # noqa: B008
) -> Response:
    upload = await read_upload(request, ctx.settings.max_upload_bytes)
    signature = await run_in_threadpool(_do_sign_ses, ctx, who, upload)
    return Response(
        signature,
        media_type=SES_MEDIA_TYPE,
        headers={
            "Content-Disposition": _attachment(upload.file_name, "signature", ".ses"),
            "Cache-Control": "no-store",
        },
    )


# --- PDF ------------------------------------------------------------------------------------------------
PDF_MEDIA_TYPE = "application/pdf"


def _do_seal_pdf(ctx: ServiceContext, who: Principal, upload: Upload) -> bytes:
    from signer.pdf_sealing import parse_pades_level, seal_pdf, timestamp_authority_for

    fields = upload.fields
    es_id = _required(fields, "es_id")
    department_id = _department(who, fields.get("department_id"))
    x_mm, y_mm = _number(fields, "x"), _number(fields, "y")
    if x_mm is None or y_mm is None:
        raise InvalidInput("PDF 签章需要 x 与 y（毫米）", "PDF sealing needs x and y (mm)")
    key_kind = (fields.get("key_kind") or "ecdsa").strip().lower()
    level = parse_pades_level((fields.get("pades_level") or "B-B").strip())
    with transaction(ctx.sessions) as s:
        tsa = timestamp_authority_for(s, ctx.keystore, key_kind) if level.value == "B-T" else None
        return seal_pdf(
            s,
            ctx.keystore,
            upload.data,
            es_id=es_id,
            department_id=department_id,
            page=_integer(fields, "page") or 1,
            x_mm=x_mm,
            y_mm=y_mm,
            key_kind=key_kind,
            certify=_flag(fields, "certify"),
            pades_level=level,
            tsa=tsa,
            actor=who.actor,
        )


@router.post(
    "/pdf",
    summary="PDF 文档签章 Seal a PDF document (PAdES)",
    description=(
        "为 PDF 加盖可见电子印章（PAdES B-B / B-T）。`key_kind`：`ecdsa`（默认）或 `rsa` —— 证书链到地区的 "
        "PAdES 互通根，PDF 阅读器可验证；`sm2` —— GB/T 35275 SM2 签名，由 eseal 验证。`certify=true` 为认证"
        "签名（DocMDP），否则为批准签名；新签章以增量更新加入，原有签章仍然有效。\n\n"
        "Add a visible seal to a PDF (PAdES B-B or B-T). `key_kind`: `ecdsa` (default) or `rsa`, chained to "
        "the region's PAdES interop root so PDF readers can check it; `sm2`, a GB/T 35275 SM2 signature "
        "checked by eseal. `page` (1-based), `x`/`y` (mm, top-left corner of the seal from the page's "
        "top-left), `certify=true` for a certification (DocMDP) signature, `pades_level=B-T` for a "
        "signature time-stamp. Each seal is an incremental update, so earlier seals stay valid."
    ),
    response_class=Response,
    openapi_extra=_body_doc(
        {
            "es_id": _FORM_FIELDS["es_id"],
            "department_id": _FORM_FIELDS["department_id"],
            "page": {"type": "integer", "minimum": 1},
            "x": {"type": "number", "description": "mm"},
            "y": {"type": "number", "description": "mm"},
            "key_kind": {"type": "string", "enum": ["ecdsa", "rsa", "sm2"]},
            "certify": {"type": "boolean"},
            "pades_level": {"type": "string", "enum": ["B-B", "B-T"]},
        }
    ),
    responses={
        200: {"description": "The sealed PDF", "content": {PDF_MEDIA_TYPE: {}}},
        400: {"description": "Bad input (fields, encrypted or broken PDF)", "content": {PROBLEM_JSON: {}}},
        403: {"description": "Not a department signer, or not this department's seal"},
        409: {"description": "Seal not usable, or document locked", "content": {PROBLEM_JSON: {}}},
        413: {"description": "Upload over the limit", "content": {PROBLEM_JSON: {}}},
    },
)
async def sign_pdf(
    request: Request,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(signer_principal),  # noqa: B008
) -> Response:
    upload = await read_upload(request, ctx.settings.max_upload_bytes)
    sealed = await run_in_threadpool(_do_seal_pdf, ctx, who, upload)
    return Response(
        sealed,
        media_type=PDF_MEDIA_TYPE,
        headers={
            "Content-Disposition": _attachment(upload.file_name, "document", ".pdf"),
            "Cache-Control": "no-store",
        },
    )


# --- detached CMS ---------------------------------------------------------------------------------------
CMS_MEDIA_TYPE = "application/pkcs7-signature"


def _do_sign_cms(ctx: ServiceContext, who: Principal, upload: Upload) -> bytes:
    from signer.cms_signing import seal_cms

    fields = upload.fields
    es_id = _required(fields, "es_id")
    department_id = _department(who, fields.get("department_id"))
    stamped = _flag(fields, "timestamp")
    with transaction(ctx.sessions) as s:
        return seal_cms(
            s,
            ctx.keystore,
            upload.data,
            es_id=es_id,
            department_id=department_id,
            actor=who.actor,
            document_name=upload.file_name,
            tsa=TimeStampAuthority.from_region(s, ctx.keystore) if stamped else None,
        )


@router.post(
    "/cms",
    summary="分离式 CMS 签名 Detached CMS (GB/T 35275 SM2 SignedData)",
    description=(
        "用印章所列部门证书的 SM2 密钥对任意文件生成分离式 GB/T 35275 SignedData（签名属性：内容类型、"
        "消息摘要、签名时间；含证书链）。`timestamp=true` 加签名时间戳。\n\n"
        "A detached GB/T 35275 SignedData over the uploaded bytes, made with the SM2 key of the "
        "department certificate the seal lists (signed attributes content type, message digest and "
        "signing time; certificate chain embedded). `timestamp=true` adds a signature time-stamp token."
    ),
    response_class=Response,
    openapi_extra=_body_doc(
        {
            "es_id": _FORM_FIELDS["es_id"],
            "department_id": _FORM_FIELDS["department_id"],
            "timestamp": _FORM_FIELDS["timestamp"],
        }
    ),
    responses={200: {"description": "CMS SignedData (DER)", "content": {CMS_MEDIA_TYPE: {}}}},
)
async def sign_cms(
    request: Request,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(signer_principal),  # noqa: B008
) -> Response:
    upload = await read_upload(request, ctx.settings.max_upload_bytes)
    signature = await run_in_threadpool(_do_sign_cms, ctx, who, upload)
    return Response(
        signature,
        media_type=CMS_MEDIA_TYPE,
        headers={
            "Content-Disposition": _attachment(upload.file_name, "signature", ".p7s"),
            "Cache-Control": "no-store",
        },
    )


# --- two-step -------------------------------------------------------------------------------------------
class DigestRequest(BaseModel):
    es_id: str = Field(min_length=1, max_length=64, description="印章编码 / seal esID")
    digest_hex: str = Field(
        min_length=64, max_length=64, description="SM3 摘要（64 位十六进制）/ SM3 digest, hex"
    )
    property_info: str | None = Field(
        default=None,
        max_length=1024,
        description="ASCII；OFD 为 Signature.xml 的绝对路径 / for OFD, the Signature.xml path; "
        "default sm3:<hex>",
    )
    department_id: str | None = Field(default=None, max_length=36)
    document_sm3_hex: str | None = Field(
        default=None,
        min_length=64,
        max_length=64,
        description="整个文档的 SM3（仅记入审计）/ SM3 of the whole document, for the audit entry only",
    )


class DigestResponse(BaseModel):
    es_id: str
    ses_signature: str = Field(description="SES_Signature DER, base64")
    seal: str = Field(description="所含印章 / the embedded seal (.esl), base64")
    seal_sm3: str
    data_hash_hex: str
    property_info: str
    signing_time: str


def _do_sign_digest(ctx: ServiceContext, who: Principal, body: DigestRequest) -> dict[str, Any]:
    digest = parse_digest_hex(body.digest_hex)
    department_id = _department(who, body.department_id)
    info = body.property_info if body.property_info else default_property_info(digest)
    with transaction(ctx.sessions) as s:
        result = sign_digest(
            s,
            ctx.keystore,
            es_id=body.es_id,
            department_id=department_id,
            digest=digest,
            property_info=info,
            actor=who.actor,
            document_sm3=parse_digest_hex(body.document_sm3_hex) if body.document_sm3_hex else None,
        )
    return result_to_json(result)


@router.post(
    "/digest",
    response_model=DigestResponse,
    summary="两步签章：对摘要签章 Two-step signing: sign an SM3 digest",
    description=(
        "客户端发送数据（或其 Signature.xml）的 SM3 摘要，服务返回电子签章数据及印章，原文不经过服务。\n\n"
        "The client sends the SM3 digest of its data (or of the Signature.xml it wrote) and receives the "
        "SES_Signature and the seal; the data itself never reaches the service. See signer.two_step."
    ),
)
def sign_digest_route(
    body: DigestRequest,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(signer_principal),  # noqa: B008
) -> dict[str, Any]:
    return _do_sign_digest(ctx, who, body)
