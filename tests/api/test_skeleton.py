"""The service skeleton over real HTTP: health, metrics, problem+json, auth and roles, PKI, audit."""

from __future__ import annotations

from datetime import UTC, datetime

from asn1crypto import x509 as asn1_x509
from sqlalchemy import text

from core.tokens import Role
from gmpki.crl import load_crl_der
from gmpki.path_validation import validate_path
from gmpki.x509 import load_certificate

from .conftest import LiveServer


def test_health_ready_metrics(live_server: LiveServer) -> None:
    with live_server.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "keystore": "ok"}
        metrics = c.get("/metrics").text
        assert 'eseal_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics


def test_openapi_documents_routes(live_server: LiveServer) -> None:
    with live_server.client() as c:
        spec = c.get("/openapi.json").json()
    for path in ("/healthz", "/v1/tokens", "/v1/audit/verify", "/v1/ca/certificates", "/v1/ca/crl"):
        assert path in spec["paths"], path


def test_problem_json_for_unknown_route_and_bad_token(live_server: LiveServer) -> None:
    with live_server.client() as c:
        r = c.get("/v1/nope")
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "not_found"
    with live_server.client("es_not-a-real-token") as c:
        r = c.get("/v1/tokens")
        assert r.status_code == 401
        assert r.json()["code"] == "unauthenticated"
        assert r.headers["www-authenticate"] == "Bearer"


def test_roles_are_enforced(live_server: LiveServer) -> None:
    with live_server.client() as anonymous:
        r = anonymous.get("/v1/tokens")
        assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
    auditor = live_server.token(Role.AUDITOR)
    with live_server.client(auditor) as c:
        assert c.get("/v1/tokens").status_code == 403
        assert c.get("/v1/audit/verify").status_code == 200


def test_token_lifecycle_and_validation(live_server: LiveServer) -> None:
    with live_server.client(live_server.admin_token) as admin:
        r = admin.post("/v1/tokens", json={"name": "auditor-1", "role": "auditor"})
        assert r.status_code == 201
        created = r.json()
        clear = created["token"]
        assert clear.startswith("es_")
        # A department token must name its department; the error is problem+json with a stable code.
        bad = admin.post("/v1/tokens", json={"name": "x", "role": "department_signer"})
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_input"
        invalid = admin.post("/v1/tokens", json={"name": "x", "role": "emperor"})
        assert invalid.status_code == 422 and invalid.json()["code"] == "validation_error"
        listed = admin.get("/v1/tokens").json()
        assert all("token" not in t for t in listed)
    with live_server.client(clear) as c:
        assert c.get("/v1/audit/verify").status_code == 200
    with live_server.client(live_server.admin_token) as admin:
        assert admin.delete(f"/v1/tokens/{created['id']}").status_code == 200
    with live_server.client(clear) as c:
        assert c.get("/v1/audit/verify").status_code == 401
    # Only the hash is stored.
    with live_server.ctx.engine.connect() as conn:
        stored = [row[0] for row in conn.execute(text("select token_hash from api_tokens"))]
    assert clear not in stored and all(len(h) == 64 for h in stored)


def test_region_chain_validates_and_crl_lists_revocation(live_server: LiveServer) -> None:
    with live_server.client() as c:
        certs = c.get("/v1/ca/certificates").json()
        roles = {x["role"] for x in certs}
        assert {"root", "seal_maker", "tsa", "service", "department"} <= roles
        root_row = next(x for x in certs if x["role"] == "root")
        dept_row = next(x for x in certs if x["role"] == "department")
        root = load_certificate(c.get(f"/v1/ca/certificates/{root_row['id']}.pem").content)
        dept = load_certificate(c.get(f"/v1/ca/certificates/{dept_row['id']}.pem").content)
    assert root.is_ca and not dept.is_ca
    assert dept.verify_signature(root.public_key)
    validate_path(dept, trust_anchors=[root], at=datetime.now(UTC))
    officer = live_server.token(Role.SEAL_OFFICER)
    with live_server.client(officer) as c:
        r = c.post(f"/v1/ca/certificates/{dept_row['id']}/revoke", json={"reason": "key_compromise"})
        assert r.status_code == 200 and r.json()["revoked_at"]
        again = c.post(f"/v1/ca/certificates/{dept_row['id']}/revoke", json={"reason": "key_compromise"})
        assert again.status_code == 409 and again.json()["code"] == "conflict"
        crl = load_crl_der(c.get("/v1/ca/crl").content)
    assert crl.verify_signature(root.public_key)
    assert crl.is_revoked(dept.serial)
    assert isinstance(root.asn1, asn1_x509.Certificate)


def test_audit_chain_covers_api_changes(live_server: LiveServer) -> None:
    with live_server.client(live_server.admin_token) as admin:
        admin.post("/v1/tokens", json={"name": "a", "role": "auditor"})
        report = admin.get("/v1/audit/verify").json()
    assert report["ok"] is True
    assert report["entries_checked"] >= 4  # region, department, certificate, token
    with live_server.ctx.engine.begin() as conn:
        conn.execute(text("update audit_entries set actor = 'mallory' where seq = 2"))
    with live_server.client(live_server.admin_token) as admin:
        report = admin.get("/v1/audit/verify").json()
    assert report["ok"] is False and report["broken_seq"] == 2 and report["reason"] == "hash_mismatch"
