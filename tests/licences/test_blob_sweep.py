"""`eseal blobs sweep` over a real licence store: files the records name stay, crash leftovers go."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from api.blob_sweep import referenced_blobs, sweep_blobs
from api.cli import app
from api.context import ServiceContext
from core.audit import AuditEntry
from core.settings import get_settings

from .conftest import Store, assert_passed


def _age_all(root: Path, seconds: float) -> None:
    then = time.time() - seconds
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


def test_sweep_keeps_licence_files_and_removes_orphans(store: Store) -> None:
    licence = store.issue()
    orphan = store.blobs.put(b"PK\x03\x04 sealed file of a transaction that rolled back")
    _age_all(store.blobs.root, 3 * 86_400)
    with store.sessions() as s:
        named = referenced_blobs(s)
    assert licence.ofd_sm3 in named and orphan not in named

    engine = store.sessions.kw["bind"]
    ctx = ServiceContext(store.reg.settings, engine, store.sessions, store.reg.keystore, store.blobs)
    dry = sweep_blobs(ctx, dry_run=True, actor="cli:test")
    assert dry.removed == 1 and store.blobs.exists(orphan)
    report = sweep_blobs(ctx, actor="cli:test")
    assert report.removed == 1 and report.referenced >= 1
    assert not store.blobs.exists(orphan)
    assert_passed(store.file(licence), store.trust)  # the licence's file is untouched
    with store.sessions() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "blobs.swept")).one()
    assert '"removed":1' in entry.details.replace(" ", "")


@pytest.fixture
def var_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    var = tmp_path / "var"
    monkeypatch.setenv("ESEAL_VAR_DIR", str(var))
    monkeypatch.delenv("ESEAL_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield var
    get_settings.cache_clear()


def test_cli_sweep(var_dir: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--demo"]).exit_code == 0
    from core.blobstore import BlobStore

    blobs = BlobStore(var_dir / "blobs")
    orphan = blobs.put(b"orphan")
    _age_all(blobs.root, 2 * 86_400)
    refused = runner.invoke(app, ["blobs", "sweep", "--grace-hours", "0.1"])
    assert refused.exit_code != 0 and "grace period" in refused.output and blobs.exists(orphan)
    dry = runner.invoke(app, ["blobs", "sweep", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would remove 1 (6 B)" in " ".join(dry.output.split()) and blobs.exists(orphan)
    done = runner.invoke(app, ["blobs", "sweep", "--json"])
    assert done.exit_code == 0, done.output
    assert '"removed": 1' in done.output and not blobs.exists(orphan)
