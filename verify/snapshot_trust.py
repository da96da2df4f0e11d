"""Seal status from a signed seal-status snapshot file: the registry's answer, offline.

A snapshot holds each made seal's current state and when it entered it, signed by the region's
service key (:mod:`verify.status_snapshot`). :class:`SnapshotTrustSource` checks that signature once,
against the anchors of the trust source it wraps, and then answers ``seal_status`` from the file;
certificates and CRLs still come from the wrapped source.

What a snapshot cannot say is said as an error, which the seal.status check reports as
indeterminate: the state at a time before the recorded change (earlier states are not in the file),
and any non-final state after the snapshot's ``next_update`` (it may have changed since). A
cancellation is final, so a stale snapshot still proves it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Final

from core.errors import ConfigurationError, NotUsable
from gmpki.crl import CertificateRevocationList
from gmpki.x509 import Certificate

from .status_snapshot import (
    MAX_SNAPSHOT_BYTES,
    TERMINAL_STATES,
    StatusSnapshot,
    ensure_fresh,
    format_time,
    region_of_es_id,
    status_fact,
    verify_snapshot,
)
from .trust import SealState, SealStatusFact, TrustSource

_EMPTY: Final[tuple[()]] = ()


class SnapshotTrustSource:
    """``base``'s certificates and CRLs, and seal status from a verified ``snapshot``."""

    def __init__(self, snapshot: StatusSnapshot, base: TrustSource | None = None) -> None:
        self.snapshot = snapshot
        self._base = base
        self._regions = {snapshot.region_code} | {
            r for r in (region_of_es_id(e.es_id) for e in snapshot.seals) if r is not None
        }
        self.name = (
            f"印章状态快照 seal status snapshot {snapshot.region_code} #{snapshot.sequence} "
            f"{format_time(snapshot.issued_at)}"
        )

    @classmethod
    def load(
        cls,
        envelope: bytes,
        base: TrustSource,
        *,
        now: dt.datetime | None = None,
        pinned_signers: Collection[bytes] = (),
    ) -> SnapshotTrustSource:
        """Verify ``envelope`` (signature, signer chain to one of ``base``'s anchors at ``now``) and
        wrap ``base``. Freshness is judged per question, against the validation time."""
        when = now or dt.datetime.now(dt.UTC)
        snapshot = verify_snapshot(
            envelope,
            base.trust_anchors(when),
            at=when,
            intermediates=base.intermediates(when),
            check_freshness=False,
            pinned_signers=pinned_signers,
        )
        return cls(snapshot, base)

    @classmethod
    def from_path(
        cls, path: Path | str, base: TrustSource, *, now: dt.datetime | None = None
    ) -> SnapshotTrustSource:
        path = Path(path)
        try:
            if path.stat().st_size > MAX_SNAPSHOT_BYTES:
                raise ConfigurationError(f"快照文件过大：{path}", f"snapshot file too large: {path}")
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                f"无法读取快照文件 {path}：{exc}", f"cannot read snapshot file {path}: {exc}"
            ) from exc
        return cls.load(data, base, now=now)

    # -- certificates: from the wrapped source --
    def trust_anchors(self, at: dt.datetime) -> Sequence[Certificate]:
        return self._base.trust_anchors(at) if self._base else _EMPTY

    def intermediates(self, at: dt.datetime) -> Sequence[Certificate]:
        return self._base.intermediates(at) if self._base else _EMPTY

    def crls(self, at: dt.datetime) -> Sequence[CertificateRevocationList]:
        return self._base.crls(at) if self._base else _EMPTY

    def interop_anchors(self, at: dt.datetime) -> Sequence[bytes]:
        """The wrapped source's ECDSA/RSA anchors (``verify.interop``), if it has any."""
        ask = getattr(self._base, "interop_anchors", None)
        return tuple(ask(at)) if callable(ask) else ()

    # -- seals: from the snapshot --
    def seal_status(self, es_id: str, seal_sm3: bytes, at: dt.datetime) -> SealStatusFact | None:
        snap = self.snapshot
        entry = snap.by_sm3(seal_sm3.hex())
        if entry is None:
            region = region_of_es_id(es_id)
            if snap.by_es_id(es_id) is None and (region is None or region not in self._regions):
                return None  # another region's seal: this snapshot does not speak for it
            self._not_stale(at)  # a seal made after the snapshot is missing from it
            return SealStatusFact(SealState.UNKNOWN, None, self.name)
        if at < entry.changed_at:
            raise NotUsable(
                f"快照只记录印章 {es_id} 自 {format_time(entry.changed_at)} 起的状态，"
                f"不能说明 {format_time(at)} 时的状态",
                f"the snapshot records seal {es_id} only since {format_time(entry.changed_at)}, "
                f"not its state at {format_time(at)}",
            )
        if entry.state not in TERMINAL_STATES:
            self._not_stale(at)
        return status_fact(entry.state, entry.changed_at, self.name)

    def _not_stale(self, at: dt.datetime) -> None:
        # Only the later side matters: before issued_at the recorded state held since changed_at.
        if at > self.snapshot.next_update:
            ensure_fresh(self.snapshot, at)
