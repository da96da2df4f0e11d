"""POST /v1/sign/pdf and /v1/sign/cms over real HTTP: results verify; scoping and refusals hold."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.writer import PdfFileWriter
from sqlalchemy import select

from core.db import transaction
from core.tokens import Role
from gmpki.cms import verify_detached
from gmpki.path_validation import validate_path
from gmpki.x509 import load_certificate_der
from seal_registry import seals as seal_service
from seal_registry.demo import DEMO_USCC
from seal_registry.models import Department
from seal_registry.pki import CertRole, certificate_of, current_certificate
from seal_registry.trust_source import RegistryTrustSource
from verify import verify_bytes

from .conftest import LiveServer


def _blank_pdf() -> bytes:
    w = PdfFileWriter()
    from pyhanko.pdf_utils import generic

    page = generic.DictionaryObject(
        {
            pdf_name("/Type"): pdf_name("/Page"),
            pdf_name("/MediaBox"): generic.ArrayObject([generic.NumberObject(n) for n in (0, 0, 595, 842)]),
            pdf_name("/Resources"): generic.DictionaryObject(),
        }
    )
    w.insert_page(page)
    buf = io.BytesIO()
    w.write(buf)
    IncrementalPdfFileWriter(io.BytesIO(buf.getvalue()))  # it must be readable as a base for signing
    return buf.getvalue()


def _issued_seal(server: LiveServer) -> tuple[str, str]:
    ctx = server.ctx
    with transaction(ctx.sessions) as s:
        dept = s.scalar(select(Department).where(Department.uscc == DEMO_USCC))
        assert dept is not None
        seal = seal_service.apply_seal(
            s, department_id=dept.id, seal_type_key="official", actor="t", reason="r"
        )
        dept_id, seal_id = dept.id, seal.id
    with transaction(ctx.sessions) as s:
        seal_service.review(s, seal_id, actor="t", reason="r")
    with transaction(ctx.sessions) as s:
        seal_service.make_seal(s, ctx.keystore, seal_id, actor="t")
    with transaction(ctx.sessions) as s:
        seal_service.file_seal(s, seal_id, actor="t", reason="r")
    with transaction(ctx.sessions) as s:
        issued = seal_service.issue_seal(s, seal_id, actor="t", reason="r")
        return dept_id, issued.es_id


def test_department_seals_a_pdf_that_verifies(live_server: LiveServer) -> None:
    dept_id, es_id = _issued_seal(live_server)
    token = live_server.token(Role.DEPARTMENT_SIGNER, department_id=dept_id)
    fields = {"es_id": es_id, "page": "1", "x": "120", "y": "200", "key_kind": "ecdsa"}
    with live_server.client(token) as c:
        r = c.post("/v1/sign/pdf", data=fields, files={"file": ("a.pdf", _blank_pdf(), "application/pdf")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    ctx = live_server.ctx
    trust = RegistryTrustSource(ctx.sessions, ctx.keystore, region_code=ctx.settings.region_code)
    report = verify_bytes(r.content, trust=trust)
    assert report.indication.value == "PASSED", report.dumps()

    # Another department's signer may not use this seal; bad input is problem+json.
    other = live_server.token(Role.DEPARTMENT_SIGNER, department_id="someone-else")
    with live_server.client(other) as c:
        r = c.post("/v1/sign/pdf", data=fields, files={"file": ("a.pdf", _blank_pdf(), "application/pdf")})
        assert r.status_code == 403
    with live_server.client(token) as c:
        r = c.post(
            "/v1/sign/pdf", data=fields, files={"file": ("a.pdf", b"%PDF-1.7 broken", "application/pdf")}
        )
        assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
        r = c.post(
            "/v1/sign/pdf", data={"es_id": es_id}, files={"file": ("a.pdf", _blank_pdf(), "application/pdf")}
        )
        assert r.status_code == 400 and r.json()["code"] == "invalid_input"


def test_department_makes_a_detached_cms_and_a_cancelled_seal_refuses(live_server: LiveServer) -> None:
    dept_id, es_id = _issued_seal(live_server)
    token = live_server.token(Role.DEPARTMENT_SIGNER, department_id=dept_id)
    content = "任意文件 any file".encode() * 100
    with live_server.client(token) as c:
        r = c.post("/v1/sign/cms", data={"es_id": es_id}, files={"file": ("x.bin", content, "text/plain")})
    assert r.status_code == 200, r.text
    result = verify_detached(r.content, content)
    assert result.ok and result.digest_ok and result.signature_ok
    with live_server.ctx.sessions() as s:
        root = certificate_of(current_certificate(s, CertRole.ROOT))
    signer = load_certificate_der(result.signer_certificate)
    validate_path(signer, trust_anchors=[root], at=datetime.now(UTC))
    assert not verify_detached(r.content, content + b"!").ok

    ctx = live_server.ctx
    with transaction(ctx.sessions) as s:
        seal = seal_service.get_seal(s, es_id)
        seal_service.cancel(s, seal.id, actor="t", reason="lost")
    with live_server.client(token) as c:
        r = c.post("/v1/sign/cms", data={"es_id": es_id}, files={"file": ("x.bin", content, "text/plain")})
    assert r.status_code == 409 and r.json()["code"] == "not_usable"
