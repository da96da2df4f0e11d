"""Licences: issue and manage (department signers, own department only), read and fetch (issuer,
holder, granted departments, auditors), and the public online check.

Issuing, changing and renewing seal a file, so — as for ``/v1/sign`` — only a ``department_signer``
token may do it, for its own department. Every read, download and check is logged in the audit chain
(:mod:`licence_store.access_log`); a refused use answers 403 and is logged too. The online check is
public and rate-limited per client IP (``ESEAL_LICENCE_CHECK_RATE_PER_S`` / ``…_BURST``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from core.db import transaction
from core.errors import InvalidInput, PermissionDenied
from core.tokens import Principal, Role
from licence_store import lifecycle
from licence_store.access_log import AccessAction, Accessor, record
from licence_store.issuing import LicenceServices, issue_licence
from licence_store.print_rendering import PDF_MEDIA_TYPE
from licence_store.rate_limit import TokenBucket
from licence_store.records import (
    SearchFilter,
    check_issuer_scope,
    get_licence,
    licence_dict,
    search,
    versions,
)
from licence_store.settings import LicenceSettings
from licence_store.sharing import read_licence, use_licence
from licence_store.verification import check_licence, identifier_from_payload, may_reveal_holder
from signer.ofd_sealing import OFD_MEDIA_TYPE

from ..context import ServiceContext
from ..problems import PROBLEM_JSON
from ..security import current_principal, get_context, require_roles
from ..uploads import read_body

router = APIRouter(prefix="/v1/licences", tags=["licences"])

_READERS: Final = (Role.DEPARTMENT_SIGNER, Role.AUDITOR, Role.HOLDER)
_PRIVILEGED: Final = frozenset({Role.ADMIN, Role.AUDITOR})
_LIMITER_KEY: Final = "licence_check_limiter"
MAX_JSON_BODY: Final = 1024 * 1024
M = TypeVar("M", bound=BaseModel)


# --- shared helpers (also used by the other licence_* route modules) ------------------------------------
def licence_services(ctx: ServiceContext) -> LicenceServices:
    return LicenceServices(ctx.keystore, ctx.blobs, ctx.settings.public_base_url)


def client_of(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def accessor(who: Principal, request: Request) -> Accessor:
    department = who.department_id if who.role is Role.DEPARTMENT_SIGNER else None
    return Accessor(actor=who.actor, department_id=department, client=client_of(request))


def holder_code_of(who: Principal) -> str | None:
    return who.holder_id if who.role is Role.HOLDER else None


def signer_department(who: Principal) -> str:
    """Only a department signer may issue and manage licences (administrators cannot sign for it)."""
    if who.role is not Role.DEPARTMENT_SIGNER or not who.department_id:
        raise PermissionDenied(
            "只有部门签章人员（department_signer 令牌）可以颁发和管理证照",
            "only a department signer may issue and manage licences",
        )
    return who.department_id


def manager_scope(who: Principal) -> str | None:
    """Status changes: the issuing department's signer, or an administrator (no scope)."""
    if who.role is Role.ADMIN:
        return None
    return signer_department(who)


async def json_body(request: Request, model: type[M]) -> M:
    """A JSON body read with a size limit (413 past ``MAX_JSON_BODY``) and validated into ``model``."""
    raw = await read_body(request, MAX_JSON_BODY)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()[:50]
        ]
        raise InvalidInput("请求体无效", "the request body is invalid", errors=errors) from None


def _download(data: bytes, file_name: str, file_format: str = "ofd") -> Response:
    return Response(
        data,
        media_type=PDF_MEDIA_TYPE if file_format == "pdf" else OFD_MEDIA_TYPE,
        headers={
            "Content-Disposition": (
                f'attachment; filename="licence.{file_format}"; '
                f"filename*=UTF-8''{quote(file_name, safe='')}"
            ),
            "Cache-Control": "no-store",
        },
    )


# --- bodies ---------------------------------------------------------------------------------------------
class IssueBody(BaseModel):
    type: str = Field(max_length=64, description="证照类型代码或 ID / licence type code or id")
    metadata: dict[str, Any] = Field(description="元数据（核心元数据 + fields）/ core metadata and `fields`")
    es_id: str | None = Field(
        default=None, max_length=64, description="默认取本部门该类型印章 / default: auto"
    )
    client_key: str | None = Field(
        default=None, min_length=1, max_length=128, description="幂等键 / idempotency key"
    )


class ChangeBody(BaseModel):
    changes: dict[str, Any] = Field(
        description="要变更的元数据（fields 按键合并，null 删除）/ changed metadata"
    )
    reason: str = Field(default="", max_length=1000)
    es_id: str | None = Field(default=None, max_length=64)


class RenewBody(BaseModel):
    valid_until: dt.date | None = Field(
        description="新的有效期截止日期，null 为长期 / new end date, null: long-term"
    )
    reason: str = Field(default="", max_length=1000)
    es_id: str | None = Field(default=None, max_length=64)


class ReasonBody(BaseModel):
    reason: str = Field(default="", max_length=1000, description="理由 / reason")


def _issued(ctx: ServiceContext, row_dict: dict[str, Any]) -> dict[str, Any]:
    base = ctx.settings.public_base_url.rstrip("/")
    ident = row_dict["identifier"]
    return {
        **row_dict,
        "download_url": f"{base}/v1/licences/{ident}/file",
        "pdf_download_url": f"{base}/v1/licences/{ident}/pdf" if row_dict.get("pdf_sm3") else None,
        "verify_url": f"{base}/v1/licences/check?id={ident}",
    }


# --- the public check (declared before /{identifier}) ---------------------------------------------------
def _limiter(request: Request) -> TokenBucket:
    limiter: TokenBucket | None = getattr(request.app.state, _LIMITER_KEY, None)
    if limiter is None:
        cfg = LicenceSettings()
        limiter = TokenBucket(cfg.check_rate_per_s, cfg.check_burst)
        setattr(request.app.state, _LIMITER_KEY, limiter)
    return limiter


def _check(
    ctx: ServiceContext, who: Principal, request: Request, ref: str, presented: bytes | None
) -> dict[str, Any]:
    visitor = accessor(who, request)
    with transaction(ctx.sessions) as s:
        row = get_licence(s, ref)
        reveal = may_reveal_holder(
            s,
            row,
            holder_code=holder_code_of(who),
            department_id=visitor.department_id,
            privileged=who.role in _PRIVILEGED,
        )
        row, result = check_licence(s, ref, presented=presented, reveal=reveal)
        record(
            s,
            action=AccessAction.VERIFY,
            identifier=row.identifier,
            base_identifier=row.base_identifier,
            who=visitor,
            licence=row,
            details={"file_presented": presented is not None, "file_matches": result["file_matches"]},
        )
    return result


def _reference(id_: str | None, qr: str | None) -> str:
    if (id_ is None) == (qr is None):
        raise InvalidInput("须给出 id 或 qr 之一", "give exactly one of id or qr")
    return identifier_from_payload(qr) if qr is not None else identifier_from_payload(id_ or "")


_CHECK_DOC: Final = (
    "按证照标识（`id`）或二维码内容（`qr`，即核验网址或标识）查询证照状态、版本、颁证机构、文件 SM3；"
    "持证主体名称除持证主体、颁证部门、获授权部门、审计员外均脱敏。公开接口，按客户端 IP 限流（429）。\n\n"
    "Look a licence up by identifier (`id`) or QR payload (`qr`: the verification URL or the identifier): "
    "status, version, whether superseded, issuer, file SM3; the holder's name is masked unless the caller "
    "is the holder, the issuer, a granted department or an auditor. Public; rate-limited per client IP (429)."
)


@router.get("/check", summary="证照在线核验 Online licence check", description=_CHECK_DOC)
def check_get(
    request: Request,
    id: str | None = Query(default=None, max_length=128, description="证照标识 / identifier"),
    qr: str | None = Query(default=None, max_length=1024, description="二维码内容 / QR payload"),
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(current_principal),  # noqa: B008
) -> dict[str, Any]:
    _limiter(request).take(client_of(request))
    return _check(ctx, who, request, _reference(id, qr), None)


@router.post(
    "/check",
    summary="核验证照并比对文件 Check a licence and compare a file",
    description="请求体为待比对的证照文件（原始字节），`id` 或 `qr` 为查询参数。\n\n"
    "The body is the file to compare (raw bytes); `id` or `qr` as query parameters. "
    "`file_matches` says whether its SM3 equals the stored file's.",
    openapi_extra={
        "requestBody": {
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
        }
    },
)
async def check_post(
    request: Request,
    id: str | None = Query(default=None, max_length=128),
    qr: str | None = Query(default=None, max_length=1024),
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(current_principal),  # noqa: B008
) -> dict[str, Any]:
    _limiter(request).take(client_of(request))
    ref = _reference(id, qr)
    data = await read_body(request, ctx.settings.max_upload_bytes)
    if not data:
        raise InvalidInput("请求体为空：请上传要比对的文件", "empty body: send the file to compare")
    return await run_in_threadpool(_check, ctx, who, request, ref, data)


# --- issue and search -----------------------------------------------------------------------------------
@router.post(
    "",
    status_code=201,
    summary="颁发证照 Issue a licence",
    description="校验元数据 → 分配标识 → 按模板生成 OFD（含核验二维码）→ 加盖本部门印章"
    "（类型要求时同步生成并签章打印版 PDF）→ 存储 → 审计，同一事务完成。元数据错误返回 400 并逐字段列出。\n\n"
    "Validate → identifier → render the OFD (with the verification QR code) → seal with the department's "
    "seal (and, when the type asks for it, the print PDF too: `pdf_download_url`) → store → audit, in "
    "one transaction. Invalid metadata: 400 `licence_metadata_invalid` with one entry per field in "
    "`details.errors`.",
    responses={
        400: {"content": {PROBLEM_JSON: {}}},
        409: {"content": {PROBLEM_JSON: {}}},
        413: {"content": {PROBLEM_JSON: {}}},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": IssueBody.model_json_schema()}},
        }
    },
)
async def issue(
    request: Request,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(Role.DEPARTMENT_SIGNER)),  # noqa: B008
) -> JSONResponse:
    department = signer_department(who)
    body = await json_body(request, IssueBody)

    def run() -> dict[str, Any]:
        with transaction(ctx.sessions) as s:
            row = issue_licence(
                s,
                licence_services(ctx),
                type_ref=body.type,
                department_id=department,
                metadata=body.metadata,
                actor=who.actor,
                es_id=body.es_id,
                client_key=body.client_key,
            )
            return _issued(ctx, licence_dict(row))

    return JSONResponse(await run_in_threadpool(run), status_code=201)


@router.get("", summary="检索证照 Search licences")
def search_licences(
    holder_code: str | None = Query(default=None, max_length=64),
    type_code: str | None = Query(default=None, max_length=21),
    issuer_code: str | None = Query(default=None, max_length=18),
    status: str | None = Query(default=None, max_length=2, description="01–05, 99"),
    issued_from: dt.date | None = None,
    issued_to: dt.date | None = None,
    all_versions: bool = False,
    page: int = Query(default=1, ge=1),
    page_size: int = Query(default=50, ge=1, le=200),
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(Role.DEPARTMENT_SIGNER, Role.AUDITOR, Role.HOLDER)),  # noqa: B008
) -> dict[str, Any]:
    """部门只见本部门颁发的证照，持证主体只见自己的 / departments see their own licences, holders theirs."""
    f = SearchFilter(
        holder_code=who.holder_id if who.role is Role.HOLDER else holder_code,
        type_code=type_code,
        issuer_code=issuer_code,
        issuer_department_id=who.department_id if who.role is Role.DEPARTMENT_SIGNER else None,
        status=status,
        issued_from=issued_from,
        issued_to=issued_to,
        current_only=not all_versions,
    )
    with ctx.sessions() as s:
        result = search(s, f, page=page, page_size=page_size)
        return {
            "items": [licence_dict(r) for r in result.items],
            "total": result.total,
            "page": result.page,
            "page_size": result.page_size,
        }


@router.post("/expire", summary="过期处理 Mark licences past their validity as expired (05)")
def expire(
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles()),  # noqa: B008 - administrators only
) -> dict[str, Any]:
    with transaction(ctx.sessions) as s:
        done = lifecycle.expire_due(s, actor=who.actor)
    return {"expired": done}


# --- one licence ----------------------------------------------------------------------------------------
@router.get("/{identifier}", summary="证照信息 A licence's record")
def get_one(
    identifier: str,
    request: Request,
    grant_id: str | None = Query(default=None, max_length=36),
    purpose: str | None = Query(default=None, max_length=500),
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(*_READERS)),  # noqa: B008
) -> dict[str, Any]:
    return read_licence(
        ctx.sessions,
        identifier,
        who=accessor(who, request),
        holder_code=holder_code_of(who),
        privileged=who.role in _PRIVILEGED,
        grant_id=grant_id,
        purpose=purpose,
    )


@router.get("/{identifier}/versions", summary="证照各版本 All versions of a licence")
def list_versions(
    identifier: str,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(Role.DEPARTMENT_SIGNER, Role.AUDITOR, Role.HOLDER)),  # noqa: B008
) -> list[dict[str, Any]]:
    with ctx.sessions() as s:
        row = get_licence(s, identifier)
        if who.role is Role.DEPARTMENT_SIGNER:
            check_issuer_scope(row, who.department_id)
        if who.role is Role.HOLDER and row.holder_code != who.holder_id:
            raise PermissionDenied("只能查看自己的证照", "a holder may only see their own licences")
        return [licence_dict(v) for v in versions(s, row.base_identifier)]


def _use(
    ctx: ServiceContext,
    who: Principal,
    request: Request,
    identifier: str,
    *,
    original: bool,
    grant_id: str | None,
    purpose: str | None,
    pdf: bool = False,
) -> Response:
    delivered = use_licence(
        ctx.sessions,
        licence_services(ctx),
        identifier=identifier,
        who=accessor(who, request),
        holder_code=holder_code_of(who),
        privileged=who.role in _PRIVILEGED,
        grant_id=grant_id,
        purpose=purpose,
        want_original=original,
        pdf=pdf,
    )
    response = _download(delivered.data, delivered.file_name, delivered.file_format)
    response.headers["X-Licence-Identifier"] = delivered.identifier
    if delivered.grant_id:
        response.headers["X-Licence-Grant"] = delivered.grant_id
    return response


@router.get(
    "/{identifier}/file",
    summary="下载证照原件 Download the sealed licence file",
    description="颁证部门、持证主体、审计员可直接下载；其他部门须持有持证主体的有效授权（且允许原件），"
    "否则 403 并记录。\n\n"
    "The issuer, the holder and auditors may download; any other department needs a valid grant from "
    "the holder that allows the original — otherwise 403, and the refusal is logged.",
    response_class=Response,
    responses={200: {"content": {OFD_MEDIA_TYPE: {}}}, 403: {"content": {PROBLEM_JSON: {}}}},
)
def download(
    identifier: str,
    request: Request,
    grant_id: str | None = Query(default=None, max_length=36),
    purpose: str | None = Query(default=None, max_length=500),
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(*_READERS)),  # noqa: B008
) -> Response:
    return _use(ctx, who, request, identifier, original=True, grant_id=grant_id, purpose=purpose)


@router.get(
    "/{identifier}/pdf",
    summary="下载打印版 PDF Download the sealed print PDF",
    description="证照类型要求同步生成时，颁发（及变更、延续）时与 OFD 同步生成并以同一印章签章的打印版 PDF"
    "（SM2，GB/T 35275）；OFD 仍为法定文件。访问规则与原件下载相同（记入访问日志）；该版本没有 PDF 时 404 "
    "`licence_pdf_not_available`。\n\n"
    "The print PDF made and sealed with the same seal together with the OFD when the licence type asks "
    "for it (SM2, GB/T 35275); the OFD stays the legal copy. Same access rules and logging as the "
    "original's download; 404 `licence_pdf_not_available` when the version has no PDF.",
    response_class=Response,
    responses={
        200: {"content": {PDF_MEDIA_TYPE: {}}},
        403: {"content": {PROBLEM_JSON: {}}},
        404: {"content": {PROBLEM_JSON: {}}},
    },
)
def download_pdf(
    identifier: str,
    request: Request,
    grant_id: str | None = Query(default=None, max_length=36),
    purpose: str | None = Query(default=None, max_length=500),
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(*_READERS)),  # noqa: B008
) -> Response:
    return _use(ctx, who, request, identifier, original=True, grant_id=grant_id, purpose=purpose, pdf=True)


@router.get(
    "/{identifier}/copy",
    summary="获取加注件 Get an annotated copy (加注件)",
    description="带使用方、用途、时间、有效期水印并由服务印章签章的副本，原件作为附件。须有效授权（颁证部门、持证主体除外，"
    "但须给出 purpose）。\n\n"
    "A copy watermarked with user, purpose, time and expiry, the original attached, sealed by the service. "
    "Needs a valid grant (except for the issuer and the holder, who must give a `purpose`).",
    response_class=Response,
    responses={200: {"content": {OFD_MEDIA_TYPE: {}}}, 403: {"content": {PROBLEM_JSON: {}}}},
)
def annotated_copy(
    identifier: str,
    request: Request,
    grant_id: str | None = Query(default=None, max_length=36),
    purpose: str | None = Query(default=None, max_length=500),
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(*_READERS)),  # noqa: B008
) -> Response:
    return _use(ctx, who, request, identifier, original=False, grant_id=grant_id, purpose=purpose)


# --- lifecycle ------------------------------------------------------------------------------------------
@router.post(
    "/{identifier}/change",
    summary="变更 Change (new version, sealed anew)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ChangeBody.model_json_schema()}},
        }
    },
)
async def change_licence(
    identifier: str,
    request: Request,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(Role.DEPARTMENT_SIGNER)),  # noqa: B008
) -> dict[str, Any]:
    department = signer_department(who)
    body = await json_body(request, ChangeBody)

    def run() -> dict[str, Any]:
        with transaction(ctx.sessions) as s:
            row = lifecycle.change(
                s,
                licence_services(ctx),
                identifier,
                body.changes,
                actor=who.actor,
                reason=body.reason,
                department_id=department,
                es_id=body.es_id,
            )
            return _issued(ctx, licence_dict(row))

    return await run_in_threadpool(run)


@router.post("/{identifier}/renew", summary="延续 Renew (new version, sealed anew)")
def renew_licence(
    identifier: str,
    body: RenewBody,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(Role.DEPARTMENT_SIGNER)),  # noqa: B008
) -> dict[str, Any]:
    department = signer_department(who)
    with transaction(ctx.sessions) as s:
        row = lifecycle.renew(
            s,
            licence_services(ctx),
            identifier,
            valid_until=body.valid_until,
            actor=who.actor,
            reason=body.reason,
            department_id=department,
            es_id=body.es_id,
        )
        return _issued(ctx, licence_dict(row))


_STATUS_ACTIONS: Final = {
    "withhold": (lifecycle.withhold, "暂扣 Withhold (01 → 02)"),
    "return": (lifecycle.return_licence, "发还 Return (02 → 01)"),
    "revoke": (lifecycle.revoke, "撤销 Revoke (→ 03)"),
    "cancel": (lifecycle.cancel, "注销 Cancel (→ 04)"),
}


def _status_route(name: str) -> None:
    action, summary = _STATUS_ACTIONS[name]

    def route(
        identifier: str,
        body: ReasonBody,
        ctx: ServiceContext = Depends(get_context),  # noqa: B008
        who: Principal = Depends(require_roles(Role.DEPARTMENT_SIGNER)),  # noqa: B008
    ) -> dict[str, Any]:
        scope = manager_scope(who)
        with transaction(ctx.sessions) as s:
            row = action(s, identifier, actor=who.actor, reason=body.reason, department_id=scope)
            return licence_dict(row)

    route.__name__ = f"licence_{name}"
    router.add_api_route(f"/{{identifier}}/{name}", route, methods=["POST"], summary=summary)


for _name in _STATUS_ACTIONS:
    _status_route(_name)
