"""Departments (业务部门): the holders of seals and the issuers of licences."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import append as audit_append
from core.db import utcnow
from core.errors import Conflict, InvalidInput, NotFound

from .models import Department
from .uscc import validate_uscc


def create_department(session: Session, *, name: str, uscc: str, region_code: str, actor: str) -> Department:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("部门名称不能为空且不超过 200 字", "Department name must be 1–200 characters")
    if len(region_code) != 6 or not region_code.isdigit():
        raise InvalidInput("行政区划代码必须为 6 位数字", "Region code must be 6 digits")
    code = validate_uscc(uscc)
    if session.scalar(select(Department.id).where(Department.uscc == code)) is not None:
        raise Conflict(
            f"统一社会信用代码 {code} 已登记", f"Unified social credit code {code} is already registered"
        )
    dept = Department(
        id=str(uuid.uuid4()), name=name, uscc=code, region_code=region_code, created_at=utcnow()
    )
    session.add(dept)
    session.flush()
    audit_append(
        session,
        actor=actor,
        action="department.created",
        subject_type="department",
        subject_id=dept.id,
        details={"name": name, "uscc": code, "region_code": region_code},
    )
    return dept


def get_department(session: Session, department_id: str) -> Department:
    dept = session.get(Department, department_id)
    if dept is None:
        raise NotFound(f"部门 {department_id} 不存在", f"Department {department_id} not found")
    return dept


def list_departments(session: Session) -> list[Department]:
    return list(session.scalars(select(Department).order_by(Department.created_at)))
