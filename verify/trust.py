"""Where trust comes from: trust anchors, intermediates, CRLs and seal status (and, optionally,
ECDSA/RSA CRLs: :class:`InteropCrlSource`).

:class:`TrustSource` is the interface the engine asks; :class:`FileTrustSource` answers from
certificate and CRL files (offline verification). The seal registry implements the same protocol
with its own CA hierarchy and the live state of the seals it issued.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, TypeGuard, TypeVar, runtime_checkable

from core.errors import ConfigurationError, EsealError
from gmpki.ca import import_ca_certificates
from gmpki.crl import CertificateRevocationList, load_crl
from gmpki.x509 import Certificate

_CRL_SUFFIXES: Final = frozenset({".crl"})
_CERT_SUFFIXES: Final = frozenset({".pem", ".crt", ".cer", ".der"})
_MAX_TRUST_FILE: Final = 16 * 1024 * 1024
T = TypeVar("T")


class SealState(enum.StrEnum):
    ACTIVE = "active"  # issued and usable
    SUSPENDED = "suspended"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"  # the source tracks seals but does not know this one (or these bytes)


@dataclass(frozen=True)
class SealStatusFact:
    """The state of a seal as a trust source knows it; ``changed_at`` is when it entered that state."""

    state: SealState
    changed_at: dt.datetime | None = None
    source: str = ""  # who says so, for the report (e.g. a registry name)
    # Set by sources that speak for someone else (a peer region's trust list, with its sequence and
    # issue time); the report carries it as the check's ``vouched_by``.
    vouched_by: str | None = None


@runtime_checkable
class TrustSource(Protocol):
    def trust_anchors(self, at: dt.datetime) -> Sequence[Certificate]:
        """Certificates trusted as roots at ``at``."""
        ...

    def intermediates(self, at: dt.datetime) -> Sequence[Certificate]:
        """Untrusted CA certificates that may help build a path."""
        ...

    def crls(self, at: dt.datetime) -> Sequence[CertificateRevocationList]:
        """Revocation lists to consult (empty: revocation cannot be checked)."""
        ...

    def seal_status(self, es_id: str, seal_sm3: bytes, at: dt.datetime) -> SealStatusFact | None:
        """The seal's state at ``at``; None when this source does not track seals."""
        ...


_P = TypeVar("_P")
_PROVIDES: dict[tuple[type, object], bool] = {}


def provides(obj: object, protocol: Callable[..., _P]) -> TypeGuard[_P]:
    """``isinstance(obj, protocol)`` for a runtime-checkable protocol, remembered per class: the
    check itself looks up every member of the protocol each time (about 10 µs), and verification
    asks it several times per document of the same few trust-source classes. (Typed with
    ``Callable`` because mypy takes no protocol class where ``type[...]`` is expected.)"""
    key = (type(obj), protocol)
    found = _PROVIDES.get(key)
    if found is None:
        assert isinstance(protocol, type)
        found = _PROVIDES[key] = isinstance(obj, protocol)
    return found



@runtime_checkable
class VouchingSource(Protocol):
    """A trust source that can say whose word a trusted certificate rests on (a peer region's trust
    list, say), so the report can name it. Optional: sources without it are their own voucher."""

    def vouched_by(self, certificate: Certificate, anchor: Certificate) -> str | None:
        """Who vouches for ``certificate``, validated up to ``anchor``; None when not known."""
        ...


def vouched_by(trust: object, certificate: Certificate, anchor: Certificate) -> str | None:
    """``trust.vouched_by(...)`` when the source offers it, else None (never raises)."""
    if not provides(trust, VouchingSource):
        return None
    try:
        return trust.vouched_by(certificate, anchor)
    except EsealError:
        return None


@runtime_checkable
class InteropCrlSource(Protocol):
    """A trust source that also has CRLs (DER, RFC 5280) of ECDSA/RSA CAs, such as the region's PAdES
    interop root, for signatures that ``verify.interop`` validates with pyhanko-certvalidator.
    Optional: without it, ECDSA/RSA certificates have no revocation source."""

    def interop_crls(self, at: dt.datetime) -> Sequence[bytes]:
        """DER CRLs to consult for ECDSA/RSA certificate paths (empty: none)."""
        ...


def interop_crls_of(trust: object, at: dt.datetime) -> tuple[bytes, ...]:
    """``trust.interop_crls(at)`` when the source offers it, else none."""
    if trust is None or not provides(trust, InteropCrlSource):
        return ()
    return tuple(trust.interop_crls(at))


@runtime_checkable
class ConsistentSource(Protocol):
    """A trust source over changing state (a registry database) that can fix that state for one
    verification: every question of the verification goes to the view it returns, which may then
    answer from memory (the registry checks once that nothing changed, then asks nothing more)."""

    def consistent_view(self) -> TrustSource:
        """The source as it is now, for the questions of one verification."""
        ...


class MemoTrustSource:
    """One verification's view of a trust source: each question about certificates and CRLs is asked
    once per time (the chain checks of one document ask the same ones repeatedly, and a registry
    answers each from its database). Seal status and vouching go straight through. Lives for one
    document only, so it never serves a stale answer across requests. A :class:`ConsistentSource`
    is asked for its view once, when the first question comes."""

    def __init__(self, base: TrustSource) -> None:
        self._source = base
        self._view: TrustSource | None = None
        self._anchors: dict[dt.datetime, Sequence[Certificate]] = {}
        self._intermediates: dict[dt.datetime, Sequence[Certificate]] = {}
        self._crls: dict[dt.datetime, Sequence[CertificateRevocationList]] = {}
        self._interop: dict[dt.datetime, Sequence[bytes]] = {}
        self._interop_crls: dict[dt.datetime, Sequence[bytes]] = {}

    @property
    def base(self) -> TrustSource:
        if self._view is None:
            source = self._source
            self._view = source.consistent_view() if provides(source, ConsistentSource) else source
        return self._view

    def trust_anchors(self, at: dt.datetime) -> Sequence[Certificate]:
        if at not in self._anchors:
            self._anchors[at] = tuple(self.base.trust_anchors(at))
        return self._anchors[at]

    def intermediates(self, at: dt.datetime) -> Sequence[Certificate]:
        if at not in self._intermediates:
            self._intermediates[at] = tuple(self.base.intermediates(at))
        return self._intermediates[at]

    def crls(self, at: dt.datetime) -> Sequence[CertificateRevocationList]:
        if at not in self._crls:
            self._crls[at] = tuple(self.base.crls(at))
        return self._crls[at]

    def seal_status(self, es_id: str, seal_sm3: bytes, at: dt.datetime) -> SealStatusFact | None:
        return self.base.seal_status(es_id, seal_sm3, at)

    def interop_anchors(self, at: dt.datetime) -> Sequence[bytes]:
        """The base's ECDSA/RSA anchors (``verify.interop.InteropAnchorSource``); none without them."""
        if at not in self._interop:
            ask = getattr(self.base, "interop_anchors", None)
            self._interop[at] = tuple(ask(at)) if callable(ask) else ()
        return self._interop[at]

    def interop_crls(self, at: dt.datetime) -> Sequence[bytes]:
        """The base's ECDSA/RSA CRLs (:class:`InteropCrlSource`); none without them."""
        if at not in self._interop_crls:
            self._interop_crls[at] = interop_crls_of(self.base, at)
        return self._interop_crls[at]

    def vouched_by(self, certificate: Certificate, anchor: Certificate) -> str | None:
        return vouched_by(self.base, certificate, anchor)


@dataclass(frozen=True)
class FileTrustSource:
    """A fixed set of anchors, intermediates and CRLs; no seal status."""

    anchors: tuple[Certificate, ...]
    intermediate_certificates: tuple[Certificate, ...] = ()
    revocation_lists: tuple[CertificateRevocationList, ...] = ()

    def trust_anchors(self, at: dt.datetime) -> Sequence[Certificate]:
        return self.anchors

    def intermediates(self, at: dt.datetime) -> Sequence[Certificate]:
        return self.intermediate_certificates

    def crls(self, at: dt.datetime) -> Sequence[CertificateRevocationList]:
        return self.revocation_lists

    def seal_status(self, es_id: str, seal_sm3: bytes, at: dt.datetime) -> SealStatusFact | None:
        return None

    @classmethod
    def from_paths(
        cls,
        anchors: Iterable[Path | str],
        *,
        crls: Iterable[Path | str] = (),
        intermediates: Iterable[Path | str] = (),
    ) -> FileTrustSource:
        """Load CA certificates (PEM bundles or DER) and CRLs (PEM or DER) from files or directories.

        In a directory, ``*.crl`` files are CRLs and ``*.pem``/``*.crt``/``*.cer``/``*.der`` files
        are certificates; other files are ignored. Every certificate must be a CA certificate.
        """
        anchor_certs: list[Certificate] = []
        crl_list: list[CertificateRevocationList] = []
        for path in _files(anchors):
            if path.suffix.lower() in _CRL_SUFFIXES:
                crl_list.append(_load(path, load_crl))
            else:
                anchor_certs.extend(_load(path, import_ca_certificates))
        for path in _files(crls):
            crl_list.append(_load(path, load_crl))
        middle: list[Certificate] = []
        for path in _files(intermediates):
            middle.extend(_load(path, import_ca_certificates))
        if not anchor_certs:
            raise ConfigurationError("未找到任何信任锚证书", "no trust anchor certificate found")
        return cls(tuple(_unique(anchor_certs)), tuple(_unique(middle)), tuple(crl_list))


def _files(paths: Iterable[Path | str]) -> list[Path]:
    out: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            out.extend(
                p
                for p in sorted(path.iterdir())
                if p.is_file() and p.suffix.lower() in _CERT_SUFFIXES | _CRL_SUFFIXES
            )
        elif path.is_file():
            out.append(path)
        else:
            raise ConfigurationError(f"信任文件不存在：{path}", f"trust file not found: {path}")
    return out


def _load(path: Path, loader: Callable[[bytes], T]) -> T:
    try:
        if path.stat().st_size > _MAX_TRUST_FILE:
            raise ConfigurationError(f"信任文件过大：{path}", f"trust file too large: {path}")
        return loader(path.read_bytes())
    except EsealError as exc:
        if isinstance(exc, ConfigurationError):
            raise
        raise ConfigurationError(
            f"无法读取信任文件 {path}：{exc.message_zh}", f"cannot read trust file {path}: {exc.message_en}"
        ) from exc
    except OSError as exc:
        raise ConfigurationError(
            f"无法读取信任文件 {path}：{exc}", f"cannot read trust file {path}: {exc}"
        ) from exc


def _unique(certs: Iterable[Certificate]) -> list[Certificate]:
    seen: set[bytes] = set()
    out: list[Certificate] = []
    for c in certs:
        if c.der not in seen:
            seen.add(c.der)
            out.append(c)
    return out
