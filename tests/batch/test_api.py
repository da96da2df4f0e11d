"""Batch jobs over real HTTP on both backends: JSON (base64) and multipart (files and a ZIP) creation,
background runs polled to completion, JSON/CSV results, downloads that verify, idempotent re-submission,
department scoping, hostile archives, and ``timestamp=true`` on the single-document sign routes."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import time
import zipfile
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from core.audit import AuditEntry
from core.tokens import Role
from gmpki.sm3 import sm3_hex
from seal_registry.pki import CertRole, certificate_of, current_certificate
from signer.batch import INLINE_BELOW
from tests.api.conftest import LiveServer
from tests.registry.conftest import PICTURE, uscc
from verify import FileTrustSource, Indication, verify_bytes

from .conftest import licence_ofd
from .test_timestamps import check_token, signed_value_of

pytestmark = pytest.mark.interop
PROBLEM = "application/problem+json"


def _ok(r: httpx.Response, code: int = 200) -> Any:
    assert r.status_code == code, r.text
    return r.json()


def _problem(r: httpx.Response, status_code: int, code: str) -> None:
    assert r.status_code == status_code, r.text
    assert r.headers["content-type"].startswith(PROBLEM) and r.json()["code"] == code, r.text


def _department(c: httpx.Client, n: int) -> str:
    dept = _ok(c.post("/v1/departments", json={"name": f"批量接口部门{n}", "uscc": uscc(500 + n)}), 201)
    _ok(c.post(f"/v1/departments/{dept['id']}/certificates"), 201)
    return str(dept["id"])


def _issued_seal(c: httpx.Client, department_id: str) -> str:
    body = {
        "department_id": department_id,
        "seal_type": "contract",
        "picture_base64": base64.b64encode(PICTURE).decode(),
        "picture_type": "png",
    }
    seal = _ok(c.post("/v1/seals", json=body), 201)
    for action in ("review", "make", "file", "issue"):
        _ok(c.post(f"/v1/seals/{seal['id']}/{action}", json={"reason": "ok"}))
    return str(seal["es_id"])


def _wait(c: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while True:
        job: dict[str, Any] = _ok(c.get(f"/v1/batch/{job_id}"))
        if job["progress"]["pending"] == 0 and not job["running"]:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_batch_over_http(live_server: LiveServer, helloworld: bytes) -> None:
    officer = live_server.token(Role.SEAL_OFFICER)
    with live_server.client(officer) as c:
        a, b = _department(c, 1), _department(c, 2)
        seal_a, seal_b = _issued_seal(c, a), _issued_seal(c, b)
    signer_a = live_server.token(Role.DEPARTMENT_SIGNER, department_id=a)
    signer_b = live_server.token(Role.DEPARTMENT_SIGNER, department_id=b)
    with live_server.ctx.sessions() as s:
        root = certificate_of(current_certificate(s, CertRole.ROOT))
    trust = FileTrustSource((root,))
    docs = {f"证照-{n}.ofd": licence_ofd(helloworld, n) for n in range(5)}

    with live_server.client(signer_a) as c:
        items = [{"key": k, "data_base64": _b64(v)} for k, v in docs.items()]
        job = _ok(
            c.post("/v1/batch", json={"es_id": seal_a, "page": 1, "x": 20, "y": 30, "items": items}), 201
        )
        assert job["progress"] == {"total": 5, "pending": 5, "done": 0, "failed": 0}
        assert job["placement"] == {"page": 1, "x": 20.0, "y": 30.0} and job["department_id"] == a
        assert all(i["created"] and i["state"] == "pending" for i in job["items"])
        job_id = job["id"]
        assert _ok(c.post(f"/v1/batch/{job_id}/run", json={"workers": 2}), 202)["id"] == job_id
        finished = _wait(c, job_id)
        assert finished["progress"]["done"] == 5 and finished["finished_at"] is not None

        results = _ok(c.get(f"/v1/batch/{job_id}/results"))
        assert {i["key"]: i["state"] for i in results["items"]} == dict.fromkeys(docs, "done")
        for item in results["items"]:
            r = c.get(f"/v1/batch/{job_id}/items/{item['key']}/output")
            assert r.status_code == 200 and r.headers["content-type"] == "application/ofd"
            assert sm3_hex(r.content) == item["output_sm3"] == r.headers["x-output-sm3"]
            assert verify_bytes(r.content, trust=trust).indication is Indication.PASSED
        table = c.get(f"/v1/batch/{job_id}/results", params={"format": "csv"})
        assert table.status_code == 200 and table.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(table.text)))
        assert {r["key"]: r["output_sm3"] for r in rows} == {
            i["key"]: i["output_sm3"] for i in results["items"]
        }

        # Re-submitting returns the existing results; running again signs nothing.
        with live_server.ctx.sessions() as s:
            audit_before = s.scalar(select(func.count()).select_from(AuditEntry))
        again = _ok(c.post(f"/v1/batch/{job_id}/items", json={"items": items[:2]}))
        assert [(i["created"], i["state"]) for i in again["items"]] == [(False, "done")] * 2
        _ok(c.post(f"/v1/batch/{job_id}/run"), 202)
        assert _wait(c, job_id)["progress"]["done"] == 5
        with live_server.ctx.sessions() as s:
            assert s.scalar(select(func.count()).select_from(AuditEntry)) == audit_before
        other = {"key": items[0]["key"], "data_base64": _b64(licence_ofd(helloworld, 99))}
        _problem(c.post(f"/v1/batch/{job_id}/items", json={"items": [other]}), 409, "conflict")
        _problem(c.get(f"/v1/batch/{job_id}/items/nope.ofd/output"), 404, "not_found")

        # Multipart: files keyed by their names plus a ZIP; a time-stamped SES job.
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("zip/a.ofd", licence_ofd(helloworld, 20))
            z.writestr("zip/b.ofd", licence_ofd(helloworld, 21))
        files = [
            ("file", ("x.ofd", licence_ofd(helloworld, 22), "application/ofd")),
            ("archive", ("more.zip", archive.getvalue(), "application/zip")),
        ]
        multi = _ok(
            c.post("/v1/batch", data={"es_id": seal_a, "keyword": "LIC", "name": "multi"}, files=files), 201
        )
        assert sorted(i["key"] for i in multi["items"]) == ["x.ofd", "zip/a.ofd", "zip/b.ofd"]
        _ok(c.post(f"/v1/batch/{multi['id']}/run"), 202)
        assert _wait(c, multi["id"])["progress"]["done"] == 3
        ses_job = _ok(
            c.post(
                "/v1/batch",
                json={
                    "es_id": seal_a,
                    "kind": "ses",
                    "timestamp": True,
                    "items": [{"key": "a.txt", "data_base64": _b64(b"a")}],
                },
            ),
            201,
        )
        _ok(c.post(f"/v1/batch/{ses_job['id']}/run"), 202)
        assert _wait(c, ses_job["id"])["progress"]["done"] == 1
        signature = c.get(f"/v1/batch/{ses_job['id']}/items/a.txt/output").content
        check_token(signature, root, near=dt.datetime.now(dt.UTC))

        # Hostile archives are refused before a job exists.
        bomb = io.BytesIO()
        with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("bomb.ofd", bytes(8 * 1024 * 1024))
        bad = [("archive", ("bomb.zip", bomb.getvalue(), "application/zip"))]
        _problem(c.post("/v1/batch", data={"es_id": seal_a}, files=bad), 413, "input_too_large")
        escape = io.BytesIO()
        with zipfile.ZipFile(escape, "w") as z:
            z.writestr("../escape.ofd", b"x")
        bad = [("archive", ("escape.zip", escape.getvalue(), "application/zip"))]
        _problem(c.post("/v1/batch", data={"es_id": seal_a}, files=bad), 400, "malformed_data")

        # Scope: another department's seal, job or department id.
        _problem(c.post("/v1/batch", json={"es_id": seal_b}), 403, "permission_denied")
        _problem(c.post("/v1/batch", json={"es_id": seal_a, "department_id": b}), 403, "permission_denied")

        # The single-document routes take timestamp=true too.
        r = c.post(
            "/v1/sign/ofd",
            files={"file": ("t.ofd", helloworld, "application/ofd")},
            data={"es_id": seal_a, "timestamp": "true"},
        )
        assert r.status_code == 200, r.text
        check_token(signed_value_of(r.content), root, near=dt.datetime.now(dt.UTC))

    with live_server.client(signer_b) as c:
        _problem(c.get(f"/v1/batch/{job_id}"), 403, "permission_denied")
        _problem(c.get(f"/v1/batch/{job_id}/items/{items[0]['key']}/output"), 403, "permission_denied")
        _problem(c.post(f"/v1/batch/{job_id}/run"), 403, "permission_denied")
    with live_server.client(live_server.admin_token) as c:
        _problem(c.post("/v1/batch", json={"es_id": seal_a}), 403, "permission_denied")
    with live_server.client() as c:
        assert c.get(f"/v1/batch/{job_id}").status_code == 401


def test_job_above_the_inline_limit_runs_in_a_pool_for_the_server(
    live_server: LiveServer, helloworld: bytes
) -> None:
    """The server runs jobs in a thread of its (threaded) process, so a job too large to run inline
    gets its pool from the fork server; every item is sealed once and verifies."""
    officer = live_server.token(Role.SEAL_OFFICER)
    with live_server.client(officer) as c:
        department = _department(c, 3)
        es_id = _issued_seal(c, department)
    signer = live_server.token(Role.DEPARTMENT_SIGNER, department_id=department)
    with live_server.ctx.sessions() as s:
        trust = FileTrustSource((certificate_of(current_certificate(s, CertRole.ROOT)),))
    count = INLINE_BELOW + 6
    docs = {f"pool-{n}.ofd": licence_ofd(helloworld, 200 + n) for n in range(count)}
    with live_server.client(signer) as c:
        items = [{"key": k, "data_base64": _b64(v)} for k, v in docs.items()]
        job_id = _ok(c.post("/v1/batch", json={"es_id": es_id, "items": items}), 201)["id"]
        _ok(c.post(f"/v1/batch/{job_id}/run", json={"workers": 2}), 202)
        finished = _wait(c, job_id)
        assert finished["progress"] == {"total": count, "pending": 0, "done": count, "failed": 0}
        results = _ok(c.get(f"/v1/batch/{job_id}/results"))["items"]
        assert len({i["output_sm3"] for i in results}) == count
        for item in results[:: count // 5]:
            r = c.get(f"/v1/batch/{job_id}/items/{item['key']}/output")
            assert verify_bytes(r.content, trust=trust).indication is Indication.PASSED
