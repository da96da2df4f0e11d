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

if TYPE_CHECKING:
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
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """OFD 文档签章 / seal an OFD document (its first DocBody)."""
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
            )
    write_atomic(output, sealed)
    _done(output, sealed, "已签章 sealed")


@sign_app.command("ses")
@handle_errors
def sign_ses(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="任意文件 / any file")],
    seal: SealOpt,
    output: OutputOpt,
    department: DepartmentOpt = None,
    property_info: PropertyOpt = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """电子签章数据 / a detached SES signature over a file (dataHash = SM3 of its bytes)."""
    if server:
        from signer.two_step import remote_sign_data

        with _remote(server, token) as client:
            result = remote_sign_data(
                client, _chunks(file), es_id=seal, property_info=property_info, name=file.name
            )
    else:
        from core.db import transaction
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


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.add_typer(sign_app, name="sign")
