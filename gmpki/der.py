"""A safe front door for DER (and PEM) input: size limit, no trailing bytes, eager parse, typed errors.

asn1crypto parses lazily: ``Certificate.load(data)`` only reads the outer header, and a malformed
extension deep inside raises a ``ValueError`` much later, wherever a property happens to touch it.
:func:`load_der` forces the whole tree to parse at once so that hostile input fails here, with a
:class:`core.errors.MalformedData`, and never as a stray exception from library code further on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Final, TypeVar

from asn1crypto import core, pem

from core.errors import InputTooLarge, MalformedData

from . import oids as _oids

_oids.register()

DEFAULT_MAX_SIZE: Final = 1024 * 1024  # 1 MiB: far above any certificate, CRL or seal we expect

# What asn1crypto (and the Python it runs on) raise on bad input. RecursionError covers deeply
# nested constructed values; UnicodeError covers strings with invalid encodings.
PARSE_ERRORS: Final = (
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    AttributeError,
    OverflowError,
    RecursionError,
    UnicodeError,
)

T = TypeVar("T", bound=core.Asn1Value)


@contextmanager
def asn1_guard(what_zh: str, what_en: str) -> Iterator[None]:
    """Map any asn1crypto parse error raised inside the block to :class:`MalformedData`.

    For code that reads properties of an already loaded structure (lazily parsed values, OID
    parameters) and must not let library exceptions escape.
    """
    try:
        yield
    except MalformedData:
        raise
    except PARSE_ERRORS as exc:
        raise MalformedData(
            f"{what_zh}格式错误：{_brief(exc)}",
            f"Malformed {what_en}: {_brief(exc)}",
        ) from exc


def _brief(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_size(data: object, max_size: int, what_zh: str, what_en: str) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedData(f"{what_zh}必须为字节串", f"{what_en} must be bytes")
    raw = bytes(data)
    if len(raw) > max_size:
        raise InputTooLarge(
            f"{what_zh}过大（{len(raw)} 字节，上限 {max_size} 字节）",
            f"{what_en} too large ({len(raw)} bytes, limit {max_size})",
        )
    if not raw:
        raise MalformedData(f"{what_zh}为空", f"{what_en} is empty")
    return raw


def load_der(
    cls: type[T],
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    what_zh: str = "DER 数据",
    what_en: str = "DER data",
) -> T:
    """Parse ``data`` as a complete DER value of ``cls``.

    Enforces ``max_size`` (:class:`InputTooLarge`), rejects trailing bytes, and parses every nested
    value now. Any failure is a :class:`MalformedData` naming ``what``.
    """
    raw = _check_size(data, max_size, what_zh, what_en)
    with asn1_guard(what_zh, what_en):
        # strict=True makes asn1crypto refuse trailing data after the outer value.
        value: T = cls.load(raw, strict=True)
        force_parse(value)
    return value


def force_parse(value: core.Asn1Value) -> None:
    """Touch every nested value so that asn1crypto's lazy errors surface now.

    ``.native`` walks the whole tree, including values parsed through OID-dependent specs
    (extension values, algorithm parameters, content-info content).
    """
    _ = value.native


def is_pem(data: bytes) -> bool:
    return bool(pem.detect(data))


def pem_blocks(
    data: bytes,
    *,
    labels: Sequence[str],
    max_size: int = DEFAULT_MAX_SIZE,
    max_blocks: int = 256,
    what_zh: str = "PEM 数据",
    what_en: str = "PEM data",
) -> list[bytes]:
    """The DER payloads of all PEM blocks in ``data`` whose label is one of ``labels``.

    A block with another label or a bad base64 body is rejected rather than skipped, so that a
    private key pasted by mistake is never silently read. Text between blocks (OpenSSL's "Bag
    Attributes", comments) is ignored, as OpenSSL does.
    """
    raw = _check_size(data, max_size, what_zh, what_en)
    out: list[bytes] = []
    with asn1_guard(what_zh, what_en):
        for label, _headers, der in pem.unarmor(raw, multiple=True):
            if label not in labels:
                raise MalformedData(
                    f"{what_zh}包含不支持的 PEM 块“{label}”",
                    f"{what_en} holds an unexpected PEM block {label!r}",
                )
            out.append(bytes(der))
            if len(out) > max_blocks:
                raise InputTooLarge(
                    f"{what_zh}包含过多 PEM 块（上限 {max_blocks}）",
                    f"{what_en} holds too many PEM blocks (limit {max_blocks})",
                )
    if not out:
        raise MalformedData(f"{what_zh}中没有 PEM 块", f"No PEM block in {what_en}")
    return out
