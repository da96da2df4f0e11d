"""The signed seal-status snapshot a seal registry publishes, read and checked offline.

Pure (``gmpki`` and ``core.errors`` only): an offline verifier checks a snapshot file with nothing but
the region's root certificate. The registry builds the snapshot (``seal_registry.status``) and
imports the reading side from here.

Envelope (JSON)::

    {"payload": base64(canonical JSON), "signature": base64(DER SM2 signature over the payload bytes),
     "certificate": base64(DER of the region service certificate)}

The payload is ``{"format": "eseal-seal-status/1", "region_code", "sequence", "issued_at",
"next_update", "seals": [{"es_id", "seal_sm3", "state", "changed_at", "valid_start", "valid_end"}]}``,
serialised with sorted keys, no spaces, UTF-8. ``state`` is a registry state name (``issued``,
``suspended``, ``cancelled``, ...); :func:`status_fact` says what it means to a verifier.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
from gmpki.path_validation import validate_path
from gmpki.x509 import Certificate, load_certificate_der

from .trust import SealState, SealStatusFact

SNAPSHOT_FORMAT: Final = "eseal-seal-status/1"
MAX_SNAPSHOT_BYTES: Final = 64 * 1024 * 1024
TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
# Every state a registry seal can be in (the snapshot lists only made seals, but the names are the
# format's vocabulary; anything else is a malformed snapshot).
REGISTRY_STATES: Final = frozenset(
    {"applied", "reviewed", "rejected", "made", "filed", "issued", "suspended", "cancelled"}
)
# What a registry state means to a verifier. Before issue a seal may not sign, yet it is no
# revocation either: "unknown" (indeterminate), as for a seal the registry never made.
_VERIFIER_STATE: Final = {
    "issued": SealState.ACTIVE,
    "suspended": SealState.SUSPENDED,
    "cancelled": SealState.CANCELLED,
}
TERMINAL_STATES: Final = frozenset({"cancelled", "rejected"})
_SM3_HEX = re.compile(r"[0-9a-f]{64}")
_REGION_ES_ID = re.compile(r"(\d{6})\d{8}")  # region(6) ‖ type(2) ‖ serial(6)
_ENTRY_KEYS = frozenset({"es_id", "seal_sm3", "state", "changed_at", "valid_start", "valid_end"})
_PAYLOAD_KEYS = frozenset({"format", "region_code", "sequence", "issued_at", "next_update", "seals"})
_ENVELOPE_KEYS = frozenset({"payload", "signature", "certificate"})
CLOCK_SKEW: Final = timedelta(minutes=1)


@dataclass(frozen=True)
class SnapshotEntry:
    es_id: str
    seal_sm3: str  # lowercase hex
    state: str  # a registry state name (seal_registry.lifecycle.SealState values)
    changed_at: datetime
    valid_start: datetime
    valid_end: datetime


@dataclass(frozen=True)
class StatusSnapshot:
    """A verified snapshot: its contents and the certificate that signed it."""

    region_code: str
    sequence: int
    issued_at: datetime
    next_update: datetime
    seals: tuple[SnapshotEntry, ...]
    signer: Certificate = field(repr=False)

    def by_es_id(self, es_id: str) -> SnapshotEntry | None:
        return next((e for e in self.seals if e.es_id == es_id), None)

    def by_sm3(self, seal_sm3: str) -> SnapshotEntry | None:
        key = seal_sm3.lower()
        return next((e for e in self.seals if e.seal_sm3 == key), None)


# --- meaning for verifiers ---------------------------------------------------------------------------
def status_fact(state: str, changed_at: datetime | None, source: str) -> SealStatusFact:
    """A registry state as the verifier's :class:`SealStatusFact` (issued → active, ...)."""
    return SealStatusFact(_VERIFIER_STATE.get(state, SealState.UNKNOWN), changed_at, source)


def region_of_es_id(es_id: str) -> str | None:
    """The region code of an esID in the registry's form (14 digits), else None."""
    m = _REGION_ES_ID.fullmatch(es_id)
    return m.group(1) if m else None


# --- serialisation -----------------------------------------------------------------------------------
def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime(TIME_FORMAT)


def canonical_bytes(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --- reading -----------------------------------------------------------------------------------------
def _bad(zh: str, en: str) -> MalformedData:
    return MalformedData(f"印章状态快照格式错误：{zh}", f"Malformed seal status snapshot: {en}")


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise _bad(f"{what} 不是字符串", f"{what} is not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"{what} 不是有效的 Base64", f"{what} is not valid base64") from None


def _json_object(data: bytes, what: str, keys: frozenset[str]) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad(f"{what} 不是有效的 JSON", f"{what} is not valid JSON") from None
    if not isinstance(value, dict) or set(value) != keys:
        raise _bad(f"{what} 字段不符", f"{what} does not have exactly the fields {sorted(keys)}")
    return value


def _str(value: object, what: str, limit: int = 200) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise _bad(f"{what} 无效", f"invalid {what}")
    return value


def _time(value: object, what: str) -> datetime:
    text = _str(value, what, 32)
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise _bad(f"{what} 时间格式无效", f"{what} is not a time of the form YYYY-MM-DDTHH:MM:SSZ") from None


def _entry(value: object) -> SnapshotEntry:
    if not isinstance(value, dict) or set(value) != _ENTRY_KEYS:
        raise _bad("印章条目字段不符", "a seal entry does not have the expected fields")
    sm3_hex = _str(value["seal_sm3"], "seal_sm3", 64)
    if not _SM3_HEX.fullmatch(sm3_hex):
        raise _bad("seal_sm3 不是 SM3 摘要", "seal_sm3 is not an SM3 digest")
    state = _str(value["state"], "state", 16)
    if state not in REGISTRY_STATES:
        raise _bad("未知的印章状态", "unknown seal state")
    return SnapshotEntry(
        es_id=_str(value["es_id"], "es_id", 64),
        seal_sm3=sm3_hex,
        state=state,
        changed_at=_time(value["changed_at"], "changed_at"),
        valid_start=_time(value["valid_start"], "valid_start"),
        valid_end=_time(value["valid_end"], "valid_end"),
    )


def parse_envelope(data: bytes) -> tuple[bytes, bytes, Certificate]:
    """(payload bytes, DER signature, signer certificate) of an envelope; nothing verified yet."""
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise InputTooLarge(
            f"印章状态快照过大（上限 {MAX_SNAPSHOT_BYTES} 字节）",
            f"Seal status snapshot too large (limit {MAX_SNAPSHOT_BYTES} bytes)",
        )
    envelope = _json_object(bytes(data), "信封", _ENVELOPE_KEYS)
    payload = _b64(envelope["payload"], "payload")
    signature = _b64(envelope["signature"], "signature")
    try:
        cert = load_certificate_der(_b64(envelope["certificate"], "certificate"))
    except EsealError as exc:
        raise _bad("签名证书无法解析", f"the signer certificate cannot be read ({exc.message_en})") from None
    return payload, signature, cert


def ensure_fresh(snapshot: StatusSnapshot, at: datetime) -> None:
    """:class:`NotUsable` unless ``at`` lies in the snapshot's issued_at .. next_update (with skew)."""
    if at > snapshot.next_update:
        raise NotUsable(
            f"印章状态快照已过期（下次更新时间 {format_time(snapshot.next_update)}）",
            f"The seal status snapshot is stale (next update was {format_time(snapshot.next_update)})",
        )
    if at + CLOCK_SKEW < snapshot.issued_at:
        raise NotUsable("印章状态快照的签发时间在未来", "The seal status snapshot is issued in the future")


def verify_snapshot(
    envelope: bytes,
    trust_anchors: Sequence[Certificate],
    *,
    at: datetime | None = None,
    intermediates: Iterable[Certificate] = (),
    check_freshness: bool = True,
    pinned_signers: Collection[bytes] = (),
) -> StatusSnapshot:
    """Check a snapshot offline: the SM2 signature over the payload bytes as received, the signer's
    certificate path to one of ``trust_anchors`` at ``at`` (default now), the payload's form, and
    (``check_freshness``) that ``at`` lies between ``issued_at`` and ``next_update``.

    The signer must chain to an anchor and carry EKU id-kp-OCSPSigning (the region's service
    certificate does; department certificates do not). ``pinned_signers`` (SM3 fingerprints)
    narrows it further to named service certificates.

    Raises :class:`InvalidSignature`, :class:`gmpki.path_validation.PathValidationError`,
    :class:`MalformedData` or :class:`NotUsable` (stale or future snapshot).
    """
    at = datetime.now(UTC) if at is None else at
    payload, signature, cert = parse_envelope(envelope)
    try:
        der = sm2.normalize_signature(signature)
        valid = sm2.verify(cert.public_key, payload, der)
    except EsealError:
        valid = False
    if not valid:
        raise InvalidSignature("印章状态快照签名无效", "The seal status snapshot signature does not verify")
    if pinned_signers and cert.fingerprint_sm3 not in pinned_signers:
        raise CertificateError(
            f"快照签名证书不是指定的服务证书：{cert.describe()}",
            f"The snapshot is not signed by a pinned service certificate: {cert.describe()}",
        )
    validate_path(
        cert,
        trust_anchors=list(trust_anchors),
        at=at,
        intermediates=list(intermediates),
        required_key_usage=("digital_signature",),
    )
    # Strict presence (an absent EKU means "any" in RFC 5280, which is what department certs have).
    if not (cert.extended_key_usage or set()) & {"ocsp_signing", oids.EKU_OCSP_SIGNING}:
        raise CertificateError(
            f"快照签名证书不是状态签名证书（缺少 OCSPSigning 扩展密钥用途）：{cert.describe()}",
            f"The snapshot signer lacks the status-signing (OCSPSigning) EKU: {cert.describe()}",
        )
    doc = _json_object(payload, "快照内容", _PAYLOAD_KEYS)
    # Signed bytes must be the one canonical form, so no two readers can see different documents.
    if canonical_bytes(doc) != payload:
        raise _bad("内容不是规范 JSON 形式", "the payload is not in canonical JSON form")
    if doc["format"] != SNAPSHOT_FORMAT:
        raise _bad(f"未知格式 {str(doc['format'])[:40]!r}", f"unknown format {str(doc['format'])[:40]!r}")
    sequence = doc["sequence"]
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
        raise _bad("sequence 无效", "invalid sequence")
    if not isinstance(doc["seals"], list):
        raise _bad("seals 不是数组", "seals is not an array")
    snapshot = StatusSnapshot(
        region_code=_str(doc["region_code"], "region_code", 16),
        sequence=sequence,
        issued_at=_time(doc["issued_at"], "issued_at"),
        next_update=_time(doc["next_update"], "next_update"),
        seals=tuple(_entry(e) for e in doc["seals"]),
        signer=cert,
    )
    if snapshot.next_update < snapshot.issued_at:
        raise _bad("next_update 早于 issued_at", "next_update is before issued_at")
    if check_freshness:
        ensure_fresh(snapshot, at)
    return snapshot
