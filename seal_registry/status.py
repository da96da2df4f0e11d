"""Seal status for verifiers: look-ups by esID or by SM3 of the seal file, and a signed snapshot of
every made seal's status that a verifier can check offline.

The snapshot format and its offline reader are in :mod:`verify.status_snapshot` (``verify`` must not
depend on the registry). ``sequence`` is the audit chain's head ``seq`` read before the seals: every
state change appends to the chain in its own transaction and the head row serialises those commits,
so a change is visible in the next snapshot and its sequence is higher (event ids would not do: on
PostgreSQL they are allocated before commit, not in commit order).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import current_head
from core.db import utcnow
from core.errors import InvalidInput, NotFound
from gmpki.x509 import Certificate
from hsm_adapters.keystore import KeyStore
from verify.status_snapshot import (
    MAX_SNAPSHOT_BYTES,
    SNAPSHOT_FORMAT,
    SnapshotEntry,
    StatusSnapshot,
    canonical_bytes,
    parse_envelope,
)
from verify.status_snapshot import format_time as _fmt
from verify.status_snapshot import verify_snapshot as _verify_snapshot

from .lifecycle import STATE_LABELS_ZH, SealState
from .models import Seal
from .pki import CertRole, current_certificate, signer_for

__all__ = [
    "MAX_SNAPSHOT_BYTES",
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_VALIDITY",
    "SealStatus",
    "SnapshotEntry",
    "StatusSnapshot",
    "build_snapshot",
    "canonical_bytes",
    "normalise_sm3_hex",
    "parse_envelope",
    "snapshot_payload",
    "status_by_es_id",
    "status_by_sm3",
    "verify_snapshot",
]

SNAPSHOT_VALIDITY = timedelta(hours=1)
_SM3_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class SealStatus:
    """What a verifier may know about one made seal."""

    es_id: str
    seal_sm3: str
    name: str
    seal_type: str
    state: SealState
    changed_at: datetime
    valid_start: datetime
    valid_end: datetime

    @property
    def state_zh(self) -> str:
        return STATE_LABELS_ZH[self.state]


# --- look-ups -------------------------------------------------------------------------------------
def _status(seal: Seal) -> SealStatus:
    assert seal.seal_sm3 is not None
    return SealStatus(
        es_id=seal.es_id,
        seal_sm3=seal.seal_sm3,
        name=seal.name,
        seal_type=seal.seal_type,
        state=SealState(seal.state),
        changed_at=seal.state_changed_at,
        valid_start=seal.valid_start,
        valid_end=seal.valid_end,
    )


def status_by_es_id(session: Session, es_id: str) -> SealStatus:
    """Status of a made seal. Applications that never became a seal are not public."""
    seal = session.scalar(select(Seal).where(Seal.es_id == es_id, Seal.seal_sm3.is_not(None)))
    if seal is None:
        raise NotFound(f"印章 {es_id[:64]} 不存在", f"No seal with esID {es_id[:64]}")
    return _status(seal)


def normalise_sm3_hex(value: str) -> str:
    key = value.strip().lower()
    if not _SM3_HEX.fullmatch(key):
        raise InvalidInput("SM3 摘要须为 64 位十六进制", "An SM3 digest is 64 hexadecimal characters")
    return key


def status_by_sm3(session: Session, seal_sm3: str) -> SealStatus:
    """Status of the seal whose file (``.esl`` DER) has this SM3 digest."""
    key = normalise_sm3_hex(seal_sm3)
    seal = session.scalar(select(Seal).where(Seal.seal_sm3 == key))
    if seal is None:
        raise NotFound(f"没有 SM3 为 {key} 的印章", f"No seal with SM3 {key}")
    return _status(seal)


# --- snapshot: building ---------------------------------------------------------------------------
def snapshot_payload(
    session: Session,
    *,
    region_code: str,
    validity: timedelta = SNAPSHOT_VALIDITY,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The unsigned snapshot document."""
    issued_at = (now or utcnow()).replace(microsecond=0)
    # The head first: a change committed between the two reads shows up with this (lower) sequence
    # and again with a higher one next time, never the other way round.
    sequence = current_head(session).seq
    rows = session.scalars(select(Seal).where(Seal.seal_sm3.is_not(None)).order_by(Seal.es_id))
    return {
        "format": SNAPSHOT_FORMAT,
        "region_code": region_code,
        "sequence": sequence,
        "issued_at": _fmt(issued_at),
        "next_update": _fmt(issued_at + validity),
        "seals": [
            {
                "es_id": s.es_id,
                "seal_sm3": s.seal_sm3,
                "state": s.state,
                "changed_at": _fmt(s.state_changed_at),
                "valid_start": _fmt(s.valid_start),
                "valid_end": _fmt(s.valid_end),
            }
            for s in rows
        ],
    }


def build_snapshot(
    session: Session,
    keystore: KeyStore,
    *,
    region_code: str,
    validity: timedelta = SNAPSHOT_VALIDITY,
    now: datetime | None = None,
) -> bytes:
    """The signed snapshot envelope (JSON bytes), signed with the region's service key."""
    payload = canonical_bytes(snapshot_payload(session, region_code=region_code, validity=validity, now=now))
    cert_row = current_certificate(session, CertRole.SERVICE)
    signature = signer_for(keystore, cert_row).sign(payload)
    envelope = {
        "payload": base64.b64encode(payload).decode("ascii"),
        "signature": base64.b64encode(signature).decode("ascii"),
        "certificate": base64.b64encode(cert_row.der).decode("ascii"),
    }
    return canonical_bytes(envelope)


# --- snapshot: verifying (the pure reader lives in verify, so offline verifiers need no registry) ---
def verify_snapshot(
    envelope: bytes,
    trust_anchors: Sequence[Certificate],
    *,
    at: datetime | None = None,
    intermediates: Iterable[Certificate] = (),
    check_freshness: bool = True,
    pinned_signers: Collection[bytes] = (),
) -> StatusSnapshot:
    """:func:`verify.status_snapshot.verify_snapshot`, with each entry's state as a registry
    :class:`SealState` (a ``str`` subclass, so the entry type is unchanged)."""
    snapshot = _verify_snapshot(
        envelope,
        trust_anchors,
        at=at,
        intermediates=intermediates,
        check_freshness=check_freshness,
        pinned_signers=pinned_signers,
    )
    return replace(snapshot, seals=tuple(replace(e, state=SealState(e.state)) for e in snapshot.seals))
