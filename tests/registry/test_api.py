"""The seal registry over real HTTP: departments, the seal lifecycle, downloads, public status and
role scoping (a department sees only its own seals)."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from core.tokens import Role
from gmpki import seal as ses
from gmpki.sm3 import sm3
from gmpki.x509 import load_certificate
from seal_registry import status
from tests.api.conftest import LiveServer

from .conftest import PICTURE, uscc

PROBLEM = "application/problem+json"


def _ok(r: httpx.Response, code: int = 200) -> dict[str, Any]:
    assert r.status_code == code, r.text
    body = r.json()
    assert isinstance(body, dict)
    return body


def _problem(r: httpx.Response, status_code: int, code: str) -> dict[str, object]:
    assert r.status_code == status_code, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["code"] == code
    return dict(body)


def _department_with_cert(c: httpx.Client, n: int) -> str:
    dept = _ok(c.post("/v1/departments", json={"name": f"接口测试部门{n}", "uscc": uscc(100 + n)}), 201)
    assert dept["region_code"] == "110000"
    _ok(c.post(f"/v1/departments/{dept['id']}/certificates"), 201)
    return str(dept["id"])


def _apply(c: httpx.Client, department_id: str, **extra: object) -> dict[str, Any]:
    body = {
        "department_id": department_id,
        "seal_type": "contract",
        "picture_base64": base64.b64encode(PICTURE).decode(),
        "picture_type": "png",
        "reason": "需要合同章",
        **extra,
    }
    return _ok(c.post("/v1/seals", json=body), 201)


def _issue(c: httpx.Client, seal_id: object) -> dict[str, Any]:
    seal: dict[str, Any] = {}
    for action in ("review", "make", "file", "issue"):
        seal = _ok(c.post(f"/v1/seals/{seal_id}/{action}", json={"reason": f"{action} ok"}))
    return seal


def test_seal_lifecycle_and_public_status_over_http(live_server: LiveServer) -> None:
    officer = live_server.token(Role.SEAL_OFFICER)
    with live_server.client(officer) as c, live_server.client() as public:
        dept_id = _department_with_cert(c, 1)
        assert any(d["id"] == dept_id for d in c.get("/v1/departments").json())
        assert _ok(c.get(f"/v1/departments/{dept_id}"))["name"] == "接口测试部门1"
        _problem(
            c.post("/v1/departments", json={"name": "x", "uscc": "91110000MA0000001X"}), 400, "invalid_input"
        )

        applied = _apply(c, dept_id)
        assert applied["state"] == "applied" and str(applied["es_id"]).startswith("11000002")
        events = applied["events"]
        assert isinstance(events, list) and events[0]["reason"] == "需要合同章"
        seal_id = applied["id"]
        # Illegal transition and missing reason are problems with stable codes
        _problem(
            c.post(f"/v1/seals/{seal_id}/issue", json={"reason": "too early"}), 409, "illegal_transition"
        )
        _problem(c.post(f"/v1/seals/{seal_id}/reject", json={}), 400, "invalid_input")
        issued = _issue(c, seal_id)
        assert issued["state"] == "issued" and issued["state_zh"] == "已发放"
        assert [e["to_state"] for e in issued["events"]] == ["applied", "reviewed", "made", "filed", "issued"]

        r = c.get(f"/v1/seals/{seal_id}/seal.esl")
        assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
        parsed = ses.parse_seal(r.content)
        assert parsed.es_id == issued["es_id"] and ses.verify_maker_signature(parsed)
        assert sm3(r.content).hex() == issued["seal_sm3"]
        pic = c.get(f"/v1/seals/{issued['es_id']}/picture.png")  # by esID as well
        assert (
            pic.status_code == 200 and pic.headers["content-type"] == "image/png" and pic.content == PICTURE
        )

        # Public status, by esID and by SM3 of the file, without a token
        st = _ok(public.get(f"/v1/seal-status/{issued['es_id']}"))
        assert (st["state"], st["seal_sm3"]) == ("issued", issued["seal_sm3"])
        assert _ok(public.get(f"/v1/seal-status/by-sm3/{issued['seal_sm3']}"))["es_id"] == issued["es_id"]
        _problem(public.get(f"/v1/seal-status/{applied['es_id']}x"), 404, "not_found")
        _problem(public.get("/v1/seal-status/by-sm3/nothex"), 400, "invalid_input")

        root_id = next(x["id"] for x in public.get("/v1/ca/certificates").json() if x["role"] == "root")
        root = load_certificate(public.get(f"/v1/ca/certificates/{root_id}.pem").content)
        first = status.verify_snapshot(public.get("/v1/seal-status/snapshot").content, [root])
        entry = first.by_es_id(str(issued["es_id"]))
        assert entry is not None and entry.state.value == "issued"

        suspended = _ok(c.post(f"/v1/seals/{seal_id}/suspend", json={"reason": "调查"}))
        assert suspended["state"] == "suspended"
        assert _ok(public.get(f"/v1/seal-status/{issued['es_id']}"))["state"] == "suspended"
        second = status.verify_snapshot(public.get("/v1/seal-status/snapshot").content, [root])
        assert second.sequence > first.sequence
        entry = second.by_es_id(str(issued["es_id"]))
        assert entry is not None and entry.state.value == "suspended"

        # Renewal: issuing the successor cancels this seal
        _ok(c.post(f"/v1/seals/{seal_id}/resume", json={"reason": "cleared"}))
        successor = _ok(c.post(f"/v1/seals/{seal_id}/renew", json={"reason": "到期换发"}), 201)
        assert successor["previous_seal_id"] == seal_id and successor["es_id"] != issued["es_id"]
        _issue(c, successor["id"])
        old = _ok(c.get(f"/v1/seals/{seal_id}"))
        assert old["state"] == "cancelled"
        assert old["events"][-1]["reason"] == f"renewed by {successor['es_id']}"

        # Anonymous callers must authenticate to manage or list
        _problem(
            public.post(f"/v1/seals/{successor['id']}/cancel", json={"reason": "x"}), 401, "unauthenticated"
        )
        _problem(public.get("/v1/seals"), 401, "unauthenticated")


def test_departments_see_only_their_own_seals(live_server: LiveServer) -> None:
    officer = live_server.token(Role.SEAL_OFFICER)
    with live_server.client(officer) as c:
        mine_id = _department_with_cert(c, 2)
        theirs_id = _department_with_cert(c, 3)
        mine = _issue(c, _apply(c, mine_id)["id"])
        theirs = _apply(c, theirs_id)
        assert {s["id"] for s in c.get("/v1/seals").json()} >= {mine["id"], theirs["id"]}

    signer = live_server.token(Role.DEPARTMENT_SIGNER, department_id=mine_id)
    with live_server.client(signer) as d:
        listed = d.get("/v1/seals").json()
        assert [s["id"] for s in listed] == [mine["id"]]
        assert d.get("/v1/seals", params={"department_id": theirs_id}).json() == []
        assert _ok(d.get(f"/v1/seals/{mine['id']}"))["es_id"] == mine["es_id"]
        assert d.get(f"/v1/seals/{mine['id']}/seal.esl").status_code == 200
        for path in (f"/v1/seals/{theirs['id']}", f"/v1/seals/{theirs['id']}/picture.png"):
            _problem(d.get(path), 403, "permission_denied")
        _problem(d.get(f"/v1/departments/{theirs_id}"), 403, "permission_denied")
        assert [x["id"] for x in d.get("/v1/departments").json()] == [mine_id]
        # A department cannot manage seals, not even its own
        _problem(d.post(f"/v1/seals/{mine['id']}/cancel", json={"reason": "x"}), 403, "permission_denied")
        _problem(
            d.post("/v1/seals", json={"department_id": mine_id, "seal_type": "official"}),
            403,
            "permission_denied",
        )
        _problem(d.post("/v1/departments", json={"name": "x", "uscc": uscc(9)}), 403, "permission_denied")

    other_signer = live_server.token(Role.DEPARTMENT_SIGNER, department_id=theirs_id)
    with live_server.client(other_signer) as o:
        assert [s["id"] for s in o.get("/v1/seals").json()] == [theirs["id"]]
        _problem(o.get(f"/v1/seals/{mine['id']}"), 403, "permission_denied")
        _problem(o.get(f"/v1/seals/{mine['id']}/seal.esl"), 403, "permission_denied")
        _problem(o.get(f"/v1/seals/{theirs['id']}/seal.esl"), 404, "not_found")  # not made yet
