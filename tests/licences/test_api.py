"""The licence API over real HTTP: issue, the QR code leading to the public check, change and revoke as
the check reports them, holder grants and annotated copies, 403 + access log without a valid grant,
precise refusals (metadata, identifiers, oversized uploads, malformed CSV) that change nothing, rate
limiting, objections and stock imports."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select, update

from api.app import create_app
from api.context import ServiceContext, open_context
from core.db import transaction
from core.settings import Settings
from core.tokens import Role, issue_token
from licence_store.identifier import parse_identifier
from licence_store.models import LicenceGrant
from licence_store.rate_limit import TokenBucket
from seal_registry.lifecycle import SealState
from seal_registry.models import PkiCertificate
from seal_registry.pki import CertRole, certificate_of, current_certificate, init_region
from tests.registry.conftest import Registry, uscc
from verify import FileTrustSource

from .conftest import HOLDER_USCC, SCHEMA, TYPE_CODE, assert_passed, decode_qr, metadata, utc, zip_entries

PROBLEM = "application/problem+json"
UPLOAD_LIMIT = 200_000


@dataclass
class Api:
    url: str
    app: FastAPI
    ctx: ServiceContext
    reg: Registry
    tokens: dict[str, str]
    platform_id: str
    trust: FileTrustSource

    def client(self, who: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def head(self) -> tuple[int, str]:
        from core.audit import current_head

        with self.ctx.sessions() as s:
            h = current_head(s)
            return h.seq, h.entry_hash


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[Api]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        var_dir=tmp_path / "var",
        database_url=db_url,
        keystore_passphrase="licence api passphrase",
        public_base_url=url,
        max_upload_bytes=UPLOAD_LIMIT,
    )
    ctx = open_context(settings)
    with transaction(ctx.sessions) as s:
        init_region(s, ctx.keystore, settings, actor="test")
    reg = Registry(db_url, ctx.sessions, ctx.keystore, settings, None, None)  # type: ignore[arg-type]
    dept, cert = reg.new_department(1)
    reg.department, reg.certificate = dept, cert  # type: ignore[assignment]
    reg.seal_in(SealState.ISSUED, seal_type_key="official")
    platform, _ = reg.new_department(2)
    service, _ = reg.new_department(5)
    service_seal = reg.seal_in(SealState.ISSUED, seal_type_key="official", department_id=service.id)
    tokens: dict[str, str] = {}
    with transaction(ctx.sessions) as s:
        for name, role, extra in (
            ("admin", Role.ADMIN, {}),
            ("issuer", Role.DEPARTMENT_SIGNER, {"department_id": dept.id}),
            ("platform", Role.DEPARTMENT_SIGNER, {"department_id": platform.id}),
            ("holder", Role.HOLDER, {"holder_id": HOLDER_USCC}),
            ("stranger", Role.HOLDER, {"holder_id": "91110000000000000X"}),
            ("auditor", Role.AUDITOR, {}),
        ):
            tokens[name] = issue_token(s, name=name, role=role, **extra)[1]
        root = certificate_of(current_certificate(s, CertRole.ROOT))
        assert s.scalar(select(PkiCertificate.id).limit(1)) is not None
    app = create_app(settings, context=ctx)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    env = Api(url, app, ctx, reg, tokens, platform.id, FileTrustSource((root,)))
    with env.client("admin") as c:
        _ok(
            c.post(
                "/v1/licence-types",
                json={
                    "type_code": TYPE_CODE,
                    "name": "营业执照",
                    "defining_authority_name": "国家市场监督管理总局",
                    "metadata_schema": SCHEMA,
                    "seal_type": "official",
                    "default_valid_days": 3650,
                },
            ),
            201,
        )
        _ok(
            c.put("/v1/licence-service-seal", json={"department_id": service.id, "es_id": service_seal.es_id})
        )
    try:
        yield env
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        ctx.close()


def _ok(r: httpx.Response, code: int = 200) -> Any:
    assert r.status_code == code, r.text
    return r.json() if r.headers.get("content-type", "").startswith("application/json") else r.content


def _problem(r: httpx.Response, status_code: int, code: str) -> dict[str, Any]:
    assert r.status_code == status_code, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["code"] == code, body
    return body


def _issue(api: Api, n: int = 1, **changes: Any) -> dict[str, Any]:
    with api.client("issuer") as c:
        body: dict[str, Any] = _ok(
            c.post("/v1/licences", json={"type": TYPE_CODE, "metadata": metadata(n, **changes)}), 201
        )
        return body


def test_issue_qr_check_change_revoke(api: Api) -> None:
    issued = _issue(api)
    ident = issued["identifier"]
    assert issued["verify_url"] == f"{api.url}/v1/licences/check?id={ident}"
    with api.client("issuer") as c:
        r = c.get(f"/v1/licences/{ident}/file")
        assert r.status_code == 200 and r.headers["content-type"] == "application/ofd"
        data = r.content
    assert_passed(data, api.trust)

    # The QR code, decoded from the file, is a URL that answers the public check.
    url = decode_qr(zip_entries(data)["Doc_0/Res/qr.png"])
    public = _ok(httpx.get(url, timeout=30))
    assert public["identifier"] == ident and public["valid"] is True and public["status"] == "01"
    assert public["holder_name"] == "北京******公司" and public["file_sm3"] == issued["file_sm3"]
    with api.client("holder") as c:
        assert _ok(c.get("/v1/licences/check", params={"qr": url}))["holder_name"] == "北京测试科技有限公司"
    with api.client() as c:
        matches = _ok(c.post("/v1/licences/check", params={"id": ident}, content=data))
        assert matches["file_matches"] is True
        assert (
            _ok(c.post("/v1/licences/check", params={"qr": url}, content=b"PK\x03\x04 forged"))[
                "file_matches"
            ]
            is False
        )

    with api.client("issuer") as c:
        changed = _ok(
            c.post(f"/v1/licences/{ident}/change", json={"changes": {"holder_name": "北京改名科技有限公司"}})
        )
    assert changed["version"] == 2 and changed["previous_identifier"] == ident
    old = _ok(httpx.get(url, timeout=30))
    assert (
        old["superseded"] is True
        and old["valid"] is False
        and old["latest_identifier"] == changed["identifier"]
    )

    with api.client("platform") as c:  # another department cannot revoke it
        _problem(
            c.post(f"/v1/licences/{changed['identifier']}/revoke", json={"reason": "x"}),
            403,
            "permission_denied",
        )
    with api.client("issuer") as c:
        _problem(c.post(f"/v1/licences/{changed['identifier']}/revoke", json={}), 400, "invalid_input")
        revoked = _ok(
            c.post(f"/v1/licences/{changed['identifier']}/revoke", json={"reason": "以欺骗手段取得"})
        )
    assert revoked["status"] == "03"
    check = _ok(httpx.get(f"{api.url}/v1/licences/check", params={"id": changed["identifier"]}, timeout=30))
    assert (check["status"], check["status_en"], check["valid"]) == ("03", "revoked", False)

    with api.client("issuer") as c:
        versions = _ok(c.get(f"/v1/licences/{ident}/versions"))
        assert [v["status"] for v in versions] == ["99", "03"]
        found = _ok(c.get("/v1/licences", params={"holder_code": HOLDER_USCC, "all_versions": True}))
        assert found["total"] == 2
    with api.client("holder") as c:
        mine = _ok(c.get("/v1/holder/licences"))
        assert [m["identifier"] for m in mine["items"]] == [changed["identifier"]]
    with api.client("admin") as c:  # administrators may not issue (separation of duties)
        _problem(
            c.post("/v1/licences", json={"type": TYPE_CODE, "metadata": metadata(5)}),
            403,
            "permission_denied",
        )


def test_grants_annotated_copies_and_refusals_are_logged(api: Api) -> None:
    ident = _issue(api)["identifier"]
    with api.client("platform") as c:
        body = _problem(c.get(f"/v1/licences/{ident}/copy"), 403, "licence_grant_required")
        assert body["details"]["reason"] == "no_grant"
        _problem(c.get(f"/v1/licences/{ident}/file"), 403, "licence_grant_required")
        _problem(c.get(f"/v1/licences/{ident}"), 403, "licence_grant_required")
    with api.client("auditor") as c:
        log = _ok(c.get("/v1/licence-access", params={"identifier": ident, "action": "denied"}))
    assert log["total"] == 3
    assert {e["actor_department_id"] for e in log["items"]} == {api.platform_id}

    with api.client("stranger") as c:  # not their licence: they cannot grant it
        _problem(
            c.post(
                "/v1/holder/grants",
                json={
                    "identifier": ident,
                    "department_id": api.platform_id,
                    "purpose": "x",
                    "valid_until": utc(1).isoformat(),
                },
            ),
            404,
            "not_found",
        )
    with api.client("holder") as c:
        grant = _ok(
            c.post(
                "/v1/holder/grants",
                json={
                    "identifier": ident,
                    "department_id": api.platform_id,
                    "purpose": "政府采购投标",
                    "valid_until": utc(7).isoformat(),
                },
            ),
            201,
        )
    with api.client("platform") as c:
        r = c.get(f"/v1/licences/{ident}/copy")
        assert r.status_code == 200, r.text
        assert r.headers["x-licence-grant"] == grant["id"]
        record = _ok(c.get(f"/v1/licences/{ident}"))
        assert record["holder_name"] == "北京测试科技有限公司"
        assert _ok(c.get("/v1/licences/check", params={"id": ident}))["holder_name_masked"] is False
        _problem(c.get(f"/v1/licences/{ident}/file"), 403, "licence_grant_required")  # copies only
    assert_passed(r.content, api.trust)
    assert zip_entries(r.content)["Doc_0/Attachs/licence.ofd"]
    with api.client("holder") as c:
        uses = _ok(c.get("/v1/holder/uses"))
        actions = [u["action"] for u in uses["items"]]  # newest first
        assert actions == ["denied", "verify", "read", "copy", "denied", "denied", "denied"]
        assert uses["items"][3]["purpose"] == "政府采购投标" and uses["items"][3]["grant_id"] == grant["id"]

    # Expired grant: refused again, and logged with the grant named.
    with transaction(api.ctx.sessions) as s:
        s.execute(update(LicenceGrant).where(LicenceGrant.id == grant["id"]).values(valid_until=utc(-0.01)))
    with api.client("platform") as c:
        body = _problem(
            c.get(f"/v1/licences/{ident}/copy", params={"grant_id": grant["id"]}),
            403,
            "licence_grant_required",
        )
        assert body["details"]["reason"] == "grant_expired"
    with api.client("auditor") as c:
        last = _ok(c.get("/v1/licence-access", params={"department_id": api.platform_id, "limit": 1}))[
            "items"
        ][0]
    assert (last["action"], last["grant_id"]) == ("denied", grant["id"])
    with api.client("holder") as c:
        assert _ok(c.get("/v1/holder/grants"))[0]["state"] == "expired"
        _problem(c.get("/v1/licence-access"), 403, "permission_denied")  # auditors only


def test_precise_refusals_change_nothing(api: Api) -> None:
    ident = _issue(api)["identifier"]
    before = api.head()
    bad = metadata(2, issue_date="2024-13-01")
    bad["fields"]["registered_capital"] = "一百"
    with api.client("issuer") as c:
        body = _problem(
            c.post("/v1/licences", json={"type": TYPE_CODE, "metadata": bad}), 400, "licence_metadata_invalid"
        )
    assert {e["field"] for e in body["details"]["errors"]} == {"issue_date", "fields.registered_capital"}
    with api.client("issuer") as c:
        json_type = {"content-type": "application/json"}
        huge = b'{"type": "x", "metadata": {"licence_number": "' + b"9" * (1024 * 1024) + b'"}}'
        _problem(c.post("/v1/licences", content=huge, headers=json_type), 413, "input_too_large")
        body = _problem(
            c.post("/v1/licences", content=b'{"type": 1', headers=json_type), 400, "invalid_input"
        )
        assert body["details"]["errors"]
        _problem(
            c.post(f"/v1/licences/{ident}/change", content=b"[]", headers=json_type), 400, "invalid_input"
        )

    with api.client() as c:
        wrong_check = ident[:-1] + ("A" if ident[-1] != "A" else "B")
        body = _problem(
            c.get("/v1/licences/check", params={"id": wrong_check}), 400, "licence_identifier_invalid"
        )
        assert body["details"]["reason"] == "bad_check_character" and body["details"]["expected"] == ident[-1]
        body = _problem(
            c.get("/v1/licences/check", params={"id": "1.2.156.3005.1" + ident[14:]}),
            400,
            "licence_identifier_invalid",
        )
        assert body["details"]["reason"] == "wrong_root"
        body = _problem(
            c.get("/v1/licences/check", params={"qr": "https://evil.test/x?id=" + ident}),
            400,
            "licence_identifier_invalid",
        )
        _problem(c.get("/v1/licences/check"), 400, "invalid_input")
        body = _problem(
            c.post("/v1/licences/check", params={"id": ident}, content=b"x" * (UPLOAD_LIMIT + 1)),
            413,
            "input_too_large",
        )
        # A well-formed identifier nobody issued: 404 (and not logged: there is no licence).
        other = str(parse_identifier(ident).with_version(9))
        _problem(c.get("/v1/licences/check", params={"id": other}), 404, "not_found")
    with api.client("issuer") as c:
        _problem(
            c.post("/v1/licence-imports", params={"type": TYPE_CODE}, content=b"x" * (UPLOAD_LIMIT + 1)),
            413,
            "input_too_large",
        )
        csv_text = (
            "licence_number,holder_name,holder_code,holder_code_type,company_type,registered_capital\n"
            f"A001,甲公司,{uscc(11)},uscc,有限责任公司,10\n"
            f"A002,乙公司,{uscc(12)},uscc,有限责任公司\n"
            f"A003,丙公司,{uscc(13)}X,uscc,有限责任公司,10\n"
            f"A001,丁公司,{uscc(14)},uscc,有限责任公司,abc\n"
        )
        body = _problem(
            c.post(
                "/v1/licence-imports",
                params={"type": TYPE_CODE},
                content=csv_text.encode(),
                headers={"content-type": "text/csv"},
            ),
            400,
            "licence_import_invalid",
        )
    rows = {(e["row"], e["field"]) for e in body["details"]["errors"]}
    assert rows == {(2, "$"), (3, "holder_code"), (4, "fields.registered_capital")}
    assert body["details"]["bad_rows"] == 3 and body["details"]["rows"] == 4
    assert {e["line"] for e in body["details"]["errors"]} == {3, 4, 5}
    assert api.head() == before  # nothing of the above wrote anything


def test_public_check_is_rate_limited(api: Api) -> None:
    ident = _issue(api)["identifier"]
    api.app.state.licence_check_limiter = TokenBucket(0.001, 2)
    with api.client() as c:
        _ok(c.get("/v1/licences/check", params={"id": ident}))
        _ok(c.get("/v1/licences/check", params={"id": ident}))
        body = _problem(c.get("/v1/licences/check", params={"id": ident}), 429, "rate_limited")
    assert body["details"]["retry_after"] >= 1


def test_objections_and_import_over_http(api: Api) -> None:
    ident = _issue(api)["identifier"]
    with api.client("holder") as c:
        filed = _ok(
            c.post(
                "/v1/holder/objections",
                json={"identifier": ident, "field": "fields.registered_capital", "claim": "应为 300 万元"},
            ),
            201,
        )
    with api.client("issuer") as c:
        listed = _ok(c.get("/v1/licence-objections", params={"state": "open"}))
        assert [o["id"] for o in listed] == [filed["id"]]
        accepted = _ok(
            c.post(
                f"/v1/licence-objections/{filed['id']}/accept",
                json={"corrections": {"fields": {"registered_capital": 300}}, "reason": "核实无误"},
            )
        )
    assert accepted["objection"]["state"] == "accepted"
    assert accepted["licence"]["fields"]["registered_capital"] == 300 and accepted["licence"]["version"] == 2

    csv_text = (
        "licence_number,holder_name,holder_code,holder_code_type,company_type,registered_capital\n"
        + "".join(f"B{n:03d},公司{n},{uscc(20 + n)},uscc,有限责任公司,{n}\n" for n in range(1, 4))
    )
    with api.client("issuer") as c:
        created = _ok(
            c.post(
                "/v1/licence-imports",
                params={"type": TYPE_CODE, "start": False},
                content=csv_text.encode(),
                headers={"content-type": "text/csv"},
            ),
            201,
        )
        assert created["progress"]["pending"] == 3
        again = _ok(
            c.post(
                "/v1/licence-imports",
                params={"type": TYPE_CODE, "start": False, "format": "csv"},
                content=csv_text.encode(),
            )
        )
        assert again["id"] == created["id"] and again["created"] is False
        done = _ok(c.post(f"/v1/licence-imports/{created['id']}/run"))
        assert done["progress"]["issued"] == 3 and done["progress"]["finished"] is True
        found = _ok(c.get("/v1/licences", params={"page_size": 10}))
        assert found["total"] == 4
        one = next(i for i in found["items"] if i["licence_number"] == "B002")
        data = c.get(f"/v1/licences/{one['identifier']}/file").content
    assert_passed(data, api.trust)
    assert decode_qr(zip_entries(data)["Doc_0/Res/qr.png"]).endswith(one["identifier"])
