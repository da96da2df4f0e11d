"""The holder's side (持证主体): their licences, grants to departments (精准授权), the uses of their
licences, and objections. A ``holder`` token's ``holder_id`` is the holder code on the licences
(unified social credit code, citizen ID number, …)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from core.db import transaction
from core.errors import PermissionDenied
from core.tokens import Principal, Role
from licence_store import access_log, grants, objections
from licence_store.records import SearchFilter, licence_dict, search

from ..context import ServiceContext
from ..security import get_context, require_roles

router = APIRouter(prefix="/v1/holder", tags=["licence holders"])


def holder(who: Principal = Depends(require_roles(Role.HOLDER))) -> str:  # noqa: B008
    """The caller's holder code; administrators have none and cannot act for a holder."""
    if who.role is not Role.HOLDER or not who.holder_id:
        raise PermissionDenied(
            "只有持证主体（holder 令牌）可以使用此接口", "only a holder may use this endpoint"
        )
    return who.holder_id


class GrantBody(BaseModel):
    identifier: str = Field(
        max_length=128, description="证照标识（任一版本）/ licence identifier (any version)"
    )
    department_id: str = Field(max_length=36, description="被授权部门 / the department allowed to use it")
    purpose: str = Field(min_length=1, max_length=500, description="用途 / purpose")
    valid_until: dt.datetime = Field(description="授权截止时间（带时区）/ end of the grant, with time zone")
    allow_original: bool = Field(default=False, description="允许获取原件 / allow the original file")


class ObjectionBody(BaseModel):
    identifier: str = Field(max_length=128)
    field: str = Field(
        max_length=100, description="有异议的字段，如 holder_name、fields.registered_capital、other"
    )
    claim: str = Field(min_length=1, max_length=2000)
    evidence: str | None = Field(default=None, max_length=20_000)


@router.get("/licences", summary="我的证照 My licences")
def my_licences(
    all_versions: bool = False,
    page: int = Query(default=1, ge=1),
    page_size: int = Query(default=50, ge=1, le=200),
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    code: str = Depends(holder),
) -> dict[str, Any]:
    with ctx.sessions() as s:
        result = search(
            s, SearchFilter(holder_code=code, current_only=not all_versions), page=page, page_size=page_size
        )
        return {"items": [licence_dict(r) for r in result.items], "total": result.total, "page": page}


@router.post("/grants", status_code=201, summary="授权部门使用证照 Grant a department use of a licence")
def create_grant(
    body: GrantBody,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(Role.HOLDER)),  # noqa: B008
    code: str = Depends(holder),
) -> JSONResponse:
    with transaction(ctx.sessions) as s:
        grant = grants.create_grant(
            s,
            holder_code=code,
            identifier=body.identifier,
            grantee_department_id=body.department_id,
            purpose=body.purpose,
            valid_until=body.valid_until,
            allow_original=body.allow_original,
            actor=who.actor,
        )
        return JSONResponse(grants.grant_dict(grant), status_code=201)


@router.get("/grants", summary="我的授权 My grants")
def my_grants(
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    code: str = Depends(holder),
) -> list[dict[str, Any]]:
    with ctx.sessions() as s:
        return [grants.grant_dict(g) for g in grants.list_grants(s, holder_code=code)]


@router.post("/grants/{grant_id}/withdraw", summary="撤回授权 Withdraw a grant")
def withdraw(
    grant_id: str,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(Role.HOLDER)),  # noqa: B008
    code: str = Depends(holder),
) -> dict[str, Any]:
    with transaction(ctx.sessions) as s:
        return grants.grant_dict(grants.withdraw_grant(s, grant_id, holder_code=code, actor=who.actor))


@router.get("/uses", summary="我的证照的使用记录 Uses of my licences")
def my_uses(
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = Query(default=100, ge=1, le=500),
    offset: int = Query(default=0, ge=0),
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    code: str = Depends(holder),
) -> dict[str, Any]:
    with ctx.sessions() as s:
        rows, total = access_log.query(
            s, access_log.AccessQuery(holder_code=code, since=since, until=until), limit=limit, offset=offset
        )
        return {"items": [access_log.access_dict(r) for r in rows], "total": total}


@router.post("/objections", status_code=201, summary="提出异议 File an objection")
def file_objection(
    body: ObjectionBody,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(Role.HOLDER)),  # noqa: B008
    code: str = Depends(holder),
) -> JSONResponse:
    with transaction(ctx.sessions) as s:
        row = objections.file_objection(
            s,
            identifier=body.identifier,
            field=body.field,
            claim=body.claim,
            evidence=body.evidence,
            filer_kind="holder",
            filer_ref=code,
            actor=who.actor,
        )
        return JSONResponse(objections.objection_dict(row), status_code=201)


@router.get("/objections", summary="我的异议 My objections")
def my_objections(
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    code: str = Depends(holder),
) -> list[dict[str, Any]]:
    with ctx.sessions() as s:
        return [objections.objection_dict(o) for o in objections.list_objections(s, filer=("holder", code))]
