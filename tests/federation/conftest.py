"""Regions for the federation tests: each with its own database, key store, var dir and region code,
a department whose seals carry the region's esIDs, and (when served) a real HTTP server."""

from __future__ import annotations

import datetime as dt
import io
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from sqlalchemy import create_engine, text

from api.context import ServiceContext, open_context
from core.db import transaction, utcnow
from core.settings import Settings
from core.tokens import Role, issue_token
from gmpki.seal import make_ses_signature
from gmpki.sm3 import sm3
from hsm_adapters.keystore import KeyStoreSigner
from hsm_adapters.soft import ScryptParams, SoftKeyStore
from seal_registry import seals
from seal_registry.departments import create_department
from seal_registry.models import PkiCertificate, Seal
from seal_registry.pki import CertRole, current_certificate, init_region, issue_department_certificate
from seal_registry.uscc import check_character
from tests.api.conftest import start_server
from tests.conftest import PG_ADMIN_URL, _pg_reachable, require_or_skip

ACTOR = "seal_officer:federation-tests"
FAST_SCRYPT = ScryptParams(n=2**10, r=8, p=1)
DATA = "跨地区互认测试文书：准予许可。".encode()


def _picture() -> bytes:
    img = Image.new("RGBA", (120, 120), (0, 0, 0, 0))
    ImageDraw.Draw(img).ellipse((6, 6, 114, 114), outline=(230, 0, 18, 255), width=8)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


PNG = _picture()


def uscc_for(region: str, n: int) -> str:
    first17 = f"91{region}MA{n:07d}"
    return first17 + check_character(first17)


@dataclass
class Region:
    """One deployment: settings, database, key store and a department of the region."""

    code: str
    name: str
    ctx: ServiceContext
    department_id: str
    admin_token: str
    url: str | None = None

    @property
    def sessions(self) -> Any:
        return self.ctx.sessions

    def registry_sm3(self) -> str:
        with self.ctx.sessions() as s:
            return current_certificate(s, CertRole.SERVICE).sm3

    def issue_seal(self, type_key: str = "contract") -> Seal:
        with transaction(self.ctx.sessions) as s:
            seal = seals.apply_seal(
                s,
                department_id=self.department_id,
                seal_type_key=type_key,
                picture=seals.PictureUpload(PNG, "png"),
                actor=ACTOR,
                reason="federation test",
            )
        for step in ("review", "make", "file", "issue"):
            with transaction(self.ctx.sessions) as s:
                if step == "make":
                    seal = seals.make_seal(s, self.ctx.keystore, seal.id, actor=ACTOR)
                else:
                    fn: Callable[..., Seal] = {
                        "review": seals.review,
                        "file": seals.file_seal,
                        "issue": seals.issue_seal,
                    }[step]
                    seal = fn(s, seal.id, actor=ACTOR)
        return seal

    def sign(self, seal: Seal, data: bytes = DATA) -> bytes:
        """An SES signature through the registry (authorisation and audit)."""
        with transaction(self.ctx.sessions) as s:
            return seals.sign_with_seal(
                s,
                self.ctx.keystore,
                es_id=seal.es_id,
                department_id=self.department_id,
                data_hash=sm3(data),
                property_info="decision.txt",
                actor=ACTOR,
            )

    def forge(self, seal: Seal, when: dt.datetime, data: bytes = DATA) -> bytes:
        """A signature made with the department key directly: what a key holder can still do after
        the registry refuses the seal."""
        with self.ctx.sessions() as s:
            cert = s.get(PkiCertificate, seal.signer_certificate_id)
            assert cert is not None and cert.key_id is not None and seal.seal_der is not None
            der, key_id = cert.der, cert.key_id
        return make_ses_signature(
            seal.seal_der, sm3(data), "decision.txt", der, KeyStoreSigner(self.ctx.keystore, key_id), when
        )

    def act(self, seal: Seal, action: str, reason: str = "federation test") -> Seal:
        fn = {"suspend": seals.suspend, "resume": seals.resume, "cancel": seals.cancel}[action]
        with transaction(self.ctx.sessions) as s:
            return fn(s, seal.id, actor=ACTOR, reason=reason)


def open_region(db_url: str, var_dir: Path, code: str, name: str, **settings: Any) -> Region:
    cfg = Settings(
        var_dir=var_dir,
        database_url=db_url,
        keystore_passphrase="federation test passphrase",
        region_code=code,
        region_name=name,
        **settings,
    )
    ctx = open_context(cfg)
    ctx._keystore = SoftKeyStore(ctx.sessions, "federation test passphrase", scrypt_params=FAST_SCRYPT)
    with transaction(ctx.sessions) as s:
        init_region(s, ctx.keystore, cfg, actor=ACTOR)
    with transaction(ctx.sessions) as s:
        dept = create_department(
            s, name=f"{name}市场监督管理局", uscc=uscc_for(code, 1), region_code=code, actor=ACTOR
        )
    with transaction(ctx.sessions) as s:
        issue_department_certificate(s, ctx.keystore, dept, actor=ACTOR)
    with transaction(ctx.sessions) as s:
        _row, admin = issue_token(s, name="admin", role=Role.ADMIN)
    return Region(code, name, ctx, dept.id, admin)


def close_region(region: Region) -> None:
    region.ctx.keystore.close()
    region.ctx.close()


@contextmanager
def serving(region: Region) -> Iterator[Region]:
    """Run the region's eseal server on 127.0.0.1 (its own port) while inside the block."""
    url, server, thread = start_server(region.ctx)
    region.url = url
    # The routes read the settings per request: the list now names where it is published.
    region.ctx.settings = region.ctx.settings.model_copy(update={"public_base_url": url})
    try:
        yield region
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        region.url = None


def after_the_second_of(when: dt.datetime) -> None:
    """Sleep into the next whole second: signing times and list times have whole seconds."""
    wait = (when.replace(microsecond=0) + dt.timedelta(seconds=1.02) - utcnow()).total_seconds()
    if wait > 0:
        time.sleep(wait)


@pytest.fixture
def second_db_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """Another empty database on the same backend as ``db_url`` (a second file or schema)."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'second.db'}"
        return
    require_or_skip(_pg_reachable(), f"PostgreSQL not reachable at {PG_ADMIN_URL}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_ADMIN_URL else "?"
    yield f"{PG_ADMIN_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def region_b(tmp_path: Path) -> Iterator[Region]:
    """Region B (Jiangsu, 320000) on its own SQLite file, not served."""
    region = open_region(f"sqlite:///{tmp_path / 'b.db'}", tmp_path / "var-b", "320000", "江苏省 Jiangsu")
    try:
        yield region
    finally:
        close_region(region)


@pytest.fixture
def region_a(tmp_path: Path) -> Iterator[Region]:
    """Region A (Beijing, 110000) on its own SQLite file, not served, no scheduled sync."""
    region = open_region(
        f"sqlite:///{tmp_path / 'a.db'}",
        tmp_path / "var-a",
        "110000",
        "北京市 Beijing",
        federation_sync_interval_s=0,
    )
    try:
        yield region
    finally:
        close_region(region)
