"""Trust and checks for signatures outside the SM2 world, shared by the PDF and CMS verifiers.

:class:`verify.trust.TrustSource` anchors are SM2 certificates. PDF readers and RFC 5652 tools
use ECDSA and RSA, which need other roots (the region's PAdES interop root,
:mod:`gmpki.x509_interop`): a trust source that also implements :class:`InteropAnchorSource`
supplies them, e.g. :class:`InteropTrustSource`, which wraps any trust source and adds CA
certificates of any key type. ECDSA/RSA certificate paths are validated by pyhanko-certvalidator
against those anchors, SM2 ones by :mod:`gmpki.path_validation` against the SM2 anchors.

Also here, for any key type: the signer certificate's validity at the signing time and the RFC 3161
signatureTimeStampToken check (signature, imprint over the signature value, TSA chain); and, for
ECDSA/RSA, revocation against the trust source's interop CRLs (``verify.trust.InteropCrlSource``,
e.g. the registry's PAdES interop CRL) with the SM2 path's time rules.

Kept free of pyHanko's PDF machinery, and pyhanko-certvalidator is imported only when an ECDSA/RSA
certificate is validated, so the engine (and verifying an SM2 CMS) loads neither.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol, TypeVar, runtime_checkable

from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509

from core.errors import ConfigurationError, EsealError
from gmpki.ca import import_ca_certificates
from gmpki.crl import CRL_MAX_SIZE, CertificateRevocationList
from gmpki.crl_interop import load_any_crl
from gmpki.der import asn1_guard, load_der
from gmpki.path_validation import PathValidationError, validate_path
from gmpki.tsp import TimestampVerification, verify_token
from gmpki.x509 import Certificate, load_certificate_der
from gmpki.x509_interop import (
    InteropCertificate,
    load_interop_certificate,
    load_interop_certificates,
    require_ca,
    verify_with_spki,
)

from .checks import Context, fmt_time
from .report import CheckResult, Result, SubIndication
from .trust import (
    _CRL_SUFFIXES,
    FileTrustSource,
    SealStatusFact,
    TrustSource,
    _files,
    _load,
    _unique,
    interop_crls_of,
    provides,
)

if TYPE_CHECKING:
    from pyhanko_certvalidator import ValidationContext

T = TypeVar("T")
_MAX_TRUST_FILE: Final = 16 * 1024 * 1024


# --- trust ----------------------------------------------------------------------------------------------
@runtime_checkable
class InteropAnchorSource(Protocol):
    def interop_anchors(self, at: dt.datetime) -> Sequence[bytes]:
        """DER CA certificates of any key type (ECDSA, RSA) trusted as roots for PDF and CMS
        signatures."""
        ...


@dataclass(frozen=True)
class InteropTrustSource:
    """``base``'s SM2 anchors, CRLs and seal status, plus ``anchors``: CA certificates of any key
    type (DER), such as the region's PAdES interop root, and ``revocation_lists``: their CRLs (DER)."""

    base: TrustSource | None
    anchors: tuple[bytes, ...] = field(default=(), repr=False)
    # DER CRLs of ECDSA/RSA CAs, consulted besides the base's (``verify.trust.InteropCrlSource``).
    revocation_lists: tuple[bytes, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        for der in self.anchors:
            require_ca(load_interop_certificate(der))

    def trust_anchors(self, at: dt.datetime) -> Sequence[Certificate]:
        return self.base.trust_anchors(at) if self.base is not None else ()

    def intermediates(self, at: dt.datetime) -> Sequence[Certificate]:
        return self.base.intermediates(at) if self.base is not None else ()

    def crls(self, at: dt.datetime) -> Sequence[CertificateRevocationList]:
        return self.base.crls(at) if self.base is not None else ()

    def seal_status(self, es_id: str, seal_sm3: bytes, at: dt.datetime) -> SealStatusFact | None:
        return self.base.seal_status(es_id, seal_sm3, at) if self.base is not None else None

    def interop_anchors(self, at: dt.datetime) -> Sequence[bytes]:
        return self.anchors

    def interop_crls(self, at: dt.datetime) -> Sequence[bytes]:
        return (*interop_crls_of(self.base, at), *self.revocation_lists)

    @classmethod
    def from_paths(cls, paths: Iterable[Path | str], base: TrustSource | None = None) -> InteropTrustSource:
        """Read CA certificates of any key type (PEM bundles or DER files) as interop anchors; SM2
        certificates among them are skipped (they belong to ``base``)."""
        ders: list[bytes] = []
        for item in paths:
            path = Path(item)
            try:
                if path.stat().st_size > _MAX_TRUST_FILE:
                    raise ConfigurationError(f"信任文件过大：{path}", f"trust file too large: {path}")
                certs = [
                    require_ca(c)
                    for c in load_interop_certificates(path.read_bytes())
                    if c.key_algorithm != "sm2"
                ]
            except OSError as exc:
                raise ConfigurationError(
                    f"无法读取信任文件 {path}：{exc}", f"cannot read trust file {path}: {exc}"
                ) from exc
            except EsealError as exc:
                if isinstance(exc, ConfigurationError):
                    raise
                raise ConfigurationError(
                    f"无法读取信任文件 {path}：{exc.message_zh}",
                    f"cannot read trust file {path}: {exc.message_en}",
                ) from exc
            ders.extend(c.der for c in certs if c.der not in ders)
        return cls(base, tuple(ders))

    @classmethod
    def from_any_paths(
        cls, paths: Iterable[Path | str], *, crls: Iterable[Path | str] = ()
    ) -> InteropTrustSource:
        """CA certificates of any key type and CRLs, from files or directories (as
        :meth:`FileTrustSource.from_paths` reads them): SM2 certificates become the anchors of a
        :class:`FileTrustSource` (with the SM2 CRLs), the others interop anchors (with the other
        CRLs, e.g. the PAdES interop CRL of ``eseal ca crl --interop``)."""
        files = _files(paths)
        crl_files = [f for f in files if f.suffix.lower() in _CRL_SUFFIXES] + _files(crls)
        sm2: list[Certificate] = []
        others: list[bytes] = []
        for path in files:
            if path.suffix.lower() not in _CRL_SUFFIXES:
                found_sm2, found_others = _load(path, _split_anchors)
                sm2 += found_sm2
                others += found_others
        if not sm2 and not others:
            raise ConfigurationError("未找到任何信任锚证书", "no trust anchor certificate found")
        lists = [_load(p, load_any_crl) for p in crl_files]
        sm2_crls = tuple(c for c in lists if isinstance(c, CertificateRevocationList))
        others_crls = tuple(c for c in lists if isinstance(c, bytes))
        base = FileTrustSource(tuple(_unique(sm2)), (), sm2_crls)
        return cls(base, tuple(dict.fromkeys(others)), others_crls)


def _split_anchors(raw: bytes) -> tuple[list[Certificate], list[bytes]]:
    """The CA certificates of one trust file: SM2 ones (checked as gmpki reads anchors), and the DER
    of the others. Anything that is not a CA certificate is refused, whatever its key type."""
    sm2: list[Certificate] = []
    others: list[bytes] = []
    for cert in load_interop_certificates(raw):
        if cert.key_algorithm == "sm2":
            sm2 += import_ca_certificates(cert.der)
        else:
            others.append(require_ca(cert).der)
    return sm2, others


def interop_anchors_of(trust: TrustSource | None, at: dt.datetime) -> tuple[asn1_x509.Certificate, ...]:
    if trust is None or not provides(trust, InteropAnchorSource):
        return ()
    return tuple(load_interop_certificate(der).asn1 for der in trust.interop_anchors(at))


# --- running pyHanko's validator --------------------------------------------------------------------------
def run_blocking(work: Callable[[], T]) -> T:
    """Run ``work`` (which may call ``asyncio.run``) even when the caller is inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return work()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(work).result()


def brief(exc: BaseException) -> str:
    """One line about ``exc`` for a report (a library's exception text, trimmed)."""
    if isinstance(exc, EsealError):
        return exc.message_en
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def certvalidator_context(
    trust: TrustSource | None, at: dt.datetime, others: Sequence[asn1_x509.Certificate] = ()
) -> ValidationContext:
    from pyhanko_certvalidator import ValidationContext

    return ValidationContext(
        trust_roots=list(interop_anchors_of(trust, at)),
        other_certs=list(others),
        moment=at,
        allow_fetching=False,
        revocation_mode="soft-fail",
    )


def _r(cid: str, result: Result, zh: str, en: str, sub: SubIndication | None = None) -> CheckResult:
    return CheckResult(cid, result, zh, en, sub)


def _skipped(cid: str, zh: str, en: str) -> CheckResult:
    return _r(cid, Result.SKIPPED, f"未检查：{zh}", f"not checked: {en}")


# --- certificates -----------------------------------------------------------------------------------------
def _helpers(cert: InteropCertificate, others: Sequence[bytes]) -> list[asn1_x509.Certificate]:
    """``others`` but ``cert`` itself, parsed: untrusted certificates that may help build a path."""
    helpers: list[asn1_x509.Certificate] = []
    for der in others:
        if der == cert.der:
            continue
        try:
            helpers.append(load_interop_certificate(der).asn1)
        except EsealError:
            continue  # an unreadable extra certificate cannot be part of any path
    return helpers


def interop_chain(
    cid: str, cert: InteropCertificate, others: Sequence[bytes], when: dt.datetime, ctx: Context
) -> CheckResult:
    """An ECDSA/RSA certificate's path to the interop anchors at ``when`` (clamped into its validity:
    an expired certificate is reported by its validity check, not a second time here).
    ``others``: certificates that may help build the path (DER; unreadable ones are skipped)."""
    who = cert.describe()
    if not interop_anchors_of(ctx.trust, ctx.at):
        return _r(
            cid,
            Result.INDETERMINATE,
            f"未配置 ECDSA/RSA 互通信任锚，无法确认签名者证书 {who} 的签发者 {cert.issuer} 是否可信",
            f"no ECDSA/RSA interop trust anchor is configured: trust in {cert.issuer}, issuer of the "
            f"signer certificate {who}, cannot be established",
            SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
        )
    from pyhanko_certvalidator import CertificateValidator
    from pyhanko_certvalidator.errors import PathBuildingError, RevokedError

    at = max(cert.not_before, min(when, cert.not_after))
    validator = CertificateValidator(
        cert.asn1,
        intermediate_certs=_helpers(cert, others),
        validation_context=certvalidator_context(ctx.trust, at),
    )
    try:
        path = run_blocking(lambda: asyncio.run(validator.async_validate_path()))
    except RevokedError as exc:
        return _r(
            cid,
            Result.FAILED,
            f"签名者证书 {who} 的证书链中有证书已被撤销（{brief(exc)}）",
            f"a certificate in the chain of the signer certificate {who} is revoked ({brief(exc)})",
            SubIndication.REVOKED,
        )
    except PathBuildingError as exc:
        return _r(
            cid,
            Result.INDETERMINATE,
            f"签名者证书 {who} 无法链接到任何 ECDSA/RSA 互通信任锚（{brief(exc)}）",
            f"the signer certificate {who} does not chain to any ECDSA/RSA interop trust anchor "
            f"({brief(exc)})",
            SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
        )
    except Exception as exc:
        return _r(
            cid,
            Result.INDETERMINATE,
            f"签名者证书 {who} 的证书链未能验证（{brief(exc)}）",
            f"the certificate chain of the signer certificate {who} could not be validated ({brief(exc)})",
            SubIndication.CHAIN_CONSTRAINTS_FAILURE,
        )
    anchor = path.first
    name = load_interop_certificate(anchor.dump()).describe() if anchor is not None else "-"
    return _r(
        cid,
        Result.PASSED,
        f"签名者证书 {who} 可链接到信任锚 {name}（验证时间 {fmt_time(at)}）",
        f"the signer certificate {who} chains to trust anchor {name} (validated at {fmt_time(at)})",
    )


def signer_validity(
    cert: InteropCertificate, when: dt.datetime, proven: bool, *, claimed: bool = True
) -> CheckResult:
    """``signer.certificate_validity`` for a certificate of any key type: in its validity at ``when``
    (a time-stamp's time when ``proven``, else the claimed signing time, else — ``claimed`` False,
    nothing says when it was signed — the validation time) and fit for signing."""
    cid = "signer.certificate_validity"
    c = cert
    if proven:
        event_zh, event_en = "时间戳时间", "time-stamp time"
    elif claimed:
        event_zh, event_en = "签名时间", "signing time"
    else:
        event_zh, event_en = "验证时间", "validation time"
    span_zh = f"有效期 {fmt_time(c.not_before)} 至 {fmt_time(c.not_after)}"
    span_en = f"valid {fmt_time(c.not_before)} to {fmt_time(c.not_after)}"
    if when < c.not_before:
        return _r(
            cid,
            Result.FAILED,
            f"签名者证书 {c.describe()} 在{event_zh} {fmt_time(when)} 尚未生效（{span_zh}）",
            f"the signer certificate {c.describe()} was not yet valid at the {event_en} {fmt_time(when)} "
            f"({span_en})",
            SubIndication.NOT_YET_VALID,
        )
    if when > c.not_after:
        return _r(
            cid,
            Result.FAILED,
            f"签名者证书 {c.describe()} 在{event_zh} {fmt_time(when)} 已过期（{span_zh}）",
            f"the signer certificate {c.describe()} had expired at the {event_en} {fmt_time(when)} "
            f"({span_en})",
            SubIndication.OUT_OF_BOUNDS_NO_POE,
        )
    if c.key_usage is not None and not c.key_usage & {"digital_signature", "non_repudiation"}:
        usage = ", ".join(sorted(c.key_usage))
        return _r(
            cid,
            Result.FAILED,
            f"签名者证书 {c.describe()} 的密钥用途（{usage}）不含 digitalSignature 或 nonRepudiation",
            f"the signer certificate {c.describe()} has key usage ({usage}) without digitalSignature or "
            "nonRepudiation",
            SubIndication.SIG_CONSTRAINTS_FAILURE,
        )
    return _r(
        cid,
        Result.PASSED,
        f"签名者证书 {c.describe()} 在{event_zh} {fmt_time(when)} 有效（{span_zh}）",
        f"the signer certificate {c.describe()} was valid at the {event_en} {fmt_time(when)} ({span_en})",
    )


def interop_revocation_skipped(ctx: Context) -> CheckResult:
    """``signer.certificate_revocation`` for an ECDSA/RSA certificate whose issuer no CRL covers."""
    cid = "signer.certificate_revocation"
    if ctx.policy.require_revocation:
        return _r(
            cid,
            Result.INDETERMINATE,
            "没有 ECDSA/RSA 证书的撤销信息，无法确认签名者证书未被撤销",
            "no revocation information is available for ECDSA/RSA certificates",
            SubIndication.TRY_LATER,
        )
    return _skipped(
        cid, "ECDSA/RSA 互通证书没有撤销信息来源", "no revocation source for ECDSA/RSA interop certificates"
    )


def _interop_crls(ctx: Context) -> tuple[asn1_crl.CertificateList, ...]:
    """The trust source's ECDSA/RSA CRLs at the validation time (they speak for every earlier time
    too, as in ``verify.checks``); unreadable ones are left out (they cannot cover anyone)."""
    out: list[asn1_crl.CertificateList] = []
    for der in interop_crls_of(ctx.trust, ctx.at):
        try:
            crl = load_der(asn1_crl.CertificateList, der, max_size=CRL_MAX_SIZE, what_zh="CRL", what_en="CRL")
            with asn1_guard("CRL", "CRL"):
                crl.issuer.dump()
        except EsealError:
            continue
        out.append(crl)
    return tuple(out)


def _crl_signed_by(crl: asn1_crl.CertificateList, issuer: asn1_x509.Certificate) -> bool:
    try:
        if crl["signature_algorithm"].hash_algo != "sha256" or crl.issuer != issuer.subject:
            return False
        tbs = crl["tbs_cert_list"].dump()
        return verify_with_spki(issuer.public_key.dump(), tbs, crl.signature)
    except (ValueError, TypeError, KeyError):
        return False


def _revoked_entry(
    crls: Sequence[asn1_crl.CertificateList], child: asn1_x509.Certificate, issuer: asn1_x509.Certificate
) -> dt.datetime | None:
    """When ``child`` was revoked per a CRL ``issuer`` signed; None when no such CRL lists it."""
    serial = child.serial_number
    for crl in crls:
        if not _crl_signed_by(crl, issuer):
            continue
        for entry in crl["tbs_cert_list"]["revoked_certificates"]:
            if entry["user_certificate"].native != serial:
                continue
            if entry.crl_reason_value is not None and entry.crl_reason_value.native == "remove_from_crl":
                continue
            revoked: dt.datetime = entry["revocation_date"].native
            return revoked
    return None


def _path_revocations(
    certs: Sequence[asn1_x509.Certificate], crls: Sequence[asn1_crl.CertificateList]
) -> list[tuple[InteropCertificate, dt.datetime]]:
    """Every certificate of the path (root first) listed as revoked by a CRL of its issuer."""
    out: list[tuple[InteropCertificate, dt.datetime]] = []
    for issuer, child in itertools.pairwise(certs):
        revoked = _revoked_entry(crls, child, issuer)
        if revoked is not None:
            out.append((load_interop_certificate(child.dump()), revoked))
    return out


def interop_revocation(
    cert: InteropCertificate,
    others: Sequence[bytes],
    when: dt.datetime,
    ctx: Context,
    *,
    proven: dt.datetime | None = None,
) -> CheckResult:
    """``signer.certificate_revocation`` for an ECDSA/RSA signer certificate signed at ``when`` (the
    claimed time, else the validation time), with the SM2 path's rules (``verify.checks``): the
    trust source's interop CRLs (:class:`verify.trust.InteropCrlSource`) go to pyhanko-certvalidator
    in hard-fail mode, so a revocation before ``when`` is REVOKED; one after it is REVOKED_NO_POE
    unless ``proven`` (a trusted time-stamp's time) shows the signature existed before it. With no
    CRL of the certificate's issuer, as before: skipped (or TRY_LATER when the policy requires it)."""
    cid = "signer.certificate_revocation"
    crls = _interop_crls(ctx)
    if not any(crl.issuer == cert.asn1.issuer for crl in crls):
        return interop_revocation_skipped(ctx)
    who = cert.describe()
    anchors = interop_anchors_of(ctx.trust, ctx.at)
    if not anchors:
        return _r(
            cid,
            Result.INDETERMINATE,
            f"未配置 ECDSA/RSA 互通信任锚，签名者证书 {who} 的撤销状态未检查",
            f"no ECDSA/RSA interop trust anchor is configured, so revocation of the signer certificate "
            f"{who} was not checked",
            SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
        )
    from pyhanko_certvalidator import CertificateValidator, ValidationContext
    from pyhanko_certvalidator.errors import PathBuildingError, RevokedError

    at = max(cert.not_before, min(when, cert.not_after))
    context = ValidationContext(
        trust_roots=list(anchors),
        moment=at,
        allow_fetching=False,
        crls=list(crls),
        revocation_mode="hard-fail",
        # CRLs issued now speak for the earlier signing time (revocations carry their dates).
        retroactive_revinfo=True,
    )
    validator = CertificateValidator(
        cert.asn1, intermediate_certs=_helpers(cert, others), validation_context=context
    )
    try:
        path = run_blocking(lambda: asyncio.run(validator.async_validate_path()))
    except RevokedError as exc:
        return _r(
            cid,
            Result.FAILED,
            f"签名者证书 {who} 或其证书链在签名时间 {fmt_time(at)} 之前已被撤销（{brief(exc)}）",
            f"the signer certificate {who} or its chain was revoked before the signing time "
            f"{fmt_time(at)} ({brief(exc)})",
            SubIndication.REVOKED,
        )
    except PathBuildingError as exc:
        return _r(
            cid,
            Result.INDETERMINATE,
            f"无法构建签名者证书链，撤销状态未检查（{brief(exc)}）",
            f"no chain for the signer certificate, so revocation was not checked ({brief(exc)})",
            SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
        )
    except Exception as exc:
        return _r(
            cid,
            Result.INDETERMINATE,
            f"签名者证书 {who} 撤销状态无法确定（{brief(exc)}）",
            f"the revocation status of the signer certificate {who} is unknown ({brief(exc)})",
            SubIndication.TRY_LATER,
        )
    listed = _path_revocations(list(path.iter_certs(include_root=True)), crls)
    until = proven or ctx.at
    # certvalidator counts a revocation at the very signing time as not yet effective; it is not
    # after the signing time either, so it is REVOKED here (the SM2 path's ``revoked_at <= at``).
    before = [(c, t) for c, t in listed if t <= at]
    if before:
        revoked_cert, revoked_at = before[0]
        return _r(
            cid,
            Result.FAILED,
            f"证书 {revoked_cert.describe()} 于 {fmt_time(revoked_at)} 被撤销，不晚于签名时间 {fmt_time(at)}",
            f"certificate {revoked_cert.describe()} was revoked at {fmt_time(revoked_at)}, not after the "
            f"signing time {fmt_time(at)}",
            SubIndication.REVOKED,
        )
    later = [(c, t) for c, t in listed if at < t <= until]
    if later:
        revoked_cert, revoked_at = later[0]
        return _r(
            cid,
            Result.INDETERMINATE,
            f"证书 {revoked_cert.describe()} 于 {fmt_time(revoked_at)} 被撤销，晚于声明的签名时间 "
            f"{fmt_time(when)}，但签名时间没有时间戳证明",
            f"certificate {revoked_cert.describe()} was revoked at {fmt_time(revoked_at)}, after the claimed "
            f"signing time {fmt_time(when)}, which no time-stamp proves",
            SubIndication.REVOKED_NO_POE,
        )
    if proven is not None:
        after = [(c, t) for c, t in listed if t > max(at, proven)]
        note_zh = note_en = ""
        if after:
            revoked_cert, revoked_at = after[0]
            note_zh = f"；证书 {revoked_cert.describe()} 于 {fmt_time(revoked_at)} 被撤销，晚于时间戳时间"
            note_en = (
                f"; certificate {revoked_cert.describe()} was revoked at {fmt_time(revoked_at)}, after the "
                "time-stamp"
            )
        return _r(
            cid,
            Result.PASSED,
            f"签名者证书 {who} 及其证书链在 {fmt_time(at)} 未被撤销（依据 CRL），"
            f"时间戳证明签名在 {fmt_time(proven)} 已存在{note_zh}",
            f"the signer certificate {who} and its chain were not revoked at {fmt_time(at)} (per CRL), "
            f"and a time-stamp proves the signature existed at {fmt_time(proven)}{note_en}",
        )
    return _r(
        cid,
        Result.PASSED,
        f"签名者证书 {who} 及其证书链在 {fmt_time(at)} 未被撤销（依据 CRL）",
        f"the signer certificate {who} and its chain were not revoked at {fmt_time(at)} (per CRL)",
    )


# --- time-stamps -----------------------------------------------------------------------------------------
def tsa_chain(verification: TimestampVerification, ctx: Context) -> tuple[bool, str, str] | None:
    """None when the TSA certificate chains to an anchor, else (indeterminate?, zh, en)."""
    tsa = load_interop_certificate(verification.tsa_certificate)
    at = verification.gen_time
    others = verification.cms.certificates
    if tsa.key_algorithm == "sm2":
        anchors = list(ctx.trust.trust_anchors(at)) if ctx.trust is not None else []
        if not anchors:
            return True, "未配置 SM2 信任锚", "no SM2 trust anchor is configured"
        middle = [
            load_certificate_der(c) for c in others if load_interop_certificate(c).key_algorithm == "sm2"
        ]
        try:
            validate_path(
                load_certificate_der(verification.tsa_certificate),
                trust_anchors=anchors,
                at=at,
                intermediates=[c for c in middle if c.der != verification.tsa_certificate],
            )
        except PathValidationError as exc:
            return exc.reason != "revoked", exc.message_zh, exc.message_en
        return None
    from pyhanko_certvalidator import CertificateValidator

    context = certvalidator_context(ctx.trust, at, [load_interop_certificate(c).asn1 for c in others])
    validator = CertificateValidator(tsa.asn1, validation_context=context)
    try:
        usage = validator.async_validate_usage(set(), {"time_stamping"})  # type: ignore[no-untyped-call]
        run_blocking(lambda: asyncio.run(usage))
    except Exception as exc:
        return True, f"时间戳服务证书链未能验证（{brief(exc)}）", f"TSA chain not validated ({brief(exc)})"
    return None


def check_signature_timestamp(
    tokens: Sequence[bytes], signature_value: bytes, ctx: Context, *, none_zh: str, none_en: str
) -> tuple[CheckResult, TimestampVerification | None]:
    """``timestamp.token`` for the first signatureTimeStampToken over ``signature_value``, and the
    verification when the token is valid and its TSA trusted (its genTime then proves the time).
    ``none_zh``/``none_en`` say why there is no token."""
    cid = "timestamp.token"
    if not tokens:
        return _skipped(cid, none_zh, none_en), None
    try:
        verification = verify_token(tokens[0], signature_value)
    except EsealError as exc:
        return (
            _r(
                cid,
                Result.FAILED,
                f"签名时间戳无效：{exc.message_zh}",
                f"the signature time-stamp is invalid: {exc.message_en}",
                SubIndication.SIG_CRYPTO_FAILURE,
            ),
            None,
        )
    when = fmt_time(verification.gen_time)
    try:
        chain = tsa_chain(verification, ctx)
    except EsealError as exc:
        chain = (True, exc.message_zh, exc.message_en)
    if chain is not None:
        indeterminate, zh, en = chain
        return (
            _r(
                cid,
                Result.INDETERMINATE if indeterminate else Result.FAILED,
                f"签名时间戳（{when}，{verification.tsa_subject}）签名有效，但时间戳服务证书不可信：{zh}",
                f"the signature time-stamp ({when}, {verification.tsa_subject}) verifies but its TSA is "
                f"not trusted: {en}",
                SubIndication.NO_CERTIFICATE_CHAIN_FOUND if indeterminate else SubIndication.REVOKED,
            ),
            None,
        )
    return (
        _r(
            cid,
            Result.PASSED,
            f"签名时间戳有效：{when}，时间戳服务 {verification.tsa_subject}，证书链可信",
            f"the signature time-stamp is valid: {when} by {verification.tsa_subject}, chain trusted",
        ),
        verification,
    )


__all__ = [
    "InteropAnchorSource",
    "InteropTrustSource",
    "brief",
    "certvalidator_context",
    "check_signature_timestamp",
    "interop_anchors_of",
    "interop_chain",
    "interop_revocation",
    "interop_revocation_skipped",
    "run_blocking",
    "signer_validity",
    "tsa_chain",
]
