"""``eseal blobs …``: housekeeping of the content-addressed file store."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer

from core.errors import InvalidInput

from .cli import CLI_ACTOR, handle_errors, out, service

blobs_app: typer.Typer = typer.Typer(no_args_is_help=True, help="文件存储 / the blob store")


@blobs_app.command("sweep")
@handle_errors
def blobs_sweep(
    grace_hours: Annotated[
        float, typer.Option("--grace-hours", help="只清理早于此时长的文件 / spare files newer than this")
    ] = 24.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="只统计不删除 / count only")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON 输出 / JSON output")] = False,
) -> None:
    """清理无记录引用的文件（崩溃遗留）/ remove stored files no record names (left by crashes)."""
    from .blob_sweep import sweep_blobs

    if not grace_hours >= 1.0:  # also refuses NaN
        raise InvalidInput(
            "宽限期至少 1 小时：更短会误删正在提交的文件",
            "the grace period must be at least 1 hour: shorter could remove files being committed",
        )
    with service() as ctx:
        report = sweep_blobs(ctx, grace=dt.timedelta(hours=grace_hours), dry_run=dry_run, actor=CLI_ACTOR)
    if as_json:
        out.print_json(json.dumps({**report.to_json(), "dry_run": dry_run}))
        return
    verb = "将删除 would remove" if dry_run else "已删除 removed"
    out.print(
        f"检查 examined {report.examined} · 被引用 referenced {report.referenced} · "
        f"宽限期内 recent {report.recent} · {verb} {report.removed} ({report.removed_bytes} B) · "
        f"临时文件 temporaries {report.temporaries}"
    )
