"""Cross-region recognition over HTTP: this region's signed trust list (public, cacheable) and its
deltas, the list of lists, peer management (admin), and the scheduled sync of peers' lists.

The router's lifespan starts the sync loop (``ESEAL_FEDERATION_SYNC_INTERVAL_S``, down to a
fraction of a second; 0 disables it) and installs the federated trust source as the app's
``registry_trust``, so ``POST /v1/verify`` consults the local registry first, then the peers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Annotated, Any, Final, cast

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from core.db import transaction, utcnow
from core.errors import InvalidInput
from core.tokens import Principal
from gmpki.x509 import load_certificate_der
from hsm_adapters.keystore import KeyStore
from seal_registry import peers, trust_list
from seal_registry.federation_models import FederationPeer, FederationPeerList
from verify.peer_trust import parse_payload

from ..context import ServiceContext
from ..problems import PROBLEM_JSON
from ..security import get_context, require_roles

log = logging.getLogger("eseal.federation")
TRUST_LIST_MEDIA: Final = "application/json"
MAX_LOTL_BYTES: Final = 4 * 1024 * 1024


class _LazyKeyStore:
    """The context's key store, opened on first use (as the verify routes did), not at start-up."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx.keystore, name)


def federated_trust(ctx: ServiceContext) -> peers.FederatedTrustSource:
    """The local registry first, then the peers' last good lists."""
    return peers.FederatedTrustSource(
        ctx.sessions,
        cast(KeyStore, _LazyKeyStore(ctx)),
        region_code=ctx.settings.region_code,
        grace=timedelta(seconds=ctx.settings.federation_grace_s),
    )


async def _sync_periodically(ctx: ServiceContext, interval_s: float) -> None:
    while True:
        started = time.monotonic()
        try:
            outcomes = await asyncio.to_thread(peers.sync_all, ctx.sessions, settings=ctx.settings)
            for o in outcomes:
                if o.status == "updated":
                    log.info("peer %s: %s", o.region_code, o.message_en)
        except Exception:  # keep the loop alive; the next round retries
            log.exception("syncing peer trust lists failed")
        await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    ctx: ServiceContext = app.state.ctx
    # The verify routes use whatever RegistryTrustSource the app holds; ours adds the peers.
    app.state.registry_trust = federated_trust(ctx)
    interval = ctx.settings.federation_sync_interval_s
    task = asyncio.create_task(_sync_periodically(ctx, interval)) if interval > 0 else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()


router = APIRouter(tags=["federation"], lifespan=lifespan)


# --- this region's trust list (public) ------------------------------------------------------------
def _http_date(value: datetime) -> str:
    return format_datetime(value, usegmt=True)


def _not_modified(request: Request, etag: str, issued_at: datetime) -> bool:
    tags = request.headers.get("if-none-match")
    if tags is not None:
        wanted = {t.strip().removeprefix("W/") for t in tags.split(",")}
        return etag in wanted or "*" in wanted
    since = request.headers.get("if-modified-since")
    if since:
        try:
            return issued_at <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False


@router.get(
    "/v1/trust-list",
    response_class=Response,
    summary="本地区签名信任列表 This region's signed trust list (public)",
    description=(
        "地区信任列表（格式见 docs/trust-list-format.md）：SM2 签名的规范 JSON 信封。支持 ETag / "
        "If-None-Match（304）与 Last-Modified。\n\nThe region's signed trust list (canonical JSON "
        "envelope with a detached SM2 signature; docs/trust-list-format.md). ETag / If-None-Match "
        "(304) and Last-Modified are supported; the body only changes when the list does."
    ),
    responses={200: {"content": {TRUST_LIST_MEDIA: {}}}, 304: {"description": "Not modified"}},
)
def get_trust_list(request: Request, ctx: ServiceContext = Depends(get_context)) -> Response:  # noqa: B008
    with transaction(ctx.sessions) as s:
        pub = trust_list.published_trust_list(s, ctx.keystore, ctx.settings)
    etag = f'"{pub.etag}"'
    max_age = max(
        0, min(ctx.settings.trust_list_max_age_s, int((pub.next_update - utcnow()).total_seconds()))
    )
    headers = {
        "ETag": etag,
        "Last-Modified": _http_date(pub.issued_at),
        "Cache-Control": f"public, max-age={max_age}, must-revalidate",
        "Expires": _http_date(pub.next_update),
        "X-Trust-List-Sequence": str(pub.sequence),
    }
    if _not_modified(request, etag, pub.issued_at):
        return Response(status_code=304, headers=headers)
    return Response(pub.envelope, media_type=TRUST_LIST_MEDIA, headers=headers)


@router.get(
    "/v1/trust-list/delta",
    response_class=Response,
    summary="自某序号以来的变化 Trust list delta since a sequence (public)",
    description=(
        "自序号 since 以来状态有变化的印章（每枚印章带完整历史），连同当前的根证书、制章者与 CRL；"
        "签名方式与完整列表相同。\n\nSeals whose status changed after sequence `since` (each with its "
        "whole history), with the current roots, seal makers and CRL; signed like the full list."
    ),
    responses={
        200: {"content": {TRUST_LIST_MEDIA: {}}},
        400: {"description": "since beyond the current sequence", "content": {PROBLEM_JSON: {}}},
    },
)
def get_trust_list_delta(
    since: Annotated[int, Query(ge=0, le=2**62, description="上次收到的序号 / the sequence last received")],
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
) -> Response:
    with transaction(ctx.sessions) as s:
        body = trust_list.build_delta(s, ctx.keystore, ctx.settings, since=since)
    return Response(body, media_type=TRUST_LIST_MEDIA, headers={"Cache-Control": "no-cache"})


@router.get(
    "/v1/federation/list-of-lists",
    response_class=Response,
    summary="列表的列表 This region as a hub: its peers and their pins, signed (public)",
    responses={200: {"content": {TRUST_LIST_MEDIA: {}}}},
)
def get_list_of_lists(ctx: ServiceContext = Depends(get_context)) -> Response:  # noqa: B008
    with ctx.sessions() as s:
        body = peers.export_list_of_lists(s, ctx.keystore, ctx.settings)
    return Response(body, media_type=TRUST_LIST_MEDIA, headers={"Cache-Control": "no-cache"})


# --- peers (admin) ----------------------------------------------------------------------------------
class MappingOut(BaseModel):
    remote_code: str
    local_code: str
    purposes: list[str]


class PeerOut(BaseModel):
    id: int
    region_code: str
    name: str
    url: str
    pinned_sm3: str
    successor_sm3: str | None
    enabled: bool
    use_delta: bool
    restrict_seal_types: bool
    added_at: datetime
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    refused_count: int
    sequence: int | None
    issued_at: datetime | None
    next_update: datetime | None
    stale: bool | None
    mappings: list[MappingOut]


class ListedCertOut(BaseModel):
    subject: str
    sm3: str
    status: str


class PeerDetailOut(PeerOut):
    ca_roots: list[ListedCertOut]
    seal_makers: list[ListedCertOut]
    seal_count: int
    seal_types: dict[str, str]


class SyncOut(BaseModel):
    region_code: str
    status: str
    sequence: int | None
    code: str | None
    message_zh: str
    message_en: str
    elapsed_s: float


def _peer_out(peer: FederationPeer, stored: FederationPeerList | None, maps: list[MappingOut]) -> PeerOut:
    now = utcnow()
    return PeerOut(
        id=peer.id,
        region_code=peer.region_code,
        name=peer.name,
        url=peer.url,
        pinned_sm3=peer.pinned_sm3,
        successor_sm3=peer.successor_sm3,
        enabled=peer.enabled,
        use_delta=peer.use_delta,
        restrict_seal_types=peer.restrict_seal_types,
        added_at=peer.added_at,
        last_attempt_at=peer.last_attempt_at,
        last_success_at=peer.last_success_at,
        last_error=peer.last_error,
        last_error_at=peer.last_error_at,
        refused_count=peer.refused_count,
        sequence=stored.sequence if stored else None,
        issued_at=stored.issued_at if stored else None,
        next_update=stored.next_update if stored else None,
        stale=(now > stored.next_update) if stored else None,
        mappings=maps,
    )


def _mappings(session: Session, peer: FederationPeer) -> list[MappingOut]:
    return [
        MappingOut(remote_code=m.remote_code, local_code=m.local_code, purposes=m.purposes.split(","))
        for m in peers.mappings_of(session, peer.id)
    ]


def _sync_out(o: peers.SyncOutcome) -> SyncOut:
    return SyncOut(
        region_code=o.region_code,
        status=o.status,
        sequence=o.sequence,
        code=o.code,
        message_zh=o.message_zh,
        message_en=o.message_en,
        elapsed_s=round(o.elapsed_s, 4),
    )


class PeerIn(BaseModel):
    url: str = Field(max_length=2000, description="对方信任列表地址 / the peer's trust list URL")
    pinned_sm3: str = Field(
        max_length=200, description="对方登记系统证书的 SM3 指纹（线下获得）/ SM3 of its registry certificate"
    )
    region_code: str | None = Field(default=None, max_length=6, description="省略时取自对方列表")
    name: str | None = Field(default=None, max_length=200)
    use_delta: bool = True
    sync: bool = True


class PeerAdded(BaseModel):
    peer: PeerOut
    sync: SyncOut | None


admin = require_roles()


@router.get("/v1/federation/peers", response_model=list[PeerOut], summary="对等地区 Peer regions (admin)")
def list_peers(
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    _who: Principal = Depends(admin),  # noqa: B008
) -> list[PeerOut]:
    with ctx.sessions() as s:
        return [_peer_out(p, peers.peer_list(s, p.id), _mappings(s, p)) for p in peers.list_peers(s)]


@router.post(
    "/v1/federation/peers",
    response_model=PeerAdded,
    status_code=201,
    summary="登记对等地区 Register a peer (admin)",
)
def add_peer(
    body: PeerIn,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(admin),  # noqa: B008
) -> PeerAdded:
    peer, outcome = peers.register_peer(
        ctx.sessions,
        settings=ctx.settings,
        url=body.url,
        pinned_sm3=body.pinned_sm3,
        region_code=body.region_code,
        name=body.name,
        actor=who.actor,
        use_delta=body.use_delta,
        sync=body.sync,
    )
    with ctx.sessions() as s:
        out = _peer_out(peer, peers.peer_list(s, peer.id), _mappings(s, peer))
    return PeerAdded(peer=out, sync=_sync_out(outcome) if outcome else None)


@router.get(
    "/v1/federation/peers/{ref}", response_model=PeerDetailOut, summary="对等地区详情 Peer detail (admin)"
)
def show_peer(
    ref: str,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    _who: Principal = Depends(admin),  # noqa: B008
) -> PeerDetailOut:
    with ctx.sessions() as s:
        peer = peers.get_peer(s, ref)
        stored = peers.peer_list(s, peer.id)
        base = _peer_out(peer, stored, _mappings(s, peer))
        tl = parse_payload(stored.state) if stored is not None else None
    return PeerDetailOut(
        **base.model_dump(),
        ca_roots=[
            ListedCertOut(subject=c.certificate.subject, sm3=c.sm3, status=c.status) for c in tl.ca_roots
        ]
        if tl
        else [],
        seal_makers=[
            ListedCertOut(subject=c.certificate.subject, sm3=c.sm3, status=c.status) for c in tl.seal_makers
        ]
        if tl
        else [],
        seal_count=len(tl.seals) if tl else 0,
        seal_types={t.code: f"{t.name_zh} {t.name_en}" for t in tl.seal_types} if tl else {},
    )


@router.delete("/v1/federation/peers/{ref}", status_code=204, summary="删除对等地区 Remove a peer (admin)")
def remove_peer(
    ref: str,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(admin),  # noqa: B008
) -> Response:
    with transaction(ctx.sessions) as s:
        peers.remove_peer(s, ref, actor=who.actor)
    return Response(status_code=204)


@router.post("/v1/federation/peers/{ref}/sync", response_model=SyncOut, summary="立即同步 Sync now (admin)")
def sync_peer(
    ref: str,
    full: bool = Query(default=False, description="取完整列表而非增量 / fetch the full list, not a delta"),
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(admin),  # noqa: B008
) -> SyncOut:
    return _sync_out(peers.sync_peer(ctx.sessions, ref, settings=ctx.settings, full=full, actor=who.actor))


@router.post("/v1/federation/sync", response_model=list[SyncOut], summary="同步全部 Sync every peer (admin)")
def sync_all(
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    _who: Principal = Depends(admin),  # noqa: B008
) -> list[SyncOut]:
    return [_sync_out(o) for o in peers.sync_all(ctx.sessions, settings=ctx.settings)]


class PinIn(BaseModel):
    pinned_sm3: str = Field(max_length=200)


@router.put("/v1/federation/peers/{ref}/pin", response_model=PeerOut, summary="重新固定证书 Re-pin (admin)")
def pin_peer(
    ref: str,
    body: PinIn,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(admin),  # noqa: B008
) -> PeerOut:
    with transaction(ctx.sessions) as s:
        peer = peers.set_pin(s, ref, body.pinned_sm3, actor=who.actor)
        return _peer_out(peer, peers.peer_list(s, peer.id), _mappings(s, peer))


class MappingIn(BaseModel):
    remote_code: str = Field(max_length=2, description="对方印章类型代码 / the peer's seal type code")
    local_code: str = Field(max_length=2, description="本地等同类型 / the equivalent local type")
    purposes: list[str] = Field(default_factory=lambda: ["any"], max_length=20)


@router.put(
    "/v1/federation/peers/{ref}/seal-types",
    response_model=MappingOut,
    summary="印章类型映射 Accept a peer's seal type (admin)",
)
def map_seal_type(
    ref: str,
    body: MappingIn,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(admin),  # noqa: B008
) -> MappingOut:
    with transaction(ctx.sessions) as s:
        row = peers.map_seal_type(
            s,
            ref,
            remote_code=body.remote_code,
            local_code=body.local_code,
            purposes=body.purposes,
            actor=who.actor,
        )
        return MappingOut(
            remote_code=row.remote_code, local_code=row.local_code, purposes=row.purposes.split(",")
        )


@router.delete(
    "/v1/federation/peers/{ref}/seal-types/{remote_code}",
    status_code=204,
    summary="取消印章类型映射 Stop accepting a peer's seal type (admin)",
)
def unmap_seal_type(
    ref: str,
    remote_code: str,
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(admin),  # noqa: B008
) -> Response:
    with transaction(ctx.sessions) as s:
        peers.unmap_seal_type(s, ref, remote_code, actor=who.actor)
    return Response(status_code=204)


class BootstrapOut(BaseModel):
    operator: str
    sequence: int
    added: list[PeerOut]
    sync: list[SyncOut]


@router.post(
    "/v1/federation/bootstrap",
    response_model=BootstrapOut,
    summary="由列表的列表登记对等地区 Bootstrap peers from a list of lists (admin)",
    openapi_extra={"requestBody": {"content": {TRUST_LIST_MEDIA: {}}, "required": True}},
)
async def bootstrap(
    request: Request,
    pin: Annotated[list[str] | None, Query(description="列表的列表签名证书 SM3 / pinned signer SM3")] = None,
    unsigned: bool = Query(default=False, description="接受未签名的文件 / accept an unsigned file"),
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(admin),  # noqa: B008
) -> BootstrapOut:
    data = await request.body()
    if len(data) > MAX_LOTL_BYTES:
        raise InvalidInput("列表的列表过大", "The list of lists is too large")
    if not pin and not unsigned:
        raise InvalidInput(
            "须指定签名证书指纹 pin，或 unsigned=true", "Give the signer's pin, or unsigned=true"
        )
    pinned = {bytes.fromhex(peers.normalise_fingerprint(p)) for p in pin} if pin else None
    lotl, added, outcomes = await asyncio.to_thread(
        peers.bootstrap_peers,
        ctx.sessions,
        data,
        settings=ctx.settings,
        pinned=pinned,
        allow_unsigned=unsigned,
        actor=who.actor,
    )
    with ctx.sessions() as s:
        rows = [peers.get_peer(s, p.id) for p in added]
        out = [_peer_out(p, peers.peer_list(s, p.id), _mappings(s, p)) for p in rows]
    return BootstrapOut(
        operator=lotl.operator_name, sequence=lotl.sequence, added=out, sync=[_sync_out(o) for o in outcomes]
    )


# --- registry key rollover (admin) ------------------------------------------------------------------
class SignerOut(BaseModel):
    sm3: str
    subject: str


@router.post(
    "/v1/trust-list/next-signer",
    response_model=SignerOut,
    status_code=201,
    summary="公布下一个登记系统证书 Announce the next registry certificate (admin)",
)
def announce_next_signer(
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(admin),  # noqa: B008
) -> SignerOut:
    with transaction(ctx.sessions) as s:
        row = trust_list.announce_next_signer(s, ctx.keystore, ctx.settings, actor=who.actor)
        return SignerOut(sm3=row.sm3, subject=load_certificate_der(row.der).subject)


@router.post(
    "/v1/trust-list/next-signer/activate",
    response_model=SignerOut,
    summary="启用下一个登记系统证书 Switch to the announced registry certificate (admin)",
)
def activate_next_signer(
    ctx: ServiceContext = Depends(get_context),  # noqa: B008
    who: Principal = Depends(admin),  # noqa: B008
) -> SignerOut:
    with transaction(ctx.sessions) as s:
        row = trust_list.activate_next_signer(s, actor=who.actor)
        return SignerOut(sm3=row.sm3, subject=row.subject)
