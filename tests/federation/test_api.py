"""Peer management over HTTP (admin only), the list of lists, and the registry key rollover routes."""

from __future__ import annotations

import httpx

from core.db import transaction
from core.tokens import Role, issue_token
from verify.peer_trust import verify_list_of_lists

from .conftest import Region, serving


def _client(region: Region, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=region.url or "", headers=headers, timeout=30)


def test_peer_routes_and_rollover(region_a: Region, region_b: Region) -> None:
    with serving(region_b), serving(region_a):
        with transaction(region_a.sessions) as s:
            _row, officer = issue_token(s, name="officer", role=Role.SEAL_OFFICER)
        with _client(region_a, officer) as c:
            assert c.get("/v1/federation/peers").status_code == 403
        # Bootstrap from B's signed list of lists (B as a hub naming itself), pinned to B's key
        with _client(region_b) as c:
            lotl = c.get("/v1/federation/list-of-lists").content
        parsed = verify_list_of_lists(lotl, pinned={bytes.fromhex(region_b.registry_sm3())})
        assert [p.region_code for p in parsed.peers] == ["320000"] and parsed.peers[0].url.startswith(
            region_b.url or ""
        )
        with _client(region_a, region_a.admin_token) as c:
            bad = c.post("/v1/federation/bootstrap", content=lotl)
            assert bad.status_code == 400
            r = c.post("/v1/federation/bootstrap", params={"pin": region_b.registry_sm3()}, content=lotl)
            assert r.status_code == 200, r.text
            body = r.json()
            assert [p["region_code"] for p in body["added"]] == ["320000"] and body["sync"][0][
                "status"
            ] == "updated"

            r = c.put(
                "/v1/federation/peers/320000/seal-types", json={"remote_code": "02", "local_code": "02"}
            )
            assert r.status_code == 200 and r.json()["purposes"] == ["any"]
            assert (
                c.put(
                    "/v1/federation/peers/320000/seal-types", json={"remote_code": "2", "local_code": "02"}
                ).status_code
                == 400
            )
            peer = c.get("/v1/federation/peers").json()[0]
            assert peer["restrict_seal_types"] and peer["mappings"][0]["remote_code"] == "02"
            assert c.delete("/v1/federation/peers/320000/seal-types/02").status_code == 204

            # B rolls its registry key over; A follows through the announcement
            with _client(region_b, region_b.admin_token) as cb:
                announced = cb.post("/v1/trust-list/next-signer")
                assert announced.status_code == 201, announced.text
                assert cb.post("/v1/trust-list/next-signer").status_code == 409
            synced = c.post("/v1/federation/peers/320000/sync").json()
            assert synced["status"] == "updated"
            assert c.get("/v1/federation/peers/320000").json()["successor_sm3"] == announced.json()["sm3"]
            with _client(region_b, region_b.admin_token) as cb:
                assert cb.post("/v1/trust-list/next-signer/activate").json()["sm3"] == announced.json()["sm3"]
            assert c.post("/v1/federation/sync").json()[0]["status"] == "updated"
            assert c.get("/v1/federation/peers/320000").json()["pinned_sm3"] == announced.json()["sm3"]

            r = c.put("/v1/federation/peers/320000/pin", json={"pinned_sm3": "zz"})
            assert r.status_code == 400 and r.json()["code"] == "invalid_input"
            assert c.delete("/v1/federation/peers/320000").status_code == 204
            assert c.get("/v1/federation/peers/320000").status_code == 404
