"""``eseal department …`` and ``eseal seal …``: the seal registry from the command line.

``seal inspect`` needs no database: it reads any ``.esl`` (v1, v4, v5, ours or a third party's) and
prints every field with the maker signature result.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from core.errors import EsealError

from .cli import CLI_ACTOR, handle_errors, out, service

seal_app: typer.Typer = typer.Typer(no_args_is_help=True, help="电子印章 / electronic seals")
department_app: typer.Typer = typer.Typer(no_args_is_help=True, help="业务部门 / departments")

MAX_INSPECT_BYTES = 16 * 1024 * 1024


def safe(value: object) -> Text:
    """Untrusted text as a Rich Text: no markup interpretation, control characters made visible."""
    text = str(value)
    return Text("".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text))


def _day(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ")


# --- department -----------------------------------------------------------------------------------
@department_app.command("add")
@handle_errors
def department_add(
    name: str,
    uscc: Annotated[str, typer.Argument(help="统一社会信用代码 / unified social credit code")],
    region: Annotated[str | None, typer.Option(help="行政区划代码 / region code")] = None,
) -> None:
    """登记部门 / register a department."""
    from core.db import transaction
    from seal_registry.departments import create_department

    with service() as ctx, transaction(ctx.sessions) as s:
        dept = create_department(
            s, name=name, uscc=uscc, region_code=region or ctx.settings.region_code, actor=CLI_ACTOR
        )
        out.print(_department_table([dept]))


def _department_table(rows: list[Any]) -> Table:
    # Identifiers are never cut or folded (they are copied into later commands); text folds.
    table = Table()
    table.add_column("id", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("uscc", overflow="fold")
    table.add_column("region", overflow="fold")
    table.add_column("created", no_wrap=True)
    for d in rows:
        table.add_row(d.id, safe(d.name), d.uscc, d.region_code, d.created_at.strftime("%Y-%m-%d"))
    return table


@department_app.command("list")
@handle_errors
def department_list() -> None:
    """列出部门 / list departments."""
    from seal_registry.departments import list_departments

    with service() as ctx, ctx.sessions() as s:
        out.print(_department_table(list_departments(s)))


# --- seal: lifecycle ------------------------------------------------------------------------------
def _seal_table(rows: list[Any]) -> Table:
    from seal_registry.lifecycle import STATE_LABELS_ZH, SealState

    table = Table()
    table.add_column("esID", no_wrap=True)
    for name in ("type", "name", "state"):
        table.add_column(name, overflow="fold")
    table.add_column("valid", overflow="fold")
    for r in rows:
        state = SealState(r.state)
        table.add_row(
            r.es_id,
            r.seal_type,
            safe(r.name),
            f"{STATE_LABELS_ZH[state]} {state.value}",
            f"{r.valid_start:%Y-%m-%d} .. {r.valid_end:%Y-%m-%d}",
        )
    return table


def _seal_details(r: Any) -> Table:
    from seal_registry.lifecycle import STATE_LABELS_ZH, SealState

    state = SealState(r.state)
    table = Table(show_header=False)
    table.add_column("field", no_wrap=True)
    table.add_column("value", overflow="fold")
    for field, value in (
        ("id", r.id),
        ("esID", r.es_id),
        ("department", r.department_id),
        ("type", r.seal_type),
        ("name", safe(r.name)),
        ("state", f"{STATE_LABELS_ZH[state]} {state.value} (since {_day(r.state_changed_at)})"),
        ("valid", f"{_day(r.valid_start)} .. {_day(r.valid_end)}"),
        ("signer certificate", str(r.signer_certificate_id)),
        ("picture", f"{r.picture_type} {r.width_mm}×{r.height_mm} mm, {len(r.picture)} bytes"),
        ("seal SM3", r.seal_sm3 or "(not made)"),
        ("previous seal", r.previous_seal_id or ""),
        ("applicant", safe(r.applicant)),
    ):
        table.add_row(field, value)
    return table


@seal_app.command("apply")
@handle_errors
def seal_apply(
    department: Annotated[str, typer.Option(help="部门 ID / department id")],
    seal_type: Annotated[str, typer.Option("--type", help="official | contract | invoice | …")] = "official",
    name: Annotated[str | None, typer.Option(help="印章名称 / seal name")] = None,
    cert: Annotated[int | None, typer.Option(help="签章者证书 ID / signer certificate id")] = None,
    picture: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="印章图片 / picture")
    ] = None,
    width_mm: Annotated[int | None, typer.Option()] = None,
    height_mm: Annotated[int | None, typer.Option()] = None,
    valid_days: Annotated[int, typer.Option()] = 365,
    reason: Annotated[str, typer.Option()] = "",
) -> None:
    """申请印章 / apply for a seal (picture drawn from the department name unless given)."""
    from core.db import transaction
    from seal_registry.picture import MAX_PICTURE_BYTES
    from seal_registry.seals import PictureUpload, apply_seal

    upload = None
    if picture is not None:
        upload = PictureUpload(
            _read_limited(picture, MAX_PICTURE_BYTES), picture.suffix or None, width_mm, height_mm
        )
    with service() as ctx, transaction(ctx.sessions) as s:
        seal = apply_seal(
            s,
            department_id=department,
            seal_type_key=seal_type,
            name=name,
            signer_certificate_id=cert,
            picture=upload,
            valid_days=valid_days,
            actor=CLI_ACTOR,
            reason=reason,
        )
        out.print(_seal_table([seal]))


def _transition(action: str, seal_ref: str, reason: str) -> None:
    from core.db import transaction
    from seal_registry import seals

    with service() as ctx, transaction(ctx.sessions) as s:
        seal_id = seals.get_seal(s, seal_ref).id
        if action == "make":
            seal = seals.make_seal(s, ctx.keystore, seal_id, actor=CLI_ACTOR, reason=reason)
        elif action == "renew":
            seal = seals.renew_seal(s, seal_id, actor=CLI_ACTOR, reason=reason)
        else:
            fn: Callable[..., Any] = {
                "review": seals.review,
                "reject": seals.reject,
                "file": seals.file_seal,
                "issue": seals.issue_seal,
                "suspend": seals.suspend,
                "resume": seals.resume,
                "cancel": seals.cancel,
            }[action]
            seal = fn(s, seal_id, actor=CLI_ACTOR, reason=reason)
        out.print(_seal_table([seal]))


_SealRef = Annotated[str, typer.Argument(help="印章 ID 或印章编码 / seal id or esID")]
_Reason = Annotated[str, typer.Option(help="理由 / reason")]


def _command(action: str, help_text: str) -> None:
    def command(seal: _SealRef, reason: _Reason = "") -> None:
        _transition(action, seal, reason)

    command.__doc__ = help_text
    command.__name__ = f"seal_{action}"
    seal_app.command(action)(handle_errors(command))


for _action, _help in (
    ("review", "审核通过 / approve an application."),
    ("reject", "驳回 / reject an application (reason required)."),
    ("make", "制作 / make the seal (signed with the region's seal-maker key)."),
    ("file", "备案 / file the made seal."),
    ("issue", "发放 / issue the seal (a renewal cancels its predecessor)."),
    ("suspend", "暂停 / suspend (reason required)."),
    ("resume", "恢复 / resume a suspended seal."),
    ("cancel", "注销 / cancel (reason required, final)."),
    ("renew", "换发 / apply for the successor of an issued seal."),
):
    _command(_action, _help)


@seal_app.command("show")
@handle_errors
def seal_show(seal: _SealRef) -> None:
    """印章详情与历史 / a seal and its history."""
    from seal_registry.seals import get_seal

    with service() as ctx, ctx.sessions() as s:
        row = get_seal(s, seal)
        out.print(_seal_details(row))
        history = Table("time", "from", "to", "actor", "reason")
        for e in row.events:
            history.add_row(_day(e.at), e.from_state or "", e.to_state, safe(e.actor), safe(e.reason))
        out.print(history)


@seal_app.command("list")
@handle_errors
def seal_list(
    department: Annotated[str | None, typer.Option(help="部门 ID / department id")] = None,
    state: Annotated[str | None, typer.Option(help="状态 / state")] = None,
) -> None:
    """列出印章 / list seals."""
    from core.errors import InvalidInput
    from seal_registry.lifecycle import SealState
    from seal_registry.seals import list_seals

    try:
        wanted = SealState(state) if state is not None else None
    except ValueError:
        names = ", ".join(s.value for s in SealState)
        raise InvalidInput(f"未知状态（可选：{names}）", f"Unknown state (one of: {names})") from None
    with service() as ctx, ctx.sessions() as s:
        out.print(_seal_table(list_seals(s, department_id=department, state=wanted)))


@seal_app.command("export")
@handle_errors
def seal_export(
    seal: _SealRef,
    output: Annotated[Path, typer.Option("-o", "--output", dir_okay=False, help="输出文件 / output file")],
) -> None:
    """导出印章文件（.esl）/ export the seal file."""
    from core.errors import NotFound
    from seal_registry.seals import get_seal

    with service() as ctx, ctx.sessions() as s:
        row = get_seal(s, seal)
        if row.seal_der is None:
            raise NotFound(f"印章 {row.es_id} 尚未制作", f"Seal {row.es_id} has not been made yet")
        output.write_bytes(row.seal_der)
        out.print(f"{row.es_id} → {output} ({len(row.seal_der)} bytes)")


# --- seal inspect (no database) -------------------------------------------------------------------
def _read_limited(path: Path, limit: int) -> bytes:
    from core.errors import InputTooLarge, InvalidInput

    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise InvalidInput(f"无法读取文件：{exc.strerror}", f"Cannot read the file: {exc.strerror}") from None
    if len(data) > limit:
        raise InputTooLarge(f"文件超过 {limit} 字节", f"File exceeds {limit} bytes")
    return data


def _cert_rows(table: Table, label: str, der: bytes) -> None:
    from gmpki.sm3 import sm3
    from gmpki.x509 import load_certificate_der

    table.add_row(f"{label} SM3", sm3(der).hex())
    table.add_row(f"{label} size", f"{len(der)} bytes")
    try:
        cert = load_certificate_der(der)
    except EsealError as exc:
        table.add_row(f"{label}", safe(f"unreadable: {exc.message_en}"))
        return
    table.add_row(f"{label} subject", safe(cert.subject))
    table.add_row(f"{label} issuer", safe(cert.issuer))
    table.add_row(f"{label} serial", f"0x{cert.serial:X}")
    table.add_row(f"{label} validity", f"{_day(cert.not_before)} .. {_day(cert.not_after)}")


@seal_app.command("inspect")
@handle_errors
def seal_inspect(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="印章文件 / seal file (.esl)")],
) -> None:
    """显示印章的全部字段与制章签名校验结果 / print every field of a seal and check its maker signature."""
    from gmpki import seal as ses
    from gmpki.sm3 import sm3
    from seal_registry.picture import sniff_picture_type

    data = _read_limited(file, MAX_INSPECT_BYTES)
    parsed = ses.parse_seal(data, max_size=MAX_INSPECT_BYTES)
    check = ses.check_maker_signature(parsed)

    table = Table(title=safe(file.name))
    table.add_column("field", no_wrap=True)
    # Folded, never cut: a field shown with an ellipsis would not be shown at all.
    table.add_column("value", overflow="fold")
    table.add_row("file SM3", parsed.digest.hex())
    table.add_row("file size", f"{len(data)} bytes")
    table.add_row("version", f"{parsed.version} ({'GM/T 0031' if parsed.version == 1 else 'GB/T 38540'})")
    table.add_row("header.id", safe(parsed.header_id))
    table.add_row("header.version", str(parsed.header_version))
    table.add_row("header.vid", safe(parsed.vid))
    table.add_row("esID", safe(parsed.es_id))
    table.add_row("name", safe(parsed.name))
    table.add_row("type", str(parsed.seal_type))
    table.add_row("certListType", str(parsed.cert_list_type))
    for i, cert_der in enumerate(parsed.cert_list):
        _cert_rows(table, f"certList[{i}]", cert_der)
    for i, digest in enumerate(parsed.cert_digests):
        table.add_row(f"certDigestList[{i}]", safe(f"{digest.digest_type}: {digest.value.hex()}"))
    table.add_row("createDate", _day(parsed.create_date))
    table.add_row("validStart", _day(parsed.valid_start))
    table.add_row("validEnd", _day(parsed.valid_end))
    table.add_row("picture.type", safe(parsed.picture_type))
    sniffed = (
        "ofd (zip)"
        if parsed.picture_data.startswith(b"PK\x03\x04")
        else sniff_picture_type(parsed.picture_data)
    )
    table.add_row("picture.data", f"{len(parsed.picture_data)} bytes, content: {sniffed or 'unrecognised'}")
    table.add_row("picture.width", f"{parsed.picture_width} mm")
    table.add_row("picture.height", f"{parsed.picture_height} mm")
    if not parsed.extensions:
        table.add_row("extDatas", "(none)")
    for i, ext in enumerate(parsed.extensions):
        crit = ("critical" if ext.critical else "not critical") + (
            "" if ext.critical_encoded else " (absent)"
        )
        table.add_row(f"extDatas[{i}]", safe(f"{ext.oid} {crit}: {ext.value.hex()}"))
    _cert_rows(table, "maker cert", parsed.maker_cert_der)
    table.add_row("signAlgID", parsed.signature_algorithm)
    table.add_row("signedValue", parsed.signature.hex())
    table.add_row(
        "timeStamp",
        f"{len(parsed.time_stamp)} bytes, SM3 {sm3(parsed.time_stamp).hex()}"
        if parsed.time_stamp is not None
        else "(none)",
    )
    table.add_row("warnings", safe(", ".join(parsed.warnings) or "(none)"))
    colour = "green" if check is ses.SignatureCheck.VALID else "red"
    table.add_row("maker signature", Text(check.value, style=colour))
    out.print(table)
