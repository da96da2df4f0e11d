"""Hardened XML parsing for OFD parts, and namespace-agnostic element access.

Parsing refuses any document type declaration or entity declaration (so no DTD, no entity of any
kind, no external reference: OFD parts never need them), then builds the tree with the standard
library's C parser (``xml.etree.ElementTree.XMLPullParser``), enforcing a size limit, a nesting-depth
limit and an element-count limit while the document is read, chunk by chunk. Every failure is a
:class:`core.errors.MalformedData` naming the part.

Why not ``defusedxml`` (used here before, and still for SVG seal pictures): its parser is the
pure-Python ``XMLParser``, which runs Python code for every element and attribute name (about
200 µs for the six parts of a one-page sealed OFD, against 75 µs here), paid on every verification
and every batch-sealed document. The refusal is decided on the decoded text, whatever the encoding
(UTF-16 included), before the parser sees any of it; with no DTD there is nothing to expand or fetch.

OFD producers disagree on namespaces (``http://www.ofdspec.org/2016``, the bare
``http://www.ofdspec.org``, a default namespace, stray un-namespaced elements; seal-formats.md
§5.1, P7), so elements and attributes are matched by their local name only.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Final, cast

from core.errors import InputTooLarge, MalformedData

MAX_XML_SIZE: Final = 16 * 1024 * 1024
MAX_DEPTH: Final = 64
MAX_ELEMENTS: Final = 200_000

# Parts are decoded by Python (GBK and GB18030 from Chinese producers, which expat does not know,
# and every other encoding alike), so declarations are refused in the text the parser then reads.
_DECLARED_ENCODING = re.compile(rb"^<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_FORBIDDEN_DECLARATIONS: Final = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_CHUNK: Final = 64 * 1024  # characters fed at a time: the limits are checked between chunks


class _Forbidden(Exception):
    pass


class _LimitExceeded(Exception):
    def __init__(self, zh: str, en: str) -> None:
        super().__init__(en)
        self.zh, self.en = zh, en


def _decoded(data: bytes) -> str:
    """The part's text: by its BOM, else its declared encoding, else UTF-8 (LookupError or
    UnicodeError for an unknown encoding or undecodable bytes)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data.decode("utf-8-sig")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    match = _DECLARED_ENCODING.match(data[:200])
    encoding = match.group(1).decode("ascii") if match is not None else "utf-8"
    # A str is parsed as UTF-8 text whatever the declaration says, so decoding here is enough.
    return data.decode(encoding)


def _build(text: str, max_depth: int, max_elements: int) -> ET.Element | None:
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "end"))
    root: ET.Element | None = None
    depth = count = 0
    for start in range(0, len(text), _CHUNK):
        parser.feed(text[start : start + _CHUNK])
        # Only the requested events come back: ("start" | "end", element) pairs.
        for event, element in cast("Iterator[tuple[str, ET.Element]]", parser.read_events()):
            if event == "end":
                depth -= 1
                continue
            if root is None:
                root = element  # the first element started is the root
            depth += 1
            count += 1
            if depth > max_depth:
                raise _LimitExceeded(
                    f"XML 嵌套层次过深（上限 {max_depth}）", f"XML nesting deeper than {max_depth}"
                )
            if count > max_elements:
                raise _LimitExceeded(
                    f"XML 元素过多（上限 {max_elements}）", f"more than {max_elements} XML elements"
                )
    parser.close()  # raises ParseError on an unfinished document
    return root


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
    try:
        text = _decoded(data)
        if _FORBIDDEN_DECLARATIONS.search(text) is not None:
            raise _Forbidden
        root = _build(text, max_depth, max_elements)
    except _Forbidden:
        raise MalformedData(
            f"XML 文件 {name} 含有文档类型或实体声明（DTD、ENTITY），不予处理",
            f"XML file {name} declares a document type or entities (DTD, ENTITY): refused",
        ) from None
    except _LimitExceeded as exc:
        raise MalformedData(f"XML 文件 {name}：{exc.zh}", f"XML file {name}: {exc.en}") from exc
    except (ET.ParseError, ValueError, LookupError, UnicodeError, RecursionError, TypeError) as exc:
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise MalformedData(
            f"XML 文件 {name} 无法解析（{type(exc).__name__}）：{detail}",
            f"cannot parse XML file {name} ({type(exc).__name__}): {detail}",
        ) from exc
    if root is None:
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
