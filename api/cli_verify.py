"""``eseal verify FILE``: verify a seal, an SES or CMS signature or a sealed OFD or PDF from the
command line. ``--data`` gives the signed data of a standalone SES signature or a detached CMS.

Offline by default: trust comes only from the files given (``--trust`` anchors, ``--crl`` lists, a
signed ``--snapshot`` of seal status). ``--trust`` takes CA certificates of any key type: SM2 ones
anchor SM2 chains, ECDSA/RSA ones the chains of PDF and CMS signatures made with those algorithms.
``--local`` adds the local registry (its root, imported anchors, PAdES interop root, current CRL and
the state of its seals).

Exit codes: 0 PASSED, 1 FAILED, 2 INDETERMINATE, 3 NOT_SIGNED, 4 the input or the options could not
be used (unknown format, unreadable file, bad trust file, ...).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Final

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from core.errors import ConfigurationError, EsealError, InvalidInput
from gmpki.crl import CertificateRevocationList
from gmpki.crl_interop import load_any_crl
from gmpki.x509 import Certificate
from verify import (
    DocumentReport,
    FileTrustSource,
    Indication,
    Result,
    SealStatusFact,
    SignatureReport,
    TrustSource,
    load_policy,
    verify_bytes,
)
from verify.interop import InteropAnchorSource, InteropTrustSource
from verify.report import CertificateSummary, CheckResult, SubIndication, iso
from verify.snapshot_trust import SnapshotTrustSource
from verify.trust import interop_crls_of

from .cli import err, out, service
from .cli_seal import safe

EXIT_CODES: Final = {
    Indication.PASSED: 0,
    Indication.FAILED: 1,
    Indication.INDETERMINATE: 2,
    Indication.NOT_SIGNED: 3,
}
EXIT_UNUSABLE: Final = 4
MAX_INPUT_BYTES: Final = 1024 * 1024 * 1024  # the OFD container's own input ceiling

_VERDICT_STYLE: Final = {
    Indication.PASSED: ("通过", "green"),
    Indication.FAILED: ("失败", "red"),
    Indication.INDETERMINATE: ("无法确定", "yellow"),
    Indication.NOT_SIGNED: ("未签名", "bright_black"),
}
_RESULT_STYLE: Final = {
    Result.PASSED: ("通过", "passed", "green"),
    Result.FAILED: ("失败", "failed", "bold red"),
    Result.WARNING: ("警告", "warning", "yellow"),
    Result.INDETERMINATE: ("不确定", "indeterminate", "yellow"),
    Result.SKIPPED: ("未检查", "skipped", "bright_black"),
}


class CombinedTrustSource:
    """Several sources as one: every anchor (SM2 and interop), intermediate and CRL; the first seal
    status known."""

    def __init__(self, sources: Sequence[TrustSource]) -> None:
        self.sources = tuple(sources)

    def trust_anchors(self, at: dt.datetime) -> Sequence[Certificate]:
        return _unique(c for s in self.sources for c in s.trust_anchors(at))

    def intermediates(self, at: dt.datetime) -> Sequence[Certificate]:
        return _unique(c for s in self.sources for c in s.intermediates(at))

    def crls(self, at: dt.datetime) -> Sequence[CertificateRevocationList]:
        return tuple(c for s in self.sources for c in s.crls(at))

    def seal_status(self, es_id: str, seal_sm3: bytes, at: dt.datetime) -> SealStatusFact | None:
        for source in self.sources:
            fact = source.seal_status(es_id, seal_sm3, at)
            if fact is not None:
                return fact
        return None

    def interop_anchors(self, at: dt.datetime) -> Sequence[bytes]:
        found = (d for s in self.sources if isinstance(s, InteropAnchorSource) for d in s.interop_anchors(at))
        return tuple(dict.fromkeys(found))

    def interop_crls(self, at: dt.datetime) -> Sequence[bytes]:
        return tuple(dict.fromkeys(d for s in self.sources for d in interop_crls_of(s, at)))


def _unique(certs: Iterator[Certificate] | Sequence[Certificate]) -> tuple[Certificate, ...]:
    seen: set[bytes] = set()
    out_: list[Certificate] = []
    for c in certs:
        if c.der not in seen:
            seen.add(c.der)
            out_.append(c)
    return tuple(out_)


def parse_time(value: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"时间格式无效：{value!r}（应为 ISO 8601，如 2024-05-01T00:00:00Z）",
            f"invalid time {value!r} (ISO 8601 expected, e.g. 2024-05-01T00:00:00Z)",
        ) from None
    if when.tzinfo is None:
        raise InvalidInput("时间必须带时区（如 Z 或 +08:00）", "the time needs a zone (e.g. Z or +08:00)")
    return when.astimezone(dt.UTC)


def _read(path: Path, what_zh: str, what_en: str) -> bytes:
    try:
        if path.stat().st_size > MAX_INPUT_BYTES:
            raise InvalidInput(f"{what_zh}过大：{path}", f"{what_en} too large: {path}")
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(
            f"无法读取{what_zh} {path}：{exc.strerror}", f"cannot read {what_en} {path}: {exc.strerror}"
        ) from None


@contextmanager
def trust_from_options(
    trust: Sequence[Path], crl: Sequence[Path], snapshot: Path | None, local: bool
) -> Iterator[TrustSource | None]:
    """The trust source the options describe; the registry's database stays open while in use."""
    with ExitStack() as stack:
        sources: list[TrustSource] = []
        if trust:
            sources.append(InteropTrustSource.from_any_paths(trust, crls=crl))
        elif crl:
            if not local:
                raise ConfigurationError(
                    "--crl 需要与 --trust 或 --local 一起使用", "--crl needs --trust or --local"
                )
            lists = [load_any_crl(_read(p, "CRL 文件", "CRL file")) for p in crl]
            sm2_lists = tuple(c for c in lists if isinstance(c, CertificateRevocationList))
            others = tuple(c for c in lists if isinstance(c, bytes))
            sources.append(InteropTrustSource(FileTrustSource((), (), sm2_lists), (), others))
        if local:
            from datetime import timedelta

            from seal_registry.peers import FederatedTrustSource

            ctx = stack.enter_context(service())
            try:
                keystore = ctx.keystore
            except EsealError as exc:  # e.g. no passphrase here: the registry then offers no CRL
                keystore = None
                err.print(
                    Text.assemble(
                        ("警告 warning ", "yellow"),
                        safe(f"密钥库不可用，不检查撤销 / key store unavailable, no CRL: {exc.message_en}"),
                    )
                )
            sources.insert(
                0,
                FederatedTrustSource(
                    ctx.sessions,
                    keystore,
                    region_code=ctx.settings.region_code,
                    grace=timedelta(seconds=ctx.settings.federation_grace_s),
                ),
            )
        base: TrustSource | None = None
        if len(sources) == 1:
            base = sources[0]
        elif sources:
            base = CombinedTrustSource(sources)
        if snapshot is not None:
            if base is None:
                raise ConfigurationError(
                    "--snapshot 需要信任锚（--trust 或 --local）来验证快照签名",
                    "--snapshot needs a trust anchor (--trust or --local) to check its signature",
                )
            base = SnapshotTrustSource.from_path(snapshot, base)
        yield base


# --- output ------------------------------------------------------------------------------------------
def _cert(c: CertificateSummary | None) -> Text:
    if c is None:
        return Text("—")
    return safe(f"{c.subject}  (SN {c.serial})")


def _identity(sig: SignatureReport) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bright_black", no_wrap=True)
    table.add_column(overflow="fold")
    seal = sig.seal
    if seal is not None:
        table.add_row("印章 seal", safe(f"{seal.name}  (esID {seal.es_id}, type {seal.type})"))
        table.add_row("有效期 validity", f"{iso(seal.valid_from)} — {iso(seal.valid_to)}")
        table.add_row("制章者 maker", _cert(seal.maker))
        if seal.sm3:
            table.add_row("印章 SM3", seal.sm3)
    table.add_row("签章者 signer", _cert(sig.signer))
    table.add_row("签章时间 signed", iso(sig.signing_time) or "—")
    if sig.signature_xml:
        table.add_row("签名文件 file", safe(sig.signature_xml))
    return table


def _checks(title: str, sig_checks: Sequence[CheckResult]) -> Table:
    table = Table(title=title or None, title_justify="left", box=box.SIMPLE_HEAD, expand=True)
    table.add_column("检查 check", no_wrap=True, overflow="fold")
    table.add_column("结果 result", no_wrap=True)
    table.add_column("说明 reason", ratio=1, overflow="fold")
    for c in sig_checks:
        zh, en, style = _RESULT_STYLE[c.result]
        reason = Text.assemble(safe(c.message_zh), "\n", Text(safe(c.message_en).plain, style="bright_black"))
        table.add_row(c.id, Text(f"{zh}\n{en}", style=style), reason)
    return table


def _verdict(indication: Indication, sub: SubIndication | None) -> Text:
    zh, style = _VERDICT_STYLE[indication]
    text = Text(f"{zh} {indication.value}", style=f"bold {style}")
    if sub is not None:
        text.append(f"  ({sub.value})", style=style)
    return text


def print_report(report: DocumentReport, file: Path) -> None:
    out.print(
        Text.assemble(
            ("文件 file: ", "bright_black"),
            safe(str(file)),
            ("  格式 format: ", "bright_black"),
            report.format,
            ("  验证时间 validated at: ", "bright_black"),
            iso(report.validation_time) or "—",
        )
    )
    if report.checks:
        out.print(_checks("文档 document", report.checks))
    for stamp in report.unsigned_stamps:
        out.print(
            Text.assemble(
                ("警告 warning: ", "yellow"),
                safe(f"页面上的印章图案未被任何签章保护 / a stamp no signature accounts for: {stamp.path}"),
            )
        )
    for sig in report.signatures:
        out.print()
        out.print(
            Text.assemble(
                ("签章 signature ", "bold"), safe(sig.id), "  ", _verdict(sig.indication, sig.sub_indication)
            )
        )
        out.print(_identity(sig))
        out.print(_checks("", sig.checks))
    out.print()
    out.print(
        Text.assemble(("验证结果 verdict: ", "bold"), _verdict(report.indication, report.sub_indication))
    )


# --- the command -------------------------------------------------------------------------------------
def verify_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="OFD/PDF 文档、电子签章数据、CMS 签名或印章 / OFD or PDF, SES or CMS signature, or seal"
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="原文（独立签章数据或分离式 CMS 签名时）/ signed data of an SES or detached CMS signature",
        ),
    ] = None,
    trust: Annotated[
        list[Path] | None,
        typer.Option(
            "--trust",
            help="信任锚证书或目录（可多次；SM2、ECDSA 或 RSA）/ trust anchor certificates or directories "
            "(SM2, ECDSA or RSA)",
        ),
    ] = None,
    crl: Annotated[list[Path] | None, typer.Option("--crl", help="证书撤销列表 / CRL files")] = None,
    snapshot: Annotated[
        Path | None, typer.Option("--snapshot", help="签名的印章状态快照 / signed seal status snapshot")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="验证策略（TOML）/ validation policy")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="验证时间 ISO 8601，如 2024-05-01T00:00:00Z / validation time")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON 报告 / print the JSON report")] = False,
    local: Annotated[
        bool, typer.Option("--local", help="同时使用本地印章登记系统 / also trust the local registry")
    ] = False,
) -> None:
    """验证签章 / verify a seal, an SES or CMS signature (with --data), or a sealed OFD or PDF.

    退出码 exit codes: 0 通过 PASSED, 1 失败 FAILED, 2 无法确定 INDETERMINATE, 3 未签名 NOT_SIGNED,
    4 无法使用的输入或选项 unusable input or options.
    """
    try:
        when = parse_time(at) if at else None
        chosen = load_policy(policy) if policy is not None else None
        content = _read(file, "文件", "file")
        detached = _read(data, "原文", "data file") if data is not None else None
        with trust_from_options(trust or [], crl or [], snapshot, local) as source:
            report = verify_bytes(content, detached_data=detached, trust=source, policy=chosen, at=when)
    except EsealError as exc:
        err.print(
            Text.assemble(("错误 error ", "red"), safe(f"({exc.code}) {exc.message_zh} / {exc.message_en}")),
            soft_wrap=True,
        )
        raise typer.Exit(code=EXIT_UNUSABLE) from None
    if as_json:
        sys.stdout.write(report.dumps() + "\n")
    else:
        print_report(report, file)
    raise typer.Exit(code=EXIT_CODES[report.indication])


def register(app: typer.Typer) -> None:
    """Add ``eseal verify`` to the main app."""
    app.command("verify")(verify_command)
