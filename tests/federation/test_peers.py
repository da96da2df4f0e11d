"""Peers: registration, sync (full, delta, not modified), the last good list under hostile and
broken input, staleness, key rollover, seal type mapping and the list of lists."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.db import transaction, utcnow
from core.errors import CertificateError, Conflict, InvalidInput, NotUsable
from seal_registry import peers, trust_list
from seal_registry.federation_models import FederationPeer
from seal_registry.models import PkiCertificate
from seal_registry.pki import CertRole, certificate_of, current_certificate, signer_for, trust_anchors
from verify import FileTrustSource, Indication, SubIndication, verify_bytes
from verify.peer_trust import (
    CompositeTrustSource,
    PeerTrustSource,
    PeerView,
    make_envelope,
    parse_payload,
    verify_trust_list,
)
from verify.status_snapshot import canonical_bytes

from .conftest import DATA, Region, after_the_second_of, serving

ADMIN = "admin:federation-tests"


def _register(a: Region, b: Region) -> FederationPeer:
    assert b.url is not None
    peer, outcome = peers.register_peer(
        a.sessions, settings=a.ctx.settings, url=b.url, pinned_sm3=b.registry_sm3(), actor=ADMIN
    )
    assert outcome is not None and outcome.status == "updated", outcome
    return peer


def _sync(a: Region, ref: str = "320000", **kwargs: Any) -> peers.SyncOutcome:
    kwargs.setdefault("settings", a.ctx.settings)
    return peers.sync_peer(a.sessions, ref, **kwargs)


def _stored(a: Region) -> tuple[int, bytes]:
    with a.sessions() as s:
        row = peers.peer_list(s, peers.get_peer(s, "320000").id)
        assert row is not None
        return row.sequence, row.state


def _trust(a: Region) -> peers.FederatedTrustSource:
    return peers.FederatedTrustSource(a.sessions, a.ctx.keystore, region_code=a.code, grace=dt.timedelta(0))


def test_register_sync_full_then_delta_then_not_modified(region_a: Region, region_b: Region) -> None:
    seal = region_b.issue_seal()
    with serving(region_b):
        peer = _register(region_a, region_b)  # no region code given: read from the pinned list
        assert (peer.region_code, peer.name) == ("320000", "江苏省 Jiangsu")
        first, _ = _stored(region_a)
        assert _sync(region_a).status == "not_modified"
        after_the_second_of(utcnow())
        region_b.act(seal, "suspend")
        outcome = _sync(region_a)
        assert outcome.status == "updated" and outcome.sequence is not None and outcome.sequence > first
        with region_a.sessions() as s:
            stored = peers.peer_list(s, peer.id)
            assert stored is not None and json.loads(stored.envelope)  # the delta as received
            assert (
                verify_trust_list(stored.envelope, pinned={bytes.fromhex(region_b.registry_sm3())}).kind
                == "delta"
            )
        merged = parse_payload(_stored(region_a)[1])
        assert merged.by_es_id(seal.es_id).current.state == "suspended"  # type: ignore[union-attr]
        full = _sync(region_a, full=True)
        assert full.status in ("updated", "not_modified")
        assert parse_payload(_stored(region_a)[1]).by_es_id(seal.es_id) == merged.by_es_id(seal.es_id)
        with pytest.raises(Conflict):
            _register(region_a, region_b)
    # A seal of a region no list covers is unknown, never untracked, once peers are configured
    fact = _trust(region_a).seal_status("44000002000001", b"\x01" * 32, utcnow())
    assert fact is not None and fact.state.value == "unknown" and fact.source == peers.UNVOUCHED


def test_registration_input_is_checked(region_a: Region) -> None:
    with transaction(region_a.sessions) as s, pytest.raises(InvalidInput):
        peers.add_peer(s, url="ftp://x", pinned_sm3="00" * 32, region_code="320000", name="x", actor=ADMIN)
    with transaction(region_a.sessions) as s, pytest.raises(InvalidInput):
        peers.add_peer(s, url="http://x", pinned_sm3="abc", region_code="320000", name="x", actor=ADMIN)
    with transaction(region_a.sessions) as s:
        peer = peers.add_peer(
            s,
            url="http://127.0.0.1:9",
            pinned_sm3="AB:" * 31 + "AB",
            region_code="320000",
            name="x",
            actor=ADMIN,
        )
        assert peer.url == "http://127.0.0.1:9/v1/trust-list" and peer.pinned_sm3 == "ab" * 32
    # Nothing listens there: the sync fails, nothing is stored, nothing crashes
    outcome = _sync(
        region_a, settings=region_a.ctx.settings.model_copy(update={"federation_fetch_timeout_s": 2})
    )
    assert outcome.status == "failed" and outcome.sequence is None


def _hostile_client(body: bytes | Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        if callable(body):
            return body(request)
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    return httpx.Client(transport=httpx.MockTransport(handler))


def _resign(region: Region, doc: dict[str, object]) -> bytes:
    payload = canonical_bytes(doc)
    with region.sessions() as s:
        row = current_certificate(s, CertRole.SERVICE)
        return make_envelope(
            payload, signer_for(region.ctx.keystore, row).sign(payload), certificate_of(row), ()
        )


def test_hostile_and_broken_lists_never_replace_the_last_good_one(region_a: Region, region_b: Region) -> None:
    seal = region_b.issue_seal()
    with serving(region_b):
        _register(region_a, region_b)
    good_sequence, good_state = _stored(region_a)
    with region_b.sessions() as s:
        envelope = trust_list.build_trust_list(s, region_b.ctx.keystore, region_b.ctx.settings)
    doc = json.loads(base64.b64decode(json.loads(envelope)["payload"]))
    huge = dict(doc, seals=[dict(doc["seals"][0], es_id="9" * 70_000)])
    rolled_back = dict(doc, sequence=good_sequence - 1)
    stale = dict(doc, issued_at="2020-01-01T00:00:00Z", next_update="2020-01-02T00:00:00Z")
    other_region = dict(doc, scheme_operator={"name": "x", "region_code": "440000"})
    tampered = json.loads(envelope)
    tampered["payload"] = base64.b64encode(canonical_bytes(dict(doc, seals=[]))).decode()
    cases: list[tuple[str, httpx.Client, str, str]] = [
        ("tampered", _hostile_client(canonical_bytes(tampered)), "invalid_signature", "does not verify"),
        ("unpinned", _hostile_client(_publish_of(region_a)), "certificate_invalid", "unpinned key"),
        (
            "rollback",
            _hostile_client(_resign(region_b, rolled_back)),
            "trust_list_refused",
            "sequence went back",
        ),
        ("stale", _hostile_client(_resign(region_b, stale)), "trust_list_refused", "stale"),
        (
            "other region",
            _hostile_client(_resign(region_b, other_region)),
            "trust_list_refused",
            "region 440000",
        ),
        ("huge entry", _hostile_client(_resign(region_b, huge)), "malformed_data", "invalid es_id"),
        ("deep json", _hostile_client(b"[" * 200_000 + b"]" * 200_000), "malformed_data", "not valid JSON"),
        ("garbage", _hostile_client(b"\x00\xff not json"), "malformed_data", "not valid JSON"),
        ("server error", _hostile_client(lambda r: httpx.Response(500)), "fetch_failed", "HTTP 500"),
        (
            "dropped",
            _hostile_client(lambda r: (_ for _ in ()).throw(httpx.ConnectError("reset"))),
            "fetch_failed",
            "reset",
        ),
    ]
    for name, client, code, reason in cases:
        with client:
            outcome = _sync(region_a, client=client, full=True)
        assert outcome.status in ("refused", "failed"), name
        assert outcome.code == code and reason in outcome.message_en, (name, outcome)
        assert _stored(region_a) == (good_sequence, good_state), name
    with region_a.sessions() as s:
        peer = peers.get_peer(s, "320000")
        assert peer.refused_count == 8 and peer.last_error and "reset" in peer.last_error
    # Too large by its own size: refused before it is read whole
    small = region_a.ctx.settings.model_copy(update={"federation_max_list_bytes": 1024})
    with _hostile_client(envelope) as client:
        outcome = peers.sync_peer(region_a.sessions, "320000", settings=small, client=client, full=True)
    assert outcome.code == "input_too_large" and _stored(region_a) == (good_sequence, good_state)
    # The last good list still answers
    signature = region_b.sign(seal)
    report = verify_bytes(signature, detached_data=DATA, trust=_trust(region_a))
    assert report.indication is Indication.PASSED, report.dumps()


def _publish_of(region: Region) -> bytes:
    with transaction(region.sessions) as s:
        return trust_list.published_trust_list(s, region.ctx.keystore, region.ctx.settings).envelope


def test_replay_of_an_older_issue_of_the_same_sequence_is_refused(region_a: Region, region_b: Region) -> None:
    region_b.issue_seal()
    with region_b.sessions() as s:
        older = trust_list.build_trust_list(s, region_b.ctx.keystore, region_b.ctx.settings)
    after_the_second_of(utcnow())
    with region_b.sessions() as s:
        newer = trust_list.build_trust_list(s, region_b.ctx.keystore, region_b.ctx.settings)
    with transaction(region_a.sessions) as s:
        peers.add_peer(
            s,
            url="http://b.invalid",
            pinned_sm3=region_b.registry_sm3(),
            region_code="320000",
            name="B",
            actor=ADMIN,
        )
    with _hostile_client(newer) as client:
        assert _sync(region_a, client=client).status == "updated"
    with _hostile_client(newer) as client:
        assert _sync(region_a, client=client, full=True).status == "not_modified"
    with _hostile_client(older) as client:
        outcome = _sync(region_a, client=client, full=True)
    assert outcome.status == "refused" and "replay" in outcome.message_en


def test_stale_list_turns_verdicts_indeterminate_after_the_grace(region_a: Region, region_b: Region) -> None:
    seal = region_b.issue_seal()
    with serving(region_b):
        _register(region_a, region_b)
    signature = region_b.sign(seal)
    with region_a.sessions() as s:
        (view,) = peers.peer_views(s, grace=dt.timedelta(hours=1))
    tl = view.trust_list

    class At(peers.FederatedTrustSource):
        def peer_trust(self) -> PeerTrustSource:
            return PeerTrustSource([view])

    trust = At(region_a.sessions, region_a.ctx.keystore, region_code="110000")
    within = tl.next_update + dt.timedelta(minutes=30)
    beyond = tl.next_update + dt.timedelta(hours=2)
    ok = verify_bytes(signature, detached_data=DATA, trust=trust, at=within)
    assert ok.signatures[0].check("seal.status").result.value == "passed"
    late = verify_bytes(signature, detached_data=DATA, trust=trust, at=beyond)
    status = late.signatures[0].check("seal.status")
    assert status.result.value == "indeterminate" and "stale" in status.message_en
    assert late.signatures[0].sub_indication is SubIndication.TRY_LATER
    # A cancellation is final: a stale list still proves it
    cancelled = replace(
        view,
        trust_list=tl.merge(
            replace(
                tl,
                kind="delta",
                since=tl.sequence,
                seals=tuple(
                    replace(
                        r, history=(*r.history, replace(r.history[-1], state="cancelled", at=tl.issued_at))
                    )
                    for r in tl.seals
                ),
            )
        ),
    )
    forged = region_b.forge(seal, tl.issued_at + dt.timedelta(seconds=1))

    class Cancelled(peers.FederatedTrustSource):
        def peer_trust(self) -> PeerTrustSource:
            return PeerTrustSource([cancelled])

    gone = verify_bytes(
        forged, detached_data=DATA, trust=Cancelled(region_a.sessions, region_code="110000"), at=beyond
    )
    assert gone.signatures[0].sub_indication is SubIndication.SEAL_CANCELLED


def test_seal_type_mapping_limits_what_is_accepted(region_a: Region, region_b: Region) -> None:
    contract = region_b.issue_seal("contract")
    finance = region_b.issue_seal("finance")
    with serving(region_b):
        _register(region_a, region_b)
    with transaction(region_a.sessions) as s:
        peers.map_seal_type(
            s, "320000", remote_code="02", local_code="02", purposes=["contract", "licence"], actor=ADMIN
        )
    trust = _trust(region_a)
    ok = verify_bytes(region_b.sign(contract), detached_data=DATA, trust=trust)
    assert ok.indication is Indication.PASSED, ok.dumps()
    assert "seal type 02 → 本地 local 02" in ok.signatures[0].check("seal.status").message_en
    refused = verify_bytes(region_b.sign(finance), detached_data=DATA, trust=trust)
    status = refused.signatures[0].check("seal.status")
    assert refused.indication is Indication.INDETERMINATE and "seal type 05" in status.message_en
    purpose = peers.FederatedTrustSource(region_a.sessions, region_code="110000", purpose="invoice")
    wrong = verify_bytes(region_b.sign(contract), detached_data=DATA, trust=purpose)
    assert "for purpose 'invoice'" in wrong.signatures[0].check("seal.status").message_en
    with transaction(region_a.sessions) as s:
        peers.unmap_seal_type(s, "320000", "02", actor=ADMIN)
    back = verify_bytes(region_b.sign(finance), detached_data=DATA, trust=_trust(region_a))
    assert back.indication is Indication.PASSED
    with transaction(region_a.sessions) as s, pytest.raises(InvalidInput):
        peers.map_seal_type(s, "320000", remote_code="02", local_code="77", actor=ADMIN)


def test_key_rollover_announced_then_activated(region_a: Region, region_b: Region) -> None:
    seal = region_b.issue_seal()
    old_pin = region_b.registry_sm3()
    with serving(region_b):
        _register(region_a, region_b)
        with transaction(region_b.sessions) as s:
            announced = trust_list.announce_next_signer(
                s, region_b.ctx.keystore, region_b.ctx.settings, actor=ADMIN
            )
        assert _sync(region_a).status == "updated"
        with region_a.sessions() as s:
            peer = peers.get_peer(s, "320000")
            assert (peer.pinned_sm3, peer.successor_sm3) == (old_pin, announced.sm3)
        with transaction(region_b.sessions) as s:
            trust_list.activate_next_signer(s, actor=ADMIN)
        assert region_b.registry_sm3() == announced.sm3
        outcome = _sync(region_a)
        assert outcome.status == "updated", outcome
        with region_a.sessions() as s:
            peer = peers.get_peer(s, "320000")
            assert (peer.pinned_sm3, peer.successor_sm3) == (announced.sm3, None)
        # The old key no longer signs for B
        with region_b.sessions() as s:
            old = s.scalars(select(PkiCertificate).where(PkiCertificate.sm3 == old_pin)).one()
            payload = json.loads(base64.b64decode(json.loads(_publish_of(region_b))["payload"]))
            body = canonical_bytes(payload)
            by_old = make_envelope(
                body, signer_for(region_b.ctx.keystore, old).sign(body), certificate_of(old), ()
            )
        with _hostile_client(by_old) as client:
            refused = _sync(region_a, client=client, full=True)
        assert refused.status == "refused" and "unpinned key" in refused.message_en
        report = verify_bytes(region_b.sign(seal), detached_data=DATA, trust=_trust(region_a))
        assert report.indication is Indication.PASSED


def test_unannounced_key_change_needs_a_new_pin(region_a: Region, region_b: Region) -> None:
    with serving(region_b):
        _register(region_a, region_b)
        with transaction(region_b.sessions) as s:
            trust_list.announce_next_signer(s, region_b.ctx.keystore, region_b.ctx.settings, actor=ADMIN)
        with transaction(region_b.sessions) as s:
            trust_list.activate_next_signer(s, actor=ADMIN)
        outcome = _sync(region_a)
        assert outcome.status == "refused" and outcome.code == "certificate_invalid"
        with transaction(region_a.sessions) as s:
            peers.set_pin(s, "320000", region_b.registry_sm3(), actor=ADMIN)
        assert _sync(region_a).status == "updated"


def test_list_of_lists_bootstraps_several_peers(region_a: Region, region_b: Region, tmp_path: object) -> None:
    with serving(region_b):
        with region_b.sessions() as s:
            lotl = peers.export_list_of_lists(s, region_b.ctx.keystore, region_b.ctx.settings)
        pin = {bytes.fromhex(region_b.registry_sm3())}
        with pytest.raises(CertificateError, match="unpinned"):
            peers.bootstrap_peers(
                region_a.sessions, lotl, settings=region_a.ctx.settings, pinned={b"\x00" * 32}, actor=ADMIN
            )
        doc, added, outcomes = peers.bootstrap_peers(
            region_a.sessions, lotl, settings=region_a.ctx.settings, pinned=pin, actor=ADMIN
        )
        assert doc.operator_name == "江苏省 Jiangsu" and [p.region_code for p in added] == ["320000"]
        assert [o.status for o in outcomes] == ["updated"]
    # An unsigned federation file names two more regions (one unreachable: registered, sync fails)
    federation = {
        "format": "eseal-list-of-lists/1",
        "scheme_operator": {"name": "联邦文件 federation file", "region_code": "100000"},
        "sequence": 1,
        "issued_at": "2026-01-01T00:00:00Z",
        "next_update": "2099-01-01T00:00:00Z",
        "peers": [
            {"name": "广东省", "region_code": "440000", "url": "http://127.0.0.1:9", "pins": ["aa" * 32]},
            {"name": "江苏省", "region_code": "320000", "url": "http://127.0.0.1:9", "pins": ["bb" * 32]},
        ],
    }
    data = canonical_bytes(federation)
    with pytest.raises(CertificateError):
        peers.bootstrap_peers(
            region_a.sessions, data, settings=region_a.ctx.settings, pinned=None, actor=ADMIN
        )
    fast = region_a.ctx.settings.model_copy(update={"federation_fetch_timeout_s": 2})
    _doc, added, outcomes = peers.bootstrap_peers(
        region_a.sessions, data, settings=fast, pinned=None, allow_unsigned=True, actor=ADMIN
    )
    assert [p.region_code for p in added] == ["440000"]  # 320000 already known: left alone
    assert [o.status for o in outcomes] == ["failed"]
    with region_a.sessions() as s:
        assert peers.get_peer(s, "320000").pinned_sm3 == region_b.registry_sm3()


def test_unsynced_peer_is_not_trusted(region_a: Region, region_b: Region) -> None:
    seal = region_b.issue_seal()
    with transaction(region_a.sessions) as s:
        peers.add_peer(
            s,
            url="http://b.invalid",
            pinned_sm3=region_b.registry_sm3(),
            region_code="320000",
            name="B",
            actor=ADMIN,
        )
    report = verify_bytes(region_b.sign(seal), detached_data=DATA, trust=_trust(region_a))
    assert report.indication is Indication.INDETERMINATE
    assert report.signatures[0].sub_indication is SubIndication.NO_CERTIFICATE_CHAIN_FOUND


def test_peer_trust_source_directly(region_b: Region) -> None:
    seal = region_b.issue_seal()
    tl = verify_trust_list(_publish_of(region_b), pinned={bytes.fromhex(region_b.registry_sm3())})
    source = PeerTrustSource([PeerView(tl)])
    sm3 = bytes.fromhex(seal.seal_sm3 or "")
    fact = source.seal_status(seal.es_id, sm3, utcnow())
    assert fact is not None and fact.state.value == "active" and fact.vouched_by == tl.label
    before = source.seal_status(seal.es_id, sm3, seal.created_at - dt.timedelta(days=1))
    assert before is not None and before.state.value == "unknown"
    unknown = source.seal_status("32000002999999", b"\x01" * 32, utcnow())
    assert unknown is not None and unknown.state.value == "unknown"
    assert source.seal_status("11000002000001", b"\x01" * 32, utcnow()) is None  # not B's region
    with pytest.raises(NotUsable):
        source.seal_status("32000002999999", b"\x01" * 32, tl.next_update + dt.timedelta(seconds=1))


def test_offline_composite_of_local_files_and_a_peer_list(region_a: Region, region_b: Region) -> None:
    """A verifier with no database: its own anchors from files, B's list from a file, pinned."""
    seal = region_b.issue_seal()
    signature = region_b.sign(seal)
    tl = verify_trust_list(_publish_of(region_b), pinned={bytes.fromhex(region_b.registry_sm3())})
    with region_a.sessions() as s:
        own = FileTrustSource(tuple(trust_anchors(s)))
    trust = CompositeTrustSource(own, PeerTrustSource([PeerView(tl)]))
    report = verify_bytes(signature, detached_data=DATA, trust=trust)
    assert report.indication is Indication.PASSED, report.dumps()
    checks = {c.id: c for c in report.signatures[0].checks}
    assert checks["seal.status"].vouched_by == tl.label
    assert (
        checks["seal.maker_certificate_chain"].vouched_by == f"{tl.label}（列明的制章者 listed seal maker）"
    )
    assert checks["signer.certificate_chain"].vouched_by == tl.label
    assert '"vouched_by"' in report.dumps()
    alone = verify_bytes(signature, detached_data=DATA, trust=own)
    assert alone.indication is Indication.INDETERMINATE
    assert all(c.vouched_by is None for c in alone.signatures[0].checks)
