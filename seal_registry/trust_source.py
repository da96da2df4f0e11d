"""The local registry as the verifier's trust source: its CA, its CRLs and the life of its seals.

:class:`RegistryTrustSource` implements :class:`verify.TrustSource`. Trust anchors are the region
root and imported anchors; the CRL is the region's current one (and, for ECDSA/RSA signatures, the
PAdES interop root and its CRL: ``interop_anchors`` / ``interop_crls``); a seal's status is read from its
event history, so a verifier asking "at ``at``" gets the state the seal was in then and the time it
entered that state. The verifier compares that time with the signing time: a signature claimed
before a later cancellation stays valid, one made after it fails (``verify.checks``).

Caching. Every answer is kept in memory in a :class:`RegistryView`, one per *stamp*: the audit
chain's head sequence number (plus, for the federated source, the peers' generations), read with one
small query at the start of each verification (:meth:`RegistryTrustSource.consistent_view`). Every
change that can alter a verdict — a seal event, a revocation, a new anchor, certificate or
department, a peer change — appends an audit entry in its own transaction, and the head advances in
commit order (``core.audit``: a row lock on PostgreSQL, the write lock on SQLite). So a change
committed by any process before a verification starts is behind a stamp that process has not seen,
and the verification reads the database afresh; with an unchanged stamp nothing can have changed
and no other query is made. A stamp moved only by entries that cannot change a verdict (a signature
made, a token issued, ...: :data:`INERT_ACTIONS`) carries the view over.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Generic, TypeVar

from sqlalchemy import Connection, Engine, ScalarSelect, bindparam, func, select
from sqlalchemy.orm import Session, sessionmaker

from core.audit import HEAD_ROW_ID, AuditEntry, audit_head
from gmpki.crl import CertificateRevocationList
from gmpki.x509 import Certificate, LruCache
from hsm_adapters.keystore import KeyStore
from verify.status_snapshot import region_of_es_id, status_fact
from verify.trust import SealState, SealStatusFact

from . import pki
from .models import Department, PkiCertificate, Seal, SealEvent
from .pki import CertRole, current_certificate, pades_trust_anchors, trust_anchors

SOURCE_NAME = "本地印章登记系统 local seal registry"
# A signed CRL is rebuilt when a revocation happens or after this long, never per request.
CRL_REFRESH_SECONDS = 600.0
# Seals (and unknown esIDs) remembered per view: a flood of distinct inputs must not grow the process.
MAX_CACHED_SEALS: Final = 4096
# Audit actions that change nothing a verifier is told: a view stays valid across them. Anything not
# listed (a new action included) starts a new view, so this errs towards reading again.
INERT_ACTIONS: Final = frozenset(
    {
        "signature.made",
        "token.issued",
        "token.revoked",
        "batch.created",
        "licence.issued",
        "licence.grant_created",
        "licence.grant_withdrawn",
        "licence.objection_filed",
    }
)
# Beyond this many new entries a view is simply rebuilt rather than the entries inspected.
MAX_CARRY_GAP: Final = 256

Stamp = tuple[int, ...]
T = TypeVar("T")
_ACTIONS_BETWEEN: Final = (
    select(AuditEntry.action)
    .where(AuditEntry.seq > bindparam("after"), AuditEntry.seq <= bindparam("upto"))
    .distinct()
)


@dataclass(frozen=True)
class _SealRecord:
    """A seal by its bytes: its esID and its events (time, state entered) in history order; esID
    None when no seal has these bytes."""

    es_id: str | None
    events: tuple[tuple[datetime, str], ...] = ()


@dataclass(frozen=True)
class _Tracked:
    """For an esID with no seal of the asked bytes: whether this registry answers for it (UNKNOWN)
    or leaves it to others (None)."""

    tracked: bool


class _SignedCache(Generic[T]):
    """One signed artefact (a CRL) kept by the key of what it was built from, rebuilt when the key
    changes or it is older than ``refresh`` seconds. One thread builds while the others wait holding
    no connection: signing needs one of the key store's (a soft key store reads its key from the
    database), and waiters holding the pool's would starve it. ``build`` reads the database after
    the key was read, so what it signs is never older than the key."""

    def __init__(self, refresh: float) -> None:
        self._refresh = refresh
        self._kept: tuple[tuple[object, ...], float, T] | None = None
        self._lock = threading.Lock()

    def _fresh(self, key: tuple[object, ...]) -> T | None:
        kept = self._kept
        if kept is not None and kept[0] == key and time.monotonic() - kept[1] < self._refresh:
            return kept[2]
        return None

    def get(self, key: tuple[object, ...], build: Callable[[], T]) -> T:
        found = self._fresh(key)
        if found is not None:
            return found
        with self._lock:
            found = self._fresh(key)
            if found is not None:
                return found
            value = build()
            self._kept = (key, time.monotonic(), value)
            return value


class RegistryView:
    """The registry's answers as of one stamp, filled lazily and shared by every verification that
    read the same stamp (thread-safe: a race only reads the same facts twice)."""

    def __init__(self, source: RegistryTrustSource, stamp: Stamp) -> None:
        self.source = source
        self.stamp = stamp
        self._anchors: tuple[Certificate, ...] | None = None
        self._interop: tuple[bytes, ...] | None = None
        self._crl_key: tuple[object, ...] | None = None
        self._interop_crl_key: tuple[object, ...] | None = None
        self._seals: LruCache[bytes, _SealRecord] = LruCache(MAX_CACHED_SEALS)
        self._absent: LruCache[str, _Tracked] = LruCache(MAX_CACHED_SEALS)

    def carried_to(self, stamp: Stamp) -> RegistryView:
        """This view under a later stamp that changed nothing it holds (its caches are shared)."""
        view = copy.copy(self)
        view.stamp = stamp
        return view

    # -- certificates --
    def trust_anchors(self, at: datetime) -> Sequence[Certificate]:
        if self._anchors is None:
            with self.source.sessions() as s:
                self._anchors = tuple(trust_anchors(s))
        return self._anchors

    def intermediates(self, at: datetime) -> Sequence[Certificate]:
        return ()  # the region root issues every certificate directly

    def interop_anchors(self, at: datetime) -> Sequence[bytes]:
        """The region's PAdES interop roots (ECDSA), which PDF signatures by readers' standards chain to."""
        if self._interop is None:
            with self.source.sessions() as s:
                self._interop = tuple(pades_trust_anchors(s))
        return self._interop

    def crls(self, at: datetime) -> Sequence[CertificateRevocationList]:
        if self.source.keystore is None:
            return ()
        if self._crl_key is None:
            with self.source.sessions() as s:
                root = current_certificate(s, CertRole.ROOT)
                count, latest = s.execute(
                    select(func.count(), func.max(PkiCertificate.revoked_at)).where(
                        PkiCertificate.revoked_at.is_not(None), PkiCertificate.issuer == root.subject
                    )
                ).one()
            self._crl_key = (root.id, count, latest)
        return (self.source.crl_for(self._crl_key),)

    def interop_crls(self, at: datetime) -> Sequence[bytes]:
        """The PAdES interop root's CRL (DER; ``verify.trust.InteropCrlSource``), rebuilt on a revocation
        exactly as :meth:`crls`; none without a key store or before the interop root exists."""
        if self.source.keystore is None:
            return ()
        if self._interop_crl_key is None:
            with self.source.sessions() as s:
                self._interop_crl_key = (pki.interop_crl_state(s),)
        if self._interop_crl_key[0] is None:
            return ()
        return (self.source.interop_crl_for(self._interop_crl_key),)

    # -- seals --
    def seal_status(self, es_id: str, seal_sm3: bytes, at: datetime) -> SealStatusFact | None:
        """The seal's state at ``at`` by its event history.

        None (not tracked here) for a seal the registry never made whose esID is not of a region
        this registry serves: a peer region's seal is judged by its own registry, not found "unknown"
        here. Anything claiming one of this registry's esIDs but absent, or present with other
        bytes, is unknown.
        """
        name = self.source.name
        record = self._seals.get(seal_sm3) or self._seals.put(seal_sm3, self._load_seal(seal_sm3))
        if record.es_id is None:
            answer = self._absent.get(es_id) or self._absent.put(es_id, self._load_absent(es_id))
            return SealStatusFact(SealState.UNKNOWN, None, name) if answer.tracked else None
        if record.es_id != es_id:  # pragma: no cover - the esID is inside the hashed bytes
            return SealStatusFact(SealState.UNKNOWN, None, name)
        latest: tuple[datetime, str] | None = None
        for event in record.events:  # in (time, id) order: the last one not after ``at`` holds
            if event[0] > at:
                break
            latest = event
        if latest is None:  # ``at`` is before the seal existed
            return SealStatusFact(SealState.UNKNOWN, None, name)
        return status_fact(latest[1], latest[0], name)

    def _load_seal(self, seal_sm3: bytes) -> _SealRecord:
        with self.source.sessions() as s:
            found = s.execute(
                select(Seal.id, Seal.es_id).where(Seal.seal_sm3 == seal_sm3.hex()).limit(1)
            ).first()
            if found is None:
                return _SealRecord(None)
            events = s.execute(
                select(SealEvent.at, SealEvent.to_state)
                .where(SealEvent.seal_id == found[0])
                .order_by(SealEvent.at, SealEvent.id)
            ).all()
        return _SealRecord(found[1], tuple((at, state) for at, state in events))

    def _load_absent(self, es_id: str) -> _Tracked:
        with self.source.sessions() as s:
            if s.scalar(select(Seal.id).where(Seal.es_id == es_id).limit(1)) is not None:
                return _Tracked(True)
            region = region_of_es_id(es_id)
            return _Tracked(region is not None and self.source.serves(s, region))


class RegistryTrustSource:
    """Trust from the registry database. ``keystore`` signs the CRLs (without one, none is offered);
    ``region_code`` names the region whose esIDs this registry answers for, besides its departments'.

    The trust-source methods answer from the current :class:`RegistryView` (one stamp query each);
    a verification asks :meth:`consistent_view` once and puts every question to it instead
    (``verify.trust.MemoTrustSource`` does so), which costs one query in all.
    """

    view_class: type[RegistryView] = RegistryView

    def __init__(
        self,
        sessions: sessionmaker[Session],
        keystore: KeyStore | None = None,
        *,
        region_code: str | None = None,
        name: str = SOURCE_NAME,
        crl_refresh_seconds: float = CRL_REFRESH_SECONDS,
    ) -> None:
        self.sessions = sessions
        self.keystore = keystore
        self.name = name
        self.region_code = region_code
        self._crl: _SignedCache[CertificateRevocationList] = _SignedCache(crl_refresh_seconds)
        self._interop_crl: _SignedCache[bytes] = _SignedCache(crl_refresh_seconds)
        self._view: RegistryView | None = None
        self._view_lock = threading.Lock()
        self._stamp_statement = select(*self.stamp_columns())  # built once: compiled once, cached
        self._bind: Engine | Connection | None = None

    # -- the view of the current stamp --
    def stamp_columns(self) -> list[ScalarSelect[Any]]:
        """What moves whenever an answer may change (see the module docstring), the audit head first;
        read as one row of scalar sub-queries."""
        return [select(audit_head.c.seq).where(audit_head.c.id == HEAD_ROW_ID).scalar_subquery()]

    def consistent_view(self) -> RegistryView:
        """The answers as of now: the cached view when the stamp has not moved, else a new one."""
        with self._connect() as conn:
            row = conn.execute(self._stamp_statement).one()
            if row[0] is None:  # no audit head (a schema not made by the migrations): never cache
                return self.view_class(self, ())
            stamp: Stamp = tuple(int(v or 0) for v in row)
            current = self._view
            if current is not None and current.stamp == stamp:
                return current
            carried = current is not None and self._inert_since(conn, current.stamp, stamp)
        with self._view_lock:
            latest = self._view
            if latest is not None and latest.stamp == stamp:
                return latest
            if carried and current is not None:
                view = current.carried_to(stamp)
            else:
                view = self.view_class(self, stamp)
            # Whichever stamp a racing thread read, its view answers as of that stamp or later; the
            # one kept here only decides what the next verification finds cached.
            self._view = view
            return view

    def _connect(self) -> AbstractContextManager[Connection]:
        # A bare connection: an ORM session around one SELECT costs more than the SELECT does.
        if self._bind is None:
            with self.sessions() as s:
                self._bind = s.get_bind()
        bind = self._bind
        return bind.connect() if isinstance(bind, Engine) else nullcontext(bind)

    def _inert_since(self, conn: Connection, old: Stamp, new: Stamp) -> bool:
        """Whether only entries of :data:`INERT_ACTIONS` lie between two stamps. The other parts of a
        stamp (peers' generations) must be unchanged: they move without an entry."""
        if old[1:] != new[1:] or not 0 < new[0] - old[0] <= MAX_CARRY_GAP:
            return False
        actions = conn.scalars(_ACTIONS_BETWEEN, {"after": old[0], "upto": new[0]}).all()
        return set(actions) <= INERT_ACTIONS

    # -- the trust-source protocol, each through the current view --
    def trust_anchors(self, at: datetime) -> Sequence[Certificate]:
        return self.consistent_view().trust_anchors(at)

    def intermediates(self, at: datetime) -> Sequence[Certificate]:
        return ()  # the region root issues every certificate directly

    def interop_anchors(self, at: datetime) -> Sequence[bytes]:
        """The region's PAdES interop roots (ECDSA), which PDF signatures by readers' standards chain to."""
        return self.consistent_view().interop_anchors(at)

    def crls(self, at: datetime) -> Sequence[CertificateRevocationList]:
        return self.consistent_view().crls(at)

    def interop_crls(self, at: datetime) -> Sequence[bytes]:
        return self.consistent_view().interop_crls(at)

    def seal_status(self, es_id: str, seal_sm3: bytes, at: datetime) -> SealStatusFact | None:
        return self.consistent_view().seal_status(es_id, seal_sm3, at)

    # -- shared by the views --
    def crl_for(self, key: tuple[object, ...]) -> CertificateRevocationList:
        """The signed SM2 CRL for ``key`` (root, number and latest time of revocations), rebuilt when
        the key changes or the CRL is older than the refresh period (see :class:`_SignedCache`)."""
        return self._crl.get(key, self._build_crl)

    def interop_crl_for(self, key: tuple[object, ...]) -> bytes:
        """The signed PAdES interop CRL (DER) for ``key`` (:func:`pki.interop_crl_state`), kept and
        rebuilt like :meth:`crl_for`."""
        return self._interop_crl.get(key, self._build_interop_crl)

    def _build_crl(self) -> CertificateRevocationList:
        assert self.keystore is not None
        with self.sessions() as s:
            material = pki.crl_material(s)
        return pki.sign_crl(material, self.keystore)  # signed with the session closed

    def _build_interop_crl(self) -> bytes:
        assert self.keystore is not None
        with self.sessions() as s:
            material = pki.interop_crl_material(s)
        return pki.sign_interop_crl(material, self.keystore)

    def serves(self, session: Session, region: str) -> bool:
        """The registry's own region, or one of its departments' (each allocates esIDs)."""
        if region == self.region_code:
            return True
        found = session.scalar(select(Department.id).where(Department.region_code == region).limit(1))
        return found is not None
