"""Fixtures for the licence store tests: a region with an issuing department (official seal), a second
department acting as a using platform, a service seal for annotated copies, and a business-licence
type — on each backend (``db_url``)."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select

from core.audit import ChainHead, current_head
from core.blobstore import BlobStore
from core.db import transaction
from licence_store import models
from licence_store.catalogue import create_type
from licence_store.issuing import LicenceServices, issue_licence
from licence_store.models import Licence, LicenceType
from licence_store.sharing import set_service_seal
from seal_registry.lifecycle import SealState
from seal_registry.models import Department, Seal
from seal_registry.pki import CertRole, certificate_of, current_certificate
from tests.conftest import require_or_skip
from tests.registry.conftest import Registry, registry, uscc  # noqa: F401 - the registry fixture
from verify import FileTrustSource, Indication, verify_bytes

SIGNER = "department_signer:licence-tester"
BASE_URL = "https://licences.example.test"
TYPE_CODE = uscc(900) + "001"
HOLDER_USCC = uscc(3)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["company_type", "registered_capital"],
    "properties": {
        "company_type": {"type": "string", "maxLength": 50, "title": "类型"},
        "registered_capital": {"type": "integer", "minimum": 0, "title": "注册资本（万元）"},
        "established": {"type": "string", "format": "date", "title": "成立日期"},
        "business_scope": {"type": "string", "maxLength": 2000, "title": "经营范围"},
    },
    "additionalProperties": False,
}

TABLES = (
    models.LicenceType,
    models.Licence,
    models.LicenceEvent,
    models.LicenceSerialCounter,
    models.LicenceGrant,
    models.LicenceAccess,
    models.LicenceObjection,
    models.LicenceImport,
    models.LicenceImportRow,
)


def metadata(n: int = 1, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "licence_number": f"91110000{n:010d}",
        "holder_name": "北京测试科技有限公司",
        "holder_code": HOLDER_USCC,
        "holder_code_type": "uscc",
        "fields": {
            "company_type": "有限责任公司",
            "registered_capital": 100,
            "established": "2020-01-02",
            "business_scope": "软件开发；技术服务。",
        },
    }
    data.update(changes)
    return data


@dataclass(frozen=True)
class Snapshot:
    counts: dict[str, int]
    head: ChainHead
    serials: dict[str, int]
    blobs: int


@dataclass
class Store:
    reg: Registry
    blobs: BlobStore
    services: LicenceServices
    seal: Seal
    platform: Department
    service_department: Department
    licence_type: LicenceType
    trust: FileTrustSource
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sessions(self) -> Any:
        return self.reg.sessions

    @property
    def department(self) -> Department:
        return self.reg.department

    def issue(self, n: int = 1, **changes: Any) -> Licence:
        with transaction(self.sessions) as s:
            return issue_licence(
                s,
                self.services,
                type_ref=TYPE_CODE,
                department_id=self.department.id,
                metadata=metadata(n, **changes),
                actor=SIGNER,
            )

    def snapshot(self) -> Snapshot:
        with self.sessions() as s:
            counts = {
                t.__tablename__: int(s.scalar(select(func.count()).select_from(t)) or 0) for t in TABLES
            }
            serials = {r.prefix: r.next_serial for r in s.scalars(select(models.LicenceSerialCounter))}
            head = current_head(s)
        blobs = sum(1 for p in self.blobs.root.rglob("*") if p.is_file() and ".tmp" not in p.parts)
        return Snapshot(counts, head, serials, blobs)

    def file(self, row: Licence) -> bytes:
        return self.blobs.get(row.ofd_sm3)


def assert_passed(data: bytes, trust: FileTrustSource) -> None:
    report = verify_bytes(data, trust=trust)
    failing = [
        (s.id, c.id, c.message_en)
        for s in report.signatures
        for c in s.checks
        if c.result.value not in ("passed", "skipped", "warning")
    ]
    assert report.indication is Indication.PASSED, failing
    assert report.signatures and all(s.indication is Indication.PASSED for s in report.signatures)


def zip_entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist() if not n.endswith("/")}


def decode_qr(png: bytes) -> str:
    """The text of the QR code in ``png``, read with an independent decoder (ZXing)."""
    try:
        import zxingcpp
    except ImportError:  # pragma: no cover - depends on the environment
        require_or_skip(False, "zxing-cpp (pip install zxing-cpp) is needed to decode QR codes")
        raise
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(found) == 1, found
    return str(found[0].text)


@pytest.fixture
def store(registry: Registry) -> Iterator[Store]:  # noqa: F811 - the registry fixture
    reg = registry
    seal = reg.seal_in(SealState.ISSUED, seal_type_key="official")
    platform, _ = reg.new_department(2)
    service_department, _ = reg.new_department(5)
    service_seal = reg.seal_in(
        SealState.ISSUED, seal_type_key="official", department_id=service_department.id
    )
    blobs = BlobStore(reg.settings.var_dir / "blobs")
    with transaction(reg.sessions) as s:
        lt = create_type(
            s,
            type_code=TYPE_CODE,
            name="营业执照",
            defining_authority_name="国家市场监督管理总局",
            metadata_schema=SCHEMA,
            seal_type="official",
            default_valid_days=3650,
            actor="admin:tester",
        )
        set_service_seal(
            s, department_id=service_department.id, es_id=service_seal.es_id, actor="admin:tester"
        )
    with reg.sessions() as s:
        root = certificate_of(current_certificate(s, CertRole.ROOT))
    yield Store(
        reg=reg,
        blobs=blobs,
        services=LicenceServices(reg.keystore, blobs, BASE_URL),
        seal=seal,
        platform=platform,
        service_department=service_department,
        licence_type=lt,
        trust=FileTrustSource((root,)),
    )


def utc(days: float = 0.0) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
