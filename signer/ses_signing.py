"""SES signatures (GB/T 38540 ``SES_Signature``) over arbitrary data: a detached electronic seal.

Reference: ``../shared/spec/seal-formats.md`` §2.7, §4.3 (outside OFD, ``dataHash`` is the SM3 of
whatever the application calls the original, and ``propertyInfo`` records that choice) and §4.6.

Here ``dataHash = SM3(data)``, the bytes exactly as given. ``propertyInfo`` (an IA5String, so ASCII)
defaults to a description of the data: ``file:<name>`` with the name percent-encoded (UTF-8) when a
file name is known, else ``sm3:<hex digest>``. A verifier given the SES signature and the same
bytes recomputes SM3 and compares (``verify.verify_bytes(ses, detached_data=data)``).

Authorisation, signing and the audit entry go through
:func:`seal_registry.seals.sign_prepared` in the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

from sqlalchemy.orm import Session

from core.errors import InvalidInput
from gmpki.sm3 import sm3, sm3_chunks
from hsm_adapters.keystore import KeyStore
from seal_registry.seals import ToBeSigned, sign_prepared

MAX_PROPERTY_INFO: Final = 1024
SES_MEDIA_TYPE: Final = "application/octet-stream"


def check_property_info(value: str) -> str:
    """propertyInfo must be printable ASCII (it is an IA5String), 1–1024 characters."""
    if not value or len(value) > MAX_PROPERTY_INFO or not value.isascii() or not value.isprintable():
        raise InvalidInput(
            f"propertyInfo 须为 1–{MAX_PROPERTY_INFO} 个可打印 ASCII 字符",
            f"propertyInfo must be 1–{MAX_PROPERTY_INFO} printable ASCII characters",
        )
    return value


def default_property_info(data_hash: bytes, name: str | None = None) -> str:
    """``file:<percent-encoded base name>`` when ``name`` is given, else ``sm3:<hex>``."""
    if name:
        base = posixpath.basename(name.replace("\\", "/")).strip()
        if base:
            text = "file:" + quote(base, safe="")
            if len(text) <= MAX_PROPERTY_INFO:
                return text
    return "sm3:" + data_hash.hex()


def parse_digest_hex(text: str) -> bytes:
    """A 32-byte SM3 digest from 64 hex digits (whitespace around it ignored)."""
    value = text.strip()
    if len(value) != 64:
        raise InvalidInput("摘要须为 64 位十六进制 SM3 值", "the digest must be 64 hex digits (SM3)")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidInput("摘要不是有效的十六进制", "the digest is not valid hex") from None


@dataclass(frozen=True)
class SesResult:
    """An SES signature made by the service, with the facts a client needs to keep with it."""

    signature: bytes = field(repr=False)  # SES_Signature DER
    seal: bytes = field(repr=False)  # the seal embedded in it, as issued
    es_id: str
    data_hash: bytes
    property_info: str
    signing_time: dt.datetime


def sign_hash(
    session: Session,
    keystore: KeyStore,
    *,
    es_id: str,
    department_id: str,
    data_hash: bytes,
    property_info: str,
    actor: str,
    time_stamp: Callable[[bytes], bytes] | None = None,
    audit_details: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> SesResult:
    """An SES signature over a precomputed SM3 ``data_hash`` (the service never sees the data)."""
    if len(data_hash) != 32:
        raise InvalidInput("dataHash 必须为 32 字节 SM3 摘要", "data_hash must be a 32-byte SM3 digest")
    property_info = check_property_info(property_info)
    request = ToBeSigned(bytes(data_hash), property_info, dict(audit_details or {}))
    made = sign_prepared(
        session,
        keystore,
        es_id=es_id,
        department_id=department_id,
        actor=actor,
        prepare=lambda _grant, _when: request,
        time_stamp=time_stamp,
        at=now,
    )
    return SesResult(
        made.signature,
        made.grant.seal_der,
        made.grant.es_id,
        bytes(data_hash),
        property_info,
        made.signing_time,
    )


def sign_data(
    session: Session,
    keystore: KeyStore,
    data: bytes | Iterable[bytes],
    *,
    es_id: str,
    department_id: str,
    actor: str,
    property_info: str | None = None,
    name: str | None = None,
    time_stamp: Callable[[bytes], bytes] | None = None,
    now: dt.datetime | None = None,
) -> SesResult:
    """An SES signature over ``data`` (bytes, or chunks hashed as they come): dataHash = SM3(data).

    ``property_info`` defaults to :func:`default_property_info`; ``name`` (a file name) is used for
    that default and recorded in the audit entry next to the data's SM3.
    """
    data_hash = sm3(bytes(data)) if isinstance(data, bytes | bytearray | memoryview) else sm3_chunks(data)
    info = property_info if property_info is not None else default_property_info(data_hash, name)
    details: dict[str, Any] = {"format": "ses", "document_sm3": data_hash.hex()}
    if name:
        details["document_name"] = name[:200]
    return sign_hash(
        session,
        keystore,
        es_id=es_id,
        department_id=department_id,
        data_hash=data_hash,
        property_info=info,
        actor=actor,
        time_stamp=time_stamp,
        audit_details=details,
        now=now,
    )


__all__ = [
    "MAX_PROPERTY_INFO",
    "SES_MEDIA_TYPE",
    "SesResult",
    "check_property_info",
    "default_property_info",
    "parse_digest_hex",
    "sign_data",
    "sign_hash",
]
