"""Departments (业务部门): registration by the seal administration, reading by the departments."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from core.db import transaction
from core.tokens import Principal, Role
from seal_registry import departments
from seal_registry.models import Department

from ..context import ServiceContext
from ..security import check_department_scope, get_context, require_roles

router = APIRouter(prefix="/v1/departments", tags=["departments"])

_READERS = (Role.SEAL_OFFICER, Role.AUDITOR, Role.DEPARTMENT_SIGNER)


class DepartmentCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="部门名称 / department name")
    uscc: str = Field(
        min_length=18, max_length=32, description="统一社会信用代码 / unified social credit code"
    )
    region_code: str | None = Field(
        default=None, description="行政区划代码（默认本地区）/ region code (default: this region's)"
    )


class DepartmentOut(BaseModel):
    id: str
    name: str
    uscc: str
    region_code: str
    created_at: datetime


def department_out(d: Department) -> DepartmentOut:
    return DepartmentOut(
        id=d.id, name=d.name, uscc=d.uscc, region_code=d.region_code, created_at=d.created_at
    )


@router.post("", status_code=201, response_model=DepartmentOut, summary="登记部门 Register a department")
def create(
    body: DepartmentCreate,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(Role.SEAL_OFFICER)),  # noqa: B008
) -> DepartmentOut:
    with transaction(ctx.sessions) as s:
        dept = departments.create_department(
            s,
            name=body.name,
            uscc=body.uscc,
            region_code=body.region_code or ctx.settings.region_code,
            actor=who.actor,
        )
        return department_out(dept)


@router.get("", response_model=list[DepartmentOut], summary="部门列表 List departments")
def list_all(
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(*_READERS)),  # noqa: B008
) -> list[DepartmentOut]:
    with ctx.sessions() as s:
        rows = departments.list_departments(s)
    if who.role is Role.DEPARTMENT_SIGNER:
        rows = [d for d in rows if d.id == who.department_id]
    return [department_out(d) for d in rows]


@router.get("/{department_id}", response_model=DepartmentOut, summary="部门详情 One department")
def get_one(
    department_id: str,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(require_roles(*_READERS)),  # noqa: B008
) -> DepartmentOut:
    check_department_scope(who, department_id)
    with ctx.sessions() as s:
        return department_out(departments.get_department(s, department_id))
