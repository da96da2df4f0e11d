"""Verification reports: per check, per signature and per document, and their JSON form.

Indications and sub-indications follow ETSI EN 319 102-1 where it has a word for the case
(HASH_FAILURE, SIG_CRYPTO_FAILURE, REVOKED, NO_CERTIFICATE_CHAIN_FOUND, FORMAT_FAILURE,
OUT_OF_BOUNDS_NO_POE, NOT_YET_VALID, SIGNED_DATA_NOT_FOUND, ...) and add seal-specific ones
(SEAL_*, SIGNER_NOT_IN_SEAL).
A signature's verdict is derived from its checks only; a document's verdict is its worst signature.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


class Result(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    WARNING = "warning"
    INDETERMINATE = "indeterminate"
    SKIPPED = "skipped"


class Indication(enum.StrEnum):
    PASSED = "PASSED"
    FAILED = "FAILED"
    INDETERMINATE = "INDETERMINATE"
    NOT_SIGNED = "NOT_SIGNED"


class SubIndication(enum.StrEnum):
    # ETSI EN 319 102-1
    FORMAT_FAILURE = "FORMAT_FAILURE"
    HASH_FAILURE = "HASH_FAILURE"
    SIG_CRYPTO_FAILURE = "SIG_CRYPTO_FAILURE"
    REVOKED = "REVOKED"
    REVOKED_NO_POE = "REVOKED_NO_POE"
    NO_CERTIFICATE_CHAIN_FOUND = "NO_CERTIFICATE_CHAIN_FOUND"
    CHAIN_CONSTRAINTS_FAILURE = "CHAIN_CONSTRAINTS_FAILURE"
    SIG_CONSTRAINTS_FAILURE = "SIG_CONSTRAINTS_FAILURE"
    CRYPTO_CONSTRAINTS_FAILURE = "CRYPTO_CONSTRAINTS_FAILURE"
    OUT_OF_BOUNDS_NO_POE = "OUT_OF_BOUNDS_NO_POE"
    NOT_YET_VALID = "NOT_YET_VALID"
    TRY_LATER = "TRY_LATER"
    SIGNED_DATA_NOT_FOUND = "SIGNED_DATA_NOT_FOUND"  # a detached signature verified without its data
    # electronic seals (GB/T 38540)
    SEAL_SIGNATURE_FAILURE = "SEAL_SIGNATURE_FAILURE"
    SEAL_EXPIRED = "SEAL_EXPIRED"
    SEAL_NOT_YET_VALID = "SEAL_NOT_YET_VALID"
    SEAL_SUSPENDED = "SEAL_SUSPENDED"
    SEAL_CANCELLED = "SEAL_CANCELLED"
    SEAL_STATUS_UNKNOWN = "SEAL_STATUS_UNKNOWN"
    SIGNER_NOT_IN_SEAL = "SIGNER_NOT_IN_SEAL"


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome. ``sub_indication`` is what this check contributes to the verdict when it
    is the deciding failed or indeterminate check; it is not part of the JSON."""

    id: str
    result: Result
    message_zh: str
    message_en: str
    sub_indication: SubIndication | None = None
    # Whose word the outcome rests on when the trust source speaks for another party (a peer
    # region's trust list, its sequence and issue time); in the JSON only when set.
    vouched_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "result": self.result.value,
            "message_zh": self.message_zh,
            "message_en": self.message_en,
        }
        if self.vouched_by is not None:
            out["vouched_by"] = self.vouched_by
        return out


@dataclass(frozen=True)
class CertificateSummary:
    subject: str
    serial: str  # uppercase hexadecimal, no prefix (as ofdrw and the interop README print it)

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "serial": self.serial}


@dataclass(frozen=True)
class SealSummary:
    es_id: str
    name: str
    type: int
    valid_from: dt.datetime
    valid_to: dt.datetime
    maker: CertificateSummary | None
    created: dt.datetime | None = None
    version: int | None = None
    sm3: str | None = None  # hex SM3 of the seal's DER: the seal's identity across files (P16)

    def to_json(self) -> dict[str, Any]:
        return {
            "es_id": self.es_id,
            "name": self.name,
            "type": self.type,
            "valid_from": iso(self.valid_from),
            "valid_to": iso(self.valid_to),
            "maker": self.maker.to_json() if self.maker else None,
            "created": iso(self.created),
            "version": self.version,
            "sm3": self.sm3,
        }


@dataclass(frozen=True)
class StampPlacement:
    page_ref: str | None
    page_index: int | None
    boundary: tuple[float, float, float, float] | None
    clip: tuple[float, float, float, float] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "page_ref": self.page_ref,
            "page_index": self.page_index,
            "boundary": list(self.boundary) if self.boundary else None,
            "clip": list(self.clip) if self.clip else None,
        }


# Order in which failed (or indeterminate) checks decide the sub-indication: integrity and
# cryptography first, then entitlement and status, then time, then trust, then the rest.
PRIORITY: tuple[str, ...] = (
    "format.parse",
    "document.data_hash",
    "document.references",
    "document.seal_file_match",
    # A seal altered inside TBS_Sign fails both signatures; the maker's names the cause.
    "seal.maker_signature",
    "signer.signature",
    "signer.in_seal_certificate_list",
    "signer.certificate_revocation",
    "seal.status",
    "seal.validity_period",
    "signer.certificate_validity",
    "seal.maker_certificate_validity",
    "signer.certificate_chain",
    "seal.maker_certificate_chain",
    "document.coverage",
    "timestamp.token",
)


def _rank(check: CheckResult) -> int:
    return PRIORITY.index(check.id) if check.id in PRIORITY else len(PRIORITY)


def judge(checks: Sequence[CheckResult]) -> tuple[Indication, SubIndication | None]:
    """Verdict of one signature: any failed check → FAILED, else any indeterminate → INDETERMINATE."""
    for outcome, indication in (
        (Result.FAILED, Indication.FAILED),
        (Result.INDETERMINATE, Indication.INDETERMINATE),
    ):
        deciding = sorted((c for c in checks if c.result is outcome), key=_rank)
        if deciding:
            return indication, deciding[0].sub_indication
    return Indication.PASSED, None


@dataclass(frozen=True)
class SignatureReport:
    id: str
    type: str  # "seal" | "sign"
    version: int | None
    signing_time: dt.datetime | None
    indication: Indication
    sub_indication: SubIndication | None
    seal: SealSummary | None
    signer: CertificateSummary | None
    checks: tuple[CheckResult, ...]
    doc_body: int | None = None
    signature_xml: str | None = None
    property_info: str | None = None
    stamps: tuple[StampPlacement, ...] = ()

    def check(self, check_id: str) -> CheckResult:
        for c in self.checks:
            if c.id == check_id:
                return c
        raise KeyError(check_id)

    def results(self) -> dict[str, Result]:
        return {c.id: c.result for c in self.checks}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "version": self.version,
            "signing_time": iso(self.signing_time),
            "indication": self.indication.value,
            "sub_indication": self.sub_indication.value if self.sub_indication else None,
            "seal": self.seal.to_json() if self.seal else None,
            "signer": self.signer.to_json() if self.signer else None,
            "checks": [c.to_json() for c in self.checks],
            "doc_body": self.doc_body,
            "signature_xml": self.signature_xml,
            "property_info": self.property_info,
            "stamps": [s.to_json() for s in self.stamps],
        }


@dataclass(frozen=True)
class UnsignedStamp:
    """A stamp annotation on a page that no signature accounts for (it only looks like a seal)."""

    doc_body: int
    page_ref: str
    annot_id: str
    path: str

    def to_json(self) -> dict[str, Any]:
        return {
            "doc_body": self.doc_body,
            "page_ref": self.page_ref,
            "annot_id": self.annot_id,
            "path": self.path,
        }


@dataclass(frozen=True)
class DocumentReport:
    format: str  # "ofd" | "seal" | "ses" | "pdf" | "cms"
    signed: bool
    indication: Indication
    sub_indication: SubIndication | None
    signatures: tuple[SignatureReport, ...]
    checks: tuple[CheckResult, ...] = ()  # document-level findings (a part that could not be read)
    validation_time: dt.datetime | None = None
    unsigned_stamps: tuple[UnsignedStamp, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "signed": self.signed,
            "indication": self.indication.value,
            "sub_indication": self.sub_indication.value if self.sub_indication else None,
            "signatures": [s.to_json() for s in self.signatures],
            "checks": [c.to_json() for c in self.checks],
            "validation_time": iso(self.validation_time),
            "unsigned_stamps": [s.to_json() for s in self.unsigned_stamps],
        }

    def dumps(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False, indent=indent)


_SEVERITY = {Indication.FAILED: 0, Indication.INDETERMINATE: 1, Indication.PASSED: 2}


def document_verdict(
    signatures: Sequence[SignatureReport], document_checks: Sequence[CheckResult], signed: bool
) -> tuple[Indication, SubIndication | None]:
    """Worst of the document-level checks and every signature's verdict; NOT_SIGNED when nothing is signed."""
    own, own_sub = judge(document_checks)
    candidates: list[tuple[Indication, SubIndication | None]] = []
    if own is not Indication.PASSED:
        candidates.append((own, own_sub))
    candidates += [(s.indication, s.sub_indication) for s in signatures]
    if not candidates:
        return (Indication.NOT_SIGNED, None) if not signed else (Indication.PASSED, None)
    return min(candidates, key=lambda c: _SEVERITY.get(c[0], 3))


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def serial_hex(serial: int) -> str:
    return f"{serial:X}"
