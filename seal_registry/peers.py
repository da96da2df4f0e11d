"""Peer registries: registration with a pinned registry certificate, fetching and checking their
trust lists, the last good list, seal type mappings, the list of lists, and the verifier's trust
source over the local registry and the peers.

Trust in a peer rests on one fact given out of band: the SM3 fingerprint of its registry
certificate. A list is accepted only when it is signed by that certificate (or by the successor a
list signed by it announced), is of the peer's region, is not past its next update, and does not go
back in sequence (rollback) or repeat an older issue of the current one (replay). Anything else —
a network failure, a tampered or malformed list, a hostile size — is recorded on the peer and the
last good list stays in force; verdicts turn INDETERMINATE only once that list is past its next
update plus the configured grace (:class:`verify.peer_trust.PeerTrustSource`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import ScalarSelect, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.audit import append as audit_append
from core.audit import current_head
from core.db import transaction, utcnow
from core.errors import Conflict, EsealError, InputTooLarge, InvalidInput, NotFound, NotUsable
from core.settings import Settings
from gmpki.crl import CertificateRevocationList
from gmpki.x509 import Certificate
from hsm_adapters.keystore import KeyStore
from verify.peer_trust import (
    DELTA,
    FULL,
    ListOfLists,
    PeerPointer,
    PeerTrustSource,
    PeerView,
    TrustList,
    make_envelope,
    parse_payload,
    verify_list_of_lists,
    verify_trust_list,
)
from verify.status_snapshot import canonical_bytes, format_time
from verify.trust import SealState, SealStatusFact

from .federation_models import FederationPeer, FederationPeerList, SealTypeMapping
from .lifecycle import SEAL_TYPES
from .pki import CertRole, certificate_of, current_certificate, signer_for
from .trust_list import TRUST_LIST_PATH
from .trust_source import RegistryTrustSource, RegistryView, Stamp

log = logging.getLogger("eseal.federation")

_SM3_HEX = re.compile(r"[0-9a-f]{64}")
_REGION = re.compile(r"\d{6}")
_TYPE_CODE = re.compile(r"\d{2}")
_PURPOSE = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
MAX_ERROR = 2000
UNVOUCHED = "本地及对等地区均未登记此印章 no registry recognised here lists this seal"
# What a fetch can fail with short of a list arriving (network, protocol, URL).
_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx.StreamError,
    OSError,
)


class TrustListRefused(Conflict):
    """A peer's list was fetched but not accepted (rollback, replay, stale, other region)."""

    code = "trust_list_refused"
    title_zh, title_en = "信任列表被拒绝", "Trust list refused"


@dataclass(frozen=True)
class SyncOutcome:
    """What one sync of one peer did. ``status``: ``updated`` (a newer list is now the last good
    one), ``not_modified``, ``refused`` (a list arrived and was rejected: ``code`` says why) or
    ``failed`` (nothing usable arrived). ``sequence`` is the last good list's after the sync."""

    peer_id: int
    region_code: str
    status: str
    sequence: int | None
    message_zh: str
    message_en: str
    code: str | None = None
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in ("updated", "not_modified")


# --- input checks -----------------------------------------------------------------------------------
def normalise_fingerprint(value: str) -> str:
    """An SM3 fingerprint as 64 lowercase hex digits (colons and spaces allowed in the input)."""
    text = re.sub(r"[\s:]", "", value or "").lower()
    if not _SM3_HEX.fullmatch(text):
        raise InvalidInput(
            "证书指纹须为 SM3 摘要（64 位十六进制）",
            "The pinned fingerprint must be an SM3 digest (64 hex digits)",
        )
    return text


def normalise_url(value: str) -> str:
    """The trust list URL; a bare ``http(s)://host[:port]`` gets the standard path."""
    url = (value or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 2000:
        raise InvalidInput("地址须为 http(s) URL", "The peer URL must be an http(s) URL")
    if parts.path in ("", "/"):
        url = url.rstrip("/") + TRUST_LIST_PATH
    return url


def _region(value: str) -> str:
    if not _REGION.fullmatch(value or ""):
        raise InvalidInput("地区代码须为六位数字", "A region code is six digits")
    return value


def _purposes(values: Sequence[str]) -> str:
    items = sorted({v.strip().lower() for v in values if v.strip()}) or ["any"]
    for v in items:
        if not _PURPOSE.fullmatch(v):
            raise InvalidInput(f"用途名称无效：{v[:40]!r}", f"Invalid purpose name {v[:40]!r}")
    text = ",".join(items)
    if len(text) > 500:
        raise InvalidInput("用途过多", "Too many purposes")
    return text


# --- peers ------------------------------------------------------------------------------------------
def get_peer(session: Session, ref: str | int) -> FederationPeer:
    """A peer by id or by region code."""
    text = str(ref)
    peer: FederationPeer | None = None
    if _REGION.fullmatch(text):
        peer = session.scalar(select(FederationPeer).where(FederationPeer.region_code == text))
    if peer is None and text.isdigit() and len(text) < 10:
        peer = session.get(FederationPeer, int(text))
    if peer is None:
        raise NotFound(f"对等地区 {text[:20]} 不存在", f"No peer region {text[:20]}")
    return peer


def list_peers(session: Session) -> list[FederationPeer]:
    return list(session.scalars(select(FederationPeer).order_by(FederationPeer.region_code)))


def peer_list(session: Session, peer_id: int) -> FederationPeerList | None:
    return session.get(FederationPeerList, peer_id)


def mappings_of(session: Session, peer_id: int) -> list[SealTypeMapping]:
    return list(
        session.scalars(
            select(SealTypeMapping)
            .where(SealTypeMapping.peer_id == peer_id)
            .order_by(SealTypeMapping.remote_code)
        )
    )


def add_peer(
    session: Session,
    *,
    url: str,
    pinned_sm3: str,
    region_code: str,
    name: str,
    actor: str,
    use_delta: bool = True,
) -> FederationPeer:
    """Register a peer region: its trust list URL and the fingerprint of its registry certificate."""
    region = _region(region_code)
    if session.scalar(select(FederationPeer.id).where(FederationPeer.region_code == region)) is not None:
        raise Conflict(f"对等地区 {region} 已登记", f"Peer region {region} is already registered")
    name = (name or region).strip()[:200] or region
    peer = FederationPeer(
        region_code=region,
        name=name,
        url=normalise_url(url),
        pinned_sm3=normalise_fingerprint(pinned_sm3),
        successor_sm3=None,
        enabled=True,
        use_delta=use_delta,
        restrict_seal_types=False,
        added_at=utcnow(),
        added_by=actor,
        refused_count=0,
        generation=0,
    )
    session.add(peer)
    session.flush()
    audit_append(
        session,
        actor=actor,
        action="peer.added",
        subject_type="peer",
        subject_id=region,
        details={"url": peer.url, "pinned_sm3": peer.pinned_sm3, "name": name},
    )
    return peer


def remove_peer(session: Session, ref: str | int, *, actor: str) -> None:
    peer = get_peer(session, ref)
    for m in mappings_of(session, peer.id):
        session.delete(m)
    stored = peer_list(session, peer.id)
    if stored is not None:
        session.delete(stored)
    session.flush()
    session.delete(peer)
    session.flush()
    audit_append(
        session,
        actor=actor,
        action="peer.removed",
        subject_type="peer",
        subject_id=peer.region_code,
        details={},
    )


def set_pin(session: Session, ref: str | int, pinned_sm3: str, *, actor: str) -> FederationPeer:
    """Re-pin a peer (a registry key changed without an announced successor)."""
    peer = get_peer(session, ref)
    peer.pinned_sm3 = normalise_fingerprint(pinned_sm3)
    peer.successor_sm3 = None
    peer.generation += 1
    audit_append(
        session,
        actor=actor,
        action="peer.pinned",
        subject_type="peer",
        subject_id=peer.region_code,
        details={"pinned_sm3": peer.pinned_sm3},
    )
    return peer


def set_enabled(session: Session, ref: str | int, enabled: bool, *, actor: str) -> FederationPeer:
    peer = get_peer(session, ref)
    peer.enabled = enabled
    peer.generation += 1
    audit_append(
        session,
        actor=actor,
        action="peer.enabled" if enabled else "peer.disabled",
        subject_type="peer",
        subject_id=peer.region_code,
        details={},
    )
    return peer


def map_seal_type(
    session: Session,
    ref: str | int,
    *,
    remote_code: str,
    local_code: str,
    purposes: Sequence[str] = ("any",),
    actor: str,
) -> SealTypeMapping:
    """Accept the peer's seal type ``remote_code`` as local type ``local_code`` for ``purposes``.

    Once a peer has any mapping, only its mapped types are accepted (the others verify
    INDETERMINATE with the reason); with none, every type the peer lists is accepted as itself.
    """
    peer = get_peer(session, ref)
    if not _TYPE_CODE.fullmatch(remote_code or ""):
        raise InvalidInput("对方印章类型代码须为两位数字", "The peer's seal type code is two digits")
    if local_code not in {t.code for t in SEAL_TYPES}:
        codes = ", ".join(t.code for t in SEAL_TYPES)
        raise InvalidInput(
            f"未知的本地印章类型代码（可选：{codes}）", f"Unknown local seal type code ({codes})"
        )
    text = _purposes(purposes)
    row = session.scalar(
        select(SealTypeMapping).where(
            SealTypeMapping.peer_id == peer.id, SealTypeMapping.remote_code == remote_code
        )
    )
    if row is None:
        row = SealTypeMapping(peer_id=peer.id, remote_code=remote_code, local_code=local_code, purposes=text)
        session.add(row)
    else:
        row.local_code, row.purposes = local_code, text
    peer.restrict_seal_types = True
    peer.generation += 1
    session.flush()
    audit_append(
        session,
        actor=actor,
        action="peer.seal_type_mapped",
        subject_type="peer",
        subject_id=peer.region_code,
        details={"remote": remote_code, "local": local_code, "purposes": text},
    )
    return row


def unmap_seal_type(session: Session, ref: str | int, remote_code: str, *, actor: str) -> None:
    """Stop accepting one of the peer's seal types (the last one gone: back to accepting all)."""
    peer = get_peer(session, ref)
    row = session.scalar(
        select(SealTypeMapping).where(
            SealTypeMapping.peer_id == peer.id, SealTypeMapping.remote_code == remote_code
        )
    )
    if row is None:
        raise NotFound(
            f"没有印章类型 {remote_code[:2]} 的映射", f"No mapping for seal type {remote_code[:2]}"
        )
    session.delete(row)
    session.flush()
    peer.restrict_seal_types = bool(mappings_of(session, peer.id))
    peer.generation += 1
    audit_append(
        session,
        actor=actor,
        action="peer.seal_type_unmapped",
        subject_type="peer",
        subject_id=peer.region_code,
        details={"remote": remote_code},
    )


# --- fetching -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Fetched:
    status: int
    body: bytes
    etag: str | None


def _fetch(
    client: httpx.Client,
    url: str,
    *,
    limit: int,
    params: dict[str, str] | None = None,
    etag: str | None = None,
) -> _Fetched:
    headers = {"Accept": "application/json"}
    if etag:
        headers["If-None-Match"] = etag
    with client.stream("GET", url, params=params, headers=headers) as response:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise InputTooLarge(
                f"信任列表过大（上限 {limit} 字节）", f"Trust list too large (limit {limit} bytes)"
            )
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > limit:
                raise InputTooLarge(
                    f"信任列表过大（上限 {limit} 字节）", f"Trust list too large (limit {limit} bytes)"
                )
        return _Fetched(response.status_code, bytes(body), response.headers.get("etag"))


def _delta_url(url: str) -> str:
    return url.rstrip("/") + "/delta"


@contextmanager
def _client(client: httpx.Client | None, settings: Settings) -> Iterator[httpx.Client]:
    if client is not None:
        yield client
        return
    with httpx.Client(timeout=settings.federation_fetch_timeout_s, follow_redirects=False) as own:
        yield own


@dataclass(frozen=True)
class _PeerConfig:
    id: int
    region_code: str
    url: str
    pins: frozenset[bytes]
    use_delta: bool
    etag: str | None
    base_sequence: int | None


def _config(session: Session, peer_id: int) -> _PeerConfig:
    peer = get_peer(session, peer_id)
    pins = {bytes.fromhex(peer.pinned_sm3)}
    if peer.successor_sm3:
        pins.add(bytes.fromhex(peer.successor_sm3))
    stored = peer_list(session, peer.id)
    return _PeerConfig(
        peer.id,
        peer.region_code,
        peer.url,
        frozenset(pins),
        peer.use_delta,
        peer.etag if stored is not None else None,
        stored.sequence if stored is not None else None,
    )


@dataclass(frozen=True)
class _Incoming:
    trust_list: TrustList
    envelope: bytes
    etag: str | None


def _receive(
    cfg: _PeerConfig, client: httpx.Client, settings: Settings, now: datetime, *, full: bool
) -> _Incoming | None:
    """The peer's newer list, verified (signature, pin, form); None when it has not changed."""
    limit = settings.federation_max_list_bytes
    if cfg.base_sequence is not None and cfg.use_delta and not full:
        got = _fetch(client, _delta_url(cfg.url), limit=limit, params={"since": str(cfg.base_sequence)})
        if got.status == 200:
            tl = verify_trust_list(got.body, pinned=cfg.pins, at=now, max_bytes=limit)
            if tl.kind != DELTA:
                raise TrustListRefused(
                    "请求增量列表却收到完整列表", "a delta was requested but a full list arrived"
                )
            return _Incoming(tl, got.body, None)
        if got.status not in (400, 404, 405, 410, 501):
            raise _http_error(got.status)
        # The peer offers no delta from our sequence: fall back to the full list.
    got = _fetch(client, cfg.url, limit=limit, etag=cfg.etag)
    if got.status == 304 and cfg.base_sequence is not None:
        return None
    if got.status != 200:
        raise _http_error(got.status)
    tl = verify_trust_list(got.body, pinned=cfg.pins, at=now, max_bytes=limit)
    if tl.kind != FULL:
        raise TrustListRefused("请求完整列表却收到增量列表", "a full list was requested but a delta arrived")
    return _Incoming(tl, got.body, got.etag)


def _http_error(status: int) -> httpx.HTTPError:
    return httpx.HTTPError(f"HTTP {status}")


def _check_acceptable(
    tl: TrustList, stored: FederationPeerList | None, region_code: str, now: datetime
) -> bool:
    """Whether ``tl`` is newer than the last good list (False: nothing new); refuse what must not be
    accepted."""
    if tl.region_code != region_code:
        raise TrustListRefused(
            f"列表属于地区 {tl.region_code}，而该对等地区登记为 {region_code}",
            f"the list is of region {tl.region_code}, but the peer is registered as {region_code}",
        )
    if now > tl.next_update:
        raise TrustListRefused(
            f"列表已过期（下次更新时间 {format_time(tl.next_update)}），保留上一份有效列表",
            f"the list is stale (next update was {format_time(tl.next_update)}); the last good list is kept",
        )
    if stored is None:
        return True
    if tl.sequence < stored.sequence:
        raise TrustListRefused(
            f"序号回退：收到 #{tl.sequence}，已有 #{stored.sequence}（回滚或重放），保留上一份有效列表",
            f"sequence went back: got #{tl.sequence}, have #{stored.sequence} (rollback or replay); "
            "the last good list is kept",
        )
    if tl.sequence == stored.sequence:
        if tl.issued_at < stored.issued_at:
            raise TrustListRefused(
                f"重放：#{tl.sequence} 的较早版本（{format_time(tl.issued_at)}，已有 "
                f"{format_time(stored.issued_at)}），保留上一份有效列表",
                f"replay: an older issue of #{tl.sequence} ({format_time(tl.issued_at)}, have "
                f"{format_time(stored.issued_at)}); the last good list is kept",
            )
        if tl.issued_at == stored.issued_at:
            return False
    return True


def _error_text(exc: Exception) -> tuple[str, str, str]:
    if isinstance(exc, EsealError):
        return exc.code, exc.message_zh, exc.message_en
    return "fetch_failed", f"获取失败：{exc}", f"fetch failed: {exc}"


def sync_peer(
    sessions: sessionmaker[Session],
    peer_ref: str | int,
    *,
    settings: Settings,
    client: httpx.Client | None = None,
    now: datetime | None = None,
    full: bool = False,
    actor: str = "system:federation-sync",
) -> SyncOutcome:
    """Fetch the peer's list (a delta since the last good one when the peer offers it, else the full
    list with If-None-Match), check it and keep it. Never raises for anything the peer sends."""
    started = time.monotonic()
    with sessions() as s:
        cfg = _config(s, get_peer(s, peer_ref).id)
    when = now or utcnow()
    try:
        with _client(client, settings) as http:
            incoming = _receive(cfg, http, settings, when, full=full)
    except EsealError as exc:
        return _record_problem(sessions, cfg, "refused", exc, when, started)
    except _TRANSPORT_ERRORS as exc:
        return _record_problem(sessions, cfg, "failed", exc, when, started)
    if incoming is None:
        return _record_unchanged(sessions, cfg, when, started)
    try:
        return _store(sessions, cfg, incoming, when, started, actor)
    except EsealError as exc:
        return _record_problem(sessions, cfg, "refused", exc, when, started)


def _lock_peer(session: Session, peer_id: int) -> FederationPeer:
    # An UPDATE takes the row lock on PostgreSQL and the write lock on SQLite: concurrent syncs of
    # one peer (schedule and on demand) then apply one after the other, each against the other's result.
    session.execute(
        update(FederationPeer)
        .where(FederationPeer.id == peer_id)
        .values(generation=FederationPeer.generation)
    )
    peer = session.get(FederationPeer, peer_id, populate_existing=True)
    if peer is None:
        raise NotFound("对等地区已删除", "The peer was removed")
    return peer


def _record_problem(
    sessions: sessionmaker[Session],
    cfg: _PeerConfig,
    status: str,
    exc: Exception,
    when: datetime,
    started: float,
) -> SyncOutcome:
    code, zh, en = _error_text(exc)
    text = f"[{code}] {zh} / {en}"[:MAX_ERROR]
    with transaction(sessions) as s:
        peer = _lock_peer(s, cfg.id)
        # A peer that stays down is logged once, not on every round of a one-second schedule.
        log.log(
            logging.WARNING if text != peer.last_error else logging.DEBUG,
            "peer %s: trust list %s: %s",
            cfg.region_code,
            status,
            en,
        )
        peer.last_attempt_at = when
        peer.last_error = text
        peer.last_error_at = when
        if status == "refused":
            peer.refused_count += 1
        stored = peer_list(s, cfg.id)
        sequence = stored.sequence if stored is not None else None
    return SyncOutcome(cfg.id, cfg.region_code, status, sequence, zh, en, code, time.monotonic() - started)


def _record_unchanged(
    sessions: sessionmaker[Session], cfg: _PeerConfig, when: datetime, started: float
) -> SyncOutcome:
    with transaction(sessions) as s:
        peer = _lock_peer(s, cfg.id)
        peer.last_attempt_at = peer.last_success_at = when
        stored = peer_list(s, cfg.id)
        sequence = stored.sequence if stored is not None else None
    return SyncOutcome(
        cfg.id,
        cfg.region_code,
        "not_modified",
        sequence,
        "列表未变化",
        "the list has not changed",
        elapsed_s=time.monotonic() - started,
    )


def _store(
    sessions: sessionmaker[Session],
    cfg: _PeerConfig,
    incoming: _Incoming,
    when: datetime,
    started: float,
    actor: str,
) -> SyncOutcome:
    tl = incoming.trust_list
    with transaction(sessions) as s:
        peer = _lock_peer(s, cfg.id)
        stored = peer_list(s, cfg.id)
        signer = tl.signer
        assert signer is not None
        signer_sm3 = signer.fingerprint_sm3.hex()
        # Pins are read again under the lock: a concurrent sync may have rolled them over.
        if signer_sm3 not in {peer.pinned_sm3, peer.successor_sm3}:
            raise TrustListRefused(
                "签名证书已不再被固定", f"the signer certificate {signer_sm3} is no longer pinned"
            )
        if not _check_acceptable(tl, stored, peer.region_code, when):
            peer.last_attempt_at = peer.last_success_at = when
            if incoming.etag:
                peer.etag = incoming.etag
            return SyncOutcome(
                cfg.id,
                cfg.region_code,
                "not_modified",
                stored.sequence if stored else None,
                "列表未变化",
                "the list has not changed",
                elapsed_s=time.monotonic() - started,
            )
        if tl.kind == DELTA:
            if stored is None:
                raise TrustListRefused("没有可合并增量的基础列表", "no base list to merge the delta into")
            merged = parse_payload(stored.state).merge(tl)
        else:
            merged = tl
        state = merged.payload_bytes()
        if stored is None:
            stored = FederationPeerList(peer_id=peer.id)
            s.add(stored)
        previous = stored.sequence
        stored.sequence = merged.sequence
        stored.issued_at = merged.issued_at
        stored.next_update = merged.next_update
        stored.signer_sm3 = signer_sm3
        stored.signer_der = signer.der
        stored.state = state
        stored.envelope = incoming.envelope
        stored.received_at = when
        rolled = signer_sm3 == peer.successor_sm3 and signer_sm3 != peer.pinned_sm3
        if rolled:
            peer.pinned_sm3 = signer_sm3
        announced = tl.next_signer.fingerprint_sm3.hex() if tl.next_signer is not None else None
        peer.successor_sm3 = announced if announced != peer.pinned_sm3 else None
        peer.name = merged.operator_name[:200]
        peer.last_attempt_at = peer.last_success_at = when
        peer.last_error = None
        if incoming.etag is not None or tl.kind == FULL:
            peer.etag = incoming.etag
        peer.generation += 1
        s.flush()
        if previous != merged.sequence or rolled:
            audit_append(
                s,
                actor=actor,
                action="peer.trust_list_accepted",
                subject_type="peer",
                subject_id=peer.region_code,
                details={
                    "sequence": merged.sequence,
                    "issued_at": format_time(merged.issued_at),
                    "kind": tl.kind,
                    "signer_sm3": signer_sm3,
                    "pin_rolled_over": rolled,
                },
            )
    return SyncOutcome(
        cfg.id,
        cfg.region_code,
        "updated",
        merged.sequence,
        f"已接受 {merged.label}",
        f"accepted {merged.label}",
        elapsed_s=time.monotonic() - started,
    )


def sync_all(
    sessions: sessionmaker[Session], *, settings: Settings, client: httpx.Client | None = None
) -> list[SyncOutcome]:
    """Sync every enabled peer once (one failing peer never stops the others)."""
    with sessions() as s:
        ids = [p.id for p in list_peers(s) if p.enabled]
    with _client(client, settings) as http:
        return [sync_peer(sessions, pid, settings=settings, client=http) for pid in ids]


def register_peer(
    sessions: sessionmaker[Session],
    *,
    settings: Settings,
    url: str,
    pinned_sm3: str,
    region_code: str | None = None,
    name: str | None = None,
    actor: str,
    client: httpx.Client | None = None,
    use_delta: bool = True,
    sync: bool = True,
) -> tuple[FederationPeer, SyncOutcome | None]:
    """Register a peer and (``sync``) fetch its list at once. Without ``region_code`` the list is
    fetched first, checked against the pin, and names the region."""
    url = normalise_url(url)
    pin = normalise_fingerprint(pinned_sm3)
    if region_code is None:
        try:
            with _client(client, settings) as http:
                got = _fetch(http, url, limit=settings.federation_max_list_bytes)
        except _TRANSPORT_ERRORS as exc:
            raise NotUsable(
                f"无法获取对等地区的信任列表：{exc}", f"The peer's trust list cannot be fetched: {exc}"
            ) from None
        if got.status != 200:
            raise NotUsable(
                f"无法获取对等地区的信任列表（HTTP {got.status}）",
                f"The peer's trust list cannot be fetched (HTTP {got.status})",
            )
        first = verify_trust_list(
            got.body, pinned={bytes.fromhex(pin)}, max_bytes=settings.federation_max_list_bytes
        )
        region_code, name = first.region_code, name or first.operator_name
    with transaction(sessions) as s:
        peer = add_peer(
            s,
            url=url,
            pinned_sm3=pin,
            region_code=region_code,
            name=name or region_code,
            actor=actor,
            use_delta=use_delta,
        )
    outcome = sync_peer(sessions, peer.id, settings=settings, client=client, actor=actor) if sync else None
    with sessions() as s:
        return get_peer(s, peer.id), outcome


# --- the list of lists --------------------------------------------------------------------------------
def bootstrap_peers(
    sessions: sessionmaker[Session],
    data: bytes,
    *,
    settings: Settings,
    pinned: Collection[bytes] | None,
    allow_unsigned: bool = False,
    actor: str,
    client: httpx.Client | None = None,
    sync: bool = True,
) -> tuple[ListOfLists, list[FederationPeer], list[SyncOutcome]]:
    """Register every region a list of lists names (those already registered are left alone) and
    (``sync``) fetch their lists. The list of lists is signed and checked against ``pinned``, or —
    ``allow_unsigned``, for a file the administrator hands over — a bare payload."""
    lotl = verify_list_of_lists(data, pinned=pinned, allow_unsigned=allow_unsigned)
    added: list[FederationPeer] = []
    with transaction(sessions) as s:
        known = {p.region_code for p in list_peers(s)}
        for pointer in lotl.peers:
            if pointer.region_code in known or pointer.region_code == settings.region_code:
                continue
            peer = add_peer(
                s,
                url=pointer.url,
                pinned_sm3=pointer.pins[0],
                region_code=pointer.region_code,
                name=pointer.name,
                actor=actor,
            )
            if len(pointer.pins) > 1:
                peer.successor_sm3 = pointer.pins[1]
            added.append(peer)
    outcomes: list[SyncOutcome] = []
    if sync:
        with _client(client, settings) as http:
            outcomes = [sync_peer(sessions, p.id, settings=settings, client=http, actor=actor) for p in added]
    return lotl, added, outcomes


def export_list_of_lists(
    session: Session, keystore: KeyStore, settings: Settings, *, now: datetime | None = None
) -> bytes:
    """This region as a hub: its peers and their pins, signed by the registry key (and itself
    listed first, so a region that trusts the hub learns this region too)."""
    issued = (now or utcnow()).replace(microsecond=0)
    service = current_certificate(session, CertRole.SERVICE)
    own = PeerPointer(
        settings.region_name,
        settings.region_code,
        settings.public_base_url.rstrip("/") + TRUST_LIST_PATH,
        (service.sm3,),
    )
    pointers = [own] + [
        PeerPointer(p.name, p.region_code, p.url, tuple(x for x in (p.pinned_sm3, p.successor_sm3) if x))
        for p in list_peers(session)
        if p.enabled
    ]
    lotl = ListOfLists(
        operator_name=settings.region_name,
        region_code=settings.region_code,
        sequence=current_head(session).seq,
        issued_at=issued,
        next_update=issued + timedelta(seconds=settings.trust_list_validity_s),
        peers=tuple(pointers),
    )
    payload = canonical_bytes(lotl.to_payload())
    cert = certificate_of(service)
    return make_envelope(payload, signer_for(keystore, service).sign(payload), cert, ())


# --- trust for the verifier -------------------------------------------------------------------------
def peer_views(session: Session, *, grace: timedelta) -> list[PeerView]:
    """Every enabled peer's last good list, with its seal type acceptance."""
    views: list[PeerView] = []
    for peer in list_peers(session):
        stored = peer_list(session, peer.id)
        if not peer.enabled or stored is None:
            continue
        try:
            tl = parse_payload(stored.state)
        except EsealError:  # pragma: no cover - only lists that parsed are stored
            log.exception("stored trust list of peer %s cannot be read", peer.region_code)
            continue
        maps = mappings_of(session, peer.id)
        accepted = (
            {m.remote_code: frozenset(m.purposes.split(",")) for m in maps}
            if peer.restrict_seal_types
            else None
        )
        views.append(PeerView(tl, grace, accepted, {m.remote_code: m.local_code for m in maps}))
    return views


class FederatedView(RegistryView):
    """The federated source's answers as of one stamp: the local registry first, then the peers."""

    source: FederatedTrustSource

    def __init__(self, source: FederatedTrustSource, stamp: Stamp) -> None:
        super().__init__(source, stamp)
        self._peers: PeerTrustSource | None = None

    def peers(self) -> PeerTrustSource:
        if self._peers is None:
            self._peers = self.source.peer_trust()
        return self._peers

    def trust_anchors(self, at: datetime) -> Sequence[Certificate]:
        local = list(super().trust_anchors(at))
        seen = {c.der for c in local}
        return local + [c for c in self.peers().trust_anchors(at) if c.der not in seen]

    def crls(self, at: datetime) -> Sequence[CertificateRevocationList]:
        return [*super().crls(at), *self.peers().crls(at)]

    def seal_status(self, es_id: str, seal_sm3: bytes, at: datetime) -> SealStatusFact | None:
        local = super().seal_status(es_id, seal_sm3, at)
        if local is not None:
            return local
        remote = self.peers()
        fact = remote.seal_status(es_id, seal_sm3, at)
        if fact is None and remote.peers:
            # Peers' roots are anchors for every seal: one chaining to them that no list covers must
            # not pass for want of a status (a peer listing a foreign root would vouch for nothing).
            return SealStatusFact(SealState.UNKNOWN, None, UNVOUCHED)
        return fact

    def vouched_by(self, certificate: Certificate, anchor: Certificate) -> str | None:
        return self.peers().vouched_by(certificate, anchor)


class FederatedTrustSource(RegistryTrustSource):
    """The verifier's trust source of a running registry: the local registry first, then the last
    good lists of its peers. Seal status names the list that vouched (region, sequence, issue time);
    so do the certificate chain checks, through :meth:`vouched_by`.

    Cached like :class:`RegistryTrustSource`; the stamp adds the peers' number and generations
    (a sync that stores a list bumps its peer's generation, with or without an audit entry). Peers'
    lists are parsed once per change of the peers' ``(id, generation, enabled)``, not per view.
    """

    view_class = FederatedView

    def __init__(
        self,
        sessions: sessionmaker[Session],
        keystore: KeyStore | None = None,
        *,
        region_code: str | None = None,
        grace: timedelta = timedelta(hours=1),
        purpose: str | None = None,
    ) -> None:
        super().__init__(sessions, keystore, region_code=region_code)
        self._grace = grace
        self._purpose = purpose
        self._peer_cache: tuple[tuple[tuple[int, int, bool], ...], PeerTrustSource] | None = None
        self._peer_lock = threading.Lock()

    def stamp_columns(self) -> list[ScalarSelect[Any]]:
        generations = select(func.coalesce(func.sum(FederationPeer.generation), 0)).scalar_subquery()
        count = select(func.count(FederationPeer.id)).scalar_subquery()
        return [*super().stamp_columns(), generations, count]

    def consistent_view(self) -> FederatedView:
        view = super().consistent_view()
        assert isinstance(view, FederatedView)
        return view

    def peer_trust(self) -> PeerTrustSource:
        """The peers' last good lists, re-read when a peer's ``(id, generation, enabled)`` changed."""
        with self.sessions() as s:
            key = tuple(
                (int(r[0]), int(r[1]), bool(r[2]))
                for r in s.execute(
                    select(FederationPeer.id, FederationPeer.generation, FederationPeer.enabled).order_by(
                        FederationPeer.id
                    )
                )
            )
            with self._peer_lock:
                cached = self._peer_cache
                if cached is not None and cached[0] == key:
                    return cached[1]
                source = PeerTrustSource(peer_views(s, grace=self._grace), purpose=self._purpose)
                self._peer_cache = (key, source)
                return source

    def peers(self) -> PeerTrustSource:
        return self.consistent_view().peers()

    def vouched_by(self, certificate: Certificate, anchor: Certificate) -> str | None:
        return self.consistent_view().vouched_by(certificate, anchor)
