"""Fixtures for the batch tests: a region with an issued seal on each backend, the worker resources a
job runs with (settings that pool processes can open: the key store's real passphrase), licence-like
one-page OFDs that all differ, and audit helpers that count signatures per batch item."""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from core.audit import AuditEntry
from core.blobstore import BlobStore
from core.settings import Settings
from seal_registry.lifecycle import SealState
from seal_registry.models import Seal
from seal_registry.pki import CertRole, certificate_of, current_certificate
from signer.batch import BatchInput
from signer.batch_worker import WorkerResources
from tests.api.conftest import live_server  # noqa: F401 - the real-HTTP fixture
from tests.registry.conftest import Registry, registry  # noqa: F401 - per-backend registry
from verify import FileTrustSource

REGISTRY_PASSPHRASE = "registry test passphrase"  # what tests.registry.conftest opens the store with
SIGNER = "department_signer:batch-tester"


@pytest.fixture(scope="session")
def helloworld(interop_dir: Path) -> bytes:
    return (interop_dir / "ofdrw-sign__helloworld.ofd").read_bytes()


def licence_ofd(helloworld: bytes, n: int) -> bytes:
    """helloworld with its text replaced by a licence number: every document different, one page."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(helloworld)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("Content.xml"):
                replaced = data.replace(b"OFD Reader&amp;Writer", f"LIC-{n:013d}".encode())
                assert replaced != data
                data = replaced
            dst.writestr(info, data)
    return out.getvalue()


def licences(helloworld: bytes, count: int, *, start: int = 0) -> list[BatchInput]:
    return [
        BatchInput(f"licence-{n:04d}.ofd", f"licence-{n:04d}.ofd", licence_ofd(helloworld, n))
        for n in range(start, start + count)
    ]


@dataclass
class BatchEnv:
    reg: Registry
    res: WorkerResources
    seal: Seal

    @property
    def department_id(self) -> str:
        return self.reg.department.id

    def trust(self) -> FileTrustSource:
        with self.reg.sessions() as s:
            return FileTrustSource((certificate_of(current_certificate(s, CertRole.ROOT)),))

    def root(self) -> bytes:
        with self.reg.sessions() as s:
            return current_certificate(s, CertRole.ROOT).der


@pytest.fixture
def env(registry: Registry, tmp_path: Path) -> Iterator[BatchEnv]:  # noqa: F811 - fixture from tests.registry
    settings = Settings(
        var_dir=tmp_path / "var", database_url=registry.url, keystore_passphrase=REGISTRY_PASSPHRASE
    )
    res = WorkerResources(
        settings, registry.sessions, registry.keystore, BlobStore(settings.var_dir / "blobs")
    )
    yield BatchEnv(registry, res, registry.seal_in(SealState.ISSUED))


def signatures_by_item(reg: Registry, job_id: str) -> Counter[str]:
    """How many ``signature.made`` audit entries name each item key of the job."""
    with reg.sessions() as s:
        rows = s.scalars(select(AuditEntry.details).where(AuditEntry.action == "signature.made"))
        counts: Counter[str] = Counter()
        for text in rows:
            details = json.loads(text)
            if details.get("batch_job_id") == job_id:
                counts[details["batch_item_key"]] += 1
    return counts


@dataclass
class Local:
    """An installation as the CLI sees it (SQLite under a temporary var dir, settings from ESEAL_*)."""

    env: dict[str, str]
    url: str
    reg: Registry
    es_id: str
    department_id: str
    trust: FileTrustSource


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Local]:
    from typer.testing import CliRunner

    from api.cli import app
    from api.context import open_context
    from core.db import transaction
    from core.settings import get_settings
    from hsm_adapters.soft import SoftKeyStore
    from seal_registry.departments import create_department
    from seal_registry.pki import issue_department_certificate
    from tests.registry.conftest import ACTOR, uscc

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    values = {
        "ESEAL_VAR_DIR": str(tmp_path / "var"),
        "ESEAL_DATABASE_URL": url,
        "ESEAL_KEYSTORE_PASSPHRASE": "batch cli passphrase",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    assert CliRunner().invoke(app, ["init"]).exit_code == 0
    ctx = open_context(get_settings())
    try:
        with transaction(ctx.sessions) as s:
            dept = create_department(s, name="批量签章局", uscc=uscc(77), region_code="110000", actor=ACTOR)
        with transaction(ctx.sessions) as s:
            cert = issue_department_certificate(s, ctx.keystore, dept, actor=ACTOR)
        keystore = ctx.keystore
        assert isinstance(keystore, SoftKeyStore)
        reg = Registry(url, ctx.sessions, keystore, ctx.settings, dept, cert)
        seal = reg.seal_in(SealState.ISSUED)
        with reg.sessions() as s:
            trust = FileTrustSource((certificate_of(current_certificate(s, CertRole.ROOT)),))
        yield Local(values, url, reg, seal.es_id, dept.id, trust)
    finally:
        ctx.close()
        get_settings.cache_clear()
