"""The local registry as the verifier's trust source: its CA, its CRL and the life of its seals.

:class:`RegistryTrustSource` implements :class:`verify.TrustSource`. Trust anchors are the region
root and imported anchors; the CRL is the region's current one; a seal's status is read from its
event history, so a verifier asking "at ``at``" gets the state the seal was in then and the time it
entered that state. The verifier compares that time with the signing time: a signature claimed
before a later cancellation stays valid, one made after it fails (``verify.checks``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gmpki.crl import CertificateRevocationList
from gmpki.x509 import Certificate
from hsm_adapters.keystore import KeyStore
from verify.status_snapshot import region_of_es_id, status_fact
from verify.trust import SealState, SealStatusFact

from .models import Department, PkiCertificate, Seal, SealEvent
from .pki import CertRole, current_certificate, current_crl, pades_trust_anchors, trust_anchors

SOURCE_NAME = "本地印章登记系统 local seal registry"
# A signed CRL is rebuilt when a revocation happens or after this long, never per request.
CRL_REFRESH_SECONDS = 600.0


class RegistryTrustSource:
    """Trust from the registry database. ``keystore`` signs the CRL (without one, no CRL is offered);
    ``region_code`` names the region whose esIDs this registry answers for, besides its departments'."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        keystore: KeyStore | None = None,
        *,
        region_code: str | None = None,
        name: str = SOURCE_NAME,
        crl_refresh_seconds: float = CRL_REFRESH_SECONDS,
    ) -> None:
        self._sessions = sessions
        self._keystore = keystore
        self._name = name
        self._region_code = region_code
        self._crl_refresh = crl_refresh_seconds
        self._crl: tuple[tuple[object, ...], float, CertificateRevocationList] | None = None
        self._lock = threading.Lock()

    # -- certificates --
    def trust_anchors(self, at: datetime) -> Sequence[Certificate]:
        with self._sessions() as s:
            return trust_anchors(s)

    def intermediates(self, at: datetime) -> Sequence[Certificate]:
        return ()  # the region root issues every certificate directly

    def interop_anchors(self, at: datetime) -> Sequence[bytes]:
        """The region's PAdES interop roots (ECDSA), which PDF signatures by readers' standards chain to."""
        with self._sessions() as s:
            return pades_trust_anchors(s)

    def crls(self, at: datetime) -> Sequence[CertificateRevocationList]:
        if self._keystore is None:
            return ()
        with self._sessions() as s:
            root = current_certificate(s, CertRole.ROOT)
            count, latest = s.execute(
                select(func.count(), func.max(PkiCertificate.revoked_at)).where(
                    PkiCertificate.revoked_at.is_not(None), PkiCertificate.issuer == root.subject
                )
            ).one()
            key = (root.id, count, latest)
            with self._lock:
                cached = self._crl
                if (
                    cached is not None
                    and cached[0] == key
                    and time.monotonic() - cached[1] < self._crl_refresh
                ):
                    return (cached[2],)
                crl = current_crl(s, self._keystore)
                self._crl = (key, time.monotonic(), crl)
        return (crl,)

    # -- seals --
    def seal_status(self, es_id: str, seal_sm3: bytes, at: datetime) -> SealStatusFact | None:
        """The seal's state at ``at`` by its event history.

        None (not tracked here) for a seal the registry never made whose esID is not of a region
        this registry serves: a peer region's seal is judged by its own registry, not found "unknown"
        here. Anything claiming one of this registry's esIDs but absent, or present with other
        bytes, is unknown.
        """
        with self._sessions() as s:
            seal = s.scalar(select(Seal).where(Seal.seal_sm3 == seal_sm3.hex()))
            if seal is None:
                if s.scalar(select(Seal.id).where(Seal.es_id == es_id)) is not None:
                    return SealStatusFact(SealState.UNKNOWN, None, self._name)
                region = region_of_es_id(es_id)
                if region is None or not self._serves(s, region):
                    return None
                return SealStatusFact(SealState.UNKNOWN, None, self._name)
            if seal.es_id != es_id:  # pragma: no cover - the esID is inside the hashed bytes
                return SealStatusFact(SealState.UNKNOWN, None, self._name)
            event = s.scalar(
                select(SealEvent)
                .where(SealEvent.seal_id == seal.id, SealEvent.at <= at)
                .order_by(SealEvent.at.desc(), SealEvent.id.desc())
                .limit(1)
            )
            if event is None:  # ``at`` is before the seal existed
                return SealStatusFact(SealState.UNKNOWN, None, self._name)
            return status_fact(event.to_state, event.at, self._name)

    def _serves(self, session: Session, region: str) -> bool:
        """The registry's own region, or one of its departments' (each allocates esIDs)."""
        if region == self._region_code:
            return True
        found = session.scalar(select(Department.id).where(Department.region_code == region).limit(1))
        return found is not None
