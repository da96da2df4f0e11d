"""Demo data for the embedded defaults (`make serve`): a department, its certificates and an issued seal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from hsm_adapters.keystore import KeyStore

from . import seals
from .departments import create_department
from .models import Department, PkiCertificate, Seal
from .pki import CertRole, issue_department_certificate, issue_pades_certificate, pades_ready
from .uscc import check_character

DEMO_NAME = "演示市市场监督管理局"
DEMO_USCC_17 = "11110000MB0000001"
DEMO_USCC = DEMO_USCC_17 + check_character(DEMO_USCC_17)


class Printer(Protocol):
    def print(self, *objects: object) -> None: ...


def ensure_demo_data(
    sessions: sessionmaker[Session], keystore: KeyStore, *, actor: str, console: Printer
) -> Department:
    """Idempotent. Separate transactions, because a new key must be made before a transaction writes."""
    with transaction(sessions) as s:
        dept = s.scalar(select(Department).where(Department.uscc == DEMO_USCC))
        if dept is None:
            dept = create_department(s, name=DEMO_NAME, uscc=DEMO_USCC, region_code="110000", actor=actor)
            console.print(f"演示部门 demo department: {dept.name} ({dept.id})")
    with transaction(sessions) as s:
        has_cert = s.scalar(select(PkiCertificate.id).where(PkiCertificate.department_id == dept.id).limit(1))
        if has_cert is None:
            row = issue_department_certificate(s, keystore, dept, actor=actor)
            console.print(f"演示部门证书 demo department certificate: {row.subject}")
    with transaction(sessions) as s:
        has_pades = s.scalar(
            select(PkiCertificate.id)
            .where(
                PkiCertificate.department_id == dept.id,
                PkiCertificate.role == CertRole.PADES_DEPARTMENT.value,
            )
            .limit(1)
        )
        if has_pades is None and pades_ready(s):
            row = issue_pades_certificate(s, keystore, dept, actor=actor)
            console.print(f"演示部门 PDF 签名证书 demo department PDF certificate: {row.subject}")
    with transaction(sessions) as s:
        has_seal = s.scalar(select(Seal.id).where(Seal.department_id == dept.id).limit(1))
    if has_seal is None:
        es_id = _issue_demo_seal(sessions, keystore, dept.id, actor=actor)
        console.print(f"演示印章（已发放）demo seal (issued): {es_id}")
    return dept


def _issue_demo_seal(
    sessions: sessionmaker[Session], keystore: KeyStore, department_id: str, *, actor: str
) -> str:
    """An official seal taken through the whole lifecycle, so the demo can stamp at once."""
    reason = "演示数据 demo data"
    with transaction(sessions) as s:
        seal_id = seals.apply_seal(
            s, department_id=department_id, seal_type_key="official", actor=actor, reason=reason
        ).id
    steps: tuple[Callable[[Session], object], ...] = (
        lambda s: seals.review(s, seal_id, actor=actor, reason=reason),
        lambda s: seals.make_seal(s, keystore, seal_id, actor=actor, reason=reason),
        lambda s: seals.file_seal(s, seal_id, actor=actor, reason=reason),
        lambda s: seals.issue_seal(s, seal_id, actor=actor, reason=reason),
    )
    for step in steps:
        with transaction(sessions) as s:
            step(s)
    with sessions() as s:
        return seals.get_seal(s, seal_id).es_id
