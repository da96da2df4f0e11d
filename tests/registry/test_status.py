"""Seal status look-ups and the signed status snapshot (built on each backend, verified offline)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest

from core.errors import (
    CertificateError,
    InputTooLarge,
    InvalidInput,
    InvalidSignature,
    MalformedData,
    NotFound,
    NotUsable,
)
from gmpki import ca
from gmpki.path_validation import PathValidationError
from gmpki.signing import InMemorySigner
from gmpki.sm2 import SM2PrivateKey
from gmpki.x509 import Certificate, build_name
from seal_registry import status
from seal_registry.lifecycle import SealState
from seal_registry.pki import CertRole, current_certificate, service_signer, trust_anchors

from .conftest import Registry


def _snapshot(registry: Registry, **kwargs: object) -> bytes:
    with registry.sessions() as s:
        return status.build_snapshot(s, registry.keystore, region_code="110000", **kwargs)  # type: ignore[arg-type]


def _anchors(registry: Registry) -> list[Certificate]:
    with registry.sessions() as s:
        return trust_anchors(s)


def _envelope(data: bytes) -> dict[str, str]:
    value = json.loads(data)
    assert isinstance(value, dict)
    return value


def _rewrap(envelope: dict[str, str], **changes: str) -> bytes:
    return json.dumps({**envelope, **changes}).encode()


def test_status_look_ups(registry: Registry) -> None:
    issued = registry.seal_in(SealState.ISSUED)
    applied = registry.seal_in(SealState.APPLIED)
    with registry.sessions() as s:
        st = status.status_by_es_id(s, issued.es_id)
        assert (st.es_id, st.seal_sm3, st.state, st.state_zh) == (
            issued.es_id,
            issued.seal_sm3,
            SealState.ISSUED,
            "已发放",
        )
        assert (st.valid_start, st.valid_end, st.changed_at) == (
            issued.valid_start,
            issued.valid_end,
            issued.state_changed_at,
        )
        assert issued.seal_sm3 is not None
        assert status.status_by_sm3(s, issued.seal_sm3.upper()).es_id == issued.es_id
        with pytest.raises(NotFound):
            status.status_by_es_id(s, applied.es_id)  # an application is not a seal yet
        with pytest.raises(NotFound):
            status.status_by_sm3(s, "0" * 64)
        with pytest.raises(InvalidInput):
            status.status_by_sm3(s, "xyz")
    registry.act(issued.id, "suspend", reason="audit")
    with registry.sessions() as s:
        later = status.status_by_es_id(s, issued.es_id)
    assert later.state is SealState.SUSPENDED and later.changed_at > st.changed_at


def test_snapshot_is_signed_and_verifies_offline(registry: Registry) -> None:
    issued = registry.seal_in(SealState.ISSUED)
    cancelled = registry.seal_in(SealState.CANCELLED)
    registry.seal_in(SealState.REVIEWED)  # never made: not in the snapshot
    data = _snapshot(registry)
    env = _envelope(data)
    assert set(env) == {"payload", "signature", "certificate"}
    payload = base64.b64decode(env["payload"])
    doc = json.loads(payload)
    # Canonical serialisation of the payload
    assert payload == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert doc["format"] == "eseal-seal-status/1" and doc["region_code"] == "110000"
    with registry.sessions() as s:
        assert base64.b64decode(env["certificate"]) == current_certificate(s, CertRole.SERVICE).der

    snap = status.verify_snapshot(data, _anchors(registry))
    assert snap.sequence == doc["sequence"] and snap.sequence > 0
    assert snap.next_update - snap.issued_at == status.SNAPSHOT_VALIDITY
    assert sorted(e.es_id for e in snap.seals) == sorted([issued.es_id, cancelled.es_id])
    entry = snap.by_es_id(issued.es_id)
    assert entry is not None and entry.state is SealState.ISSUED and entry.seal_sm3 == issued.seal_sm3
    assert entry.valid_start == issued.valid_start and entry.valid_end == issued.valid_end
    assert cancelled.seal_sm3 is not None
    gone = snap.by_sm3(cancelled.seal_sm3)
    assert gone is not None and gone.state is SealState.CANCELLED


def test_status_change_shows_in_the_next_snapshot(registry: Registry) -> None:
    seal = registry.seal_in(SealState.ISSUED)
    anchors = _anchors(registry)
    first = status.verify_snapshot(_snapshot(registry), anchors)
    same = status.verify_snapshot(_snapshot(registry), anchors)
    assert same.sequence == first.sequence  # nothing changed
    registry.act(seal.id, "suspend", reason="investigation")
    second = status.verify_snapshot(_snapshot(registry), anchors)
    assert second.sequence > first.sequence
    entry = second.by_es_id(seal.es_id)
    assert entry is not None and entry.state is SealState.SUSPENDED
    registry.act(seal.id, "cancel", reason="closed")
    third = status.verify_snapshot(_snapshot(registry), anchors)
    assert third.sequence > second.sequence
    entry = third.by_es_id(seal.es_id)
    assert entry is not None and entry.state is SealState.CANCELLED


def test_tampered_or_untrusted_snapshots_fail(registry: Registry) -> None:
    seal = registry.seal_in(SealState.CANCELLED)
    data = _snapshot(registry)
    anchors = _anchors(registry)
    env = _envelope(data)
    payload = base64.b64decode(env["payload"])

    # A cancelled seal shown as issued: the signature no longer matches
    forged = payload.replace(b'"state":"cancelled"', b'"state":"issued"')
    assert forged != payload
    with pytest.raises(InvalidSignature):
        status.verify_snapshot(_rewrap(env, payload=base64.b64encode(forged).decode()), anchors)
    sig = bytearray(base64.b64decode(env["signature"]))
    sig[-1] ^= 0x01
    with pytest.raises(InvalidSignature):
        status.verify_snapshot(_rewrap(env, signature=base64.b64encode(bytes(sig)).decode()), anchors)

    # Signed by a key of its own under a foreign root: the signature checks, the chain does not
    foreign_key = InMemorySigner(SM2PrivateKey.generate())
    foreign_root = ca.issue_root_ca(foreign_key, build_name("Foreign Root"))
    with pytest.raises(PathValidationError):
        status.verify_snapshot(data, [foreign_root])
    own = InMemorySigner(SM2PrivateKey.generate())
    own_cert = ca.issue_service_certificate(foreign_key, foreign_root, own.public_key, build_name("Impostor"))
    impostor = _rewrap(
        env,
        signature=base64.b64encode(own.sign(payload)).decode(),
        certificate=base64.b64encode(own_cert.der).decode(),
    )
    assert status.verify_snapshot(impostor, [foreign_root]).by_es_id(seal.es_id) is not None
    with pytest.raises(PathValidationError):
        status.verify_snapshot(impostor, anchors)

    # A department key chains to the region root too, but lacks the status-signing EKU
    assert registry.certificate.key_id is not None
    dept_signed = _rewrap(
        env,
        signature=base64.b64encode(registry.keystore.sign(registry.certificate.key_id, payload)).decode(),
        certificate=base64.b64encode(registry.certificate.der).decode(),
    )
    with pytest.raises(CertificateError, match="OCSPSigning"):
        status.verify_snapshot(dept_signed, anchors)
    with registry.sessions() as s:
        pin = bytes.fromhex(current_certificate(s, CertRole.SERVICE).sm3)
    assert status.verify_snapshot(data, anchors, pinned_signers={pin}).sequence > 0
    with pytest.raises(CertificateError, match="pinned"):
        status.verify_snapshot(dept_signed, anchors, pinned_signers={pin})
    with pytest.raises(CertificateError, match="pinned"):
        status.verify_snapshot(impostor, [foreign_root], pinned_signers={pin})

    # Freshness
    snap = status.verify_snapshot(data, anchors)
    with pytest.raises(NotUsable, match="stale"):
        status.verify_snapshot(data, anchors, at=snap.next_update + timedelta(seconds=1))
    with pytest.raises(NotUsable, match="future"):
        status.verify_snapshot(data, anchors, at=snap.issued_at - timedelta(minutes=5))
    historic = status.verify_snapshot(
        data, anchors, at=snap.next_update + timedelta(days=1), check_freshness=False
    )
    assert historic.sequence == snap.sequence


def test_signed_but_malformed_payloads_are_rejected(registry: Registry) -> None:
    """Even under a valid signature the payload must be the canonical, complete document."""
    data = _snapshot(registry)
    env = _envelope(data)
    doc = json.loads(base64.b64decode(env["payload"]))
    anchors = _anchors(registry)

    def signed(payload: bytes) -> bytes:
        with registry.sessions() as s:
            signature = service_signer(s, registry.keystore).sign(payload)
        return _rewrap(
            env, payload=base64.b64encode(payload).decode(), signature=base64.b64encode(signature).decode()
        )

    assert status.verify_snapshot(signed(status.canonical_bytes(doc)), anchors).sequence == doc["sequence"]
    with pytest.raises(MalformedData, match="canonical"):
        status.verify_snapshot(signed(json.dumps(doc, indent=1).encode()), anchors)
    for broken in (
        {**doc, "format": "other/1"},
        {k: v for k, v in doc.items() if k != "sequence"},
        {**doc, "sequence": -1},
        {**doc, "sequence": True},
        {**doc, "issued_at": "yesterday"},
        {**doc, "seals": [{"es_id": "x", "state": "issued"}]},
        {**doc, "seals": [{**_entry(), "state": "lost"}]},
        {**doc, "seals": [{**_entry(), "seal_sm3": "zz"}]},
    ):
        with pytest.raises(MalformedData):
            status.verify_snapshot(signed(status.canonical_bytes(broken)), anchors)


def _entry() -> dict[str, str]:
    return {
        "es_id": "11000002000001",
        "seal_sm3": "ab" * 32,
        "state": "issued",
        "changed_at": "2025-01-01T00:00:00Z",
        "valid_start": "2025-01-01T00:00:00Z",
        "valid_end": "2026-01-01T00:00:00Z",
    }


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        b'{"payload": "x"}',
        b'{"payload": "!!", "signature": "", "certificate": ""}',
        b'{"payload": "", "signature": "", "certificate": "AAAA"}',
        b'{"payload": 1, "signature": "", "certificate": ""}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"payload": "\xff"}',
    ],
)
def test_hostile_envelopes(data: bytes) -> None:
    with pytest.raises(MalformedData):
        status.verify_snapshot(data, [])


def test_oversized_envelope() -> None:
    with pytest.raises(InputTooLarge):
        status.verify_snapshot(b" " * (status.MAX_SNAPSHOT_BYTES + 1), [])
