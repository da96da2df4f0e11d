"""Batch sealing jobs over HTTP: create a job with its documents, add more, run it in the background,
poll its progress, list the per-item results (JSON or CSV) and download each output.

Only ``department_signer`` tokens, for their own department, as for single signatures
(:func:`api.routes.sign.signer_principal`). A job's documents are sent as JSON (``items`` with
base64 ``data_base64``) or as multipart/form-data (the job fields, any number of ``file`` parts —
their file names are the item keys — and optionally one ``archive``: a ZIP whose ``.ofd`` entries, or
every entry for an SES job, become items keyed by entry name; hostile archives are refused before
anything is stored). Request bodies are limited to ``ESEAL_MAX_UPLOAD_BYTES`` (plus base64 and form
overhead) while they stream in.

``POST /v1/batch/{id}/run`` returns at once (202) and processes the pending items in a background
thread of this server process: jobs with at most :data:`signer.batch.INLINE_BELOW` pending items
are sealed inline in that thread, larger ones through a pool of ``workers`` processes. A second
``run`` while one is going is a no-op. ``running`` in the job view refers to this server process;
the counts come from the database and are exact at any time. If the server stops mid-run, committed
groups stay done and ``run`` again finishes the rest.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from datetime import datetime
from typing import Any, Final, Literal, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from core.db import transaction
from core.errors import InvalidInput, MalformedData
from core.tokens import Principal
from gmpki.ofd import ContainerLimits
from signer.batch import (
    AddedItem,
    BatchInput,
    ItemResult,
    JobSpec,
    WorkerResources,
    add_items,
    create_job,
    get_job,
    item_output,
    job_progress,
    job_results,
    read_archive,
    results_csv,
    run_job,
)
from signer.batch_models import BatchJob, JobKind
from signer.ofd_sealing import OFD_MEDIA_TYPE
from signer.ses_signing import SES_MEDIA_TYPE

from ..context import ServiceContext
from ..problems import PROBLEM_JSON
from ..security import check_department_scope, get_context
from ..uploads import media_type, multipart_form, read_body, read_part, too_large
from .sign import signer_principal

router = APIRouter(prefix="/v1/batch", tags=["batch"])
log = logging.getLogger("eseal.api.batch")

MAX_ITEMS_PER_REQUEST: Final = 10_000
MAX_WORKERS: Final = 16
_FORM_OVERHEAD: Final = 256 * 1024
_JOB_FIELDS: Final = (
    "es_id",
    "department_id",
    "kind",
    "mode",
    "page",
    "x",
    "y",
    "keyword",
    "occurrence",
    "riding",
    "timestamp",
    "name",
)


# --- bodies and views -----------------------------------------------------------------------------------
class ItemIn(BaseModel):
    key: str = Field(
        min_length=1, max_length=255, description="客户端键（任务内唯一）/ client key, unique in the job"
    )
    name: str | None = Field(default=None, max_length=255, description="文件名 / display name")
    data_base64: str = Field(min_length=1, description="文档（Base64）/ the document, base64")


class JobFields(BaseModel):
    es_id: str = Field(min_length=1, max_length=64, description="印章编码 / seal esID")
    department_id: str | None = Field(default=None, max_length=36)
    kind: Literal["ofd", "ses"] = "ofd"
    mode: Literal["continue", "protect_all"] = "continue"
    page: int | None = Field(default=None, ge=1, le=100_000)
    x: float | None = Field(default=None, allow_inf_nan=False)
    y: float | None = Field(default=None, allow_inf_nan=False)
    keyword: str | None = Field(default=None, max_length=200)
    occurrence: int = Field(default=1, ge=1, le=100_000)
    riding: bool = False
    timestamp: bool = Field(
        default=False, description="每个签名加盖 RFC 3161 时间戳 / time-stamp every signature"
    )
    name: str | None = Field(default=None, max_length=200, description="任务名称（唯一）/ unique job name")


class JobCreate(JobFields):
    items: list[ItemIn] = Field(default_factory=list, max_length=MAX_ITEMS_PER_REQUEST)


class ItemsIn(BaseModel):
    items: list[ItemIn] = Field(min_length=1, max_length=MAX_ITEMS_PER_REQUEST)


class RunIn(BaseModel):
    workers: int = Field(default=2, ge=1, le=MAX_WORKERS, description="进程数 / worker processes")
    retry_failed: bool = Field(default=False, description="先将失败条目重置为待处理 / retry failed items")


class ProgressOut(BaseModel):
    total: int
    pending: int
    done: int
    failed: int


class ItemError(BaseModel):
    code: str
    message_zh: str | None
    message_en: str | None


class ItemOut(BaseModel):
    key: str
    input_name: str
    state: str
    output_sm3: str | None
    error: ItemError | None
    input_sm3: str
    signing_time: str | None
    created: bool | None = None


class JobOut(BaseModel):
    id: str
    name: str | None
    department_id: str
    es_id: str
    kind: str
    mode: str
    placement: dict[str, Any] | None
    timestamp: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    running: bool
    progress: ProgressOut
    items: list[ItemOut] | None = None


class ResultsOut(BaseModel):
    job: JobOut
    items: list[ItemOut]


# --- background runs ------------------------------------------------------------------------------------
_RUNS: dict[tuple[int, str], threading.Thread] = {}
_RUNS_LOCK = threading.Lock()


def _is_running(ctx: ServiceContext, job_id: str) -> bool:
    with _RUNS_LOCK:
        thread = _RUNS.get((id(ctx), job_id))
        return thread is not None and thread.is_alive()


def _run_in_background(ctx: ServiceContext, job_id: str, actor: str, body: RunIn) -> bool:
    """Start a run thread unless one is going for this job; whether one was started."""
    key = (id(ctx), job_id)

    def target() -> None:
        try:
            res = WorkerResources(ctx.settings, ctx.sessions, ctx.keystore, ctx.blobs)
            summary = run_job(res, job_id, actor=actor, workers=body.workers, retry_failed=body.retry_failed)
            log.info(
                "batch job %s: %d done, %d failed in %.1f s; %s",
                job_id,
                summary.signed,
                summary.failed,
                summary.seconds,
                summary.progress.to_json(),
            )
            for error in summary.errors:
                log.error("batch job %s: %s", job_id, error)
        except Exception:
            log.exception("batch job %s: run failed", job_id)
        finally:
            with _RUNS_LOCK:
                if _RUNS.get(key) is threading.current_thread():
                    del _RUNS[key]

    with _RUNS_LOCK:
        current = _RUNS.get(key)
        if current is not None and current.is_alive():
            return False
        thread = threading.Thread(target=target, name=f"eseal-batch-{job_id[:8]}", daemon=True)
        _RUNS[key] = thread
        thread.start()
    return True


# --- reading requests -----------------------------------------------------------------------------------
def _decode_items(items: list[ItemIn], limit: int) -> list[BatchInput]:
    inputs: list[BatchInput] = []
    total = 0
    for item in items:
        try:
            data = base64.b64decode(item.data_base64, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedData(
                f"条目 {item.key} 的 data_base64 不是有效的 Base64",
                f"data_base64 of item {item.key} is not base64",
            ) from None
        total += len(data)
        if total > limit:
            raise too_large(limit)
        inputs.append(BatchInput(item.key, item.name or item.key, data))
    return inputs


async def _json_body(request: Request, limit: int) -> bytes:
    # base64 grows the documents by a third; the JSON around them is small.
    return await read_body(request, limit * 4 // 3 + _FORM_OVERHEAD)


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], raw: bytes | dict[str, Any]) -> M:
    try:
        return model.model_validate_json(raw) if isinstance(raw, bytes) else model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidInput(f"请求内容无效：{problems}", f"Invalid request: {problems}") from None


async def _multipart(
    request: Request, limit: int, job_kind: JobKind | None
) -> tuple[dict[str, str], list[BatchInput]]:
    """Form fields and documents of a multipart request (``file`` parts and an optional ``archive``)."""
    async with multipart_form(
        request, limit, max_files=MAX_ITEMS_PER_REQUEST, max_fields=len(_JOB_FIELDS), overhead=_FORM_OVERHEAD
    ) as form:
        fields = {k: v for k, v in form.items() if k in _JOB_FIELDS and isinstance(v, str)}
        # The job's kind decides which archive entries are documents (.ofd only, or every file).
        kind = job_kind or JobKind(
            _parse(JobFields, {"es_id": "-", "kind": fields.get("kind") or "ofd"}).kind
        )
        inputs: list[BatchInput] = []
        total = 0
        for name, value in form.multi_items():
            if not isinstance(value, UploadFile) or name not in ("file", "archive"):
                continue
            data = await read_part(value, limit, total)
            total += len(data)
            if name == "archive":
                limits = ContainerLimits(max_input_size=limit, max_total_size=limit)
                inputs.extend(await run_in_threadpool(read_archive, data, kind=kind, limits=limits))
            else:
                key = (value.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
                if not key:
                    raise InvalidInput("上传的文件缺少文件名", "an uploaded file has no file name")
                inputs.append(BatchInput(key, key, data))
        return fields, inputs


def _form_job(fields: dict[str, str]) -> JobFields:
    # Pydantic's lax mode reads the form's strings: numbers, and true/false/1/0/yes/no/on/off.
    return _parse(JobFields, {k: v.strip() for k, v in fields.items() if v.strip()})


# --- views ----------------------------------------------------------------------------------------------
def _item_view(result: ItemResult, created: bool | None = None) -> ItemOut:
    data = result.to_json()
    return ItemOut(**data, created=created)


def _job_view(
    ctx: ServiceContext, job: BatchJob, progress: dict[str, int], items: list[ItemOut] | None = None
) -> JobOut:
    return JobOut(
        id=job.id,
        name=job.name,
        department_id=job.department_id,
        es_id=job.es_id,
        kind=job.kind,
        mode=job.mode,
        placement=json.loads(job.placement) if job.placement else None,
        timestamp=job.timestamp,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        running=_is_running(ctx, job.id),
        progress=ProgressOut(**progress),
        items=items,
    )


def _spec(who: Principal, body: JobFields) -> JobSpec:
    if body.department_id:
        check_department_scope(who, body.department_id)
    assert who.department_id is not None  # signer_principal guarantees it
    placement = {
        "page": body.page,
        "x": body.x,
        "y": body.y,
        "keyword": body.keyword,
        "occurrence": body.occurrence if body.occurrence != 1 else None,
        "riding": body.riding,
    }
    return JobSpec(
        department_id=who.department_id,
        es_id=body.es_id,
        kind=body.kind,
        mode=body.mode,
        placement=placement,
        timestamp=body.timestamp,
        name=body.name,
    )


def _added_views(added: list[AddedItem]) -> list[ItemOut]:
    return [_item_view(a.result, a.created) for a in added]


# --- routes ---------------------------------------------------------------------------------------------
def _do_create(ctx: ServiceContext, who: Principal, body: JobFields, inputs: list[BatchInput]) -> JobOut:
    spec = _spec(who, body)
    with transaction(ctx.sessions) as s:
        job = create_job(s, spec, actor=who.actor)
        added = add_items(s, ctx.blobs, job, inputs) if inputs else []
        return _job_view(ctx, job, job_progress(s, job.id).to_json(), _added_views(added))


_ITEMS_DOC: Final[dict[str, Any]] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["key", "data_base64"],
        "properties": {
            "key": {"type": "string"},
            "name": {"type": "string"},
            "data_base64": {"type": "string", "format": "byte"},
        },
    },
}
_FILES_DOC: Final[dict[str, Any]] = {
    "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
    "archive": {"type": "string", "format": "binary", "description": "ZIP of documents"},
}


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    summary="创建批量签章任务 Create a batch job",
    description=(
        "创建批量任务（印章、类型 ofd|ses、模式、位置、是否加时间戳），可同时提交文档："
        "JSON 的 `items`（Base64），或 multipart 的多个 `file` 与一个 ZIP `archive`。\n\n"
        "Create a job (seal, kind ofd|ses, mode, placement, time-stamps) and optionally its first documents: "
        "JSON `items` (base64) or multipart `file` parts (keyed by file name) and one ZIP `archive`."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object", "properties": {"items": _ITEMS_DOC}}},
                "multipart/form-data": {"schema": {"type": "object", "properties": _FILES_DOC}},
            },
        }
    },
    responses={
        400: {"description": "Bad fields, documents or archive", "content": {PROBLEM_JSON: {}}},
        403: {"description": "Not a department signer, or not this department's seal"},
        409: {
            "description": "Job name taken, or key reused with other content",
            "content": {PROBLEM_JSON: {}},
        },
        413: {"description": "Request over the limit", "content": {PROBLEM_JSON: {}}},
    },
)
async def create_batch(
    request: Request,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(signer_principal),  # noqa: B008
) -> JobOut:
    limit = ctx.settings.max_upload_bytes
    if media_type(request) == "multipart/form-data":
        fields, inputs = await _multipart(request, limit, None)
        body = _form_job(fields)
    else:
        created = _parse(JobCreate, await _json_body(request, limit))
        body, inputs = created, _decode_items(created.items, limit)
    return await run_in_threadpool(_do_create, ctx, who, body, inputs)


def _do_add(ctx: ServiceContext, who: Principal, job_id: str, inputs: list[BatchInput]) -> JobOut:
    with transaction(ctx.sessions) as s:
        job = get_job(s, job_id, department_id=who.department_id)
        added = add_items(s, ctx.blobs, job, inputs)
        return _job_view(ctx, job, job_progress(s, job.id).to_json(), _added_views(added))


def _job_kind(ctx: ServiceContext, who: Principal, job_id: str) -> JobKind:
    with ctx.sessions() as s:
        return JobKind(get_job(s, job_id, department_id=who.department_id).kind)


@router.post(
    "/{job_id}/items",
    response_model=JobOut,
    summary="添加文档 Add documents to a job",
    description=(
        "已有键且内容相同的条目原样返回（`created=false`），不会重复签章；同键不同内容为 409。\n\n"
        "Items whose key is already in the job with the same content are returned as they are "
        "(`created=false`) and never signed twice; the same key with other content is 409."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object", "properties": {"items": _ITEMS_DOC}}},
                "multipart/form-data": {"schema": {"type": "object", "properties": _FILES_DOC}},
            },
        }
    },
)
async def add_batch_items(
    job_id: str,
    request: Request,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(signer_principal),  # noqa: B008
) -> JobOut:
    limit = ctx.settings.max_upload_bytes
    kind = await run_in_threadpool(_job_kind, ctx, who, job_id)
    if media_type(request) == "multipart/form-data":
        _fields, inputs = await _multipart(request, limit, kind)
        if not inputs:
            raise InvalidInput("没有提交文档", "no document was sent")
    else:
        inputs = _decode_items(_parse(ItemsIn, await _json_body(request, limit)).items, limit)
    return await run_in_threadpool(_do_add, ctx, who, job_id, inputs)


def _do_status(ctx: ServiceContext, who: Principal, job_id: str) -> JobOut:
    with ctx.sessions() as s:
        job = get_job(s, job_id, department_id=who.department_id)
        return _job_view(ctx, job, job_progress(s, job.id).to_json())


@router.post(
    "/{job_id}/run",
    status_code=202,
    response_model=JobOut,
    summary="开始处理 Start processing a job",
    description=(
        "在后台处理待处理条目（小任务在后台线程内处理，大任务使用多进程）；立即返回。\n\n"
        "Processes the pending items in the background (small jobs inline in a background thread, larger "
        "ones through a process pool) and returns at once; poll `GET /v1/batch/{id}`."
    ),
)
async def run_batch(
    job_id: str,
    body: RunIn | None = None,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(signer_principal),  # noqa: B008
) -> JobOut:
    view = await run_in_threadpool(_do_status, ctx, who, job_id)
    _run_in_background(ctx, view.id, who.actor, body or RunIn())
    return view.model_copy(update={"running": _is_running(ctx, view.id)})


@router.get("/{job_id}", response_model=JobOut, summary="任务状态 Job status and counts")
def batch_status(
    job_id: str,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(signer_principal),  # noqa: B008
) -> JobOut:
    return _do_status(ctx, who, job_id)


@router.get(
    "/{job_id}/results",
    response_model=ResultsOut,
    summary="逐条结果 Per-item results (JSON or CSV)",
    responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
)
def batch_results(
    job_id: str,
    format: Literal["json", "csv"] = Query("json", description="json | csv"),
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(signer_principal),  # noqa: B008
) -> Any:
    with ctx.sessions() as s:
        job = get_job(s, job_id, department_id=who.department_id)
        results = job_results(s, job.id)
        if format == "csv":
            return Response(
                results_csv(results),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="batch-{job.id}.csv"'},
            )
        view = _job_view(ctx, job, job_progress(s, job.id).to_json())
    return ResultsOut(job=view, items=[_item_view(r) for r in results])


@router.get(
    "/{job_id}/items/{key:path}/output",
    response_class=Response,
    summary="下载签章结果 Download an item's output",
    responses={
        200: {"content": {OFD_MEDIA_TYPE: {}, SES_MEDIA_TYPE: {}}},
        409: {"description": "The item is not done", "content": {PROBLEM_JSON: {}}},
    },
)
def batch_output(
    job_id: str,
    key: str,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(signer_principal),  # noqa: B008
) -> Response:
    with ctx.sessions() as s:
        job = get_job(s, job_id, department_id=who.department_id)
        result, data = item_output(s, ctx.blobs, job.id, key)
    ofd = job.kind == JobKind.OFD.value
    base = key.rsplit("/", 1)[-1] or "document"
    file_name = base if ofd else f"{base}.ses"
    fallback = "document.ofd" if ofd else "signature.ses"
    return Response(
        data,
        media_type=OFD_MEDIA_TYPE if ofd else SES_MEDIA_TYPE,
        headers={
            "Content-Disposition": (
                f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"
            ),
            "Cache-Control": "no-store",
            "X-Output-SM3": result.output_sm3 or "",
        },
    )
