"""Seals: application and lifecycle (seal officers), reading (departments see their own), and the
public seal status (look-ups and the signed snapshot)."""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from PIL import Image
from pydantic import BaseModel, Field

from core.db import transaction
from core.errors import InvalidInput, MalformedData, NotFound
from core.tokens import Principal, Role
from seal_registry import seals, status
from seal_registry.lifecycle import STATE_LABELS_ZH, SealState, seal_type
from seal_registry.models import Seal

from ..context import ServiceContext
from ..security import check_department_scope, get_context, require_roles

router = APIRouter(prefix="/v1")

_MANAGERS = (Role.SEAL_OFFICER,)
_READERS = (Role.SEAL_OFFICER, Role.AUDITOR, Role.DEPARTMENT_SIGNER)
# A 2 MiB picture (the upload limit) in base64, with room for line breaks.
_MAX_PICTURE_B64 = 3_000_000
OCTET = "application/octet-stream"


# --- bodies and views -----------------------------------------------------------------------------
class PictureFields(BaseModel):
    picture_base64: str | None = Field(
        default=None, max_length=_MAX_PICTURE_B64, description="印章图片（Base64）/ seal picture, base64"
    )
    picture_type: str | None = Field(default=None, max_length=32, description="png | jpg | gif | svg")
    width_mm: int | None = Field(default=None, ge=1, le=1000)
    height_mm: int | None = Field(default=None, ge=1, le=1000)

    def upload(self) -> seals.PictureUpload | None:
        if self.picture_base64 is None:
            return None
        try:
            data = base64.b64decode(self.picture_base64, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedData("印章图片不是有效的 Base64", "picture_base64 is not valid base64") from None
        return seals.PictureUpload(data, self.picture_type, self.width_mm, self.height_mm)


class SealApply(PictureFields):
    department_id: str = Field(max_length=36)
    seal_type: str = Field(
        max_length=32, description="official | contract | invoice | business | finance | …"
    )
    name: str | None = Field(
        default=None, max_length=200, description="默认取部门名称 / default: from the department"
    )
    signer_certificate_id: int | None = Field(
        default=None, description="默认取部门最新可用证书 / default: newest usable"
    )
    valid_days: int = Field(default=seals.DEFAULT_VALID_DAYS, ge=1, le=seals.MAX_VALID_DAYS)
    reason: str = Field(default="", max_length=seals.MAX_REASON)


class ActionBody(BaseModel):
    reason: str = Field(default="", max_length=seals.MAX_REASON, description="理由 / reason")


class RenewBody(PictureFields):
    reason: str = Field(default="", max_length=seals.MAX_REASON)
    signer_certificate_id: int | None = None
    valid_days: int = Field(default=seals.DEFAULT_VALID_DAYS, ge=1, le=seals.MAX_VALID_DAYS)


class SealEventOut(BaseModel):
    from_state: str | None
    to_state: str
    actor: str
    reason: str
    at: datetime


class SealOut(BaseModel):
    id: str
    es_id: str
    department_id: str
    seal_type: str
    seal_type_name: str
    name: str
    state: str
    state_zh: str
    picture_type: str
    width_mm: int
    height_mm: int
    valid_start: datetime
    valid_end: datetime
    signer_certificate_id: int
    seal_sm3: str | None
    previous_seal_id: str | None
    applicant: str
    created_at: datetime
    state_changed_at: datetime
    revision: int
    events: list[SealEventOut] | None = None


def seal_out(seal: Seal, *, events: bool = False) -> SealOut:
    state = SealState(seal.state)
    return SealOut(
        id=seal.id,
        es_id=seal.es_id,
        department_id=seal.department_id,
        seal_type=seal.seal_type,
        seal_type_name=seal_type(seal.seal_type).name_zh,
        name=seal.name,
        state=state.value,
        state_zh=STATE_LABELS_ZH[state],
        picture_type=seal.picture_type,
        width_mm=seal.width_mm,
        height_mm=seal.height_mm,
        valid_start=seal.valid_start,
        valid_end=seal.valid_end,
        signer_certificate_id=seal.signer_certificate_id,
        seal_sm3=seal.seal_sm3,
        previous_seal_id=seal.previous_seal_id,
        applicant=seal.applicant,
        created_at=seal.created_at,
        state_changed_at=seal.state_changed_at,
        revision=seal.revision,
        events=[
            SealEventOut(
                from_state=e.from_state, to_state=e.to_state, actor=e.actor, reason=e.reason, at=e.at
            )
            for e in seal.events
        ]
        if events
        else None,
    )


class SealStatusOut(BaseModel):
    es_id: str
    seal_sm3: str
    name: str
    seal_type: str
    state: str
    state_zh: str
    changed_at: datetime
    valid_start: datetime
    valid_end: datetime


def status_out(st: status.SealStatus) -> SealStatusOut:
    return SealStatusOut(
        es_id=st.es_id,
        seal_sm3=st.seal_sm3,
        name=st.name,
        seal_type=st.seal_type,
        state=st.state.value,
        state_zh=st.state_zh,
        changed_at=st.changed_at,
        valid_start=st.valid_start,
        valid_end=st.valid_end,
    )


# --- management -----------------------------------------------------------------------------------
@router.post(
    "/seals", status_code=201, response_model=SealOut, tags=["seals"], summary="申请印章 Apply for a seal"
)
def apply(
    body: SealApply,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(*_MANAGERS)),  # noqa: B008
) -> SealOut:
    upload = body.upload()
    with transaction(ctx.sessions) as s:
        seal = seals.apply_seal(
            s,
            department_id=body.department_id,
            seal_type_key=body.seal_type,
            name=body.name,
            signer_certificate_id=body.signer_certificate_id,
            picture=upload,
            valid_days=body.valid_days,
            actor=who.actor,
            reason=body.reason,
        )
        return seal_out(seal, events=True)


_ACTIONS: dict[str, tuple[str, str]] = {
    "review": ("审核通过", "Review (approve)"),
    "reject": ("驳回", "Reject"),
    "make": ("制作", "Make (sign with the seal maker key)"),
    "file": ("备案", "File"),
    "issue": ("发放", "Issue"),
    "suspend": ("暂停", "Suspend"),
    "resume": ("恢复", "Resume"),
    "cancel": ("注销", "Cancel"),
}


def _run(ctx: ServiceContext, action: str, seal_id: str, actor: str, reason: str) -> Seal:
    with transaction(ctx.sessions) as s:
        seal_row = seals.get_seal(s, seal_id)
        if action == "make":
            done = seals.make_seal(s, ctx.keystore, seal_row.id, actor=actor, reason=reason)
        else:
            fn: Callable[..., Seal] = {
                "review": seals.review,
                "reject": seals.reject,
                "file": seals.file_seal,
                "issue": seals.issue_seal,
                "suspend": seals.suspend,
                "resume": seals.resume,
                "cancel": seals.cancel,
            }[action]
            done = fn(s, seal_row.id, actor=actor, reason=reason)
        s.refresh(done, ["events"])
        return done


def _register(action: str) -> None:
    zh, en = _ACTIONS[action]

    def endpoint(
        seal_id: str,
        body: ActionBody | None = None,
        ctx: ServiceContext = Depends(get_context),  # noqa: B008
        who: Principal = Depends(require_roles(*_MANAGERS)),  # noqa: B008
    ) -> SealOut:
        reason = body.reason if body is not None else ""
        return seal_out(_run(ctx, action, seal_id, who.actor, reason), events=True)

    endpoint.__name__ = f"seal_{action}"
    router.add_api_route(
        f"/seals/{{seal_id}}/{action}",
        endpoint,
        methods=["POST"],
        response_model=SealOut,
        tags=["seals"],
        summary=f"{zh} {en}",
    )


for _action in _ACTIONS:
    _register(_action)


@router.post(
    "/seals/{seal_id}/renew",
    status_code=201,
    response_model=SealOut,
    tags=["seals"],
    summary="换发 Renew (apply for the successor; issuing it cancels this seal)",
)
def renew(
    seal_id: str,
    body: RenewBody | None = None,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(*_MANAGERS)),  # noqa: B008
) -> SealOut:
    body = body or RenewBody()
    upload = body.upload()
    with transaction(ctx.sessions) as s:
        old = seals.get_seal(s, seal_id)
        seal = seals.renew_seal(
            s,
            old.id,
            signer_certificate_id=body.signer_certificate_id,
            picture=upload,
            valid_days=body.valid_days,
            actor=who.actor,
            reason=body.reason,
        )
        return seal_out(seal, events=True)


# --- reading --------------------------------------------------------------------------------------
@router.get("/seals", response_model=list[SealOut], tags=["seals"], summary="印章列表 List seals")
def list_seals(
    department_id: str | None = Query(default=None, max_length=36),
    state: SealState | None = Query(default=None),  # noqa: B008
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(*_READERS)),  # noqa: B008
) -> list[SealOut]:
    if who.role is Role.DEPARTMENT_SIGNER:
        # A department sees only its own seals, whatever it asks for.
        if department_id is not None and department_id != who.department_id:
            return []
        department_id = who.department_id or ""
    with ctx.sessions() as s:
        return [seal_out(x) for x in seals.list_seals(s, department_id=department_id, state=state)]


def _readable(ctx: ServiceContext, who: Principal, seal_id: str) -> Seal:
    with ctx.sessions() as s:
        seal = seals.get_seal(s, seal_id)
        check_department_scope(who, seal.department_id)
        s.refresh(seal, ["events"])
        return seal


@router.get(
    "/seals/{seal_id}", response_model=SealOut, tags=["seals"], summary="印章详情 One seal (id or esID)"
)
def get_one(
    seal_id: str,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(*_READERS)),  # noqa: B008
) -> SealOut:
    return seal_out(_readable(ctx, who, seal_id), events=True)


@router.get(
    "/seals/{seal_id}/seal.esl",
    response_class=Response,
    responses={200: {"content": {OCTET: {}}}},
    tags=["seals"],
    summary="下载印章文件 Download the seal (.esl, DER)",
)
def download(
    seal_id: str,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(*_READERS)),  # noqa: B008
) -> Response:
    seal = _readable(ctx, who, seal_id)
    if seal.seal_der is None:
        raise NotFound(f"印章 {seal.es_id} 尚未制作", f"Seal {seal.es_id} has not been made yet")
    return Response(
        seal.seal_der,
        media_type=OCTET,
        headers={"Content-Disposition": f'attachment; filename="{seal.es_id}.esl"'},
    )


def _as_png(picture_type: str, data: bytes) -> tuple[bytes, str]:
    if picture_type == "png":
        return data, "image/png"
    if picture_type == "svg":
        # Scripts were refused at upload; the CSP below keeps the preview inert anyway.
        return data, "image/svg+xml"
    try:
        with Image.open(io.BytesIO(data)) as img:
            out = io.BytesIO()
            img.convert("RGBA").save(out, format="PNG")
    except (OSError, ValueError):
        raise InvalidInput("印章图片无法转换", "The seal picture cannot be converted") from None
    return out.getvalue(), "image/png"


@router.get(
    "/seals/{seal_id}/picture.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/svg+xml": {}}}},
    tags=["seals"],
    summary="印章图片预览 Seal picture preview",
)
def picture(
    seal_id: str,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(*_READERS)),  # noqa: B008
) -> Response:
    seal = _readable(ctx, who, seal_id)
    data, media = _as_png(seal.picture_type, seal.picture)
    return Response(
        data,
        media_type=media,
        headers={"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'"},
    )


# --- public status --------------------------------------------------------------------------------
@router.get(
    "/seal-status/snapshot",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
    tags=["seal-status"],
    summary="签名的印章状态快照 Signed seal status snapshot (public)",
)
def snapshot(ctx: ServiceContext = Depends(get_context)) -> Response:  # noqa: B008
    with ctx.sessions() as s:
        body = status.build_snapshot(s, ctx.keystore, region_code=ctx.settings.region_code)
    return Response(body, media_type="application/json", headers={"Cache-Control": "max-age=60"})


@router.get(
    "/seal-status/by-sm3/{seal_sm3}",
    response_model=SealStatusOut,
    tags=["seal-status"],
    summary="按印章文件 SM3 查询状态 Seal status by SM3 of the seal file (public)",
)
def status_by_sm3(seal_sm3: str, ctx: ServiceContext = Depends(get_context)) -> SealStatusOut:  # noqa: B008
    with ctx.sessions() as s:
        return status_out(status.status_by_sm3(s, seal_sm3))


@router.get(
    "/seal-status/{es_id}",
    response_model=SealStatusOut,
    tags=["seal-status"],
    summary="按印章编码查询状态 Seal status by esID (public)",
)
def status_by_es_id(es_id: str, ctx: ServiceContext = Depends(get_context)) -> SealStatusOut:  # noqa: B008
    with ctx.sessions() as s:
        return status_out(status.status_by_es_id(s, es_id))
