"""Departments' and auditors' licence work beyond issuing: objections (using departments file them,
issuing departments decide), the access log, and stock imports."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from core.db import transaction
from core.tokens import Principal, Role
from licence_store import access_log, objections, stock_import
from licence_store.identifier import parse_identifier
from licence_store.records import licence_dict
from licence_store.settings import LicenceSettings
from signer.batch import WorkerResources

from ..context import ServiceContext
from ..security import get_context, require_roles
from ..uploads import read_body
from .licences import licence_services, manager_scope, signer_department

router = APIRouter(prefix="/v1", tags=["licence administration"])
log = logging.getLogger("eseal.licences")

_CSV_TYPES: Final = ("text/csv", "application/csv")
_ZIP_TYPES: Final = ("application/zip", "application/x-zip-compressed")


class DepartmentObjectionBody(BaseModel):
    identifier: str = Field(max_length=128)
    field: str = Field(max_length=100)
    claim: str = Field(min_length=1, max_length=2000)
    evidence: str | None = Field(default=None, max_length=20_000)


class AcceptBody(BaseModel):
    corrections: dict[str, Any] = Field(
        description="更正后的元数据（同变更）/ corrected metadata, as for a change"
    )
    reason: str = Field(default="", max_length=2000)


class RejectBody(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


# --- objections -----------------------------------------------------------------------------------------
@router.post("/licence-objections", status_code=201, summary="用证部门提出异议 A using department objects")
def department_objection(
    body: DepartmentObjectionBody,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(Role.DEPARTMENT_SIGNER)),  # noqa: B008
) -> JSONResponse:
    department = signer_department(who)
    with transaction(ctx.sessions) as s:
        row = objections.file_objection(
            s,
            identifier=body.identifier,
            field=body.field,
            claim=body.claim,
            evidence=body.evidence,
            filer_kind="department",
            filer_ref=department,
            actor=who.actor,
        )
        return JSONResponse(objections.objection_dict(row), status_code=201)


@router.get("/licence-objections", summary="异议列表 Objections on our licences")
def list_objections(
    state: str | None = Query(default=None, max_length=16),
    overdue: bool = False,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(Role.DEPARTMENT_SIGNER, Role.AUDITOR)),  # noqa: B008
) -> list[dict[str, Any]]:
    department = who.department_id if who.role is Role.DEPARTMENT_SIGNER else None
    with ctx.sessions() as s:
        rows = objections.list_objections(
            s, issuer_department_id=department, state=state, overdue_only=overdue
        )
        return [objections.objection_dict(r) for r in rows]


@router.post("/licence-objections/{objection_id}/accept", summary="受理并更正 Accept and correct")
def accept(
    objection_id: str,
    body: AcceptBody,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(Role.DEPARTMENT_SIGNER)),  # noqa: B008
) -> dict[str, Any]:
    department = signer_department(who)
    with transaction(ctx.sessions) as s:
        row, new = objections.accept_objection(
            s,
            licence_services(ctx),
            objection_id,
            corrections=body.corrections,
            actor=who.actor,
            reason=body.reason,
            department_id=department,
        )
        return {"objection": objections.objection_dict(row), "licence": licence_dict(new)}


@router.post("/licence-objections/{objection_id}/reject", summary="驳回异议 Reject")
def reject(
    objection_id: str,
    body: RejectBody,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(Role.DEPARTMENT_SIGNER)),  # noqa: B008
) -> dict[str, Any]:
    scope = manager_scope(who)
    with transaction(ctx.sessions) as s:
        row = objections.reject_objection(
            s, objection_id, reason=body.reason, actor=who.actor, department_id=scope
        )
        return objections.objection_dict(row)


# --- access log -----------------------------------------------------------------------------------------
@router.get(
    "/licence-access",
    summary="证照访问日志 The licence access log",
    description="审计员按证照、部门（颁证或用证）、持证主体、类型、时间查询；每条对应审计链中的一条记录（audit_seq）。\n\n"
    "Auditors query by licence, department (issuing or using), holder, action and time; every row points "
    "at its audit-chain entry (`audit_seq`).",
)
def access(
    identifier: str | None = Query(default=None, max_length=128),
    department_id: str | None = Query(default=None, max_length=36),
    holder_code: str | None = Query(default=None, max_length=64),
    action: str | None = Query(default=None, max_length=16),
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = Query(default=100, ge=1, le=500),
    offset: int = Query(default=0, ge=0),
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    _who: Principal = Depends(require_roles(Role.AUDITOR)),  # noqa: B008
) -> dict[str, Any]:
    q = access_log.AccessQuery(
        base_identifier=parse_identifier(identifier).base if identifier else None,
        holder_code=holder_code,
        department_id=department_id,
        action=action,
        since=since,
        until=until,
    )
    with ctx.sessions() as s:
        rows, total = access_log.query(s, q, limit=limit, offset=offset)
        return {"items": [access_log.access_dict(r) for r in rows], "total": total}


# --- stock imports --------------------------------------------------------------------------------------
def _resources(ctx: ServiceContext) -> WorkerResources:
    return WorkerResources(ctx.settings, ctx.sessions, ctx.keystore, ctx.blobs)


def _run(ctx: ServiceContext, import_id: str, actor: str) -> dict[str, Any]:
    progress, summary = stock_import.run_import(
        _resources(ctx),
        licence_services(ctx),
        import_id,
        actor=actor,
        workers=LicenceSettings().import_workers,
    )
    return {"progress": progress.to_json(), "errors": list(summary.errors) if summary else []}


def _run_in_background(ctx: ServiceContext, import_id: str, actor: str) -> None:
    def target() -> None:
        try:
            _run(ctx, import_id, actor)
        except Exception:  # the import stays resumable; POST …/run picks it up
            log.exception("licence import %s stopped", import_id)

    threading.Thread(target=target, name=f"licence-import-{import_id[:8]}", daemon=True).start()


def _import_view(ctx: ServiceContext, import_id: str, department: str | None) -> dict[str, Any]:
    with ctx.sessions() as s:
        imp = stock_import.get_import(s, import_id, department_id=department)
        return {
            "id": imp.id,
            "type_id": imp.type_id,
            "department_id": imp.department_id,
            "es_id": imp.es_id,
            "batch_job_id": imp.batch_job_id,
            "total": imp.total,
            "created_at": imp.created_at.isoformat(),
            "finished_at": None if imp.finished_at is None else imp.finished_at.isoformat(),
            "progress": stock_import.import_progress(s, imp.id).to_json(),
            "failed_rows": stock_import.import_errors(s, imp.id),
        }


@router.post(
    "/licence-imports",
    status_code=201,
    summary="导入存量证照 Import stock licences",
    description="请求体为 CSV（UTF-8，表头）或 JSON 数组；导入已有证照文件时为 ZIP 包（`application/zip`）："
    "根目录的 manifest.csv 或 manifest.json 加证照文件，各行以 `file` 列给出文件在包内的路径，"
    "只接受 OFD（已有签章保留有效），文件加盖本部门印章而不重新生成。先校验全部行和文件，任一有误则返回 400 "
    "并逐行列出错误，不导入任何证照；"
    "否则创建导入任务，并（`start=true` 时）在后台生成、签章、登记。同一文件重复提交返回已有任务。\n\n"
    "Body: CSV (UTF-8, header row) or a JSON array; to import existing licence files, a ZIP archive "
    "(`application/zip`): manifest.csv or manifest.json at its root plus the files, each row naming its "
    "file's path in the archive in column `file`; only OFD files are accepted (signatures they carry stay "
    "valid) and they are sealed with the department's seal instead of rendered. Every row and file is "
    "validated first: any error → 400 `licence_import_invalid` with row-level errors and nothing imported. "
    "Otherwise the import is created and (with `start=true`) rendered, sealed and recorded in the "
    "background. The same file again returns the existing import.",
    openapi_extra={
        "requestBody": {"content": {"text/csv": {}, "application/json": {}, "application/zip": {}}}
    },
)
async def create_import(
    request: Request,
    type: str = Query(max_length=64, description="证照类型 / licence type"),
    format: str | None = Query(
        default=None, max_length=8, description="csv | json | zip（默认按 Content-Type）"
    ),
    es_id: str | None = Query(default=None, max_length=64),
    start: bool = True,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(Role.DEPARTMENT_SIGNER)),  # noqa: B008
) -> JSONResponse:
    department = signer_department(who)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fmt = format or ("zip" if media in _ZIP_TYPES else "csv" if media in _CSV_TYPES else "json")
    cap = stock_import.MAX_ARCHIVE_BYTES if fmt.strip().lower() == "zip" else stock_import.MAX_IMPORT_BYTES
    data = await read_body(request, min(ctx.settings.max_upload_bytes, cap))
    res = _resources(ctx)

    def create() -> tuple[str, bool]:
        with transaction(ctx.sessions) as s:
            imp, created = stock_import.create_import(
                s,
                type_ref=type,
                department_id=department,
                data=data,
                fmt=fmt,
                actor=who.actor,
                es_id=es_id,
                blobs=ctx.blobs,
                file_limits=res.limits,
            )
            return imp.id, created

    import_id, created = await run_in_threadpool(create)
    if start:
        _run_in_background(ctx, import_id, who.actor)
    view = await run_in_threadpool(_import_view, ctx, import_id, department)
    view["created"] = created
    return JSONResponse(view, status_code=201 if created else 200)


@router.get("/licence-imports/{import_id}", summary="导入进度 Import progress")
def show_import(
    import_id: str,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(Role.DEPARTMENT_SIGNER, Role.AUDITOR)),  # noqa: B008
) -> dict[str, Any]:
    department = who.department_id if who.role is Role.DEPARTMENT_SIGNER else None
    return _import_view(ctx, import_id, department)


@router.post("/licence-imports/{import_id}/run", summary="继续导入（同步）Resume an import and wait")
def run_import(
    import_id: str,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(Role.DEPARTMENT_SIGNER)),  # noqa: B008
) -> dict[str, Any]:
    department = signer_department(who)
    with ctx.sessions() as s:
        stock_import.get_import(s, import_id, department_id=department)
    return _run(ctx, import_id, who.actor)
