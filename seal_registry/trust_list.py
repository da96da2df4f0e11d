"""This region's trust list: built from the registry, signed by the region's registry (service) key,
published, and delivered as deltas; and the registry key's rollover.

The format, its reader and its one serialiser are in :mod:`verify.peer_trust` (documented in
``docs/trust-list-format.md``). The list's ``sequence`` is the audit chain's head ``seq`` read
before anything else, as for the status snapshot (:mod:`seal_registry.status`): every state change
of a seal, a certificate or the registry key appends to the chain in its own transaction, so a
change shows in the next list with a higher sequence, and a delta "since N" is exactly the seals
whose audit entries have ``seq > N``.

Publication. The newest signed full list is stored and served until the sequence moves, it reaches
``trust_list_reissue_s`` of age, or it nears its next update; so its ETag is stable between changes
and peers polling every second cost a look-up of the audit head, not a signature.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.audit import AuditEntry, current_head
from core.audit import append as audit_append
from core.db import utcnow
from core.errors import Conflict, InvalidInput, NotFound
from core.settings import Settings
from gmpki import ca
from gmpki.sm3 import sm3_hex
from gmpki.x509 import Certificate, build_name, load_certificate_der
from hsm_adapters.keystore import KeyAlgorithm, KeyStore
from verify.peer_trust import (
    DELTA,
    FULL,
    GRANTED,
    WITHDRAWN,
    Extension,
    ListedCertificate,
    SealRecord,
    SealTypeEntry,
    StateChange,
    TrustList,
    parse_payload,
    sign_trust_list,
    verify_trust_list,
)

from .federation_models import TrustListNextSigner, TrustListPublication
from .lifecycle import SEAL_TYPES
from .models import PkiCertificate, Seal, SealEvent
from .pki import CertRole, certificate_of, current_certificate, current_crl, record_certificate, signer_for

__all__ = [
    "Publication",
    "activate_next_signer",
    "announce_next_signer",
    "build_delta",
    "build_trust_list",
    "parse_payload",
    "published_trust_list",
    "sign_current",
    "trust_list_content",
    "verify_trust_list",
]

_KEEP_PUBLICATIONS = 5
TRUST_LIST_PATH = "/v1/trust-list"


@dataclass(frozen=True)
class Publication:
    """A signed trust list as served: the envelope bytes and what the HTTP caching headers need."""

    envelope: bytes
    etag: str  # SM3 hex of the envelope
    sequence: int
    issued_at: datetime
    next_update: datetime


# --- content --------------------------------------------------------------------------------------
def _listed(row: PkiCertificate, *, maker: bool) -> ListedCertificate:
    withdrawn = row.revoked_at is not None
    return ListedCertificate(
        certificate=certificate_of(row),
        status=WITHDRAWN if withdrawn else GRANTED,
        status_since=(row.revoked_at if row.revoked_at is not None else row.created_at).replace(
            microsecond=0
        ),
        valid_from=row.not_before if maker else None,
        valid_to=row.not_after if maker else None,
    )


def _changed_seal_ids(session: Session, since: int) -> set[str]:
    return set(
        session.scalars(
            select(AuditEntry.subject_id).where(
                AuditEntry.seq > since, AuditEntry.subject_type == "seal", AuditEntry.action.like("seal.%")
            )
        )
    )


def _seal_records(session: Session, since: int | None) -> list[SealRecord]:
    stmt = select(Seal).where(Seal.seal_sm3.is_not(None)).order_by(Seal.es_id)
    if since is not None:
        ids = _changed_seal_ids(session, since)
        if not ids:
            return []
        stmt = stmt.where(Seal.id.in_(ids))
    seals = list(session.scalars(stmt))
    history: dict[str, list[StateChange]] = {s.id: [] for s in seals}
    if seals:
        events = session.scalars(
            select(SealEvent).where(SealEvent.seal_id.in_(list(history))).order_by(SealEvent.at, SealEvent.id)
        )
        for e in events:
            history[e.seal_id].append(StateChange(e.to_state, e.at.replace(microsecond=0)))
    out: list[SealRecord] = []
    for s in seals:
        assert s.seal_sm3 is not None
        code = next((t.code for t in SEAL_TYPES if t.key == s.seal_type), "99")
        out.append(
            SealRecord(
                es_id=s.es_id,
                seal_sm3=s.seal_sm3,
                seal_type=code,
                valid_start=s.valid_start.replace(microsecond=0),
                valid_end=s.valid_end.replace(microsecond=0),
                history=tuple(history[s.id]),
            )
        )
    return out


def next_signer(session: Session) -> TrustListNextSigner | None:
    return session.scalar(select(TrustListNextSigner).order_by(TrustListNextSigner.id.desc()).limit(1))


def trust_list_content(
    session: Session,
    keystore: KeyStore,
    settings: Settings,
    *,
    since: int | None = None,
    now: datetime | None = None,
) -> TrustList:
    """The unsigned trust list: full, or (``since``) the delta of seals changed after sequence ``since``."""
    issued = (now or utcnow()).replace(microsecond=0)
    # The head first: a change committed between the reads shows with this (lower) sequence and
    # again with a higher one next time, never the other way round.
    sequence = current_head(session).seq
    if since is not None and since > sequence:
        raise InvalidInput(
            f"since={since} 大于当前序号 {sequence}",
            f"since={since} is beyond the current sequence {sequence}",
        )
    roots = session.scalars(
        select(PkiCertificate).where(PkiCertificate.role == CertRole.ROOT.value).order_by(PkiCertificate.id)
    )
    makers = session.scalars(
        select(PkiCertificate)
        .where(PkiCertificate.role == CertRole.SEAL_MAKER.value)
        .order_by(PkiCertificate.id)
    )
    announced = next_signer(session)
    return TrustList(
        kind=FULL if since is None else DELTA,
        since=since,
        operator_name=settings.region_name,
        region_code=settings.region_code,
        sequence=sequence,
        issued_at=issued,
        next_update=issued + timedelta(seconds=settings.trust_list_validity_s),
        ca_roots=tuple(_listed(r, maker=False) for r in roots),
        seal_makers=tuple(_listed(m, maker=True) for m in makers),
        crls=(current_crl(session, keystore),),
        seal_types=tuple(SealTypeEntry(t.code, t.key, t.name_zh, t.name_en) for t in SEAL_TYPES),
        seals=tuple(_seal_records(session, since)),
        next_signer=None if announced is None else load_certificate_der(announced.der),
        extensions=(
            Extension("publication_url", False, settings.public_base_url.rstrip("/") + TRUST_LIST_PATH),
        ),
    )


def sign_current(session: Session, keystore: KeyStore, trust_list: TrustList) -> bytes:
    """``trust_list`` signed by the region's current registry (service) certificate's key."""
    row = current_certificate(session, CertRole.SERVICE)
    cert = certificate_of(row)
    chain = [certificate_of(r) for r in _issuers_of(session, cert)]
    return sign_trust_list(trust_list, signer_for(keystore, row), cert, chain)


def _issuers_of(session: Session, cert: Certificate) -> list[PkiCertificate]:
    rows = session.scalars(
        select(PkiCertificate).where(
            PkiCertificate.role == CertRole.ROOT.value, PkiCertificate.subject == cert.issuer
        )
    )
    return list(rows)


def build_trust_list(
    session: Session,
    keystore: KeyStore,
    settings: Settings,
    *,
    since: int | None = None,
    now: datetime | None = None,
) -> bytes:
    """A freshly signed trust list envelope (full, or the delta since ``since``)."""
    return sign_current(
        session, keystore, trust_list_content(session, keystore, settings, since=since, now=now)
    )


# --- publication ------------------------------------------------------------------------------------
def _publication(row: TrustListPublication) -> Publication:
    return Publication(row.envelope, row.etag, row.sequence, row.issued_at, row.next_update)


def published_trust_list(
    session: Session, keystore: KeyStore, settings: Settings, *, now: datetime | None = None
) -> Publication:
    """The full list to serve: the stored one while it is current, else a new one (stored).

    Commit the session afterwards to keep a newly signed list.
    """
    now = now or utcnow()
    head = current_head(session).seq
    latest = session.scalar(select(TrustListPublication).order_by(TrustListPublication.id.desc()).limit(1))
    if latest is not None:
        age = (now - latest.issued_at).total_seconds()
        remaining = (latest.next_update - now).total_seconds()
        if latest.sequence == head and 0 <= age < settings.trust_list_reissue_s and remaining > age:
            return _publication(latest)
    content = trust_list_content(session, keystore, settings, now=now)
    envelope = sign_current(session, keystore, content)
    row = TrustListPublication(
        sequence=content.sequence,
        issued_at=content.issued_at,
        next_update=content.next_update,
        etag=sm3_hex(envelope),
        envelope=envelope,
    )
    session.add(row)
    session.flush()
    keep = select(TrustListPublication.id).order_by(TrustListPublication.id.desc()).limit(_KEEP_PUBLICATIONS)
    session.execute(
        delete(TrustListPublication).where(TrustListPublication.id.not_in(keep.scalar_subquery()))
    )
    return _publication(row)


def build_delta(
    session: Session, keystore: KeyStore, settings: Settings, *, since: int, now: datetime | None = None
) -> bytes:
    """The signed delta since ``since``, under the header (sequence, issue time, next update) of the
    full list currently published: a peer mixing deltas and full lists then never sees one issue of
    a sequence older than another (which it would refuse as a replay)."""
    pub = published_trust_list(session, keystore, settings, now=now)
    if since > pub.sequence:
        raise InvalidInput(
            f"since={since} 大于当前序号 {pub.sequence}",
            f"since={since} is beyond the current sequence {pub.sequence}",
        )
    content = trust_list_content(session, keystore, settings, since=since, now=now)
    header = replace(content, sequence=pub.sequence, issued_at=pub.issued_at, next_update=pub.next_update)
    return sign_current(session, keystore, header)


# --- registry key rollover ------------------------------------------------------------------------
def announce_next_signer(
    session: Session, keystore: KeyStore, settings: Settings, *, actor: str
) -> TrustListNextSigner:
    """Make the next registry key and certificate and announce it in every list from now on.

    Peers pinned to the current certificate learn the successor from a list the current key signed,
    so after :func:`activate_next_signer` they accept lists signed by the new key. Call it before any
    other write of the caller's transaction (the soft key store writes new keys on its own connection).
    """
    if next_signer(session) is not None:
        raise Conflict(
            "已公布下一个登记系统证书，请先启用", "A next registry certificate is already announced"
        )
    root_row = current_certificate(session, CertRole.ROOT)
    count = len(
        list(session.scalars(select(PkiCertificate.id).where(PkiCertificate.role == CertRole.SERVICE.value)))
    )
    key_id = keystore.generate(KeyAlgorithm.SM2, f"region-{settings.region_code}-service-{count + 1}").id
    org = settings.region_name
    cert = ca.issue_service_certificate(
        signer_for(keystore, root_row),
        certificate_of(root_row),
        keystore.public_key(key_id).sm2_public_key,
        build_name(f"{org} eseal 服务签名 Service {count + 1}", organization=org),
    )
    row = TrustListNextSigner(
        der=cert.der, sm3=cert.fingerprint_sm3.hex(), key_id=key_id, announced_at=utcnow(), announced_by=actor
    )
    session.add(row)
    session.flush()
    audit_append(
        session,
        actor=actor,
        action="trust_list.next_signer_announced",
        subject_type="certificate",
        subject_id=row.sm3,
        details={"sm3": row.sm3, "subject": cert.subject},
    )
    return row


def activate_next_signer(session: Session, *, actor: str) -> PkiCertificate:
    """The announced certificate becomes the region's registry (service) certificate."""
    row = next_signer(session)
    if row is None:
        raise NotFound("没有已公布的下一个登记系统证书", "No next registry certificate has been announced")
    cert_row = record_certificate(session, load_certificate_der(row.der), CertRole.SERVICE, key_id=row.key_id)
    session.delete(row)
    session.flush()
    audit_append(
        session,
        actor=actor,
        action="trust_list.signer_rolled_over",
        subject_type="certificate",
        subject_id=str(cert_row.id),
        details={"sm3": cert_row.sm3},
    )
    return cert_row
