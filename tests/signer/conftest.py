"""Fixtures for the signer tests: a region with one department and an issued seal (SQLite, built once
per module for speed), the per-backend registry for the transactional tests, and helpers that read a
sealed OFD with nothing but zipfile and ElementTree."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core import migrate
from core.db import make_engine, make_session_factory, transaction
from core.settings import Settings
from hsm_adapters.soft import SoftKeyStore
from seal_registry.departments import create_department
from seal_registry.lifecycle import SealState
from seal_registry.models import Seal
from seal_registry.pki import (
    CertRole,
    certificate_of,
    current_certificate,
    init_region,
    issue_department_certificate,
)
from signer.ofd_sealing import seal_ofd
from signer.placement import Placement
from tests.api.conftest import live_server  # noqa: F401 - the real-HTTP fixture
from tests.registry.conftest import ACTOR, FAST_SCRYPT, Registry, registry, uscc  # noqa: F401
from verify import FileTrustSource

SIGNER = "department_signer:tester"


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A region on SQLite shared by the tests of one module (they only add seals and signatures)."""
    tmp = tmp_path_factory.mktemp("region")
    url = f"sqlite:///{tmp / 'eseal.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    keystore = SoftKeyStore(sessions, "signer test passphrase", scrypt_params=FAST_SCRYPT)
    settings = Settings(var_dir=tmp / "var", database_url=url, keystore_passphrase="unused")
    with transaction(sessions) as s:
        init_region(s, keystore, settings, actor=ACTOR)
    with transaction(sessions) as s:
        dept = create_department(
            s, name="测试市市场监督管理局", uscc=uscc(1), region_code="110000", actor=ACTOR
        )
    with transaction(sessions) as s:
        cert = issue_department_certificate(s, keystore, dept, actor=ACTOR)
    try:
        yield Registry(url, sessions, keystore, settings, dept, cert)
    finally:
        keystore.close()
        engine.dispose()


@pytest.fixture(scope="module")
def seal(region: Registry) -> Seal:
    return region.seal_in(SealState.ISSUED)


def trust_of(reg: Registry) -> FileTrustSource:
    with reg.sessions() as s:
        return FileTrustSource((certificate_of(current_certificate(s, CertRole.ROOT)),))


@pytest.fixture(scope="module")
def trust(region: Registry) -> FileTrustSource:
    return trust_of(region)


@pytest.fixture(scope="session")
def helloworld(interop_dir: Path) -> bytes:
    return (interop_dir / "ofdrw-sign__helloworld.ofd").read_bytes()


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)


def seal_document(
    reg: Registry, seal: Seal, data: bytes, placement: Placement | None = None, **kwargs: Any
) -> bytes:
    """Seal ``data`` with ``seal`` of the registry's department in one transaction."""
    with transaction(reg.sessions) as s:
        return seal_ofd(
            s,
            reg.keystore,
            data,
            es_id=seal.es_id,
            department_id=reg.department.id,
            placement=placement,
            actor=SIGNER,
            **kwargs,
        )


def zip_entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist() if not n.endswith("/")}


def make_zip(entries: dict[str, bytes] | list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    items = entries.items() if isinstance(entries, dict) else entries
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, value in items:
            z.writestr(name, value)
    return buf.getvalue()


PAGE_2 = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<ofd:Page xmlns:ofd="http://www.ofdspec.org/2016"><ofd:Area><ofd:PhysicalBox>0 0 297 210'
    '</ofd:PhysicalBox></ofd:Area><ofd:Content><ofd:Layer ID="6"><ofd:TextObject ID="7" '
    'Boundary="20 30 60 6" Font="3" Size="4"><ofd:TextCode X="0" Y="4" DeltaX="g 12 4">'
    "第二页：合同签署栏目</ofd:TextCode>"
    "</ofd:TextObject></ofd:Layer></ofd:Content></ofd:Page>"
).encode()


def two_page_ofd(helloworld: bytes) -> bytes:
    """helloworld plus a landscape second page (page ID 5) that declares its own PhysicalBox."""
    entries = zip_entries(helloworld)
    old = b'<ofd:Page ID="1" BaseLoc="Pages/Page_0/Content.xml"/>'
    assert old in entries["Doc_0/Document.xml"]
    entries["Doc_0/Document.xml"] = entries["Doc_0/Document.xml"].replace(
        old, old + b'<ofd:Page ID="5" BaseLoc="Pages/Page_1/Content.xml"/>'
    )
    entries["Doc_0/Pages/Page_1/Content.xml"] = PAGE_2
    return make_zip(entries)


def audit_count(reg: Registry) -> int:
    return reg.audit_count()
