"""Hardened XML parsing for OFD parts, and namespace-agnostic element access.

Parsing goes through ``defusedxml`` with DTDs, entity declarations and external references all
forbidden, plus a size limit, a nesting-depth limit and an element-count limit enforced while the
document is being built. Every failure is a :class:`core.errors.MalformedData` naming the part.

OFD producers disagree on namespaces (``http://www.ofdspec.org/2016``, the bare
``http://www.ofdspec.org``, a default namespace, stray un-namespaced elements; seal-formats.md
§5.1, P7), so elements and attributes are matched by their local name only.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any, Final

from defusedxml.ElementTree import DefusedXMLParser

from core.errors import InputTooLarge, MalformedData

MAX_XML_SIZE: Final = 16 * 1024 * 1024
MAX_DEPTH: Final = 64
MAX_ELEMENTS: Final = 200_000

# Encodings expat decodes itself; anything else (GBK, GB18030 from Chinese producers) is decoded by
# Python first, because expat refuses multi-byte encodings it does not know.
_EXPAT_ENCODINGS: Final = frozenset({"utf-8", "utf8", "utf-16", "utf16", "iso-8859-1", "latin-1", "us-ascii"})
_DECLARED_ENCODING = re.compile(rb"^<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")


class _LimitExceeded(Exception):
    def __init__(self, zh: str, en: str) -> None:
        super().__init__(en)
        self.zh, self.en = zh, en


class _BoundedTreeBuilder(ET.TreeBuilder):
    def __init__(self, max_depth: int, max_elements: int) -> None:
        super().__init__()
        self._depth = 0
        self._count = 0
        self._max_depth = max_depth
        self._max_elements = max_elements

    def start(self, tag: Any, attrs: Any) -> ET.Element:
        self._depth += 1
        self._count += 1
        if self._depth > self._max_depth:
            raise _LimitExceeded(
                f"XML 嵌套层次过深（上限 {self._max_depth}）", f"XML nesting deeper than {self._max_depth}"
            )
        if self._count > self._max_elements:
            raise _LimitExceeded(
                f"XML 元素过多（上限 {self._max_elements}）", f"more than {self._max_elements} XML elements"
            )
        return super().start(tag, attrs)

    def end(self, tag: Any) -> ET.Element:
        self._depth -= 1
        return super().end(tag)


def _feedable(data: bytes) -> bytes | str:
    if data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return data
    match = _DECLARED_ENCODING.match(data[:200])
    if match is None:
        return data
    encoding = match.group(1).decode("ascii").lower()
    if encoding in _EXPAT_ENCODINGS:
        return data
    # A str is parsed as UTF-8 text whatever the declaration says, so decoding here is enough.
    return data.decode(encoding)


def parse_xml(
    data: bytes,
    *,
    name: str,
    max_size: int = MAX_XML_SIZE,
    max_depth: int = MAX_DEPTH,
    max_elements: int = MAX_ELEMENTS,
) -> ET.Element:
    """Parse one XML part. ``name`` (its package path) goes into error messages."""
    if len(data) > max_size:
        raise InputTooLarge(
            f"XML 文件 {name} 过大（{len(data)} 字节，上限 {max_size}）",
            f"XML file {name} too large ({len(data)} bytes, limit {max_size})",
        )
    if not data.strip():
        raise MalformedData(f"XML 文件 {name} 为空", f"XML file {name} is empty")
    parser = DefusedXMLParser(
        target=_BoundedTreeBuilder(max_depth, max_elements),
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
    )
    try:
        parser.feed(_feedable(data))
        root = parser.close()
    except _LimitExceeded as exc:
        raise MalformedData(f"XML 文件 {name}：{exc.zh}", f"XML file {name}: {exc.en}") from exc
    except (ET.ParseError, ValueError, LookupError, UnicodeError, RecursionError, TypeError) as exc:
        # defusedxml's DTDForbidden / EntitiesForbidden / ExternalReferenceForbidden are ValueErrors.
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise MalformedData(
            f"XML 文件 {name} 无法解析（{type(exc).__name__}）：{detail}",
            f"cannot parse XML file {name} ({type(exc).__name__}): {detail}",
        ) from exc
    if not isinstance(root, ET.Element):
        raise MalformedData(f"XML 文件 {name} 无根元素", f"XML file {name} has no root element")
    return root


# --- namespace-agnostic access ----------------------------------------------------------------------------
def local_name(tag: object) -> str:
    """``{ns}Name`` or ``prefix:Name`` → ``Name``; comments and processing instructions → ``""``."""
    if not isinstance(tag, str):
        return ""
    if tag.startswith("{"):
        tag = tag.rpartition("}")[2]
    return tag.rpartition(":")[2]


def is_named(element: ET.Element, name: str) -> bool:
    return local_name(element.tag) == name


def children(element: ET.Element, name: str) -> list[ET.Element]:
    """Direct children with local name ``name``, in document order."""
    return [c for c in element if local_name(c.tag) == name]


def child(element: ET.Element, name: str) -> ET.Element | None:
    """The first direct child named ``name``, or None."""
    for c in element:
        if local_name(c.tag) == name:
            return c
    return None


def descendants(element: ET.Element, name: str) -> Iterator[ET.Element]:
    """All elements below ``element`` (not itself) named ``name``, in document order."""
    for e in element.iter():
        if e is not element and local_name(e.tag) == name:
            yield e


def text_of(element: ET.Element | None) -> str | None:
    """Stripped text content, None when the element is absent or empty."""
    if element is None:
        return None
    text = "".join(element.itertext()).strip()
    return text or None


def child_text(element: ET.Element, name: str) -> str | None:
    return text_of(child(element, name))


def attribute(element: ET.Element, name: str) -> str | None:
    """Attribute by local name (producers occasionally namespace-qualify OFD attributes)."""
    value = element.attrib.get(name)
    if value is not None:
        return value
    for key, val in element.attrib.items():
        if local_name(key) == name:
            return val
    return None
