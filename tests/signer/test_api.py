"""Signing over real HTTP: OFD (multipart and raw), SES, digest (two-step, also through the client and
the CLI's ``--server``), role scoping, refusals and the upload limit."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from api.cli import app
from core.audit import AuditEntry
from core.tokens import Role
from gmpki import seal as ses
from gmpki.sm3 import sm3
from seal_registry.pki import CertRole, certificate_of, current_certificate
from signer.ofd_sealing import SealMode
from signer.placement import Riding
from signer.two_step import TwoStepClient, remote_seal_ofd, remote_sign_data
from tests.api.conftest import LiveServer
from tests.registry.conftest import PICTURE, uscc
from verify import FileTrustSource, Indication, verify_bytes

from .conftest import two_page_ofd

pytestmark = pytest.mark.interop
PROBLEM = "application/problem+json"


def _ok(r: httpx.Response, code: int = 200) -> Any:
    assert r.status_code == code, r.text
    return r.json()


def _problem(r: httpx.Response, status_code: int, code: str) -> None:
    assert r.status_code == status_code, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["code"] == code, r.text


def _department(c: httpx.Client, n: int) -> str:
    dept = _ok(c.post("/v1/departments", json={"name": f"签章接口部门{n}", "uscc": uscc(300 + n)}), 201)
    _ok(c.post(f"/v1/departments/{dept['id']}/certificates"), 201)
    return str(dept["id"])


def _issued_seal(c: httpx.Client, department_id: str) -> str:
    seal = _ok(
        c.post(
            "/v1/seals",
            json={
                "department_id": department_id,
                "seal_type": "contract",
                "picture_base64": base64.b64encode(PICTURE).decode(),
                "picture_type": "png",
            },
        ),
        201,
    )
    for action in ("review", "make", "file", "issue"):
        _ok(c.post(f"/v1/seals/{seal['id']}/{action}", json={"reason": "ok"}))
    return str(seal["es_id"])


def _trust(server: LiveServer) -> FileTrustSource:
    with server.ctx.sessions() as s:
        return FileTrustSource((certificate_of(current_certificate(s, CertRole.ROOT)),))


def _signatures_made(server: LiveServer) -> int:
    with server.ctx.sessions() as s:
        return int(
            s.scalar(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "signature.made")
            )
            or 0
        )


def _passed(data: bytes, trust: FileTrustSource) -> None:
    report = verify_bytes(data, trust=trust)
    assert report.indication is Indication.PASSED, report.dumps()


@pytest.fixture
def setup(live_server: LiveServer) -> dict[str, str]:
    officer = live_server.token(Role.SEAL_OFFICER)
    with live_server.client(officer) as c:
        a, b = _department(c, 1), _department(c, 2)
        seal_a, seal_b = _issued_seal(c, a), _issued_seal(c, b)
        suspended = _issued_seal(c, a)
        _ok(c.post(f"/v1/seals/{suspended}/suspend", json={"reason": "lost"}))
    return {
        "a": a,
        "seal_a": seal_a,
        "seal_b": seal_b,
        "suspended": suspended,
        "officer": officer,
        "signer_a": live_server.token(Role.DEPARTMENT_SIGNER, department_id=a),
        "signer_b": live_server.token(Role.DEPARTMENT_SIGNER, department_id=b),
    }


def test_signing_over_http(
    live_server: LiveServer, setup: dict[str, str], helloworld: bytes, tmp_path: Path
) -> None:
    trust = _trust(live_server)
    seal_a = setup["seal_a"]
    with live_server.client(setup["signer_a"]) as c:
        # Multipart: file + fields.
        r = c.post(
            "/v1/sign/ofd",
            files={"file": ("合同.ofd", helloworld, "application/ofd")},
            data={"es_id": seal_a, "page": "1", "x": "100", "y": "150"},
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/ofd"
        assert "filename*=UTF-8''%E5%90%88%E5%90%8C.sealed.ofd" in r.headers["content-disposition"]
        _passed(r.content, trust)
        with live_server.ctx.sessions() as s:
            entry = s.scalar(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1))
            assert entry is not None
            details = entry.details_dict()
        assert entry.action == "signature.made" and entry.actor.startswith("department_signer:")
        assert details["document_sm3"] == sm3(helloworld).hex() and details["document_name"] == "合同.ofd"

        # Raw body + query parameters: riding seal, protect-all; the locked result refuses another seal.
        r = c.post(
            "/v1/sign/ofd",
            params={"es_id": seal_a, "riding": "true", "mode": "protect_all"},
            content=two_page_ofd(helloworld),
            headers={"content-type": "application/ofd"},
        )
        assert r.status_code == 200, r.text
        _passed(r.content, trust)
        _problem(
            c.post("/v1/sign/ofd", params={"es_id": seal_a}, content=r.content),
            409,
            "document_fully_protected",
        )

        # Detached SES over any data.
        data = b"%PDF-1.7 pretend contract"
        r = c.post("/v1/sign/ses", params={"es_id": seal_a, "name": "c.pdf"}, content=data)
        assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
        assert ses.parse_ses_signature(r.content).property_info == "file:c.pdf"
        report = verify_bytes(r.content, detached_data=data, trust=trust)
        assert report.indication is Indication.PASSED, report.dumps()

        # Two-step by hand: the digest only.
        digest = sm3(data)
        body = _ok(c.post("/v1/sign/digest", json={"es_id": seal_a, "digest_hex": digest.hex()}))
        signature = base64.b64decode(body["ses_signature"])
        parsed = ses.parse_ses_signature(signature)
        assert parsed.data_hash == digest and body["property_info"] == "sm3:" + digest.hex()
        assert (
            base64.b64decode(body["seal"]) == parsed.seal.raw
            and body["seal_sm3"] == sm3(parsed.seal.raw).hex()
        )
        assert verify_bytes(signature, detached_data=data, trust=trust).indication is Indication.PASSED

    # Two-step through the client: the OFD never leaves this process.
    with TwoStepClient(live_server.url, setup["signer_a"]) as client:
        before = _signatures_made(live_server)
        document = two_page_ofd(helloworld)
        _passed(remote_seal_ofd(client, document, es_id=seal_a, placement=Riding()), trust)
        with live_server.ctx.sessions() as s:
            last = s.scalar(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1))
            assert last is not None
            remote_details = last.details_dict()
        assert remote_details["two_step"] is True and remote_details["document_sm3_source"] == "client"
        assert remote_details["document_sm3"] == sm3(document).hex()
        assert remote_details["property_info"] == "/Doc_0/Signs/Sign_0/Signature.xml"
        result = remote_sign_data(client, [b"big ", b"file"], es_id=seal_a, name="big.bin")
        assert result.data_hash == sm3(b"big file") and result.property_info == "file:big.bin"
        assert _signatures_made(live_server) == before + 2
        with pytest.raises(Exception) as refused:
            remote_seal_ofd(client, helloworld, es_id=setup["seal_b"], placement=None, mode=SealMode.CONTINUE)
        assert getattr(refused.value, "code", None) == "permission_denied"

    # And through the CLI's --server flag.
    source, output = tmp_path / "in.ofd", tmp_path / "out.ofd"
    source.write_bytes(helloworld)
    remote = ["--server", live_server.url, "--token", setup["signer_a"]]
    result_cli = CliRunner().invoke(
        app, ["sign", "ofd", str(source), "--seal", seal_a, "--keyword", "OFD", "-o", str(output), *remote]
    )
    assert result_cli.exit_code == 0, result_cli.output
    _passed(output.read_bytes(), trust)
    result_cli = CliRunner().invoke(
        app, ["sign", "ofd", str(source), "--seal", setup["seal_b"], "-o", str(tmp_path / "no.ofd"), *remote]
    )
    assert result_cli.exit_code == 2 and "permission_denied" in result_cli.stderr
    assert not (tmp_path / "no.ofd").exists()


def test_who_may_sign_and_what_is_refused(
    live_server: LiveServer, setup: dict[str, str], helloworld: bytes
) -> None:
    seal_a = setup["seal_a"]
    before = _signatures_made(live_server)
    form = {"files": {"file": ("a.ofd", helloworld)}, "data": {"es_id": seal_a}}
    digest = {"es_id": seal_a, "digest_hex": sm3(b"x").hex()}

    # Another department's signer, admin and seal officer: 403; nobody: 401.
    for token, status, code in (
        (setup["signer_b"], 403, "permission_denied"),
        (live_server.admin_token, 403, "permission_denied"),
        (setup["officer"], 403, "permission_denied"),
        (None, 401, "unauthenticated"),
    ):
        with live_server.client(token) as c:
            _problem(c.post("/v1/sign/ofd", **form), status, code)  # type: ignore[arg-type]
            _problem(c.post("/v1/sign/ses", params={"es_id": seal_a}, content=b"data"), status, code)
            _problem(c.post("/v1/sign/digest", json=digest), status, code)
    with live_server.client(setup["signer_b"]) as c:
        # Naming the other department explicitly does not help.
        _problem(
            c.post("/v1/sign/digest", json={**digest, "department_id": setup["a"]}), 403, "permission_denied"
        )

    with live_server.client(setup["signer_a"]) as c:
        _problem(
            c.post("/v1/sign/ofd", params={"es_id": setup["suspended"]}, content=helloworld),
            409,
            "not_usable",
        )
        _problem(
            c.post("/v1/sign/ofd", params={"es_id": "11000002999999"}, content=helloworld), 404, "not_found"
        )
        _problem(
            c.post("/v1/sign/ofd", params={"es_id": seal_a}, content=b"PK\x03\x04junk"), 400, "malformed_data"
        )
        _problem(c.post("/v1/sign/ofd", content=helloworld), 400, "invalid_input")  # no es_id
        _problem(
            c.post("/v1/sign/ofd", params={"es_id": seal_a, "x": "abc", "y": "1"}, content=helloworld),
            400,
            "invalid_input",
        )
        _problem(
            c.post("/v1/sign/ofd", params={"es_id": seal_a, "keyword": "无此词"}, content=helloworld),
            400,
            "invalid_input",
        )
        _problem(c.post("/v1/sign/ofd", params={"es_id": seal_a}, content=b""), 400, "invalid_input")
        _problem(
            c.post("/v1/sign/digest", json={"es_id": seal_a, "digest_hex": "zz" * 32}), 400, "invalid_input"
        )
        _problem(
            c.post("/v1/sign/digest", json={"es_id": seal_a, "digest_hex": "00"}), 422, "validation_error"
        )

        settings = live_server.ctx.settings
        limit = settings.max_upload_bytes
        settings.max_upload_bytes = len(helloworld) - 1
        try:
            _problem(
                c.post("/v1/sign/ofd", params={"es_id": seal_a}, content=helloworld), 413, "input_too_large"
            )
            _problem(c.post("/v1/sign/ofd", **form), 413, "input_too_large")  # type: ignore[arg-type]
        finally:
            settings.max_upload_bytes = limit
    assert _signatures_made(live_server) == before
