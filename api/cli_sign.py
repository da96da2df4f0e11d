"""`eseal sign …`: seal OFD documents, make detached SES signatures, sign digests.

Locally (the default) the commands use this installation's database and key store, like the API,
and run authorise → sign → audit in one transaction. With ``--server URL`` (and ``--token`` or
``ESEAL_TOKEN``, a department signer's token) they use two-step signing against a remote service:
only the SM3 digest leaves this machine (:mod:`signer.two_step`).

The output file is written only after the signature is made (and, locally, committed): to a
temporary file in the same directory, flushed, then renamed over ``-o`` in one step.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer

from core.errors import InvalidInput

from .cli import CLI_ACTOR, handle_errors, out, service

# signer.batch.DEFAULT_GROUP_SIZE, not imported here so that `eseal --help` need not load the signer
# (tests/batch/test_cli.py holds the two equal).
BATCH_GROUP_SIZE: Final = 64

if TYPE_CHECKING:
    from signer.batch import JobProgress
    from signer.two_step import TwoStepClient

sign_app: typer.Typer = typer.Typer(
    no_args_is_help=True, help="签章 / seal OFD documents, make SES signatures, sign digests"
)

_CHUNK: Final = 1024 * 1024

SealOpt = Annotated[str, typer.Option("--seal", help="印章编码 esID / seal esID")]
DepartmentOpt = Annotated[
    str | None, typer.Option("--department", help="部门 ID（本地签章必填）/ department id (local signing)")
]
OutputOpt = Annotated[Path, typer.Option("-o", "--output", help="输出文件 / output file", dir_okay=False)]
ServerOpt = Annotated[
    str | None,
    typer.Option("--server", help="远程两步签章服务地址 / remote service URL (two-step signing)"),
]
TokenOpt = Annotated[
    str | None, typer.Option("--token", envvar="ESEAL_TOKEN", help="部门签章令牌 / department signer token")
]
TimestampOpt = Annotated[
    bool,
    typer.Option(
        "--timestamp",
        help="加盖 RFC 3161 时间戳（覆盖签名值；仅本地签章）/ "
        "RFC 3161 time-stamp over the signature value (local signing only)",
    ),
]
PropertyOpt = Annotated[
    str | None,
    typer.Option("--property-info", help="propertyInfo（ASCII），默认为文件名 / default: file name"),
]


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` at ``path`` in one rename: readers see the old file or the whole new one, never a part."""
    directory = path.resolve().parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            yield block


def _local_department(department: str | None) -> str:
    if not department:
        raise InvalidInput("本地签章须给出 --department", "local signing needs --department")
    return department


def _remote(server: str, token: str | None) -> TwoStepClient:
    from signer.two_step import TwoStepClient

    if not token:
        raise InvalidInput(
            "远程签章须给出 --token 或 ESEAL_TOKEN", "remote signing needs --token or ESEAL_TOKEN"
        )
    return TwoStepClient(server, token)


def _no_remote_timestamp(server: str | None, timestamp: bool) -> None:
    if server and timestamp:
        raise InvalidInput(
            "远程两步签章不支持 --timestamp", "--timestamp is not available with remote two-step signing"
        )


def _done(output: Path, data: bytes, what: str) -> None:
    from gmpki.sm3 import sm3

    out.print(f"{what} → {output} ({len(data)} bytes, SM3 {sm3(data).hex()})", soft_wrap=True, markup=False)


@sign_app.command("ofd")
@handle_errors
def sign_ofd(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="OFD 文件 / OFD file")],
    seal: SealOpt,
    output: OutputOpt,
    department: DepartmentOpt = None,
    page: Annotated[int | None, typer.Option(help="页码（从 1 开始）/ page, 1-based")] = None,
    x: Annotated[float | None, typer.Option("--x", help="印章左上角 x（毫米）/ stamp left, mm")] = None,
    y: Annotated[float | None, typer.Option("--y", help="印章左上角 y（毫米）/ stamp top, mm")] = None,
    keyword: Annotated[str | None, typer.Option(help="以关键字为中心 / centre on this text")] = None,
    occurrence: Annotated[int, typer.Option(help="关键字第几处 / which occurrence")] = 1,
    riding: Annotated[bool, typer.Option("--riding", help="骑缝章 / riding seal")] = False,
    protect_all: Annotated[
        bool, typer.Option("--protect-all", help="保护签名列表，此后不能再签章 / lock the document")
    ] = False,
    timestamp: TimestampOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """OFD 文档签章 / seal an OFD document (its first DocBody)."""
    _no_remote_timestamp(server, timestamp)
    from signer.ofd_sealing import SealMode, seal_ofd
    from signer.placement import placement_from_options

    placement = placement_from_options(
        page=page, x=x, y=y, keyword=keyword, occurrence=occurrence, riding=riding
    )
    mode = SealMode.PROTECT_ALL if protect_all else SealMode.CONTINUE
    data = file.read_bytes()
    if server:
        from signer.two_step import remote_seal_ofd

        with _remote(server, token) as client:
            sealed = remote_seal_ofd(client, data, es_id=seal, placement=placement, mode=mode)
    else:
        from core.db import transaction
        from signer.batch import signature_timestamper

        dept = _local_department(department)
        with service() as ctx, transaction(ctx.sessions) as s:
            sealed = seal_ofd(
                s,
                ctx.keystore,
                data,
                es_id=seal,
                department_id=dept,
                placement=placement,
                mode=mode,
                actor=CLI_ACTOR,
                document_name=file.name,
                time_stamp=signature_timestamper(ctx.settings, s, ctx.keystore) if timestamp else None,
            )
    write_atomic(output, sealed)
    _done(output, sealed, "已签章 sealed")


@sign_app.command("pdf")
@handle_errors
def sign_pdf(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="PDF 文件 / PDF file")],
    seal: SealOpt,
    output: OutputOpt,
    x: Annotated[float, typer.Option("--x", help="印章左上角 x（毫米）/ stamp left, mm")],
    y: Annotated[float, typer.Option("--y", help="印章左上角 y（毫米）/ stamp top, mm")],
    department: DepartmentOpt = None,
    page: Annotated[int, typer.Option(help="页码（从 1 开始）/ page, 1-based")] = 1,
    key: Annotated[str, typer.Option(help="ecdsa | rsa | sm2")] = "ecdsa",
    certify: Annotated[bool, typer.Option("--certify", help="认证签名 DocMDP / certification")] = False,
    level: Annotated[str, typer.Option(help="PAdES 级别 B-B | B-T")] = "B-B",
) -> None:
    """PDF 文档签章（PAdES）/ seal a PDF document (PAdES, incremental update)."""
    from core.db import transaction
    from signer.pdf_sealing import parse_pades_level, seal_pdf, timestamp_authority_for

    pades_level = parse_pades_level(level)
    dept = _local_department(department)
    data = file.read_bytes()
    with service() as ctx, transaction(ctx.sessions) as s:
        tsa = timestamp_authority_for(s, ctx.keystore, key) if pades_level.value == "B-T" else None
        sealed = seal_pdf(
            s,
            ctx.keystore,
            data,
            es_id=seal,
            department_id=dept,
            page=page,
            x_mm=x,
            y_mm=y,
            key_kind=key,
            certify=certify,
            pades_level=pades_level,
            tsa=tsa,
            actor=CLI_ACTOR,
        )
    write_atomic(output, sealed)
    _done(output, sealed, "已签章 sealed")


@sign_app.command("cms")
@handle_errors
def sign_cms(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="任意文件 / any file")],
    seal: SealOpt,
    output: OutputOpt,
    department: DepartmentOpt = None,
    timestamp: TimestampOpt = False,
) -> None:
    """分离式 CMS 签名（GB/T 35275）/ detached GB/T 35275 SM2 CMS over a file."""
    from core.db import transaction
    from signer.cms_signing import seal_cms
    from signer.tsa import TimeStampAuthority

    dept = _local_department(department)
    data = file.read_bytes()
    with service() as ctx, transaction(ctx.sessions) as s:
        cms = seal_cms(
            s,
            ctx.keystore,
            data,
            es_id=seal,
            department_id=dept,
            actor=CLI_ACTOR,
            document_name=file.name,
            tsa=TimeStampAuthority.from_region(s, ctx.keystore) if timestamp else None,
        )
    write_atomic(output, cms)
    _done(output, cms, "已签名 signed")


@sign_app.command("ses")
@handle_errors
def sign_ses(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="任意文件 / any file")],
    seal: SealOpt,
    output: OutputOpt,
    department: DepartmentOpt = None,
    property_info: PropertyOpt = None,
    timestamp: TimestampOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """电子签章数据 / a detached SES signature over a file (dataHash = SM3 of its bytes)."""
    _no_remote_timestamp(server, timestamp)
    if server:
        from signer.two_step import remote_sign_data

        with _remote(server, token) as client:
            result = remote_sign_data(
                client, _chunks(file), es_id=seal, property_info=property_info, name=file.name
            )
    else:
        from core.db import transaction
        from signer.batch import signature_timestamper
        from signer.ses_signing import sign_data

        dept = _local_department(department)
        with service() as ctx, transaction(ctx.sessions) as s:
            result = sign_data(
                s,
                ctx.keystore,
                _chunks(file),
                es_id=seal,
                department_id=dept,
                actor=CLI_ACTOR,
                property_info=property_info,
                name=file.name,
                time_stamp=signature_timestamper(ctx.settings, s, ctx.keystore) if timestamp else None,
            )
    write_atomic(output, result.signature)
    _done(output, result.signature, f"已签章 signed ({result.property_info})")


@sign_app.command("digest")
@handle_errors
def sign_digest(
    digest: Annotated[str, typer.Argument(help="SM3 摘要（64 位十六进制）/ SM3 digest, 64 hex digits")],
    seal: SealOpt,
    output: OutputOpt,
    department: DepartmentOpt = None,
    property_info: PropertyOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """对摘要签章（两步签章的第二步）/ sign an SM3 digest (the service side of two-step signing)."""
    from signer.ses_signing import default_property_info, parse_digest_hex

    value = parse_digest_hex(digest)
    info = property_info or default_property_info(value)
    if server:
        with _remote(server, token) as client:
            result = client.sign_digest(seal, value, info)
    else:
        from core.db import transaction
        from signer.two_step import sign_digest as sign_digest_locally

        dept = _local_department(department)
        with service() as ctx, transaction(ctx.sessions) as s:
            result = sign_digest_locally(
                s,
                ctx.keystore,
                es_id=seal,
                department_id=dept,
                digest=value,
                property_info=info,
                actor=CLI_ACTOR,
            )
    write_atomic(output, result.signature)
    _done(output, result.signature, f"已签章 signed ({info})")


# --- batch ----------------------------------------------------------------------------------------------
batch_app: typer.Typer = typer.Typer(
    no_args_is_help=True, help="批量签章（可续跑）/ resumable batch sealing of many documents"
)


def _output_path(root: Path, key: str, suffix: str, fallback: str) -> Path:
    """Where an item's output goes under ``root``: its key as a relative path when that is safe."""
    from core.errors import MalformedData
    from gmpki.ofd.container import check_entry_name

    try:
        relative = check_entry_name(key)
    except MalformedData:
        relative = fallback
    if relative.endswith("/"):
        relative = fallback
    return root.joinpath(*relative.split("/")).with_name(Path(relative).name + suffix)


def _write_copy(path: Path, data: bytes) -> None:
    """Atomically (temporary file, then rename), without a per-file fsync: the outputs are copies of
    the blobs the job recorded, and ``eseal batch run --job NAME`` writes them again."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@batch_app.command("run")
@handle_errors
def batch_run(
    inputs: Annotated[
        list[Path],
        typer.Argument(exists=True, help="目录、ZIP 或文件 / directories, ZIP archives or files"),
    ],
    seal: SealOpt,
    output_dir: Annotated[
        Path, typer.Option("-o", "--output", file_okay=False, help="输出目录 / output directory")
    ],
    department: DepartmentOpt = None,
    kind: Annotated[str, typer.Option(help="ofd（文档签章）| ses（电子签章数据）")] = "ofd",
    page: Annotated[int | None, typer.Option(help="页码（从 1 开始）/ page, 1-based")] = None,
    x: Annotated[float | None, typer.Option("--x", help="印章左上角 x（毫米）/ stamp left, mm")] = None,
    y: Annotated[float | None, typer.Option("--y", help="印章左上角 y（毫米）/ stamp top, mm")] = None,
    keyword: Annotated[str | None, typer.Option(help="以关键字为中心 / centre on this text")] = None,
    occurrence: Annotated[int, typer.Option(help="关键字第几处 / which occurrence")] = 1,
    riding: Annotated[bool, typer.Option("--riding", help="骑缝章 / riding seal")] = False,
    protect_all: Annotated[
        bool, typer.Option("--protect-all", help="保护签名列表，此后不能再签章 / lock the documents")
    ] = False,
    timestamp: TimestampOpt = False,
    workers: Annotated[int, typer.Option(min=1, max=64, help="进程数 / worker processes")] = 2,
    job: Annotated[
        str | None,
        typer.Option("--job", help="任务名称；已存在则续跑 / job name; an existing job is resumed"),
    ] = None,
    group_size: Annotated[
        int, typer.Option(min=1, max=256, help="每个事务的条目数 / items per transaction")
    ] = BATCH_GROUP_SIZE,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="重试失败条目 / retry failed items")
    ] = False,
) -> None:
    """批量签章 / seal every document of DIR|ZIP|FILES; resumable (--job); outputs + results.csv in -o."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from core.db import transaction, utcnow
    from core.errors import Conflict, NotFound
    from gmpki.ofd import ContainerLimits
    from signer.batch import (
        JobSpec,
        WorkerResources,
        add_items,
        create_job,
        get_job,
        inputs_from_paths,
        item_output,
        job_kind,
        job_results,
        results_csv,
        run_job,
        same_spec,
    )
    from signer.ofd_sealing import SealMode

    dept = _local_department(department)
    placement = {"page": page, "x": x, "y": y, "keyword": keyword, "riding": riding}
    if occurrence != 1:
        placement["occurrence"] = occurrence
    spec = JobSpec(
        department_id=dept,
        es_id=seal,
        kind=kind,
        mode=SealMode.PROTECT_ALL if protect_all else SealMode.CONTINUE,
        placement=placement,
        timestamp=timestamp,
        name=job or f"batch-{utcnow():%Y%m%d-%H%M%S}-{os.urandom(3).hex()}",
    )
    with service() as ctx:
        limit = ctx.settings.max_upload_bytes
        documents = inputs_from_paths(
            inputs,
            kind=job_kind(kind),
            max_bytes=limit,
            limits=ContainerLimits(max_input_size=limit, max_total_size=max(limit, 512 * 1024 * 1024)),
        )
        with transaction(ctx.sessions) as s:
            assert spec.name is not None
            try:
                existing = get_job(s, spec.name)
            except NotFound:
                existing = None
            if existing is None:
                batch = create_job(s, spec, actor=CLI_ACTOR)
            elif same_spec(existing, spec):
                batch = existing
            else:
                raise Conflict(
                    f"任务 {spec.name} 已存在且签章参数不同",
                    f"job {spec.name} exists with other signing options",
                )
            add_items(s, ctx.blobs, batch, documents)
            job_id, name = batch.id, batch.name
        del documents
        out.print(f"任务 job {name} ({job_id})", markup=False)
        res = WorkerResources(ctx.settings, ctx.sessions, ctx.keystore, ctx.blobs)
        columns = (TextColumn("签章 sealing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        # No auto-refresh: its thread would make the batch pool start its processes from a fork
        # server instead of forking this one (see signer.batch.pool_context); the bar is redrawn
        # after every group.
        with Progress(*columns, console=out, transient=False, auto_refresh=False) as bar:
            task = bar.add_task("batch", total=None)

            def show(progress: JobProgress) -> None:
                bar.update(task, total=progress.total, completed=progress.done + progress.failed)
                bar.refresh()

            summary = run_job(
                res,
                job_id,
                actor=CLI_ACTOR,
                workers=workers,
                group_size=group_size,
                retry_failed=retry_failed,
                on_progress=show,
            )
        output_dir.mkdir(parents=True, exist_ok=True)
        with ctx.sessions() as s:
            results = job_results(s, job_id)
            suffix = ".ses" if spec.kind == "ses" else ""
            for n, r in enumerate(results, 1):
                if r.output_sm3 is not None:
                    _result, data = item_output(s, ctx.blobs, job_id, r.key)
                    _write_copy(_output_path(output_dir, r.key, suffix, f"item-{n:06d}.out"), data)
        _write_copy(output_dir / "results.csv", results_csv(results).encode("utf-8"))
    p = summary.progress
    rate = summary.signed / summary.seconds if summary.seconds > 0 else 0.0
    out.print(
        f"完成 done {p.done}，失败 failed {p.failed}，待处理 pending {p.pending}（共 total {p.total}）；"
        f"本次签章 signed now {summary.signed} in {summary.seconds:.1f} s ({rate:.0f}/s) → {output_dir}",
        markup=False,
        soft_wrap=True,
    )
    for error in summary.errors:
        out.print(f"[yellow]{error}[/yellow]", markup=False)
    if p.failed or p.pending:
        raise typer.Exit(code=1)


@batch_app.command("status")
@handle_errors
def batch_status(
    job: Annotated[str, typer.Argument(help="任务名称或 ID / job name or id")],
    department: Annotated[
        str | None, typer.Option("--department", help="仅限该部门 / only this department's job")
    ] = None,
) -> None:
    """任务进度 / a job's counts (done, failed, pending)."""
    from signer.batch import get_job, job_progress

    with service() as ctx, ctx.sessions() as s:
        row = get_job(s, job, department_id=department)
        p = job_progress(s, row.id)
    lines = [
        f"任务 job      {row.name or '-'} ({row.id})",
        f"类型 kind     {row.kind}  印章 seal {row.es_id}  部门 department {row.department_id}",
        f"进度 progress total {p.total}  done {p.done}  failed {p.failed}  pending {p.pending}",
        f"完成 finished {row.finished_at.isoformat() if row.finished_at else '-'}",
    ]
    for line in lines:
        out.print(line, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.add_typer(sign_app, name="sign")
    app.add_typer(batch_app, name="batch")
