"""Trust lists of seal registries, read and checked offline, and the trust they lend to a verifier.

A region publishes a signed trust list (ETSI TS 119 612 adapted to seals and SM2): its scheme
operator, a sequence number, issue time and next update, its CA roots, its seal makers, its CRLs,
its seal types, and every made seal with the history of its states. The format is documented in
``docs/trust-list-format.md``; this module is its reference reader and the one serialiser, so what
eseal writes and what it accepts cannot drift apart.

Pure (``gmpki``, ``core.errors`` and ``verify`` only): a verifier checks a peer's list with nothing
but the pinned fingerprint of that peer's registry certificate. :class:`PeerTrustSource` answers the
verifier's questions from verified lists and names the list that vouched; :class:`CompositeTrustSource`
puts the local registry first and the peers after it.

Every reader here rejects hostile input with a typed error (size, depth, unknown fields, unknown
critical extensions, bad base64, bad certificates) and never with a bare exception.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Final

from core.errors import (
    CertificateError,
    EsealError,
    InputTooLarge,
    InvalidSignature,
    MalformedData,
    NotUsable,
)
from gmpki import oids, sm2
from gmpki.crl import CertificateRevocationList, load_crl_der
from gmpki.signing import MessageSigner
from gmpki.x509 import Certificate, load_certificate_der

from .status_snapshot import (
    REGISTRY_STATES,
    TERMINAL_STATES,
    TIME_FORMAT,
    canonical_bytes,
    format_time,
    region_of_es_id,
    status_fact,
)
from .trust import SealStatusFact, TrustSource, VouchingSource, provides, vouched_by

TRUST_LIST_FORMAT: Final = "eseal-trust-list/1"
LIST_OF_LISTS_FORMAT: Final = "eseal-list-of-lists/1"
FULL: Final = "full"
DELTA: Final = "delta"
GRANTED: Final = "granted"
WITHDRAWN: Final = "withdrawn"

# Limits: a list larger than these is hostile or broken, never merely big.
MAX_TRUST_LIST_BYTES: Final = 64 * 1024 * 1024
MAX_SEALS: Final = 200_000
MAX_HISTORY: Final = 64
MAX_CERTIFICATES: Final = 32
MAX_CRLS: Final = 8
MAX_CERTIFICATE_BYTES: Final = 16 * 1024
MAX_CRL_BYTES: Final = 8 * 1024 * 1024
MAX_SEAL_TYPES: Final = 100
MAX_EXTENSIONS: Final = 16
MAX_EXTENSION_BYTES: Final = 16 * 1024
MAX_EXTENSION_DEPTH: Final = 6
MAX_PEERS: Final = 500
MAX_PINS: Final = 4
CLOCK_SKEW: Final = dt.timedelta(minutes=1)
# Extensions this reader understands. An unknown one marked critical makes the list unusable; an
# unknown non-critical one is kept and ignored (as X.509 does).
KNOWN_EXTENSIONS: Final = frozenset({"publication_url"})
DEFAULT_PURPOSE: Final = "any"

_SM3_HEX = re.compile(r"[0-9a-f]{64}")
_REGION = re.compile(r"\d{6}")
_TYPE_CODE = re.compile(r"\d{2}")
_EXT_ID = re.compile(r"[a-z][a-z0-9_.:-]{0,63}")
_ENVELOPE_KEYS = frozenset({"payload", "signature", "certificate", "chain"})
_PAYLOAD_KEYS = frozenset(
    {
        "format",
        "type",
        "since",
        "scheme_operator",
        "sequence",
        "issued_at",
        "next_update",
        "ca_roots",
        "seal_makers",
        "crls",
        "seal_types",
        "seals",
        "next_signer",
        "extensions",
    }
)
_OPERATOR_KEYS = frozenset({"name", "region_code"})
_ROOT_KEYS = frozenset({"certificate", "sm3", "status", "status_since"})
_MAKER_KEYS = frozenset({"certificate", "sm3", "status", "status_since", "valid_from", "valid_to"})
_TYPE_KEYS = frozenset({"code", "key", "name_zh", "name_en"})
_SEAL_KEYS = frozenset({"es_id", "seal_sm3", "seal_type", "valid_start", "valid_end", "history"})
_CHANGE_KEYS = frozenset({"state", "at"})
_NEXT_SIGNER_KEYS = frozenset({"certificate", "sm3"})
_EXTENSION_KEYS = frozenset({"id", "critical", "value"})
_LOTL_KEYS = frozenset({"format", "scheme_operator", "sequence", "issued_at", "next_update", "peers"})
_LOTL_PEER_KEYS = frozenset({"name", "region_code", "url", "pins"})


# --- errors ------------------------------------------------------------------------------------------
def _bad(zh: str, en: str) -> MalformedData:
    return MalformedData(f"信任列表格式错误：{zh}", f"Malformed trust list: {en}")


# --- the model ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StateChange:
    state: str  # a registry state name (issued, suspended, cancelled, ...)
    at: dt.datetime


@dataclass(frozen=True)
class SealRecord:
    """One made seal as a trust list lists it: identity, validity and every state it went through."""

    es_id: str
    seal_sm3: str  # lowercase hex SM3 of the seal file (.esl DER)
    seal_type: str  # the region's two-digit seal type code
    valid_start: dt.datetime
    valid_end: dt.datetime
    history: tuple[StateChange, ...]  # in time order, never empty

    def state_at(self, at: dt.datetime) -> StateChange | None:
        """The state the seal was in at ``at`` (None: it did not exist yet)."""
        found: StateChange | None = None
        for change in self.history:
            if change.at > at:
                break
            found = change
        return found

    @property
    def current(self) -> StateChange:
        return self.history[-1]


@dataclass(frozen=True)
class ListedCertificate:
    """A CA root or a seal maker of the scheme, with its status in the scheme."""

    certificate: Certificate = field(repr=False)
    status: str  # granted | withdrawn
    status_since: dt.datetime
    valid_from: dt.datetime | None = None  # seal makers only: the period the scheme vouches for
    valid_to: dt.datetime | None = None

    @property
    def sm3(self) -> str:
        return self.certificate.fingerprint_sm3.hex()

    def vouched_at(self, at: dt.datetime) -> bool:
        if self.status == WITHDRAWN and at >= self.status_since:
            return False
        if self.valid_from is not None and at < self.valid_from:
            return False
        return not (self.valid_to is not None and at > self.valid_to)


@dataclass(frozen=True)
class SealTypeEntry:
    code: str
    key: str
    name_zh: str
    name_en: str


@dataclass(frozen=True)
class Extension:
    id: str
    critical: bool
    value: Any


@dataclass(frozen=True)
class TrustList:
    """A trust list's content (verified, or a stored state built from verified lists)."""

    kind: str  # full | delta
    since: int | None  # delta: the sequence this delta follows
    operator_name: str
    region_code: str
    sequence: int
    issued_at: dt.datetime
    next_update: dt.datetime
    ca_roots: tuple[ListedCertificate, ...]
    seal_makers: tuple[ListedCertificate, ...]
    crls: tuple[CertificateRevocationList, ...] = field(repr=False)
    seal_types: tuple[SealTypeEntry, ...]
    seals: tuple[SealRecord, ...] = field(repr=False)
    next_signer: Certificate | None = field(repr=False)
    extensions: tuple[Extension, ...] = ()
    signer: Certificate | None = field(default=None, repr=False, compare=False)

    @cached_property
    def _by_sm3(self) -> dict[str, SealRecord]:
        return {s.seal_sm3: s for s in self.seals}

    @cached_property
    def _by_es_id(self) -> dict[str, SealRecord]:
        return {s.es_id: s for s in self.seals}

    @cached_property
    def _regions(self) -> frozenset[str]:
        found = {r for r in (region_of_es_id(s.es_id) for s in self.seals) if r is not None}
        return frozenset({self.region_code, *found})

    def by_sm3(self, seal_sm3: str) -> SealRecord | None:
        return self._by_sm3.get(seal_sm3.lower())

    def by_es_id(self, es_id: str) -> SealRecord | None:
        return self._by_es_id.get(es_id)

    def speaks_for(self, es_id: str) -> bool:
        """Whether an esID is of a region this list covers (its own or one its seals carry)."""
        region = region_of_es_id(es_id)
        return self.by_es_id(es_id) is not None or (region is not None and region in self._regions)

    def seal_type(self, code: str) -> SealTypeEntry | None:
        return next((t for t in self.seal_types if t.code == code), None)

    @property
    def label(self) -> str:
        """Who vouches, for reports: operator, region, sequence and issue time."""
        return (
            f"{self.operator_name}（{self.region_code}）信任列表 trust list "
            f"#{self.sequence} {format_time(self.issued_at)}"
        )

    def is_stale(self, at: dt.datetime, grace: dt.timedelta = dt.timedelta(0)) -> bool:
        return at > self.next_update + grace

    def to_payload(self) -> dict[str, Any]:
        """The payload document (serialise with :func:`canonical_bytes`)."""
        return {
            "format": TRUST_LIST_FORMAT,
            "type": self.kind,
            "since": self.since,
            "scheme_operator": {"name": self.operator_name, "region_code": self.region_code},
            "sequence": self.sequence,
            "issued_at": format_time(self.issued_at),
            "next_update": format_time(self.next_update),
            "ca_roots": [_listed_json(c, maker=False) for c in self.ca_roots],
            "seal_makers": [_listed_json(c, maker=True) for c in self.seal_makers],
            "crls": [_b64e(c.der) for c in self.crls],
            "seal_types": [
                {"code": t.code, "key": t.key, "name_zh": t.name_zh, "name_en": t.name_en}
                for t in self.seal_types
            ],
            "seals": [
                {
                    "es_id": s.es_id,
                    "seal_sm3": s.seal_sm3,
                    "seal_type": s.seal_type,
                    "valid_start": format_time(s.valid_start),
                    "valid_end": format_time(s.valid_end),
                    "history": [{"state": h.state, "at": format_time(h.at)} for h in s.history],
                }
                for s in self.seals
            ],
            "next_signer": (
                None
                if self.next_signer is None
                else {
                    "certificate": _b64e(self.next_signer.der),
                    "sm3": self.next_signer.fingerprint_sm3.hex(),
                }
            ),
            "extensions": [{"id": e.id, "critical": e.critical, "value": e.value} for e in self.extensions],
        }

    def payload_bytes(self) -> bytes:
        return canonical_bytes(self.to_payload())

    def merge(self, delta: TrustList) -> TrustList:
        """This full list brought forward by ``delta``: the delta's header, certificates, CRLs and
        seal types; its seals replace or add to ours (a delta carries each changed seal whole)."""
        if delta.kind != DELTA or self.kind != FULL:
            raise _bad("只能将增量列表合并到完整列表", "only a delta can be merged into a full list")
        if delta.region_code != self.region_code:
            raise _bad("增量列表属于另一地区", "the delta belongs to another region")
        if delta.since is None or delta.since > self.sequence or delta.sequence < self.sequence:
            raise _bad(
                f"增量列表（自 {delta.since} 至 {delta.sequence}）不接续序号 {self.sequence}",
                f"the delta (since {delta.since} to {delta.sequence}) "
                f"does not follow sequence {self.sequence}",
            )
        changed = {s.seal_sm3: s for s in delta.seals}
        seals = [changed.pop(s.seal_sm3, s) for s in self.seals]
        seals.extend(changed.values())
        if len(seals) > MAX_SEALS:
            raise _too_large("seals", MAX_SEALS)
        seals.sort(key=lambda s: (s.es_id, s.seal_sm3))
        return replace(delta, kind=FULL, since=None, seals=tuple(seals))


def _listed_json(c: ListedCertificate, *, maker: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "certificate": _b64e(c.certificate.der),
        "sm3": c.sm3,
        "status": c.status,
        "status_since": format_time(c.status_since),
    }
    if maker:
        assert c.valid_from is not None and c.valid_to is not None
        out["valid_from"] = format_time(c.valid_from)
        out["valid_to"] = format_time(c.valid_to)
    return out


def _b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- reading: primitives --------------------------------------------------------------------------
def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _bad(f"重复的字段 {key[:40]!r}", f"duplicate member {key[:40]!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise _bad("JSON 中不允许 NaN 或 Infinity", "NaN and Infinity are not JSON")


def load_json(data: bytes, what_zh: str, what_en: str) -> Any:
    """Strict JSON: UTF-8, no duplicate members, no NaN; depth bounded by the parser's recursion
    limit and reported as malformed, never as RecursionError."""
    try:
        return json.loads(
            bytes(data).decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants
        )
    except MalformedData:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError, MemoryError):
        raise _bad(f"{what_zh}不是有效的 JSON", f"{what_en} is not valid JSON") from None


def _object(value: object, keys: frozenset[str], what_zh: str, what_en: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"{what_zh}不是对象", f"{what_en} is not an object")
    if set(value) != keys:
        unknown = sorted(set(value) - keys)[:5]
        missing = sorted(keys - set(value))[:5]
        raise _bad(
            f"{what_zh}字段不符（未知：{unknown}，缺少：{missing}）",
            f"{what_en} does not have the expected members (unknown: {unknown}, missing: {missing})",
        )
    return value


def _array(value: object, limit: int, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(f"{what} 不是数组", f"{what} is not an array")
    if len(value) > limit:
        raise _too_large(what, limit)
    return value


def _too_large(what: str, limit: int) -> InputTooLarge:
    return InputTooLarge(
        f"信任列表的 {what} 条目过多（上限 {limit}）",
        f"Trust list has too many {what} entries (limit {limit})",
    )


def _str(value: object, what: str, limit: int = 200) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise _bad(f"{what} 无效", f"invalid {what}")
    if any(not c.isprintable() for c in value):
        raise _bad(f"{what} 含控制字符", f"{what} contains control characters")
    return value


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise _bad(f"{what} 不是非负整数", f"{what} is not a non-negative integer")
    return value


def _time(value: object, what: str) -> dt.datetime:
    text = _str(value, what, 32)
    try:
        return dt.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        raise _bad(f"{what} 时间格式无效", f"{what} is not a time of the form YYYY-MM-DDTHH:MM:SSZ") from None


def _sm3(value: object, what: str) -> str:
    text = _str(value, what, 64)
    if not _SM3_HEX.fullmatch(text):
        raise _bad(
            f"{what} 不是 SM3 摘要（64 位小写十六进制）", f"{what} is not an SM3 digest (64 lowercase hex)"
        )
    return text


def _b64(value: object, what: str, limit: int) -> bytes:
    if not isinstance(value, str):
        raise _bad(f"{what} 不是字符串", f"{what} is not a string")
    if len(value) > (limit * 4) // 3 + 4:
        raise InputTooLarge(f"信任列表的 {what} 过大", f"Trust list {what} too large (limit {limit} bytes)")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"{what} 不是有效的 Base64", f"{what} is not valid base64") from None


def _certificate(value: object, what: str) -> Certificate:
    der = _b64(value, what, MAX_CERTIFICATE_BYTES)
    try:
        return load_certificate_der(der)
    except EsealError as exc:
        raise _bad(
            f"{what} 证书无法解析", f"{what} is not a readable certificate ({exc.message_en})"
        ) from None


def _json_depth(value: object, limit: int) -> int:
    if limit < 0:
        raise _bad("扩展值嵌套过深", "an extension value is nested too deeply")
    if isinstance(value, float):  # canonical form has integers only (floats print differently)
        raise _bad("扩展值含有浮点数", "an extension value holds a floating-point number")
    if isinstance(value, dict):
        return 1 + max((_json_depth(v, limit - 1) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_json_depth(v, limit - 1) for v in value), default=0)
    return 0


# --- reading: the envelope ------------------------------------------------------------------------
@dataclass(frozen=True)
class Envelope:
    payload: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    signer: Certificate
    chain: tuple[Certificate, ...]


def parse_envelope(data: bytes, *, max_bytes: int = MAX_TRUST_LIST_BYTES) -> Envelope:
    """The envelope's parts; nothing verified yet."""
    if len(data) > max_bytes:
        raise InputTooLarge(
            f"信任列表过大（上限 {max_bytes} 字节）", f"Trust list too large (limit {max_bytes} bytes)"
        )
    doc = _object(load_json(data, "信封", "the envelope"), _ENVELOPE_KEYS, "信封", "the envelope")
    chain = _array(doc["chain"], MAX_CERTIFICATES, "chain")
    return Envelope(
        payload=_b64(doc["payload"], "payload", max_bytes),
        signature=_b64(doc["signature"], "signature", 256),
        signer=_certificate(doc["certificate"], "certificate"),
        chain=tuple(_certificate(c, "chain") for c in chain),
    )


def make_envelope(
    payload: bytes, signature: bytes, signer: Certificate, chain: Sequence[Certificate]
) -> bytes:
    return canonical_bytes(
        {
            "payload": _b64e(payload),
            "signature": _b64e(signature),
            "certificate": _b64e(signer.der),
            "chain": [_b64e(c.der) for c in chain],
        }
    )


def check_signature(envelope: Envelope, *, at: dt.datetime, what_zh: str, what_en: str) -> None:
    """The SM2 signature over the payload bytes as received, and the signer's fitness at ``at``:
    in date, and marked as a status signer (EKU id-kp-OCSPSigning, strictly present)."""
    try:
        valid = sm2.verify(
            envelope.signer.public_key, envelope.payload, sm2.normalize_signature(envelope.signature)
        )
    except EsealError:
        valid = False
    if not valid:
        raise InvalidSignature(
            f"{what_zh}签名无效（内容被篡改或签名损坏）",
            f"The {what_en} signature does not verify (content altered or signature damaged)",
        )
    cert = envelope.signer
    if not cert.is_valid_at(at):
        raise CertificateError(
            f"{what_zh}签名证书在 {format_time(at)} 不在有效期内：{cert.describe()}",
            f"The {what_en} signer certificate is not valid at {format_time(at)}: {cert.describe()}",
        )
    if not (cert.extended_key_usage or set()) & {"ocsp_signing", oids.EKU_OCSP_SIGNING}:
        raise CertificateError(
            f"{what_zh}签名证书不是状态签名证书（缺少 OCSPSigning 扩展密钥用途）：{cert.describe()}",
            f"The {what_en} signer lacks the status-signing (OCSPSigning) EKU: {cert.describe()}",
        )


def check_pin(envelope: Envelope, pinned: Collection[bytes], what_zh: str, what_en: str) -> None:
    fp = envelope.signer.fingerprint_sm3
    if fp not in pinned:
        raise CertificateError(
            f"{what_zh}由未固定的密钥签名（证书 SM3 {fp.hex()}），不予接受",
            f"The {what_en} is signed by an unpinned key (certificate SM3 {fp.hex()}); refused",
            signer_sm3=fp.hex(),
        )


# --- reading: the payload -------------------------------------------------------------------------
def _listed(value: object, *, maker: bool) -> ListedCertificate:
    keys = _MAKER_KEYS if maker else _ROOT_KEYS
    what_zh, what_en = ("制章者条目", "a seal maker entry") if maker else ("根证书条目", "a CA root entry")
    doc = _object(value, keys, what_zh, what_en)
    cert = _certificate(doc["certificate"], "certificate")
    if _sm3(doc["sm3"], "sm3") != cert.fingerprint_sm3.hex():
        raise _bad(f"{what_zh}的 sm3 与证书不符", f"{what_en} has an sm3 that does not match its certificate")
    status = _str(doc["status"], "status", 16)
    if status not in (GRANTED, WITHDRAWN):
        raise _bad("未知的服务状态", f"unknown service status {status[:16]!r}")
    if not maker and not cert.is_ca:
        raise _bad("根证书条目不是 CA 证书", "a CA root entry is not a CA certificate")
    return ListedCertificate(
        certificate=cert,
        status=status,
        status_since=_time(doc["status_since"], "status_since"),
        valid_from=_time(doc["valid_from"], "valid_from") if maker else None,
        valid_to=_time(doc["valid_to"], "valid_to") if maker else None,
    )


def _seal(value: object) -> SealRecord:
    doc = _object(value, _SEAL_KEYS, "印章条目", "a seal entry")
    history_raw = _array(doc["history"], MAX_HISTORY, "history")
    if not history_raw:
        raise _bad("印章历史为空", "a seal has an empty history")
    history: list[StateChange] = []
    for item in history_raw:
        change = _object(item, _CHANGE_KEYS, "状态变更", "a state change")
        state = _str(change["state"], "state", 16)
        if state not in REGISTRY_STATES:
            raise _bad("未知的印章状态", f"unknown seal state {state[:16]!r}")
        at = _time(change["at"], "at")
        if history and at < history[-1].at:
            raise _bad("印章历史未按时间排序", "a seal history is not in time order")
        history.append(StateChange(state, at))
    code = _str(doc["seal_type"], "seal_type", 2)
    if not _TYPE_CODE.fullmatch(code):
        raise _bad("seal_type 不是两位数字", "seal_type is not two digits")
    return SealRecord(
        es_id=_str(doc["es_id"], "es_id", 64),
        seal_sm3=_sm3(doc["seal_sm3"], "seal_sm3"),
        seal_type=code,
        valid_start=_time(doc["valid_start"], "valid_start"),
        valid_end=_time(doc["valid_end"], "valid_end"),
        history=tuple(history),
    )


def _seal_type(value: object) -> SealTypeEntry:
    doc = _object(value, _TYPE_KEYS, "印章类型条目", "a seal type entry")
    code = _str(doc["code"], "code", 2)
    if not _TYPE_CODE.fullmatch(code):
        raise _bad("印章类型代码不是两位数字", "a seal type code is not two digits")
    return SealTypeEntry(
        code, _str(doc["key"], "key", 64), _str(doc["name_zh"], "name_zh"), _str(doc["name_en"], "name_en")
    )


def _extension(value: object) -> Extension:
    doc = _object(value, _EXTENSION_KEYS, "扩展", "an extension")
    ext_id = _str(doc["id"], "extension id", 64)
    if not _EXT_ID.fullmatch(ext_id):
        raise _bad("扩展标识无效", "invalid extension id")
    critical = doc["critical"]
    if not isinstance(critical, bool):
        raise _bad("扩展的 critical 不是布尔值", "an extension's critical member is not a boolean")
    _json_depth(doc["value"], MAX_EXTENSION_DEPTH)
    if len(canonical_bytes(doc["value"])) > MAX_EXTENSION_BYTES:
        raise InputTooLarge(
            "信任列表扩展值过大", f"Trust list extension value too large (limit {MAX_EXTENSION_BYTES} bytes)"
        )
    if critical and ext_id not in KNOWN_EXTENSIONS:
        raise MalformedData(
            f"信任列表含有无法识别的关键扩展 {ext_id!r}，不予接受",
            f"The trust list carries an unknown critical extension {ext_id!r}; refused",
        )
    if ext_id == "publication_url":
        _str(doc["value"], "publication_url", 2000)
    return Extension(ext_id, critical, doc["value"])


def parse_payload(payload: bytes, *, signer: Certificate | None = None) -> TrustList:
    """The trust list in ``payload`` (canonical JSON), checked for form; signature not checked."""
    doc = _object(load_json(payload, "列表内容", "the payload"), _PAYLOAD_KEYS, "列表内容", "the payload")
    # Signed bytes must be the one canonical form, so no two readers can see different documents.
    if canonical_bytes(doc) != payload:
        raise _bad("内容不是规范 JSON 形式", "the payload is not in canonical JSON form")
    if doc["format"] != TRUST_LIST_FORMAT:
        raise _bad(f"未知格式 {str(doc['format'])[:40]!r}", f"unknown format {str(doc['format'])[:40]!r}")
    kind = doc["type"]
    if kind not in (FULL, DELTA):
        raise _bad("type 须为 full 或 delta", "type must be full or delta")
    since = None if kind == FULL and doc["since"] is None else _int(doc["since"], "since")
    if kind == FULL and since is not None:
        raise _bad("完整列表不应有 since", "a full list has no since")
    operator = _object(doc["scheme_operator"], _OPERATOR_KEYS, "scheme_operator", "scheme_operator")
    region = _str(operator["region_code"], "region_code", 6)
    if not _REGION.fullmatch(region):
        raise _bad("region_code 不是六位数字", "region_code is not six digits")
    sequence = _int(doc["sequence"], "sequence")
    if since is not None and since > sequence:
        raise _bad("since 大于 sequence", "since is greater than sequence")
    crls: list[CertificateRevocationList] = []
    for item in _array(doc["crls"], MAX_CRLS, "crls"):
        der = _b64(item, "crl", MAX_CRL_BYTES)
        try:
            crls.append(load_crl_der(der, max_size=MAX_CRL_BYTES))
        except EsealError as exc:
            raise _bad("CRL 无法解析", f"a CRL cannot be read ({exc.message_en})") from None
    next_signer: Certificate | None = None
    if doc["next_signer"] is not None:
        ns = _object(doc["next_signer"], _NEXT_SIGNER_KEYS, "next_signer", "next_signer")
        next_signer = _certificate(ns["certificate"], "next_signer")
        if _sm3(ns["sm3"], "next_signer.sm3") != next_signer.fingerprint_sm3.hex():
            raise _bad("next_signer 的 sm3 与证书不符", "next_signer.sm3 does not match its certificate")
    seals = tuple(_seal(s) for s in _array(doc["seals"], MAX_SEALS, "seals"))
    if len({s.seal_sm3 for s in seals}) != len(seals) or len({s.es_id for s in seals}) != len(seals):
        raise _bad("印章条目重复", "a seal is listed twice")
    trust_list = TrustList(
        kind=kind,
        since=since,
        operator_name=_str(operator["name"], "scheme_operator.name"),
        region_code=region,
        sequence=sequence,
        issued_at=_time(doc["issued_at"], "issued_at"),
        next_update=_time(doc["next_update"], "next_update"),
        ca_roots=tuple(
            _listed(c, maker=False) for c in _array(doc["ca_roots"], MAX_CERTIFICATES, "ca_roots")
        ),
        seal_makers=tuple(
            _listed(c, maker=True) for c in _array(doc["seal_makers"], MAX_CERTIFICATES, "seal_makers")
        ),
        crls=tuple(crls),
        seal_types=tuple(_seal_type(t) for t in _array(doc["seal_types"], MAX_SEAL_TYPES, "seal_types")),
        seals=seals,
        next_signer=next_signer,
        extensions=tuple(_extension(e) for e in _array(doc["extensions"], MAX_EXTENSIONS, "extensions")),
        signer=signer,
    )
    if trust_list.next_update < trust_list.issued_at:
        raise _bad("next_update 早于 issued_at", "next_update is before issued_at")
    return trust_list


def verify_trust_list(
    data: bytes,
    *,
    pinned: Collection[bytes] | None,
    at: dt.datetime | None = None,
    max_bytes: int = MAX_TRUST_LIST_BYTES,
) -> TrustList:
    """Check a trust list envelope and return its content.

    ``pinned`` holds the SM3 fingerprints of the registry certificates trusted to sign this list
    (the pin given out of band, and an announced successor); ``None`` skips the pin check, which
    only inspection of an unknown file may do. Also checked: the SM2 signature over the payload
    bytes as received, the signer in date at ``at`` (default now) with EKU id-kp-OCSPSigning, the
    canonical form and every field. Freshness and sequence are the caller's (they need history).

    Raises :class:`CertificateError` (unpinned or unfit signer), :class:`InvalidSignature`,
    :class:`MalformedData` or :class:`InputTooLarge`.
    """
    at = dt.datetime.now(dt.UTC) if at is None else at
    envelope = parse_envelope(data, max_bytes=max_bytes)
    if pinned is not None:
        check_pin(envelope, pinned, "信任列表", "trust list")
    check_signature(envelope, at=at, what_zh="信任列表", what_en="trust list")
    trust_list = parse_payload(envelope.payload, signer=envelope.signer)
    if trust_list.issued_at > at + CLOCK_SKEW:
        raise NotUsable(
            f"信任列表的签发时间 {format_time(trust_list.issued_at)} 在未来",
            f"The trust list is issued in the future ({format_time(trust_list.issued_at)})",
        )
    return trust_list


def sign_trust_list(
    trust_list: TrustList, signer: MessageSigner, certificate: Certificate, chain: Sequence[Certificate]
) -> bytes:
    """The envelope of ``trust_list`` signed by ``signer`` (whose key is ``certificate``'s)."""
    payload = trust_list.payload_bytes()
    return make_envelope(payload, signer.sign(payload), certificate, chain)


# --- the list of lists ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PeerPointer:
    """One region named by a list of lists: where its trust list is and which keys may sign it."""

    name: str
    region_code: str
    url: str
    pins: tuple[str, ...]  # SM3 hex of registry certificates


@dataclass(frozen=True)
class ListOfLists:
    operator_name: str
    region_code: str
    sequence: int
    issued_at: dt.datetime
    next_update: dt.datetime
    peers: tuple[PeerPointer, ...]
    signer: Certificate | None = field(default=None, repr=False)

    def to_payload(self) -> dict[str, Any]:
        return {
            "format": LIST_OF_LISTS_FORMAT,
            "scheme_operator": {"name": self.operator_name, "region_code": self.region_code},
            "sequence": self.sequence,
            "issued_at": format_time(self.issued_at),
            "next_update": format_time(self.next_update),
            "peers": [
                {"name": p.name, "region_code": p.region_code, "url": p.url, "pins": list(p.pins)}
                for p in self.peers
            ],
        }


def _peer_pointer(value: object) -> PeerPointer:
    doc = _object(value, _LOTL_PEER_KEYS, "地区条目", "a peer entry")
    region = _str(doc["region_code"], "region_code", 6)
    if not _REGION.fullmatch(region):
        raise _bad("region_code 不是六位数字", "region_code is not six digits")
    url = _str(doc["url"], "url", 2000)
    if not url.startswith(("https://", "http://")):
        raise _bad("url 须为 http(s) 地址", "url must be an http(s) URL")
    pins = tuple(_sm3(p, "pins") for p in _array(doc["pins"], MAX_PINS, "pins"))
    if not pins:
        raise _bad("地区条目没有固定指纹", "a peer entry has no pin")
    return PeerPointer(_str(doc["name"], "name"), region, url, pins)


def parse_list_of_lists_payload(payload: bytes, *, signer: Certificate | None = None) -> ListOfLists:
    doc = _object(
        load_json(payload, "列表的列表", "the list of lists"), _LOTL_KEYS, "列表的列表", "the list of lists"
    )
    if doc["format"] != LIST_OF_LISTS_FORMAT:
        raise _bad(f"未知格式 {str(doc['format'])[:40]!r}", f"unknown format {str(doc['format'])[:40]!r}")
    operator = _object(doc["scheme_operator"], _OPERATOR_KEYS, "scheme_operator", "scheme_operator")
    peers = tuple(_peer_pointer(p) for p in _array(doc["peers"], MAX_PEERS, "peers"))
    if len({p.region_code for p in peers}) != len(peers):
        raise _bad("同一地区列出两次", "a region is listed twice")
    lotl = ListOfLists(
        operator_name=_str(operator["name"], "scheme_operator.name"),
        region_code=_str(operator["region_code"], "region_code", 6),
        sequence=_int(doc["sequence"], "sequence"),
        issued_at=_time(doc["issued_at"], "issued_at"),
        next_update=_time(doc["next_update"], "next_update"),
        peers=peers,
        signer=signer,
    )
    if lotl.next_update < lotl.issued_at:
        raise _bad("next_update 早于 issued_at", "next_update is before issued_at")
    return lotl


def verify_list_of_lists(
    data: bytes,
    *,
    pinned: Collection[bytes] | None,
    at: dt.datetime | None = None,
    allow_unsigned: bool = False,
) -> ListOfLists:
    """A list of lists: a signed envelope (checked like a trust list, against ``pinned``; and it must
    not be past its next update), or — with ``allow_unsigned``, for a file the administrator hands
    over directly — the bare payload."""
    at = dt.datetime.now(dt.UTC) if at is None else at
    doc = load_json(data, "列表的列表", "the list of lists")
    if isinstance(doc, dict) and "format" in doc:
        if not allow_unsigned:
            raise CertificateError(
                "未签名的列表的列表只能由管理员以本地文件导入",
                "An unsigned list of lists is accepted only as a local file",
            )
        return parse_list_of_lists_payload(bytes(data))
    envelope = parse_envelope(data)
    if pinned is not None:
        check_pin(envelope, pinned, "列表的列表", "list of lists")
    check_signature(envelope, at=at, what_zh="列表的列表", what_en="list of lists")
    lotl = parse_list_of_lists_payload(envelope.payload, signer=envelope.signer)
    if at > lotl.next_update:
        raise NotUsable(
            f"列表的列表已过期（下次更新时间 {format_time(lotl.next_update)}）",
            f"The list of lists is stale (next update was {format_time(lotl.next_update)})",
        )
    return lotl


# --- trust from peers' lists ----------------------------------------------------------------------
@dataclass(frozen=True)
class PeerView:
    """A peer's verified list as the verifier uses it. ``accepted_types`` maps the peer's seal type
    codes to the purposes they are accepted for (``None``: every type, every purpose); ``local_types``
    maps them to this region's equivalent code, for the report."""

    trust_list: TrustList
    grace: dt.timedelta = dt.timedelta(0)
    accepted_types: Mapping[str, frozenset[str]] | None = None
    local_types: Mapping[str, str] = field(default_factory=dict)


class PeerTrustSource:
    """Anchors, CRLs and seal status from peers' verified trust lists; names the list that vouched.

    Staleness: a list answers definitively for any time up to its issue time (it carries the whole
    history), and for later times until ``next_update`` plus the peer's grace. Past that, a
    non-final state is not trusted (:class:`NotUsable`: the verdict becomes INDETERMINATE); a
    cancellation is final, so a stale list still proves it.
    """

    def __init__(self, peers: Sequence[PeerView], *, purpose: str | None = None) -> None:
        self.peers = tuple(peers)
        self.purpose = purpose

    def trust_anchors(self, at: dt.datetime) -> Sequence[Certificate]:
        return [c.certificate for p in self.peers for c in p.trust_list.ca_roots if c.vouched_at(at)]

    def intermediates(self, at: dt.datetime) -> Sequence[Certificate]:
        return ()

    def crls(self, at: dt.datetime) -> Sequence[CertificateRevocationList]:
        return [crl for p in self.peers for crl in p.trust_list.crls]

    def seal_status(self, es_id: str, seal_sm3: bytes, at: dt.datetime) -> SealStatusFact | None:
        key = seal_sm3.hex()
        listed = [(p, r) for p in self.peers if (r := p.trust_list.by_sm3(key)) is not None]
        if not listed:
            speaking = [p for p in self.peers if p.trust_list.speaks_for(es_id)]
            if not speaking:
                return None  # no peer's list covers this seal
            view = speaking[0]
            _not_stale(view, at)  # a seal made after the list is missing from it
            return _vouched(status_fact("unknown", None, view.trust_list.label), view)
        region = region_of_es_id(es_id)
        # The list of the seal's own region decides; else the most severe answer (fail safe).
        own = [(p, r) for p, r in listed if p.trust_list.region_code == region]
        candidates = own or listed
        answers = [self._answer(p, r, es_id, at) for p, r in candidates]
        return max(answers, key=_severity)

    def _answer(self, view: PeerView, record: SealRecord, es_id: str, at: dt.datetime) -> SealStatusFact:
        tl = view.trust_list
        if record.es_id != es_id:
            return _vouched(status_fact("unknown", None, tl.label), view)
        self._check_type(view, record)
        change = record.state_at(at)
        if change is None:
            return _vouched(status_fact("unknown", None, tl.label), view)
        if at > tl.issued_at and change.state not in TERMINAL_STATES:
            _not_stale(view, at)
        return _vouched(status_fact(change.state, change.at, self._source(view, record)), view)

    def _check_type(self, view: PeerView, record: SealRecord) -> None:
        """Refuse a seal type this region does not accept from the peer (for the purpose asked)."""
        if view.accepted_types is None:
            return
        purposes = view.accepted_types.get(record.seal_type)
        if purposes is not None and (
            self.purpose is None or self.purpose in purposes or DEFAULT_PURPOSE in purposes
        ):
            return
        tl = view.trust_list
        kind = tl.seal_type(record.seal_type)
        name = f"{kind.name_zh} {kind.name_en}" if kind else "?"
        purpose = self.purpose or DEFAULT_PURPOSE
        raise NotUsable(
            f"本地区不承认{tl.operator_name}（{tl.region_code}）的印章类型 {record.seal_type}（{name}）"
            f"用于 {purpose}",
            f"seal type {record.seal_type} ({name}) of region {tl.region_code} is not accepted here "
            f"for purpose {purpose!r}",
        )

    def _source(self, view: PeerView, record: SealRecord) -> str:
        label = view.trust_list.label
        local = view.local_types.get(record.seal_type)
        if local is None:
            return label
        return f"{label}；印章类型 seal type {record.seal_type} → 本地 local {local}"

    def vouched_by(self, certificate: Certificate, anchor: Certificate) -> str | None:
        """The list that lists ``certificate`` as a seal maker, else the one listing ``anchor``."""
        fp = certificate.fingerprint_sm3
        for view in self.peers:
            if any(m.certificate.fingerprint_sm3 == fp for m in view.trust_list.seal_makers):
                return f"{view.trust_list.label}（列明的制章者 listed seal maker）"
        afp = anchor.fingerprint_sm3
        for view in self.peers:
            if any(r.certificate.fingerprint_sm3 == afp for r in view.trust_list.ca_roots):
                return view.trust_list.label
        return None


def _vouched(fact: SealStatusFact, view: PeerView) -> SealStatusFact:
    return replace(fact, vouched_by=view.trust_list.label)


def _not_stale(view: PeerView, at: dt.datetime) -> None:
    tl = view.trust_list
    if tl.is_stale(at, view.grace):
        raise NotUsable(
            f"{tl.label} 已过期（下次更新时间 {format_time(tl.next_update)}），不能确认当前状态",
            f"{tl.label} is stale (next update was {format_time(tl.next_update)}); the current state "
            "cannot be confirmed",
        )


_SEVERITY_ORDER: Final = {"cancelled": 3, "suspended": 2, "unknown": 1, "active": 0}


def _severity(fact: SealStatusFact) -> int:
    return _SEVERITY_ORDER.get(fact.state.value, 0)


class CompositeTrustSource:
    """Several trust sources as one: anchors, intermediates and CRLs of all; seal status from the
    first source that tracks the seal (the local registry first, then peers)."""

    def __init__(self, *sources: TrustSource) -> None:
        self.sources = sources

    def trust_anchors(self, at: dt.datetime) -> Sequence[Certificate]:
        return _unique(c for s in self.sources for c in s.trust_anchors(at))

    def intermediates(self, at: dt.datetime) -> Sequence[Certificate]:
        return _unique(c for s in self.sources for c in s.intermediates(at))

    def crls(self, at: dt.datetime) -> Sequence[CertificateRevocationList]:
        return [crl for s in self.sources for crl in s.crls(at)]

    def seal_status(self, es_id: str, seal_sm3: bytes, at: dt.datetime) -> SealStatusFact | None:
        for source in self.sources:
            fact = source.seal_status(es_id, seal_sm3, at)
            if fact is not None:
                return fact
        return None

    def vouched_by(self, certificate: Certificate, anchor: Certificate) -> str | None:
        for source in self.sources:
            if provides(source, VouchingSource):
                found = vouched_by(source, certificate, anchor)
                if found is not None:
                    return found
        return None


def _unique(certs: Iterable[Certificate]) -> list[Certificate]:
    seen: set[bytes] = set()
    out: list[Certificate] = []
    for c in certs:
        if c.der not in seen:
            seen.add(c.der)
            out.append(c)
    return out
