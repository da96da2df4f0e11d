"""The licence catalogue (administrators define types; anyone may read them and check metadata) and
the service seal that seals annotated copies."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from core.db import transaction
from core.tokens import Principal
from licence_store import catalogue
from licence_store.metadata import validate_metadata as validate_metadata_for
from licence_store.models import LicenceType
from licence_store.sharing import get_service_seal, set_service_seal
from seal_registry.departments import get_department

from ..context import ServiceContext
from ..security import get_context, require_roles

router = APIRouter(prefix="/v1", tags=["licence catalogue"])


class TypeBody(BaseModel):
    type_code: str = Field(max_length=21, description="定义机构统一社会信用代码 + 3 位数字 / USCC + 3 digits")
    name: str = Field(max_length=200)
    defining_authority_name: str = Field(max_length=200)
    metadata_schema: dict[str, Any] = Field(
        description="专有字段的 JSON Schema (2020-12) / the type's own fields"
    )
    template: dict[str, Any] | None = Field(default=None, description="渲染模板 / rendering template")
    seal_type: str = Field(max_length=32, description="official | business | …")
    issuing_authorities: list[str] = Field(default_factory=list, max_length=1000)
    default_valid_days: int | None = Field(default=None, ge=1, le=36_500)
    print_pdf: bool = Field(
        default=False,
        description="颁发时同步生成并签章打印版 PDF（OFD 仍为法定文件）/ also make and seal a print PDF",
    )


class TypePatch(BaseModel):
    name: str | None = Field(default=None, max_length=200)
    metadata_schema: dict[str, Any] | None = None
    template: dict[str, Any] | None = None
    seal_type: str | None = Field(default=None, max_length=32)
    issuing_authorities: list[str] | None = Field(default=None, max_length=1000)
    default_valid_days: int | None = Field(default=None, ge=1, le=36_500)
    long_term: bool = Field(default=False, description="设为长期有效 / make the default validity long-term")
    print_pdf: bool | None = Field(default=None, description="同步生成打印版 PDF / also make a print PDF")
    active: bool | None = None


class ServiceSealBody(BaseModel):
    department_id: str = Field(max_length=36)
    es_id: str = Field(max_length=64)


def type_dict(row: LicenceType) -> dict[str, Any]:
    return {
        "id": row.id,
        "type_code": row.type_code,
        "name": row.name,
        "defining_authority_name": row.defining_authority_name,
        "defining_authority_code": row.defining_authority_code,
        "issuing_authorities": json.loads(row.issuing_authorities),
        "metadata_schema": json.loads(row.metadata_schema),
        "template": json.loads(row.template),
        "seal_type": row.seal_type,
        "default_valid_days": row.default_valid_days,
        "print_pdf": row.print_pdf,
        "active": row.active,
        "revision": row.revision,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


@router.post("/licence-types", status_code=201, summary="新增证照类型 Add a licence type")
def create_type(
    body: TypeBody,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles()),  # noqa: B008 - administrators only
) -> JSONResponse:
    with transaction(ctx.sessions) as s:
        row = catalogue.create_type(
            s,
            type_code=body.type_code,
            name=body.name,
            defining_authority_name=body.defining_authority_name,
            metadata_schema=body.metadata_schema,
            template=body.template,
            seal_type=body.seal_type,
            issuing_authorities=body.issuing_authorities,
            default_valid_days=body.default_valid_days,
            print_pdf=body.print_pdf,
            actor=who.actor,
        )
        return JSONResponse(type_dict(row), status_code=201)


@router.get("/licence-types", summary="证照目录 The licence catalogue")
def list_types(
    active_only: bool = False,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
) -> list[dict[str, Any]]:
    with ctx.sessions() as s:
        return [type_dict(t) for t in catalogue.list_types(s, active_only=active_only)]


@router.get("/licence-types/{ref}", summary="证照类型 One licence type")
def get_type(ref: str, ctx: ServiceContext = Depends(get_context)) -> dict[str, Any]:  # noqa: B008
    with ctx.sessions() as s:
        return type_dict(catalogue.get_type(s, ref))


@router.patch("/licence-types/{ref}", summary="修改证照类型 Change a licence type")
def patch_type(
    ref: str,
    body: TypePatch,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles()),  # noqa: B008
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if body.long_term:
        extra["default_valid_days"] = None
    elif body.default_valid_days is not None:
        extra["default_valid_days"] = body.default_valid_days
    with transaction(ctx.sessions) as s:
        row = catalogue.update_type(
            s,
            ref,
            actor=who.actor,
            name=body.name,
            metadata_schema=body.metadata_schema,
            template=body.template,
            seal_type=body.seal_type,
            issuing_authorities=body.issuing_authorities,
            print_pdf=body.print_pdf,
            active=body.active,
            **extra,
        )
        return type_dict(row)


@router.post(
    "/licence-types/{ref}/validate",
    summary="校验元数据 Check metadata against a type",
    description="不颁发，只校验；错误时返回 400 并逐字段列出。 / Checks only; 400 with field-level errors.",
)
def validate_metadata(
    ref: str,
    body: dict[str, Any],
    department_id: str | None = None,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
) -> dict[str, Any]:
    with ctx.sessions() as s:
        row = catalogue.get_type(s, ref)
        area = get_department(s, department_id).region_code if department_id else ctx.settings.region_code
        meta = validate_metadata_for(
            body,
            type_validator=catalogue.type_validator(row),
            type_name=row.name,
            default_area=area,
            default_valid_days=row.default_valid_days,
        )
        return {"valid": True, "metadata": meta.to_input()}


@router.put("/licence-service-seal", summary="设置加注件服务印章 Set the seal for annotated copies")
def put_service_seal(
    body: ServiceSealBody,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles()),  # noqa: B008
) -> dict[str, Any]:
    with transaction(ctx.sessions) as s:
        row = set_service_seal(s, department_id=body.department_id, es_id=body.es_id, actor=who.actor)
        return {"department_id": row.department_id, "es_id": row.es_id, "set_at": row.set_at.isoformat()}


@router.get("/licence-service-seal", summary="加注件服务印章 The seal for annotated copies")
def show_service_seal(
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    _who: Principal = Depends(require_roles()),  # noqa: B008
) -> dict[str, Any]:
    with ctx.sessions() as s:
        row = get_service_seal(s)
        return {"department_id": row.department_id, "es_id": row.es_id, "set_at": row.set_at.isoformat()}
