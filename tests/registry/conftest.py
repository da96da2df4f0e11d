"""Fixtures for the seal registry tests: a migrated database on each backend with the region PKI
initialised, one department with a signing certificate, and helpers that walk a seal to any state."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core import migrate
from core.audit import AuditEntry
from core.db import make_engine, make_session_factory, transaction
from core.settings import Settings
from hsm_adapters.soft import ScryptParams, SoftKeyStore
from seal_registry import seals
from seal_registry.departments import create_department
from seal_registry.lifecycle import SealState
from seal_registry.models import Department, PkiCertificate, Seal
from seal_registry.pki import init_region, issue_department_certificate
from seal_registry.uscc import check_character
from tests.api.conftest import live_server  # noqa: F401 - the real-HTTP fixture, shared

ACTOR = "seal_officer:tester"
FAST_SCRYPT = ScryptParams(n=2**10, r=8, p=1)


def uscc(n: int) -> str:
    first17 = f"91110000MA{n:07d}"
    return first17 + check_character(first17)


def picture_png() -> bytes:
    """A small red ring: a real PNG the upload check accepts, drawn without fonts (fast)."""
    img = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    ImageDraw.Draw(img).ellipse((8, 8, 152, 152), outline=(230, 0, 18, 255), width=10)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


PICTURE = picture_png()

# The lifecycle path that reaches each state (cancelled is reached from issued, so it has bytes).
PATHS: dict[SealState, tuple[str, ...]] = {
    SealState.APPLIED: (),
    SealState.REVIEWED: ("review",),
    SealState.REJECTED: ("reject",),
    SealState.MADE: ("review", "make"),
    SealState.FILED: ("review", "make", "file"),
    SealState.ISSUED: ("review", "make", "file", "issue"),
    SealState.SUSPENDED: ("review", "make", "file", "issue", "suspend"),
    SealState.CANCELLED: ("review", "make", "file", "issue", "cancel"),
}


@dataclass
class Registry:
    url: str
    sessions: sessionmaker[Session]
    keystore: SoftKeyStore
    settings: Settings
    department: Department
    certificate: PkiCertificate

    def apply(self, **kwargs: Any) -> Seal:
        args: dict[str, Any] = {
            "department_id": self.department.id,
            "seal_type_key": "contract",
            "picture": seals.PictureUpload(PICTURE, "png"),
            "actor": ACTOR,
            "reason": "test application",
        }
        args.update(kwargs)
        with transaction(self.sessions) as s:
            return seals.apply_seal(s, **args)

    def act(self, seal_id: str, action: str, *, actor: str = ACTOR, reason: str = "because") -> Seal:
        with transaction(self.sessions) as s:
            if action == "make":
                return seals.make_seal(s, self.keystore, seal_id, actor=actor, reason=reason)
            if action == "renew":
                return seals.renew_seal(s, seal_id, actor=actor, reason=reason)
            fn: Callable[..., Seal] = {
                "review": seals.review,
                "reject": seals.reject,
                "file": seals.file_seal,
                "issue": seals.issue_seal,
                "suspend": seals.suspend,
                "resume": seals.resume,
                "cancel": seals.cancel,
            }[action]
            return fn(s, seal_id, actor=actor, reason=reason)

    def seal_in(self, state: SealState, **kwargs: Any) -> Seal:
        seal = self.apply(**kwargs)
        for action in PATHS[state]:
            seal = self.act(seal.id, action)
        assert seal.state == state.value
        return seal

    def audit_count(self) -> int:
        with self.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(AuditEntry)) or 0)

    def last_audit(self) -> AuditEntry:
        with self.sessions() as s:
            entry = s.scalar(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1))
            assert entry is not None
            return entry

    def new_department(
        self, n: int, *, with_certificate: bool = True
    ) -> tuple[Department, PkiCertificate | None]:
        with transaction(self.sessions) as s:
            dept = create_department(s, name=f"测试部门{n}", uscc=uscc(n), region_code="110000", actor=ACTOR)
        if not with_certificate:
            return dept, None
        with transaction(self.sessions) as s:
            cert = issue_department_certificate(s, self.keystore, dept, actor=ACTOR)
        return dept, cert


@pytest.fixture
def registry(db_url: str, tmp_path: Path) -> Iterator[Registry]:
    migrate.upgrade(db_url)
    engine = make_engine(db_url)
    sessions = make_session_factory(engine)
    keystore = SoftKeyStore(sessions, "registry test passphrase", scrypt_params=FAST_SCRYPT)
    settings = Settings(var_dir=tmp_path / "var", database_url=db_url, keystore_passphrase="unused")
    with transaction(sessions) as s:
        init_region(s, keystore, settings, actor=ACTOR)
    with transaction(sessions) as s:
        dept = create_department(
            s, name="测试市市场监督管理局", uscc=uscc(1), region_code="110000", actor=ACTOR
        )
    with transaction(sessions) as s:
        cert = issue_department_certificate(s, keystore, dept, actor=ACTOR)
    try:
        yield Registry(db_url, sessions, keystore, settings, dept, cert)
    finally:
        keystore.close()
        engine.dispose()
