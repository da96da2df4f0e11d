"""The ``eseal`` command line (Typer + Rich). Every command calls the same services as the API."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.errors import EsealError
from core.settings import Settings, get_settings

from .context import ServiceContext, open_context

app = typer.Typer(
    no_args_is_help=True, help="eseal — 电子印章与电子证照可信服务 / seal and licence trust service"
)
ca_app = typer.Typer(no_args_is_help=True, help="地区 CA / the region's certificate authority")
keys_app = typer.Typer(no_args_is_help=True, help="密钥 / keys in the key store")
audit_app = typer.Typer(no_args_is_help=True, help="审计链 / the audit chain")
token_app = typer.Typer(no_args_is_help=True, help="API 令牌 / API tokens")
app.add_typer(ca_app, name="ca")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(token_app, name="token")

out = Console()
err = Console(stderr=True)
CLI_ACTOR = "cli:" + os.environ.get("USER", "operator")
T = TypeVar("T")


def fail(exc: EsealError) -> typer.Exit:
    message = escape(f"({exc.code}) {exc.message_zh} / {exc.message_en}")
    err.print(f"[red]错误 error[/red] {message}", soft_wrap=True)
    return typer.Exit(code=2)


def handle_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Map eseal errors to a one-line message and exit code 2 (never a traceback)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except EsealError as exc:
            raise fail(exc) from None

    return wrapper


def ensure_demo_passphrase(settings: Settings) -> Settings:
    """Embedded defaults: with no passphrase configured, keep a random one in var/ (mode 0600)."""
    if settings.keystore != "soft" or settings.resolved_passphrase() is not None:
        return settings
    path = settings.var_dir / "keystore.passphrase"
    if not path.exists():
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        err.print(
            f"[yellow]演示模式：软件密钥库口令已生成于 {path}"
            "（生产环境请设置 ESEAL_KEYSTORE_PASSPHRASE）[/yellow]\n"
            f"[yellow]Demo mode: soft key store passphrase written to {path} "
            "(set ESEAL_KEYSTORE_PASSPHRASE in production)[/yellow]"
        )
    return settings.model_copy(update={"keystore_passphrase_file": path})


@contextmanager
def service(demo: bool = False) -> Iterator[ServiceContext]:
    settings = get_settings()
    if demo or (settings.var_dir / "keystore.passphrase").exists():
        settings = ensure_demo_passphrase(settings)
    ctx = open_context(settings)
    try:
        yield ctx
    finally:
        ctx.close()


def bootstrap(ctx: ServiceContext, *, demo: bool) -> None:
    """Initialise the region (idempotent); on the very first run print a one-time admin token."""
    from core.db import transaction
    from core.tokens import Role, has_admin, issue_token
    from seal_registry.demo import ensure_demo_data
    from seal_registry.pki import init_pades, init_region

    with transaction(ctx.sessions) as s:
        summary = init_region(s, ctx.keystore, ctx.settings, actor=CLI_ACTOR)
        if summary.created:
            out.print(f"地区 CA 已创建 Region CA created: {summary.root.subject}")
    with transaction(ctx.sessions) as s:
        # PDF readers do not know SM2: the region also runs an ECDSA "PAdES interop" root for PDF seals.
        init_pades(s, ctx.keystore, ctx.settings, actor=CLI_ACTOR)
    if demo:
        ensure_demo_data(ctx.sessions, ctx.keystore, actor=CLI_ACTOR, console=out)
    with transaction(ctx.sessions) as s:
        if not has_admin(s):
            _row, clear = issue_token(s, name="admin", role=Role.ADMIN)
            out.print("[bold]一次性管理员令牌（仅显示一次）/ one-time admin token (shown once):[/bold]")
            out.print(clear, soft_wrap=True)


@app.command()
@handle_errors
def init(
    demo: Annotated[bool, typer.Option(help="创建演示部门与印章 / create demo department and seal")] = False,
) -> None:
    """初始化地区 PKI / initialise the region PKI (idempotent)."""
    with service(demo) as ctx:
        bootstrap(ctx, demo=demo)


# uvicorn's "auto": httptools and uvloop when installed, else h11 and asyncio (what the project
# installs). Measured with bench/verify_load.py on 2 shared cores, httptools + uvloop saved up to a
# fifth of the server's CPU per verification but gave longer p99 tails: not made a dependency.
# httptools parses HTTP/1.1 in C (about 12 % less CPU per verification than h11 in bench/verify_load.py
# A/B runs); uvloop cut CPU further but gave erratic p99 (260-290 ms in some runs), so asyncio's loop.
_SERVER_OPTIONS: dict[str, Any] = {"http": "httptools", "loop": "asyncio"}


def _serve_worker(host: str, port: int, access_log: bool) -> None:
    """One worker of ``eseal serve --workers N``, in a process of its own.

    Each worker listens on its own socket bound to the shared port with SO_REUSEPORT, so the
    kernel spreads connections over the workers. With one socket shared by all workers (uvicorn's
    ``workers=``), the first worker to wake accepts a whole burst of connections and keeps them
    for their keep-alive life: measured with 32 keep-alive clients, one worker did all the work.
    """
    import socket

    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # same user only (Linux)
    sock.bind((host, port))
    sock.listen(2048)
    config = uvicorn.Config(
        "api.app:create_server_app", factory=True, log_level="info", access_log=access_log, **_SERVER_OPTIONS
    )
    uvicorn.Server(config).run(sockets=[sock])


def _run_workers(host: str, port: int, workers: int, access_log: bool) -> int:
    """Start the workers, stop them all on SIGINT/SIGTERM or when one exits; its exit code."""
    import multiprocessing
    import signal
    from multiprocessing.connection import wait

    spawn = multiprocessing.get_context("spawn")
    procs = [
        spawn.Process(target=_serve_worker, args=(host, port, access_log), name=f"eseal-worker-{i}")
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()

    signalled: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        signalled.append(signum)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # uvicorn shuts down gracefully on SIGTERM

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not signalled and all(proc.is_alive() for proc in procs):
        wait([proc.sentinel for proc in procs], timeout=1.0)
    crashed = [proc for proc in procs if not proc.is_alive()] if not signalled else []
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join()
    return (crashed[0].exitcode or 1) if crashed else 0


@app.command()
@handle_errors
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    demo: Annotated[
        bool, typer.Option(help="嵌入式默认配置与演示数据 / embedded defaults and demo data")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="工作进程数（验证为 CPU 密集型，每核一个）/ worker processes (one per core)",
        ),
    ] = 2,
    access_log: Annotated[
        bool,
        typer.Option(
            help="每个请求记一行访问日志（默认关闭，指标见 /metrics）/ log one line per request "
            "(off by default: it costs a share of every verification; counts are in /metrics)"
        ),
    ] = False,
) -> None:
    """启动服务 / start the HTTP service."""
    import socket

    import uvicorn

    from .app import create_server_app

    with service(demo) as ctx:
        bootstrap(ctx, demo=demo)
        out.print(f"eseal 服务 listening on http://{host}:{port}  (API docs: /docs, {workers} worker(s))")
        if workers == 1:
            uvicorn.run(
                create_server_app(ctx.settings, context=ctx),
                host=host,
                port=port,
                log_level="info",
                access_log=access_log,
                **_SERVER_OPTIONS,
            )
            return
        # Each worker builds its own context from the environment: hand it what the parent derived.
        if ctx.settings.keystore_passphrase_file is not None and ctx.settings.keystore_passphrase is None:
            os.environ.setdefault(
                "ESEAL_KEYSTORE_PASSPHRASE_FILE", str(ctx.settings.keystore_passphrase_file)
            )
    if hasattr(socket, "SO_REUSEPORT"):
        code = _run_workers(host, port, workers, access_log)
        if code:
            raise typer.Exit(code=code)
        return
    uvicorn.run(  # no SO_REUSEPORT (Windows): uvicorn's workers on one shared socket
        "api.app:create_server_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=access_log,
        **_SERVER_OPTIONS,
    )


# --- ca --------------------------------------------------------------------------------------------
def _cert_table(rows: list[Any]) -> Table:
    table = Table("id", "role", "subject", "serial", "not after", "revoked")
    for r in rows:
        table.add_row(
            str(r.id),
            r.role,
            r.subject,
            r.serial_hex[:16],
            r.not_after.strftime("%Y-%m-%d"),
            r.revoked_at.strftime("%Y-%m-%d") if r.revoked_at else "",
        )
    return table


@ca_app.command("show")
@handle_errors
def ca_show() -> None:
    """列出地区证书 / list the region's certificates."""
    from seal_registry.pki import list_certificates

    with service() as ctx, ctx.sessions() as s:
        out.print(_cert_table(list_certificates(s)))


@ca_app.command("export")
@handle_errors
def ca_export(cert_id: int, output: Annotated[Path | None, typer.Option("-o")] = None) -> None:
    """导出证书（PEM）/ export a certificate as PEM."""
    from seal_registry.pki import certificate_pem, get_certificate

    with service() as ctx, ctx.sessions() as s:
        pem = certificate_pem(get_certificate(s, cert_id))
    if output:
        output.write_text(pem)
    else:
        sys.stdout.write(pem)


@ca_app.command("issue-department")
@handle_errors
def ca_issue_department(department_id: str) -> None:
    """为部门签发签章者证书 / issue a signing certificate for a department."""
    from core.db import transaction
    from seal_registry.departments import get_department
    from seal_registry.pki import issue_department_certificate

    with service() as ctx, transaction(ctx.sessions) as s:
        row = issue_department_certificate(s, ctx.keystore, get_department(s, department_id), actor=CLI_ACTOR)
        out.print(_cert_table([row]))


@ca_app.command("revoke")
@handle_errors
def ca_revoke(cert_id: int, reason: str = "key_compromise") -> None:
    """吊销证书 / revoke a certificate."""
    from core.db import transaction
    from seal_registry.pki import revoke_certificate

    with service() as ctx, transaction(ctx.sessions) as s:
        out.print(_cert_table([revoke_certificate(s, cert_id, reason=reason, actor=CLI_ACTOR)]))


@ca_app.command("import-root")
@handle_errors
def ca_import_root(file: Path) -> None:
    """导入外部 CA 根证书为信任锚 / import external CA certificates as trust anchors."""
    from core.db import transaction
    from seal_registry.pki import import_anchors

    data = file.read_bytes()
    with service() as ctx, transaction(ctx.sessions) as s:
        rows = import_anchors(s, data, actor=CLI_ACTOR)
        out.print(_cert_table(rows) if rows else "已存在 already present")


@ca_app.command("crl")
@handle_errors
def ca_crl(
    output: Annotated[Path | None, typer.Option("-o")] = None,
    interop: Annotated[
        bool, typer.Option("--interop", help="PAdES 互通 CA（ECDSA）的 CRL / the PAdES interop CA's CRL")
    ] = False,
) -> None:
    """签发当前 CRL / issue the current CRL (PEM); --interop: that of the PAdES interop CA."""
    from gmpki.crl_interop import interop_crl_pem
    from seal_registry.pki import current_crl, interop_crl_material, sign_interop_crl

    with service() as ctx:
        if interop:
            with ctx.sessions() as s:
                material = interop_crl_material(s)
            pem = interop_crl_pem(sign_interop_crl(material, ctx.keystore))
        else:
            with ctx.sessions() as s:
                pem = current_crl(s, ctx.keystore).to_pem()
    if output:
        output.write_text(pem)
    else:
        sys.stdout.write(pem)


# --- keys ------------------------------------------------------------------------------------------
@keys_app.command("list")
@handle_errors
def keys_list() -> None:
    """列出密钥 / list keys (public facts only)."""
    with service() as ctx:
        table = Table("id", "label", "algorithm", "created")
        for k in ctx.keystore.list():
            table.add_row(k.id, k.label, k.algorithm.value, k.created_at.isoformat() if k.created_at else "")
        out.print(table)


@keys_app.command("generate")
@handle_errors
def keys_generate(label: str, algorithm: str = "sm2") -> None:
    """生成密钥 / generate a key (sm2 | ec-p256 | rsa-3072)."""
    from core.errors import InvalidInput
    from hsm_adapters.keystore import KeyAlgorithm

    try:
        alg = KeyAlgorithm(algorithm.strip().upper().replace("-", "_"))
    except ValueError:
        raise InvalidInput(f"未知算法 {algorithm!r}", f"Unknown algorithm {algorithm!r}") from None
    with service() as ctx:
        info = ctx.keystore.generate(alg, label)
        out.print(f"{info.id}  {info.label}  {info.algorithm.value}")


@keys_app.command("import-p12")
@handle_errors
def keys_import_p12(
    file: Path,
    label: str,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True)],
) -> None:
    """从 PKCS#12 导入 SM2 密钥与证书 / import an SM2 key (and its certificate) from PKCS#12."""
    from gmpki.pkcs12 import load_pkcs12

    key, cert, _extra = load_pkcs12(file.read_bytes(), password.encode())
    with service() as ctx:
        info = ctx.keystore.import_sm2(key, label)
        out.print(f"{info.id}  {info.label}  {cert.subject}")


# --- tokens ----------------------------------------------------------------------------------------
@token_app.command("create")
@handle_errors
def token_create(
    name: str,
    role: str,
    department: Annotated[str | None, typer.Option(help="部门 ID / department id")] = None,
    holder: Annotated[str | None, typer.Option(help="持证主体 / holder id")] = None,
) -> None:
    """签发 API 令牌 / issue an API token (printed once)."""
    from core.audit import append as audit_append
    from core.db import transaction
    from core.tokens import Role, issue_token

    with service() as ctx, transaction(ctx.sessions) as s:
        row, clear = issue_token(s, name=name, role=Role(role), department_id=department, holder_id=holder)
        audit_append(
            s,
            actor=CLI_ACTOR,
            action="token.issued",
            subject_type="token",
            subject_id=str(row.id),
            details={"name": name, "role": role, "department_id": department},
        )
        out.print(clear, soft_wrap=True)


# --- audit -----------------------------------------------------------------------------------------
@audit_app.command("verify")
@handle_errors
def audit_verify() -> None:
    """校验审计链 / verify the audit chain; exit 1 at the first broken link."""
    from core.audit import verify_chain
    from seal_registry.pki import CertRole, certificate_of, current_certificate

    with service() as ctx, ctx.sessions() as s:
        try:
            pub = certificate_of(current_certificate(s, CertRole.SERVICE)).public_key
        except EsealError:
            pub = None
        report = verify_chain(s, public_key=pub)
    if report.ok:
        out.print(f"[green]审计链完整 audit chain intact[/green]: {report.message_zh} / {report.message_en}")
        return
    err.print(
        f"[red]审计链损坏 audit chain broken[/red] at seq {report.broken_seq}: "
        f"{report.message_zh} / {report.message_en}"
    )
    raise typer.Exit(code=1)


@audit_app.command("sign-head")
@handle_errors
def audit_sign_head() -> None:
    """用服务密钥签署审计链头 / sign the audit chain head with the service key now."""
    from .audit_signing import sign_head_if_moved

    with service() as ctx:
        seq = sign_head_if_moved(ctx)
    out.print(f"已签署 signed head at seq {seq}" if seq else "审计链为空 empty chain")


# Imported last: the sub-apps use this module's console and service() helpers.
from . import cli_sign, cli_verify  # noqa: E402
from .cli_blobs import blobs_app  # noqa: E402
from .cli_federation import peer_app, trust_list_app  # noqa: E402
from .cli_licence import licence_app  # noqa: E402
from .cli_seal import department_app, seal_app  # noqa: E402

app.add_typer(department_app, name="department")
app.add_typer(seal_app, name="seal")
app.add_typer(licence_app, name="licence")
app.add_typer(peer_app, name="peer")
app.add_typer(trust_list_app, name="trust-list")
app.add_typer(blobs_app, name="blobs")
cli_sign.register(app)
cli_verify.register(app)

