"""The registry as a trust source (both backends), and its signed snapshot used offline.

A seal issued by the registry verifies PASSED; after it is cancelled, a signature made with its key
after the cancellation fails with SEAL_CANCELLED while one made before stays valid. The snapshot
reproduces the verdicts with no database.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest

from core.db import transaction, utcnow
from core.errors import InvalidSignature
from gmpki.seal import parse_ses_signature
from gmpki.sm3 import sm3
from seal_registry import status
from seal_registry.lifecycle import SealState as RegistryState
from seal_registry.pki import revoke_certificate, trust_anchors
from seal_registry.trust_source import RegistryTrustSource
from verify import FileTrustSource, Indication, Result, SealState, SubIndication, verify_bytes
from verify.report import DocumentReport
from verify.snapshot_trust import SnapshotTrustSource

from ..registry.conftest import Registry
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
