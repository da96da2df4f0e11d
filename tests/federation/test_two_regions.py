"""Two eseal deployments recognise each other's seals over real HTTP.

Region B (Jiangsu, 320000) and region A (Beijing, 110000) each run their own server on 127.0.0.1
with their own database (two SQLite files, or two PostgreSQL schemas), key store, var dir and
region code. B makes a seal and seals a document; A registers B with B's pinned registry
certificate and syncs; A's public verification passes and names B's trust list. B cancels the
seal; with A syncing every second, a signature made after the cancellation fails in A with
SEAL_CANCELLED — the time from B's commit to A's verdict is measured and reported. Then a tampered
list, a replayed older list and a list signed by an unpinned key are each refused with their
reason while the last good list stays in force.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.db import utcnow
from seal_registry import peers
from seal_registry.pki import CertRole, certificate_of, current_certificate, signer_for
from verify.peer_trust import make_envelope, verify_trust_list
from verify.status_snapshot import canonical_bytes

from .conftest import DATA, Region, after_the_second_of, close_region, open_region, serving

SYNC_INTERVAL_S = 1.0


@pytest.fixture
def two_regions(db_url: str, second_db_url: str, tmp_path: Path) -> Iterator[tuple[Region, Region]]:
    b = open_region(
        second_db_url, tmp_path / "var-b", "320000", "江苏省 Jiangsu", federation_sync_interval_s=0
    )
    a = open_region(
        db_url,
        tmp_path / "var-a",
        "110000",
        "北京市 Beijing",
        federation_sync_interval_s=SYNC_INTERVAL_S,
        federation_grace_s=0,
    )
    try:
        with serving(b), serving(a):
            yield a, b
    finally:
        close_region(a)
        close_region(b)


def _verify(a: Region, signature: bytes) -> dict[str, Any]:
    with httpx.Client(base_url=a.url or "", timeout=30) as c:  # no token: verification is public
        r = c.post("/v1/verify", files={"file": ("doc.ses", signature), "data": ("decision.txt", DATA)})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["signatures"][0]["checks"]}


def _admin(region: Region) -> httpx.Client:
    return httpx.Client(
        base_url=region.url or "", headers={"Authorization": f"Bearer {region.admin_token}"}, timeout=30
    )


def _stored(a: Region) -> tuple[int, bytes]:
    with a.sessions() as s:
        row = peers.peer_list(s, peers.get_peer(s, "320000").id)
        assert row is not None
        return row.sequence, row.state


def _serve_once(body: bytes) -> httpx.Client:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    return httpx.Client(transport=httpx.MockTransport(handler))


def _wait_for(condition: Callable[[], dict[str, Any] | None], timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = condition()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s} s")
        time.sleep(0.02)


def test_two_regions_recognise_seals_and_propagate_a_cancellation(
    two_regions: tuple[Region, Region], record_property: Callable[[str, object], None]
) -> None:
    a, b = two_regions
    assert a.url != b.url and a.code != b.code

    # B makes a seal (apply → review → make → file → issue) and seals a document with it
    seal = b.issue_seal()
    assert seal.es_id.startswith("32000002")
    before = b.sign(seal)
    with httpx.Client(base_url=b.url or "", timeout=30) as c:
        replayable = c.get("/v1/trust-list").content  # kept for the replay below
    b_pin = b.registry_sm3()  # handed to A out of band

    # A registers B (pinned fingerprint) and syncs at once
    with _admin(a) as c:
        r = c.post("/v1/federation/peers", json={"url": f"{b.url}/v1/trust-list", "pinned_sm3": b_pin})
        assert r.status_code == 201, r.text
        added = r.json()
        assert added["peer"]["region_code"] == "320000" and added["sync"]["status"] == "updated"
        assert c.post("/v1/federation/peers", json={"url": b.url, "pinned_sm3": b_pin}).status_code == 409
    with httpx.Client(base_url=a.url or "", timeout=30) as c:  # peer management is admin only
        assert c.get("/v1/federation/peers").status_code == 401

    # A verifies B's signature: PASSED, and the report names B's list (region, sequence, time)
    report = _verify(a, before)
    assert report["indication"] == "PASSED", json.dumps(report, ensure_ascii=False, indent=1)
    checks = _checks(report)
    status = checks["seal.status"]
    assert status["result"] == "passed" and "320000" in status["vouched_by"] and "#" in status["vouched_by"]
    assert "江苏省 Jiangsu" in status["message_en"]
    for cid in ("seal.maker_certificate_chain", "signer.certificate_chain"):
        assert checks[cid]["result"] == "passed" and "320000" in checks[cid]["vouched_by"], checks[cid]
    assert "listed seal maker" in checks["seal.maker_certificate_chain"]["vouched_by"]
    assert checks["signer.certificate_revocation"]["result"] == "passed"  # B's CRL came with its list
    with _admin(a) as c:
        shown = c.get("/v1/federation/peers/320000").json()
    assert shown["sequence"] is not None and str(shown["sequence"]) in status["vouched_by"]
    assert shown["seal_count"] == 1 and shown["ca_roots"][0]["subject"].startswith("CN=江苏省")

    # B cancels the seal; A, syncing every second, sees it on its next round
    after_the_second_of(utcnow())
    cancelled = b.act(seal, "cancel", "印章遗失 seal lost")
    committed = time.monotonic()
    after = b.forge(seal, cancelled.state_changed_at.replace(microsecond=0) + dt.timedelta(seconds=1))

    def cancelled_in_a() -> dict[str, Any] | None:
        rep = _verify(a, after)
        return rep if rep["signatures"][0]["sub_indication"] == "SEAL_CANCELLED" else None

    verdict = _wait_for(cancelled_in_a, timeout_s=10 * SYNC_INTERVAL_S + 5)
    propagation = time.monotonic() - committed
    record_property("propagation_s", round(propagation, 3))
    print(f"\npropagation from B's cancellation commit to A's SEAL_CANCELLED verdict: {propagation:.3f} s "
          f"(sync interval {SYNC_INTERVAL_S} s)")  # fmt: skip
    assert verdict["indication"] == "FAILED"
    cancelled_status = _checks(verdict)["seal.status"]
    assert cancelled_status["result"] == "failed" and "320000" in cancelled_status["vouched_by"]
    assert propagation < 3 * SYNC_INTERVAL_S + 2  # within about one sync interval (plus fetch/verify)
    # The signature made before the cancellation keeps its validity (a warning, not a failure)
    earlier = _checks(_verify(a, before))["seal.status"]
    assert earlier["result"] == "warning" and "after the signing time" in earlier["message_en"]

    # Hostile lists: each refused with its reason, the last good list kept
    good = _stored(a)
    current = json.loads(_fetch(b))
    doc = json.loads(base64.b64decode(current["payload"]))
    doc["seals"][0]["history"] = doc["seals"][0]["history"][:-1]  # hide the cancellation
    tampered = dict(current, payload=base64.b64encode(canonical_bytes(doc)).decode())
    with a.sessions() as s:  # B's content, signed with a key A never pinned for B (A's own)
        row = current_certificate(s, CertRole.SERVICE)
        body = canonical_bytes(doc)
        unpinned = make_envelope(body, signer_for(a.ctx.keystore, row).sign(body), certificate_of(row), ())
    old = verify_trust_list(replayable, pinned={bytes.fromhex(b_pin)})
    cases = [
        ("tampered", canonical_bytes(tampered), "invalid_signature", "signature does not verify"),
        ("replayed", replayable, "trust_list_refused", f"got #{old.sequence}, have #{good[0]}"),
        ("unpinned", unpinned, "certificate_invalid", "unpinned key"),
    ]
    for name, data, code, reason in cases:
        with _serve_once(data) as client:
            outcome = peers.sync_peer(a.sessions, "320000", settings=a.ctx.settings, client=client, full=True)
        print(f"{name} list: {outcome.status} ({outcome.code}): {outcome.message_en}")
        assert (outcome.status, outcome.code) == ("refused", code), (name, outcome)
        assert reason in outcome.message_en, (name, outcome.message_en)
        assert _stored(a) == good, name
    with _admin(a) as c:
        peer = c.get("/v1/federation/peers/320000").json()
    assert peer["refused_count"] >= 3 and peer["sequence"] == good[0]
    # ... and the cancellation still holds in A
    assert _verify(a, after)["signatures"][0]["sub_indication"] == "SEAL_CANCELLED"


def _fetch(region: Region) -> bytes:
    with httpx.Client(base_url=region.url or "", timeout=30) as c:
        return c.get("/v1/trust-list").content
