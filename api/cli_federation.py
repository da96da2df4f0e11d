"""``eseal peer …`` and ``eseal trust-list …``: cross-region recognition from the command line.

``trust-list inspect FILE`` needs no database: it reads any trust list envelope, checks its
signature (and, with ``--pin``, that the signer is the expected registry certificate) and prints
every part. Exit 0 when the list checks out, 1 when it does not.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer
from rich.table import Table

from core.errors import EsealError, InvalidInput

from .cli import CLI_ACTOR, err, handle_errors, out, service
from .cli_seal import safe

if TYPE_CHECKING:
    from seal_registry.federation_models import FederationPeer, FederationPeerList
    from seal_registry.peers import SyncOutcome
    from verify.peer_trust import TrustList

peer_app: typer.Typer = typer.Typer(no_args_is_help=True, help="对等地区 / peer regions (mutual recognition)")
trust_list_app: typer.Typer = typer.Typer(no_args_is_help=True, help="地区信任列表 / the region's trust list")

MAX_FILE_BYTES: Final = 64 * 1024 * 1024


def _time(value: dt.datetime | None) -> str:
    return "-" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _read(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InvalidInput(f"文件过大：{path}", f"file too large: {path}")
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"无法读取 {path}：{exc}", f"cannot read {path}: {exc}") from None


# --- peer -----------------------------------------------------------------------------------------
def _peer_table(rows: list[tuple[FederationPeer, FederationPeerList | None]]) -> Table:
    table = Table()
    table.add_column("id", no_wrap=True)
    table.add_column("region", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("seq", no_wrap=True)
    table.add_column("next update", overflow="fold")
    table.add_column("last sync", overflow="fold")
    table.add_column("error", overflow="fold")
    now = dt.datetime.now(dt.UTC)
    for peer, stored in rows:
        stale = stored is not None and now > stored.next_update
        table.add_row(
            str(peer.id),
            peer.region_code + ("" if peer.enabled else " (off)"),
            safe(peer.name),
            "-" if stored is None else str(stored.sequence),
            _time(stored.next_update if stored else None) + (" [yellow]过期 stale[/yellow]" if stale else ""),
            _time(peer.last_success_at),
            safe(peer.last_error or ""),
        )
    return table


def _print_outcome(o: SyncOutcome) -> None:
    colour = {"updated": "green", "not_modified": "cyan", "refused": "red", "failed": "yellow"}[o.status]
    seq = "-" if o.sequence is None else f"#{o.sequence}"
    out.print(
        f"[{colour}]{o.region_code} {o.status}[/{colour}] {seq} ({o.elapsed_s:.3f} s): ",
        safe(f"{o.message_zh} / {o.message_en}"),
        soft_wrap=True,
    )


@peer_app.command("add")
@handle_errors
def peer_add(
    url: Annotated[str, typer.Argument(help="对方信任列表地址 / the peer's trust list URL")],
    pin: Annotated[
        str, typer.Option(help="对方登记系统证书 SM3 指纹（线下获得）/ SM3 of its registry certificate")
    ],
    region: Annotated[str | None, typer.Option(help="地区代码（省略时取自列表）/ region code")] = None,
    name: Annotated[str | None, typer.Option(help="名称 / display name")] = None,
    delta: Annotated[bool, typer.Option(help="同步时使用增量 / sync with deltas")] = True,
    sync: Annotated[bool, typer.Option(help="登记后立即同步 / sync at once")] = True,
) -> None:
    """登记对等地区并固定其证书 / register a peer region and pin its registry certificate."""
    from seal_registry import peers

    with service() as ctx:
        peer, outcome = peers.register_peer(
            ctx.sessions,
            settings=ctx.settings,
            url=url,
            pinned_sm3=pin,
            region_code=region,
            name=name,
            actor=CLI_ACTOR,
            use_delta=delta,
            sync=sync,
        )
        with ctx.sessions() as s:
            out.print(_peer_table([(peer, peers.peer_list(s, peer.id))]))
    if outcome is not None:
        _print_outcome(outcome)
        if not outcome.ok:
            raise typer.Exit(code=1)


@peer_app.command("list")
@handle_errors
def peer_list() -> None:
    """列出对等地区 / list peer regions and their last good lists."""
    from seal_registry import peers

    with service() as ctx, ctx.sessions() as s:
        out.print(_peer_table([(p, peers.peer_list(s, p.id)) for p in peers.list_peers(s)]))


@peer_app.command("sync")
@handle_errors
def peer_sync(
    peer: Annotated[
        str | None, typer.Argument(help="地区代码或编号（省略：全部）/ region code or id (all)")
    ] = None,
    full: Annotated[bool, typer.Option(help="取完整列表 / fetch the full list")] = False,
) -> None:
    """立即同步 / fetch and check peers' trust lists now; exit 1 if any was refused or failed."""
    from seal_registry import peers

    with service() as ctx:
        if peer is None:
            outcomes = peers.sync_all(ctx.sessions, settings=ctx.settings)
        else:
            outcomes = [
                peers.sync_peer(ctx.sessions, peer, settings=ctx.settings, full=full, actor=CLI_ACTOR)
            ]
    for o in outcomes:
        _print_outcome(o)
    if any(not o.ok for o in outcomes):
        raise typer.Exit(code=1)


@peer_app.command("show")
@handle_errors
def peer_show(peer: Annotated[str, typer.Argument(help="地区代码或编号 / region code or id")]) -> None:
    """对等地区详情与其最后一份有效列表 / a peer and its last good list."""
    from seal_registry import peers
    from verify.peer_trust import parse_payload

    with service() as ctx, ctx.sessions() as s:
        row = peers.get_peer(s, peer)
        stored = peers.peer_list(s, row.id)
        maps = peers.mappings_of(s, row.id)
        out.print(_peer_table([(row, stored)]))
        out.print(f"URL: {row.url}", soft_wrap=True)
        out.print(f"pinned SM3: {row.pinned_sm3}", soft_wrap=True)
        if row.successor_sm3:
            out.print(f"announced successor SM3: {row.successor_sm3}", soft_wrap=True)
        out.print(f"refused lists: {row.refused_count}")
        if maps:
            for m in maps:
                out.print(f"seal type {m.remote_code} → local {m.local_code} for {m.purposes}")
        else:
            out.print("seal types: all accepted as listed")
        if stored is not None:
            _print_list(parse_payload(stored.state), show_seals=True)


@peer_app.command("remove")
@handle_errors
def peer_remove(peer: Annotated[str, typer.Argument(help="地区代码或编号 / region code or id")]) -> None:
    """删除对等地区 / stop recognising a peer region."""
    from core.db import transaction
    from seal_registry import peers

    with service() as ctx, transaction(ctx.sessions) as s:
        peers.remove_peer(s, peer, actor=CLI_ACTOR)
    out.print(f"已删除 removed {peer}")


@peer_app.command("pin")
@handle_errors
def peer_pin(
    peer: Annotated[str, typer.Argument(help="地区代码或编号 / region code or id")],
    sm3: Annotated[str, typer.Argument(help="新的证书 SM3 指纹 / new SM3 fingerprint")],
) -> None:
    """重新固定对方证书 / pin a new registry certificate (key changed without announcement)."""
    from core.db import transaction
    from seal_registry import peers

    with service() as ctx, transaction(ctx.sessions) as s:
        row = peers.set_pin(s, peer, sm3, actor=CLI_ACTOR)
        out.print(f"{row.region_code} pinned {row.pinned_sm3}")


@peer_app.command("map-type")
@handle_errors
def peer_map_type(
    peer: Annotated[str, typer.Argument(help="地区代码或编号 / region code or id")],
    remote: Annotated[str, typer.Argument(help="对方印章类型代码 / the peer's seal type code")],
    local: Annotated[str, typer.Argument(help="本地等同类型代码 / the equivalent local code")],
    purpose: Annotated[list[str] | None, typer.Option(help="用途（可多次）/ purpose (repeatable)")] = None,
) -> None:
    """承认对方的某类印章 / accept one of the peer's seal types (then only mapped types are accepted)."""
    from core.db import transaction
    from seal_registry import peers

    with service() as ctx, transaction(ctx.sessions) as s:
        row = peers.map_seal_type(
            s, peer, remote_code=remote, local_code=local, purposes=purpose or ["any"], actor=CLI_ACTOR
        )
        out.print(f"seal type {row.remote_code} → local {row.local_code} for {row.purposes}")


@peer_app.command("unmap-type")
@handle_errors
def peer_unmap_type(
    peer: Annotated[str, typer.Argument(help="地区代码或编号 / region code or id")],
    remote: Annotated[str, typer.Argument(help="对方印章类型代码 / the peer's seal type code")],
) -> None:
    """不再承认对方的某类印章 / stop accepting one of the peer's seal types."""
    from core.db import transaction
    from seal_registry import peers

    with service() as ctx, transaction(ctx.sessions) as s:
        peers.unmap_seal_type(s, peer, remote, actor=CLI_ACTOR)
    out.print(f"seal type {remote} no longer mapped")


@peer_app.command("bootstrap")
@handle_errors
def peer_bootstrap(
    file: Annotated[Path, typer.Argument(help="列表的列表文件 / list of lists file")],
    pin: Annotated[list[str] | None, typer.Option(help="其签名证书 SM3（可多次）/ pinned signer SM3")] = None,
    unsigned: Annotated[bool, typer.Option(help="接受未签名的文件 / accept an unsigned file")] = False,
    sync: Annotated[bool, typer.Option(help="登记后立即同步 / sync at once")] = True,
) -> None:
    """由列表的列表一次登记多个对等地区 / register every region a list of lists names."""
    from seal_registry import peers

    if not pin and not unsigned:
        raise InvalidInput("须指定 --pin，或 --unsigned", "Give --pin, or --unsigned for an unsigned file")
    pinned = {bytes.fromhex(peers.normalise_fingerprint(p)) for p in pin} if pin else None
    data = _read(file)
    with service() as ctx:
        lotl, added, outcomes = peers.bootstrap_peers(
            ctx.sessions,
            data,
            settings=ctx.settings,
            pinned=pinned,
            allow_unsigned=unsigned,
            actor=CLI_ACTOR,
            sync=sync,
        )
        out.print(f"{safe(lotl.operator_name)} #{lotl.sequence}: {len(added)} peer(s) added")
        with ctx.sessions() as s:
            out.print(_peer_table([(p, peers.peer_list(s, p.id)) for p in added]))
    for o in outcomes:
        _print_outcome(o)


@peer_app.command("export-lotl")
@handle_errors
def peer_export_lotl(
    output: Annotated[Path | None, typer.Argument(help="输出文件（省略：标准输出）/ output file")] = None,
) -> None:
    """导出本地区作为枢纽的列表的列表 / export this region's peers as a signed list of lists."""
    from seal_registry import peers

    with service() as ctx, ctx.sessions() as s:
        data = peers.export_list_of_lists(s, ctx.keystore, ctx.settings)
    _write(data, output)


# --- trust-list -----------------------------------------------------------------------------------
def _write(data: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.buffer.write(data + b"\n")
        sys.stdout.buffer.flush()
        return
    output.write_bytes(data)
    err.print(f"已写入 written {output} ({len(data)} bytes)")


@trust_list_app.command("export")
@handle_errors
def trust_list_export(
    output: Annotated[Path | None, typer.Argument(help="输出文件（省略：标准输出）/ output file")] = None,
    since: Annotated[
        int | None, typer.Option(help="只导出此序号之后的变化 / delta since this sequence")
    ] = None,
) -> None:
    """导出签名的信任列表 / export the region's signed trust list (or a delta)."""
    from core.db import transaction
    from seal_registry import trust_list

    with service() as ctx, transaction(ctx.sessions) as s:
        if since is None:
            data = trust_list.published_trust_list(s, ctx.keystore, ctx.settings).envelope
        else:
            data = trust_list.build_delta(s, ctx.keystore, ctx.settings, since=since)
    _write(data, output)


@trust_list_app.command("fingerprint")
@handle_errors
def trust_list_fingerprint() -> None:
    """本地区登记系统证书的 SM3 指纹（交给对方固定）/ the registry certificate's SM3, to give to peers."""
    from seal_registry.pki import CertRole, current_certificate
    from seal_registry.trust_list import next_signer

    with service() as ctx, ctx.sessions() as s:
        row = current_certificate(s, CertRole.SERVICE)
        out.print(row.sm3, soft_wrap=True)
        nxt = next_signer(s)
        if nxt is not None:
            err.print(f"announced next registry certificate: {nxt.sm3}")


@trust_list_app.command("announce-next-signer")
@handle_errors
def trust_list_announce() -> None:
    """生成并公布下一个登记系统证书 / make and announce the next registry certificate (rollover)."""
    from core.db import transaction
    from seal_registry import trust_list

    with service() as ctx, transaction(ctx.sessions) as s:
        row = trust_list.announce_next_signer(s, ctx.keystore, ctx.settings, actor=CLI_ACTOR)
        out.print(f"announced {row.sm3}")


@trust_list_app.command("activate-next-signer")
@handle_errors
def trust_list_activate() -> None:
    """启用已公布的下一个登记系统证书 / switch signing to the announced certificate."""
    from core.db import transaction
    from seal_registry import trust_list

    with service() as ctx, transaction(ctx.sessions) as s:
        row = trust_list.activate_next_signer(s, actor=CLI_ACTOR)
        out.print(f"now signing with {row.sm3}")


def _print_list(tl: TrustList, *, show_seals: bool) -> None:
    out.print(
        f"[bold]{safe(tl.operator_name)}[/bold] ({tl.region_code}) {tl.kind} #{tl.sequence}"
        + (f" since #{tl.since}" if tl.since is not None else ""),
        soft_wrap=True,
    )
    out.print(f"issued {_time(tl.issued_at)}, next update {_time(tl.next_update)}")
    certs = Table(title="证书 certificates")
    for col in ("kind", "subject", "sm3", "status", "since"):
        certs.add_column(col, overflow="fold")
    for kind, rows in (("CA root", tl.ca_roots), ("seal maker", tl.seal_makers)):
        for c in rows:
            certs.add_row(kind, safe(c.certificate.subject), c.sm3, c.status, _time(c.status_since))
    out.print(certs)
    out.print(
        f"CRLs: {len(tl.crls)}; seal types: " + ", ".join(f"{t.code} {t.name_zh}" for t in tl.seal_types)
    )
    if tl.next_signer is not None:
        out.print(
            f"next registry certificate announced: {tl.next_signer.fingerprint_sm3.hex()}", soft_wrap=True
        )
    for e in tl.extensions:
        out.print(safe(f"extension {e.id} (critical={e.critical}): {str(e.value)[:200]}"), soft_wrap=True)
    out.print(f"seals: {len(tl.seals)}")
    if show_seals and tl.seals:
        seals = Table()
        for col in ("esID", "type", "state", "since", "SM3"):
            seals.add_column(col, overflow="fold", no_wrap=col == "esID")
        for r in tl.seals[:200]:
            seals.add_row(r.es_id, r.seal_type, r.current.state, _time(r.current.at), r.seal_sm3)
        out.print(seals)


@trust_list_app.command("inspect")
def trust_list_inspect(
    file: Annotated[Path, typer.Argument(help="信任列表文件 / trust list file")],
    pin: Annotated[list[str] | None, typer.Option(help="期望的签名证书 SM3 / expected signer SM3")] = None,
    seals: Annotated[bool, typer.Option(help="列出印章 / list the seals")] = True,
) -> None:
    """打印并检查任意信任列表 / print and check any trust list (exit 1 if it does not check out)."""
    from verify.peer_trust import parse_envelope, parse_payload, verify_trust_list

    try:
        data = _read(file)
        envelope = parse_envelope(data)
        out.print(f"signer: {safe(envelope.signer.describe())}", soft_wrap=True)
        out.print(f"signer SM3: {envelope.signer.fingerprint_sm3.hex()}", soft_wrap=True)
        try:
            _print_list(parse_payload(envelope.payload, signer=envelope.signer), show_seals=seals)
        except EsealError as exc:
            err.print(
                safe(f"内容无法读取 payload unreadable: {exc.message_zh} / {exc.message_en}"), soft_wrap=True
            )
        pinned = {bytes.fromhex(_fingerprint(p)) for p in pin} if pin else None
        verify_trust_list(data, pinned=pinned)
    except EsealError as exc:
        err.print(
            "[red]检查未通过 check failed[/red] ",
            safe(f"({exc.code}) {exc.message_zh} / {exc.message_en}"),
            soft_wrap=True,
        )
        raise typer.Exit(code=1) from None
    what = (
        "签名有效，签名者为固定的证书 signature valid, signer pinned"
        if pin
        else "签名有效 signature valid (signer not pinned: --pin)"
    )
    out.print(f"[green]{what}[/green]")


def _fingerprint(value: str) -> str:
    from seal_registry.peers import normalise_fingerprint

    return normalise_fingerprint(value)
