"""The registry as a trust source (both backends), and its signed snapshot used offline.

A seal issued by the registry verifies PASSED; after it is cancelled, a signature made with its key
after the cancellation fails with SEAL_CANCELLED while one made before stays valid. The snapshot
reproduces the verdicts with no database.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, event, select, update

from core.audit import audit_head
from core.db import make_engine, make_session_factory, transaction, utcnow
from core.errors import InvalidSignature
from gmpki.crl import CertificateRevocationList
from gmpki.seal import parse_ses_signature
from gmpki.sm3 import sm3
from hsm_adapters.soft import SoftKeyStore
from seal_registry import pki, status
from seal_registry.federation_models import FederationPeer
from seal_registry.lifecycle import SealState as RegistryState
from seal_registry.models import Seal
from seal_registry.peers import FederatedTrustSource, add_peer
from seal_registry.pki import revoke_certificate, trust_anchors
from seal_registry.trust_source import RegistryTrustSource
from verify import FileTrustSource, Indication, Result, SealState, SubIndication, verify_bytes
from verify.report import DocumentReport
from verify.snapshot_trust import SnapshotTrustSource

from ..registry.conftest import FAST_SCRYPT, Registry
from .conftest import DATA, RegionSeal, after_the_second_of, cancelled_scenario


def _region(registry: Registry) -> RegionSeal:
    return RegionSeal(
        registry.sessions, registry.keystore, registry.department.id, registry.seal_in(RegistryState.ISSUED)
    )


def _source(registry: Registry) -> RegistryTrustSource:
    return RegistryTrustSource(registry.sessions, registry.keystore, region_code="110000")


def _status(report: DocumentReport) -> Result:
    return report.signatures[0].check("seal.status").result


def test_issued_seal_passes_with_every_check_evaluated(registry: Registry) -> None:
    region = _region(registry)
    report = verify_bytes(region.sign(), detached_data=DATA, trust=_source(registry))
    assert report.indication is Indication.PASSED, report.dumps()
    results = report.signatures[0].results()
    skipped = {k for k, v in results.items() if v is Result.SKIPPED}
    assert skipped == {"timestamp.token"}  # status and revocation are both answered by the registry
    assert (
        results["seal.status"] is Result.PASSED and results["signer.certificate_revocation"] is Result.PASSED
    )
    assert "local seal registry" in report.signatures[0].check("seal.status").message_en
    # The same bytes without the registry: no anchor, no status
    alone = verify_bytes(region.sign(), detached_data=DATA)
    assert alone.indication is Indication.INDETERMINATE


def test_cancellation_fails_later_signatures_only(registry: Registry) -> None:
    case = cancelled_scenario(_region(registry))
    trust = _source(registry)

    after = verify_bytes(case.after, detached_data=DATA, trust=trust)
    assert (after.indication, after.sub_indication) == (Indication.FAILED, SubIndication.SEAL_CANCELLED)
    (sig,) = after.signatures
    assert [c.id for c in sig.checks if c.result is Result.FAILED] == ["seal.status"]
    assert "cancelled" in sig.check("seal.status").message_en

    before = verify_bytes(case.before, detached_data=DATA, trust=trust)
    assert before.indication is Indication.PASSED, before.dumps()
    assert _status(before) is Result.WARNING  # reported: cancelled since, after the signing time

    # Validation time before the cancellation: the seal was active then
    then = case.cancelled_at - dt.timedelta(microseconds=1)
    assert _status(verify_bytes(case.before, detached_data=DATA, trust=trust, at=then)) is Result.PASSED


def test_status_follows_the_history(registry: Registry) -> None:
    region = _region(registry)
    trust = _source(registry)
    seal_sm3 = sm3(parse_ses_signature(region.sign()).seal.raw)
    issued_at = region.seal.state_changed_at
    region.act("suspend", "audit")
    suspended_at = region.seal.state_changed_at
    fact = trust.seal_status(region.es_id, seal_sm3, utcnow())
    assert fact is not None and (fact.state, fact.changed_at) == (SealState.SUSPENDED, suspended_at)
    region.act("resume")
    fact = trust.seal_status(region.es_id, seal_sm3, utcnow())
    assert (
        fact is not None
        and fact.state is SealState.ACTIVE
        and fact.changed_at == region.seal.state_changed_at
    )
    during = trust.seal_status(region.es_id, seal_sm3, suspended_at)
    assert during is not None and during.state is SealState.SUSPENDED
    first = trust.seal_status(region.es_id, seal_sm3, issued_at)
    assert first is not None and (first.state, first.changed_at) == (SealState.ACTIVE, issued_at)
    made = region.seal.created_at  # applied, not yet issued: no seal to vouch for yet
    early = trust.seal_status(region.es_id, seal_sm3, made)
    assert early is not None and early.state is SealState.UNKNOWN

    # Bytes that are not the registered seal, an unknown seal of this region, another region's seal
    other = trust.seal_status(region.es_id, b"\x01" * 32, utcnow())
    assert other is not None and other.state is SealState.UNKNOWN
    missing = trust.seal_status("11000002999999", b"\x02" * 32, utcnow())
    assert missing is not None and missing.state is SealState.UNKNOWN
    assert trust.seal_status("50011200000399", b"\x03" * 32, utcnow()) is None
    assert trust.seal_status("51f044b76510434e9bc67a1185c2fba5", b"\x03" * 32, utcnow()) is None


def test_suspended_seal_fails_and_crl_follows_revocation(registry: Registry) -> None:
    region = _region(registry)
    trust = _source(registry)
    signature = region.sign()
    assert verify_bytes(signature, detached_data=DATA, trust=trust).indication is Indication.PASSED
    after_the_second_of(utcnow())  # CRL times have whole seconds too
    with transaction(registry.sessions) as s:
        revoke_certificate(s, region.seal.signer_certificate_id, reason="key_compromise", actor="test")
    # The cached CRL is rebuilt at once: the revocation, later than the claimed signing time, shows
    report = verify_bytes(signature, detached_data=DATA, trust=trust)
    assert (report.indication, report.sub_indication) == (
        Indication.INDETERMINATE,
        SubIndication.REVOKED_NO_POE,
    )
    region.act("suspend", "investigation")
    late = region.forge(region.seal.state_changed_at.replace(microsecond=0) + dt.timedelta(seconds=2))
    report = verify_bytes(late, detached_data=DATA, trust=trust)
    assert (report.indication, report.sub_indication) == (Indication.FAILED, SubIndication.REVOKED)
    assert report.signatures[0].check("seal.status").result is Result.FAILED
    assert "suspended" in report.signatures[0].check("seal.status").message_en


# --- the snapshot, offline --------------------------------------------------------------------------------
def _snapshot(registry: Registry, **kwargs: object) -> bytes:
    with registry.sessions() as s:
        return status.build_snapshot(s, registry.keystore, region_code="110000", **kwargs)  # type: ignore[arg-type]


def _anchors(registry: Registry, tmp_path: Path) -> FileTrustSource:
    with registry.sessions() as s:
        pem = "".join(c.to_pem() for c in trust_anchors(s))
    (tmp_path / "root.pem").write_text(pem)
    return FileTrustSource.from_paths([tmp_path / "root.pem"])


def test_snapshot_gives_the_same_verdicts_offline(registry: Registry, tmp_path: Path) -> None:
    case = cancelled_scenario(_region(registry))
    active = _region(registry)
    active_signature = active.sign()
    envelope = _snapshot(registry)
    files = _anchors(registry, tmp_path)
    trust = SnapshotTrustSource.load(envelope, files)

    after = verify_bytes(case.after, detached_data=DATA, trust=trust)
    assert (after.indication, after.sub_indication) == (Indication.FAILED, SubIndication.SEAL_CANCELLED)
    assert "seal status snapshot 110000" in after.signatures[0].check("seal.status").message_en
    before = verify_bytes(case.before, detached_data=DATA, trust=trust)
    assert before.indication is Indication.PASSED and _status(before) is Result.WARNING
    assert _status(verify_bytes(active_signature, detached_data=DATA, trust=trust)) is Result.PASSED

    # An hour and a minute later the snapshot is stale: an active seal's state may have changed since,
    # a cancellation cannot be undone.
    later = utcnow() + status.SNAPSHOT_VALIDITY + dt.timedelta(minutes=1)
    stale = verify_bytes(active_signature, detached_data=DATA, trust=trust, at=later)
    assert (stale.indication, stale.sub_indication) == (Indication.INDETERMINATE, SubIndication.TRY_LATER)
    assert "stale" in stale.signatures[0].check("seal.status").message_en
    still = verify_bytes(case.after, detached_data=DATA, trust=trust, at=later)
    assert still.sub_indication is SubIndication.SEAL_CANCELLED


def test_snapshot_must_be_signed_by_the_region(registry: Registry, tmp_path: Path) -> None:
    _region(registry)
    envelope = json.loads(_snapshot(registry))
    payload = base64.b64decode(envelope["payload"])
    forged = payload.replace(b'"state":"issued"', b'"state":"cancelled"')
    assert forged != payload
    envelope["payload"] = base64.b64encode(forged).decode()
    files = _anchors(registry, tmp_path)
    with pytest.raises(InvalidSignature):
        SnapshotTrustSource.load(json.dumps(envelope).encode(), files)


# --- caching: one query per verification, changes seen at once, cold concurrency ------------------------
def test_cold_source_builds_its_crl_once_under_concurrency_with_a_small_pool(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cold service: a new key store (no decrypted key cached) and a pool of two connections. 32
    # threads ask for the CRL at once; the one that builds it needs a connection for the key store
    # while the others wait, so no waiter may hold a connection.
    engine = make_engine(registry.url, pool_size=2, max_overflow=0, pool_timeout=5)
    sessions = make_session_factory(engine)
    keystore = SoftKeyStore(sessions, "registry test passphrase", scrypt_params=FAST_SCRYPT)
    source = RegistryTrustSource(sessions, keystore, region_code="110000")
    built: list[int] = []
    sign = pki.sign_crl

    def counting(*args: Any, **kwargs: Any) -> CertificateRevocationList:
        built.append(1)
        time.sleep(0.05)  # widen the window in which the others arrive
        return sign(*args, **kwargs)

    monkeypatch.setattr(pki, "sign_crl", counting)
    barrier = threading.Barrier(32)

    def ask(_: int) -> bytes:
        barrier.wait()
        (crl,) = source.crls(utcnow())
        return crl.der

    try:
        with ThreadPoolExecutor(32) as pool:
            ders = set(pool.map(ask, range(32)))
    finally:
        keystore.close()
        engine.dispose()
    assert len(ders) == 1 and built == [1]


@dataclass
class _Counted:
    """A source on an engine of its own (as another worker process has), counting its statements."""

    source: RegistryTrustSource
    statements: list[str]
    engine: Engine

    def verify(self, signature: bytes) -> DocumentReport:
        return verify_bytes(signature, detached_data=DATA, trust=self.source)

    def asked(self, signature: bytes) -> tuple[DocumentReport, int]:
        self.statements.clear()
        report = self.verify(signature)
        return report, len(self.statements)


@pytest.fixture
def counted(registry: Registry) -> Iterator[_Counted]:
    engine = make_engine(registry.url)
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    source = RegistryTrustSource(make_session_factory(engine), registry.keystore, region_code="110000")
    yield _Counted(source, statements, engine)
    engine.dispose()


def test_a_warm_verification_makes_one_query(registry: Registry, counted: _Counted) -> None:
    region = _region(registry)
    first, second = region.sign(), region.sign(DATA, "other.txt")
    report, cold = counted.asked(first)
    assert report.indication is Indication.PASSED and cold > 1
    report, warm = counted.asked(second)  # a new document, the same seal: one stamp query
    assert report.indication is Indication.PASSED and warm == 1, counted.statements
    assert "audit_head" in counted.statements[0]
    # The same through the federated source (the service's): the stamp covers the peers too
    federated = FederatedTrustSource(counted.source.sessions, registry.keystore, region_code="110000")
    verify_bytes(second, detached_data=DATA, trust=federated)
    counted.statements.clear()
    assert verify_bytes(second, detached_data=DATA, trust=federated).indication is Indication.PASSED
    assert len(counted.statements) == 1, counted.statements


def test_changes_made_elsewhere_are_seen_by_the_next_verification(
    registry: Registry, counted: _Counted
) -> None:
    region = _region(registry)
    signature = region.sign()
    assert counted.verify(signature).indication is Indication.PASSED  # cached: anchors, CRL, the seal
    after_the_second_of(utcnow())
    region.act("suspend", "audit")  # through the registry's own engine, not the cached source's
    late = region.forge(region.seal.state_changed_at.replace(microsecond=0) + dt.timedelta(seconds=2))
    report = counted.verify(late)
    assert (report.indication, report.sub_indication) == (Indication.FAILED, SubIndication.SEAL_SUSPENDED)
    region.act("resume")
    assert counted.verify(region.sign()).indication is Indication.PASSED
    after_the_second_of(utcnow())
    with transaction(registry.sessions) as s:
        revoke_certificate(s, region.seal.signer_certificate_id, reason="key_compromise", actor="test")
    report = counted.verify(signature)  # the cached CRL is rebuilt at once
    assert report.sub_indication is SubIndication.REVOKED_NO_POE
    assert counted.source.consistent_view() is counted.source.consistent_view()  # nothing changed since


def test_cancellation_by_another_process_is_seen_at_once(registry: Registry, counted: _Counted) -> None:
    region = _region(registry)
    before = region.sign()
    assert counted.verify(before).indication is Indication.PASSED
    after_the_second_of(utcnow())
    script = (
        "import sys\n"
        "from core.db import make_engine, make_session_factory, transaction\n"
        "from seal_registry import seals\n"
        "engine = make_engine(sys.argv[1])\n"
        "with transaction(make_session_factory(engine)) as s:\n"
        "    seals.cancel(s, sys.argv[2], actor='seal_officer:other-process', reason='key holder left')\n"
        "engine.dispose()\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, registry.url, region.seal.id],
        cwd=Path(__file__).resolve().parents[2],
        check=True,
        timeout=120,
    )
    with registry.sessions() as s:
        cancelled_at = s.execute(select(Seal.state_changed_at).where(Seal.id == region.seal.id)).scalar_one()
    after = region.forge(cancelled_at.replace(microsecond=0) + dt.timedelta(seconds=2))
    report = counted.verify(after)
    assert (report.indication, report.sub_indication) == (Indication.FAILED, SubIndication.SEAL_CANCELLED)
    earlier = counted.verify(before)
    assert earlier.indication is Indication.PASSED and _status(earlier) is Result.WARNING


def test_a_view_is_kept_across_changes_that_cannot_alter_a_verdict(
    registry: Registry, counted: _Counted
) -> None:
    region = _region(registry)
    signature = region.sign()
    counted.verify(signature)
    first = counted.source.consistent_view()
    other = region.sign()  # appends "signature.made": the stamp moves, nothing a verifier is told does
    report, asked = counted.asked(other)
    assert report.indication is Indication.PASSED
    assert asked == 2, counted.statements  # the stamp, then the actions since the last one
    second = counted.source.consistent_view()
    assert second is not first and second.stamp > first.stamp
    region.act("suspend", "audit")
    third = counted.source.consistent_view()
    fact = third.seal_status(region.es_id, sm3(parse_ses_signature(signature).seal.raw), utcnow())
    assert fact is not None and fact.state is SealState.SUSPENDED


def test_federated_stamp_follows_peer_generations(registry: Registry) -> None:
    source = FederatedTrustSource(registry.sessions, registry.keystore, region_code="110000")
    view = source.consistent_view()
    assert source.consistent_view() is view and not view.peers().peers
    with transaction(registry.sessions) as s:
        peer = add_peer(
            s,
            url="https://peer.example/v1/trust-list",
            pinned_sm3="ab" * 32,
            region_code="320000",
            name="peer",
            actor="test",
        )
    added = source.consistent_view()
    assert added is not view
    # A sync storing a list may bump the generation without an audit entry: still a new view
    with transaction(registry.sessions) as s:
        s.execute(
            update(FederationPeer)
            .where(FederationPeer.id == peer.id)
            .values(generation=FederationPeer.generation + 1)
        )
    assert source.consistent_view() is not added


def test_without_an_audit_head_nothing_is_cached(registry: Registry) -> None:
    source = RegistryTrustSource(registry.sessions, registry.keystore, region_code="110000")
    assert source.consistent_view() is source.consistent_view()
    with transaction(registry.sessions) as s:
        s.execute(delete(audit_head))
    assert source.consistent_view() is not source.consistent_view()


def test_signature_inside_a_past_suspension_fails_after_resumption(registry: Registry) -> None:
    """Active now, but suspended at the claimed signing time: the registry refused to sign then."""
    region = _region(registry)
    trust = _source(registry)
    after_the_second_of(utcnow())
    region.act("suspend", "investigation")
    suspended_at = region.seal.state_changed_at
    after_the_second_of(suspended_at + dt.timedelta(seconds=1))
    region.act("resume")
    # SES times have whole seconds: a claimed time one second into the suspension window
    inside = region.forge(suspended_at.replace(microsecond=0) + dt.timedelta(seconds=1))
    report = verify_bytes(inside, detached_data=DATA, trust=trust)
    assert (report.indication, report.sub_indication) == (Indication.FAILED, SubIndication.SEAL_SUSPENDED)
    (sig,) = report.signatures
    assert [c.id for c in sig.checks if c.result is Result.FAILED] == ["seal.status"]
    assert "was suspended at the signing time" in sig.check("seal.status").message_en
    # Signed now, after the resumption: valid
    assert verify_bytes(region.sign(), detached_data=DATA, trust=trust).indication is Indication.PASSED
    # Validated inside the window, the same signature fails on the state at that time
    window = region.seal.state_changed_at - dt.timedelta(microseconds=1)
    during = verify_bytes(inside, detached_data=DATA, trust=trust, at=window)
    assert during.sub_indication is SubIndication.SEAL_SUSPENDED
