"""``eseal licence …``: the licence store from the command line (local database and key store).

The CLI acts as the operator: status changes are not scoped to a department, and issuing, changing
and renewing seal with the seal of the department named with ``--department``. Output files are
written only after the transaction committed (atomically, as ``eseal sign`` does).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.table import Table

from core.errors import InvalidInput, MalformedData

from .cli import CLI_ACTOR, handle_errors, out, service
from .cli_seal import safe

licence_app: typer.Typer = typer.Typer(no_args_is_help=True, help="电子证照 / electronic licences")

MAX_JSON_BYTES: Final = 4 * 1024 * 1024

DepartmentOpt = Annotated[str, typer.Option("--department", help="部门 ID / department id")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="理由 / reason")]


def _json_file(path: Path) -> Any:
    if path.stat().st_size > MAX_JSON_BYTES:
        raise InvalidInput(f"{path} 超过 {MAX_JSON_BYTES} 字节", f"{path} exceeds {MAX_JSON_BYTES} bytes")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MalformedData(f"{path} 不是有效的 JSON", f"{path} is not valid JSON") from None


def write_atomic(path: Path, data: bytes) -> None:
    # Imported late: cli_sign imports .cli, which imports this module while it loads.
    from .cli_sign import write_atomic as write

    write(path, data)


def _print_json(value: Any) -> None:
    out.print_json(json.dumps(value, ensure_ascii=False, default=str))


def _services(ctx: Any) -> Any:
    from licence_store.issuing import LicenceServices

    return LicenceServices(ctx.keystore, ctx.blobs, ctx.settings.public_base_url)


def _print_licences(rows: list[dict[str, Any]]) -> None:
    # One line each, never cut: identifiers are copied into later commands.
    for r in rows:
        until = r["valid_until"] or "长期"
        status = f"{r['status']} {r['status_zh']}"
        line = f"{r['identifier']}  {status}  {r['licence_number']}  {r['holder_name']}  → {until}"
        out.print(safe(line), soft_wrap=True)


# --- catalogue ------------------------------------------------------------------------------------------
@licence_app.command("type-add")
@handle_errors
def type_add(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="类型定义 JSON / type definition")
    ],
) -> None:
    """新增证照类型 / add a licence type from JSON (type_code, name, defining_authority_name,
    metadata_schema, seal_type, optional template, issuing_authorities, default_valid_days, print_pdf)."""
    from core.db import transaction
    from licence_store.catalogue import create_type

    spec = _json_file(file)
    if not isinstance(spec, dict):
        raise InvalidInput("类型定义须为 JSON 对象", "the type definition must be a JSON object")
    allowed = {
        "type_code",
        "name",
        "defining_authority_name",
        "metadata_schema",
        "template",
        "seal_type",
        "issuing_authorities",
        "default_valid_days",
        "print_pdf",
    }
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise InvalidInput(f"未知字段：{', '.join(unknown)}", f"unknown fields: {', '.join(unknown)}")
    with service() as ctx, transaction(ctx.sessions) as s:
        row = create_type(s, actor=CLI_ACTOR, **spec)
        out.print(
            f"证照类型已创建 licence type created: {row.type_code} {row.name} ({row.id})",
            markup=False,
            soft_wrap=True,
        )


@licence_app.command("type-list")
@handle_errors
def type_list() -> None:
    """证照目录 / the licence catalogue."""
    from licence_store.catalogue import list_types

    with service() as ctx, ctx.sessions() as s:
        table = Table()
        for col in ("type_code", "name", "seal type", "validity", "print pdf", "active"):
            table.add_column(col, overflow="fold")
        for t in list_types(s):
            days = f"{t.default_valid_days} d" if t.default_valid_days else "长期"
            pdf = "yes" if t.print_pdf else "no"
            table.add_row(t.type_code, safe(t.name), t.seal_type, days, pdf, "yes" if t.active else "no")
        out.print(table)


@licence_app.command("type-update")
@handle_errors
def type_update(
    type_ref: Annotated[str, typer.Argument(help="证照类型代码或 ID / licence type code or id")],
    print_pdf: Annotated[
        bool | None,
        typer.Option(
            "--print-pdf/--no-print-pdf",
            help="颁发时同步生成并签章打印版 PDF / also make and seal a print PDF when issuing",
        ),
    ] = None,
    active: Annotated[
        bool | None, typer.Option("--active/--retired", help="启用或停用 / in use or retired")
    ] = None,
) -> None:
    """修改证照类型 / change a licence type (licences already issued keep what they have)."""
    from core.db import transaction
    from licence_store.catalogue import update_type

    if print_pdf is None and active is None:
        raise InvalidInput(
            "没有要修改的内容（--print-pdf/--no-print-pdf、--active/--retired）",
            "nothing to change (--print-pdf/--no-print-pdf, --active/--retired)",
        )
    with service() as ctx, transaction(ctx.sessions) as s:
        row = update_type(s, type_ref, actor=CLI_ACTOR, print_pdf=print_pdf, active=active)
        out.print(
            f"证照类型已修改 licence type updated: {row.type_code} revision {row.revision} "
            f"print_pdf={'yes' if row.print_pdf else 'no'} active={'yes' if row.active else 'no'}",
            markup=False,
            soft_wrap=True,
        )


# --- issue and lifecycle --------------------------------------------------------------------------------
@licence_app.command("issue")
@handle_errors
def issue(
    type_ref: Annotated[str, typer.Option("--type", help="证照类型代码 / licence type code")],
    department: DepartmentOpt,
    metadata: Annotated[Path, typer.Option("--metadata", exists=True, dir_okay=False, help="元数据 JSON")],
    seal: Annotated[str | None, typer.Option("--seal", help="印章编码 / seal esID (default: auto)")] = None,
    client_key: Annotated[str | None, typer.Option("--client-key", help="幂等键 / idempotency key")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", dir_okay=False, help="保存 OFD")] = None,
    pdf_output: Annotated[
        Path | None,
        typer.Option("--pdf-output", dir_okay=False, help="保存打印版 PDF / save the print PDF"),
    ] = None,
) -> None:
    """颁发证照 / issue a licence (validate, render, seal, store, audit in one transaction)."""
    from core.db import transaction
    from licence_store.catalogue import get_type
    from licence_store.issuing import PdfNotAvailable, issue_licence, licence_file, licence_pdf

    data = _json_file(metadata)
    with service() as ctx:
        services = _services(ctx)
        with transaction(ctx.sessions) as s:
            if pdf_output is not None and not get_type(s, type_ref).print_pdf:
                # Refused before anything is issued rather than after the commit.
                raise PdfNotAvailable(
                    f"证照类型 {type_ref} 不同步生成打印版 PDF（eseal licence type-update --print-pdf）",
                    f"licence type {type_ref} makes no print PDF (eseal licence type-update --print-pdf)",
                )
            row = issue_licence(
                s,
                services,
                type_ref=type_ref,
                department_id=department,
                metadata=data,
                actor=CLI_ACTOR,
                es_id=seal,
                client_key=client_key,
            )
        out.print(f"证照已颁发 issued: {row.identifier}", markup=False, soft_wrap=True)
        out.print(f"核验 verify: {services.verify_url(row.identifier)}", markup=False, soft_wrap=True)
        if output is not None:
            write_atomic(output, licence_file(services, row))
            out.print(f"→ {output}", markup=False, soft_wrap=True)
        if row.pdf_sm3 is not None:
            out.print(f"打印版 PDF print PDF: {row.pdf_sm3}", markup=False, soft_wrap=True)
        if pdf_output is not None:
            write_atomic(pdf_output, licence_pdf(services, row))
            out.print(f"→ {pdf_output}", markup=False, soft_wrap=True)


@licence_app.command("show")
@handle_errors
def show(identifier: str) -> None:
    """证照全部元数据 / a licence's record (logged as a read)."""
    from licence_store.access_log import Accessor
    from licence_store.sharing import read_licence

    with service() as ctx:
        _print_json(read_licence(ctx.sessions, identifier, who=Accessor(CLI_ACTOR), privileged=True))


@licence_app.command("search")
@handle_errors
def search_cmd(
    holder: Annotated[str | None, typer.Option(help="持证主体代码 / holder code")] = None,
    type_code: Annotated[str | None, typer.Option("--type", help="类型代码 / type code")] = None,
    issuer: Annotated[str | None, typer.Option(help="颁证机构代码 / issuer code")] = None,
    status: Annotated[str | None, typer.Option(help="01–05, 99")] = None,
    issued_from: Annotated[str | None, typer.Option("--from", help="颁证日期起 YYYY-MM-DD")] = None,
    issued_to: Annotated[str | None, typer.Option("--to", help="颁证日期止 YYYY-MM-DD")] = None,
    page: int = 1,
    page_size: int = 50,
) -> None:
    """检索证照 / search licences."""
    from licence_store.records import SearchFilter, licence_dict, search

    f = SearchFilter(
        holder_code=holder,
        type_code=type_code,
        issuer_code=issuer,
        status=status,
        issued_from=_date(issued_from),
        issued_to=_date(issued_to),
    )
    with service() as ctx, ctx.sessions() as s:
        result = search(s, f, page=page, page_size=page_size)
        _print_licences([licence_dict(r) for r in result.items])
        out.print(f"{result.total} 条 total, page {result.page}")


def _date(text: str | None) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"日期 {text!r} 须为 YYYY-MM-DD", f"date {text!r} must be YYYY-MM-DD") from None


def _datetime(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"时间 {text!r} 须为 ISO 8601", f"time {text!r} must be ISO 8601") from None
    if value.tzinfo is None:
        raise InvalidInput("时间须带时区（如 +08:00）", "the time needs a time zone (e.g. +08:00)")
    return value


@licence_app.command("change")
@handle_errors
def change_cmd(
    identifier: str,
    changes: Annotated[Path, typer.Option("--changes", exists=True, dir_okay=False, help="变更内容 JSON")],
    reason: ReasonOpt = "",
) -> None:
    """变更 / change: a new version with the changes, sealed anew."""
    from core.db import transaction
    from licence_store.lifecycle import change

    data = _json_file(changes)
    if not isinstance(data, dict):
        raise InvalidInput("变更内容须为 JSON 对象", "the changes must be a JSON object")
    with service() as ctx, transaction(ctx.sessions) as s:
        row = change(s, _services(ctx), identifier, data, actor=CLI_ACTOR, reason=reason)
        out.print(f"新版本 new version: {row.identifier}", markup=False, soft_wrap=True)


@licence_app.command("renew")
@handle_errors
def renew_cmd(
    identifier: str,
    until: Annotated[str | None, typer.Option("--until", help="新的截止日期 YYYY-MM-DD")] = None,
    long_term: Annotated[bool, typer.Option("--long-term", help="长期有效 / long-term")] = False,
    reason: ReasonOpt = "",
) -> None:
    """延续 / renew: a new version with a new end of validity."""
    from core.db import transaction
    from licence_store.lifecycle import renew

    if long_term == (until is not None):
        raise InvalidInput("须给出 --until 或 --long-term 之一", "give exactly one of --until or --long-term")
    with service() as ctx, transaction(ctx.sessions) as s:
        row = renew(s, _services(ctx), identifier, valid_until=_date(until), actor=CLI_ACTOR, reason=reason)
        out.print(f"新版本 new version: {row.identifier}", markup=False, soft_wrap=True)


def _status_command(name: str, help_text: str) -> None:
    @licence_app.command(name, help=help_text)
    @handle_errors
    def command(identifier: str, reason: ReasonOpt = "") -> None:
        from core.db import transaction
        from licence_store import lifecycle

        action = {
            "withhold": lifecycle.withhold,
            "return": lifecycle.return_licence,
            "revoke": lifecycle.revoke,
            "cancel": lifecycle.cancel,
        }[name]
        with service() as ctx, transaction(ctx.sessions) as s:
            row = action(s, identifier, actor=CLI_ACTOR, reason=reason)
            out.print(f"{row.identifier}: {row.status}", markup=False, soft_wrap=True)


_status_command("withhold", "暂扣 / withhold (01 → 02; --reason required)")
_status_command("return", "发还 / return (02 → 01)")
_status_command("revoke", "撤销 / revoke (→ 03; --reason required)")
_status_command("cancel", "注销 / cancel (→ 04; --reason required)")


@licence_app.command("expire")
@handle_errors
def expire_cmd() -> None:
    """过期处理 / mark licences past their validity as expired (05)."""
    from core.db import transaction
    from licence_store.lifecycle import expire_due

    total = 0
    with service() as ctx:
        while True:
            with transaction(ctx.sessions) as s:
                done = expire_due(s, actor=CLI_ACTOR)
            total += len(done)
            if len(done) < 1000:
                break
    out.print(f"已过期 expired: {total}")


# --- files and checks -----------------------------------------------------------------------------------
@licence_app.command("download")
@handle_errors
def download(
    identifier: str,
    output: Annotated[Path, typer.Option("-o", "--output", dir_okay=False, help="输出文件 / output")],
    copy: Annotated[bool, typer.Option("--copy", help="加注件 / annotated copy")] = False,
    purpose: Annotated[str | None, typer.Option(help="用途（加注件必填）/ purpose")] = None,
    pdf: Annotated[bool, typer.Option("--pdf", help="打印版 PDF / the sealed print PDF")] = False,
) -> None:
    """下载证照原件、打印版 PDF 或加注件（记入访问日志）/ download the original, the print PDF or an
    annotated copy (logged)."""
    from licence_store.access_log import Accessor
    from licence_store.sharing import use_licence

    with service() as ctx:
        delivered = use_licence(
            ctx.sessions,
            _services(ctx),
            identifier=identifier,
            who=Accessor(CLI_ACTOR),
            privileged=True,
            purpose=purpose,
            want_original=not copy,
            pdf=pdf,
        )
    write_atomic(output, delivered.data)
    out.print(
        f"{delivered.identifier} → {output} ({len(delivered.data)} bytes)", markup=False, soft_wrap=True
    )


@licence_app.command("check")
@handle_errors
def check_cmd(
    reference: Annotated[str, typer.Argument(help="证照标识或二维码内容 / identifier or QR payload")],
    file: Annotated[Path | None, typer.Option("--file", exists=True, dir_okay=False, help="比对文件")] = None,
) -> None:
    """在线核验 / check a licence (status, version, issuer, file SM3; compare a file)."""
    from core.db import transaction
    from licence_store.access_log import AccessAction, Accessor, record
    from licence_store.verification import check_licence, identifier_from_payload

    ident = identifier_from_payload(reference)
    presented = file.read_bytes() if file is not None else None
    with service() as ctx, transaction(ctx.sessions) as s:
        row, result = check_licence(s, ident, presented=presented, reveal=True)
        record(
            s,
            action=AccessAction.VERIFY,
            identifier=row.identifier,
            base_identifier=row.base_identifier,
            who=Accessor(CLI_ACTOR),
            licence=row,
        )
    _print_json(result)
    if not result["valid"] or result["file_matches"] is False:
        raise typer.Exit(code=1)


@licence_app.command("service-seal")
@handle_errors
def service_seal(
    department: DepartmentOpt,
    seal: Annotated[str, typer.Option("--seal", help="印章编码 / seal esID")],
) -> None:
    """设置加注件服务印章 / set the seal that seals annotated copies."""
    from core.db import transaction
    from licence_store.sharing import set_service_seal

    with service() as ctx, transaction(ctx.sessions) as s:
        row = set_service_seal(s, department_id=department, es_id=seal, actor=CLI_ACTOR)
        out.print(f"服务印章 service seal: {row.es_id} ({row.department_id})", markup=False, soft_wrap=True)


# --- grants, log, objections ----------------------------------------------------------------------------
@licence_app.command("grant")
@handle_errors
def grant_cmd(
    identifier: str,
    holder: Annotated[str, typer.Option(help="持证主体代码（须为证照持有人）/ holder code")],
    department: DepartmentOpt,
    purpose: Annotated[str, typer.Option(help="用途 / purpose")],
    until: Annotated[str, typer.Option("--until", help="截止时间 ISO 8601（带时区）")],
    original: Annotated[bool, typer.Option("--original", help="允许原件 / allow the original")] = False,
) -> None:
    """代持证主体授权 / record a holder's grant (operator acting on the holder's written consent)."""
    from core.db import transaction
    from licence_store.grants import create_grant, grant_dict

    with service() as ctx, transaction(ctx.sessions) as s:
        grant = create_grant(
            s,
            holder_code=holder,
            identifier=identifier,
            grantee_department_id=department,
            purpose=purpose,
            valid_until=_datetime(until),
            allow_original=original,
            actor=CLI_ACTOR,
        )
        _print_json(grant_dict(grant))


@licence_app.command("withdraw-grant")
@handle_errors
def withdraw_cmd(grant_id: str) -> None:
    """撤回授权 / withdraw a grant."""
    from core.db import transaction
    from licence_store.grants import grant_dict, withdraw_grant

    with service() as ctx, transaction(ctx.sessions) as s:
        _print_json(grant_dict(withdraw_grant(s, grant_id, holder_code=None, actor=CLI_ACTOR)))


@licence_app.command("log")
@handle_errors
def log_cmd(
    identifier: Annotated[str | None, typer.Option(help="证照标识 / licence")] = None,
    department: Annotated[str | None, typer.Option(help="部门 ID / department")] = None,
    holder: Annotated[str | None, typer.Option(help="持证主体代码 / holder code")] = None,
    since: Annotated[str | None, typer.Option(help="起 ISO 8601")] = None,
    until: Annotated[str | None, typer.Option(help="止 ISO 8601")] = None,
    limit: int = 100,
) -> None:
    """证照访问日志 / the licence access log."""
    from licence_store.access_log import AccessQuery, query
    from licence_store.identifier import parse_identifier

    q = AccessQuery(
        base_identifier=parse_identifier(identifier).base if identifier else None,
        department_id=department,
        holder_code=holder,
        since=_datetime(since) if since else None,
        until=_datetime(until) if until else None,
    )
    with service() as ctx, ctx.sessions() as s:
        rows, total = query(s, q, limit=limit)
        table = Table()
        for col in ("seq", "time", "action", "outcome", "identifier", "actor", "purpose"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(
                str(r.audit_seq),
                r.at.strftime("%Y-%m-%d %H:%M:%SZ"),
                r.action,
                r.outcome,
                r.identifier,
                safe(r.actor),
                safe(r.purpose or ""),
            )
        out.print(table)
        out.print(f"{total} 条 total")


@licence_app.command("objections")
@handle_errors
def objections_cmd(
    department: Annotated[str | None, typer.Option(help="颁证部门 ID / issuing department")] = None,
    state: Annotated[str | None, typer.Option(help="open | accepted | rejected")] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="只看超期 / overdue only")] = False,
) -> None:
    """异议列表 / objections."""
    from licence_store.objections import list_objections, objection_dict

    with service() as ctx, ctx.sessions() as s:
        rows = list_objections(s, issuer_department_id=department, state=state, overdue_only=overdue)
        _print_json([objection_dict(r) for r in rows])


@licence_app.command("objection-reject")
@handle_errors
def objection_reject(objection_id: str, reason: ReasonOpt) -> None:
    """驳回异议 / reject an objection."""
    from core.db import transaction
    from licence_store.objections import objection_dict, reject_objection

    with service() as ctx, transaction(ctx.sessions) as s:
        _print_json(objection_dict(reject_objection(s, objection_id, reason=reason, actor=CLI_ACTOR)))


@licence_app.command("objection-accept")
@handle_errors
def objection_accept(
    objection_id: str,
    corrections: Annotated[
        Path, typer.Option("--corrections", exists=True, dir_okay=False, help="更正 JSON")
    ],
    reason: ReasonOpt = "",
) -> None:
    """受理异议并更正（生成新版本）/ accept an objection and correct (a new version)."""
    from core.db import transaction
    from licence_store.objections import accept_objection

    data = _json_file(corrections)
    if not isinstance(data, dict):
        raise InvalidInput("更正内容须为 JSON 对象", "the corrections must be a JSON object")
    with service() as ctx, transaction(ctx.sessions) as s:
        _row, new = accept_objection(
            s, _services(ctx), objection_id, corrections=data, actor=CLI_ACTOR, reason=reason
        )
        out.print(f"已更正 corrected: {new.identifier}", markup=False, soft_wrap=True)


# --- stock import ---------------------------------------------------------------------------------------
@licence_app.command("import")
@handle_errors
def import_cmd(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="CSV、JSON，或 ZIP（清单加证照文件）/ CSV, JSON or ZIP"
        ),
    ],
    type_ref: Annotated[str, typer.Option("--type", help="证照类型代码 / licence type code")],
    department: DepartmentOpt,
    fmt: Annotated[str | None, typer.Option("--format", help="csv | json | zip（默认按扩展名）")] = None,
    seal: Annotated[str | None, typer.Option("--seal", help="印章编码 / seal esID")] = None,
    workers: Annotated[int, typer.Option(help="签章进程数 / sealing processes")] = 2,
) -> None:
    """导入存量证照：先校验全部行与文件，再生成（已有 OFD 文件则不生成）、签章、登记；中断后重跑即续做
    / import stock licences (all rows and files validated first; a ZIP holds manifest.csv or
    manifest.json and the OFD files its ``file`` column names, which are sealed instead of rendered;
    rerun the same command to resume after an interruption)."""
    from core.db import transaction
    from licence_store.stock_import import (
        MAX_ARCHIVE_BYTES,
        MAX_IMPORT_BYTES,
        ImportProgress,
        create_import,
        run_import,
    )
    from signer.batch import WorkerResources

    suffix = file.suffix.lower()
    kind = fmt or ("csv" if suffix == ".csv" else "zip" if suffix == ".zip" else "json")
    limit = MAX_ARCHIVE_BYTES if kind.strip().lower() == "zip" else MAX_IMPORT_BYTES
    if file.stat().st_size > limit:
        raise InvalidInput(f"导入文件超过 {limit} 字节", f"the import file exceeds {limit} bytes")
    data = file.read_bytes()
    with service() as ctx:
        res = WorkerResources(ctx.settings, ctx.sessions, ctx.keystore, ctx.blobs)
        with transaction(ctx.sessions) as s:
            imp, created = create_import(
                s,
                type_ref=type_ref,
                department_id=department,
                data=data,
                fmt=kind,
                actor=CLI_ACTOR,
                es_id=seal,
                blobs=ctx.blobs,
                file_limits=res.limits,
            )
            import_id = imp.id
        out.print(
            f"{'导入任务 import' if created else '继续导入 resuming import'} {import_id}",
            markup=False,
            soft_wrap=True,
        )

        def progress(p: ImportProgress) -> None:
            sealing = p.sealing.to_json() if p.sealing else {}
            out.print(
                f"  rows {p.issued + p.failed}/{p.total} (rendered {p.rendered}, failed {p.failed}); "
                f"sealed {sealing.get('done', 0)}/{sealing.get('total', 0)}",
                markup=False,
            )

        final, _summary = run_import(
            res, _services(ctx), import_id, actor=CLI_ACTOR, workers=workers, on_progress=progress
        )
    out.print(
        f"完成 done: issued {final.issued}, failed {final.failed}, total {final.total}",
        markup=False,
        soft_wrap=True,
    )
    if final.failed:
        raise typer.Exit(code=1)
