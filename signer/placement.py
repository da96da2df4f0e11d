"""Where a seal's stamp appears on an OFD page: page geometry, keyword search, riding seals (骑缝章).

Reference: ``../shared/spec/seal-formats.md`` §5.3 (StampAnnot: ``PageRef`` is the page *object ID*,
``Boundary`` is ``x y w h`` in millimetres in page coordinates, origin top-left, y downwards;
``Clip`` is a box in the stamp's own coordinates, origin at the Boundary's top-left).

Placement happens in two steps so that everything that can be refused is refused before the seal is
even looked up: :func:`plan_placement` checks the request against the document (page numbers,
keyword present, enough pages for a riding seal) and returns a :class:`PlacementPlan`; once the
seal is known, :meth:`PlacementPlan.stamps` turns the seal picture's width and height (mm) into
one :class:`StampBox` per StampAnnot.

Keyword positions are approximate. OFD stores text as ``TextObject``s (``Boundary``, ``Size``,
optional ``CTM``) holding ``TextCode``s (``X``/``Y`` of the first glyph's baseline origin in the
object's coordinates and ``DeltaX``, the advance between consecutive glyphs, with the ``g n v``
repeat notation). A keyword's left edge is the X of its first glyph (``X`` plus the advances
before it), its right edge the X of its last glyph plus that glyph's advance (its ``DeltaX`` entry,
or when there is none the font size for wide CJK glyphs and half of it otherwise); vertically it
spans one font size above the baseline. ``CTM`` is applied to those points, then the
``Boundary`` offset. Not handled: text split across several TextCodes or TextObjects, ``DeltaY``
(vertical writing), glyph-only ``CGTransform`` mappings, text in page templates or annotations.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from core.errors import InvalidInput, MalformedData
from gmpki.ofd import DocumentPages, OfdPackage, Page
from gmpki.ofd.xml_parts import attribute, child, descendants, parse_xml, text_of

A4: Final = (210.0, 297.0)
MAX_KEYWORD = 200
# Sizes beyond this are typing mistakes or hostile input, not paper.
MAX_MM: Final = 10_000.0


# --- boxes ---------------------------------------------------------------------------------------------
def format_mm(value: float) -> str:
    """A length for an OFD attribute: at most 3 decimals, no trailing zeros, never ``-0``."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


@dataclass(frozen=True)
class Box:
    """``x y w h`` in millimetres (ST_Box)."""

    x: float
    y: float
    w: float
    h: float

    def text(self) -> str:
        return " ".join(format_mm(v) for v in (self.x, self.y, self.w, self.h))

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2


@dataclass(frozen=True)
class StampBox:
    """One StampAnnot: the page it is on (page object ID), where, and which part of the seal shows."""

    page_id: str
    boundary: Box
    clip: Box | None = None


def parse_box(text: str | None) -> Box | None:
    if not text:
        return None
    parts = text.split()
    if len(parts) != 4:
        return None
    try:
        x, y, w, h = (float(p) for p in parts)
    except ValueError:
        return None
    if not all(math.isfinite(v) and abs(v) <= MAX_MM for v in (x, y, w, h)) or w <= 0 or h <= 0:
        return None
    return Box(x, y, w, h)


# --- placement requests --------------------------------------------------------------------------------
@dataclass(frozen=True)
class AtPosition:
    """Page ``page`` (1-based), stamp's top-left corner at ``x``/``y`` mm from the page's top-left."""

    page: int
    x: float
    y: float


@dataclass(frozen=True)
class AtKeyword:
    """Centre the stamp on the ``occurrence``-th appearance of ``keyword`` (on ``page`` if given)."""

    keyword: str
    page: int | None = None
    occurrence: int = 1


@dataclass(frozen=True)
class Riding:
    """A riding seal across every page at the right edge; ``y`` is the stamp's top (default: centred)."""

    y: float | None = None


Placement = AtPosition | AtKeyword | Riding


# --- page geometry -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PageGeometry:
    number: int  # 1-based
    page_id: str
    box: Box  # PhysicalBox in effect for this page


def _physical_box(area: ET.Element | None) -> Box | None:
    """``PhysicalBox`` of a ``PageArea`` (Document.xml) or ``Area`` (page) element."""
    if area is None:
        return None
    return parse_box(text_of(child(area, "PhysicalBox")))


def _document_box(pkg: OfdPackage, document: DocumentPages) -> Box:
    root = parse_xml(pkg.read(document.path), name=document.path)
    common = child(root, "CommonData")
    box = _physical_box(child(common, "PageArea")) if common is not None else None
    return box or Box(0.0, 0.0, *A4)


def _page_root(pkg: OfdPackage, page: Page) -> ET.Element:
    if page.path is None or page.path not in pkg:
        raise MalformedData(
            f"页面 {page.id} 的内容文件缺失",
            f"the content file of page {page.id} is missing",
            page_id=page.id,
        )
    return parse_xml(pkg.read(page.path), name=page.path)


def _page(document: DocumentPages, number: int) -> Page:
    count = len(document.pages)
    if not 1 <= number <= count:
        raise InvalidInput(
            f"页码 {number} 超出范围（文档共 {count} 页）",
            f"page {number} is out of range (the document has {count} pages)",
            page=number,
            pages=count,
        )
    page = document.pages[number - 1]
    if not page.id:
        raise MalformedData(f"第 {number} 页没有页面 ID", f"page {number} has no page ID")
    return page


def page_geometry(pkg: OfdPackage, document: DocumentPages, number: int) -> PageGeometry:
    """The page's object ID and size: its own ``Area/PhysicalBox``, else the document's ``PageArea``."""
    page = _page(document, number)
    own = _physical_box(child(_page_root(pkg, page), "Area"))
    return PageGeometry(number, page.id, own or _document_box(pkg, document))


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value) or abs(value) > MAX_MM:
        raise InvalidInput(f"{what} 不是有效的毫米数值", f"{what} is not a valid length in mm")
    return float(value)


# --- keyword search ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeywordHit:
    page: PageGeometry
    box: Box  # approximate extent of the keyword in page coordinates


_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


def _number(text: str | None, default: float) -> float:
    if text is None or not _NUMBER.match(text.strip()):
        return default
    value = float(text)
    return value if math.isfinite(value) and abs(value) <= MAX_MM else default


def parse_delta(text: str | None, limit: int) -> list[float]:
    """ST_Array of advances with the ``g count value`` repeat notation, at most ``limit`` values."""
    out: list[float] = []
    tokens = (text or "").split()
    i = 0
    while i < len(tokens) and len(out) < limit:
        token = tokens[i]
        if token == "g" and i + 2 < len(tokens):
            count_text = tokens[i + 1]
            count = int(count_text) if count_text.isdigit() and len(count_text) <= 9 else 0
            out.extend([_number(tokens[i + 2], 0.0)] * max(0, min(count, limit - len(out))))
            i += 3
            continue
        out.append(_number(token, 0.0))
        i += 1
    return out


def _ctm(text: str | None) -> tuple[float, float, float, float, float, float]:
    parts = (text or "").split()
    if len(parts) == 6 and all(_NUMBER.match(p) for p in parts):
        a, b, c, d, e, f = (float(p) for p in parts)
        if all(math.isfinite(v) for v in (a, b, c, d, e, f)):
            return a, b, c, d, e, f
    return 1.0, 0.0, 0.0, 1.0, 0.0, 0.0


def _advance(ch: str, size: float) -> float:
    # Full-width (CJK and fullwidth forms) glyphs are about one em wide, Latin about half.
    return size if ord(ch) >= 0x2E80 else size / 2


def _text_hits(obj: ET.Element, keyword: str) -> Iterator[Box]:
    boundary = parse_box(attribute(obj, "Boundary"))
    if boundary is None:
        return
    size = _number(attribute(obj, "Size"), boundary.h)
    a, b, c, d, e, f = _ctm(attribute(obj, "CTM"))
    x_prev, y_prev = 0.0, 0.0
    for code in descendants(obj, "TextCode"):
        x0 = _number(attribute(code, "X"), x_prev)
        y0 = _number(attribute(code, "Y"), y_prev)
        x_prev, y_prev = x0, y0
        text = "".join(code.itertext())
        deltas = parse_delta(attribute(code, "DeltaX"), len(text))
        offsets = [0.0]
        for i, ch in enumerate(text[:-1]):
            offsets.append(offsets[-1] + (deltas[i] if i < len(deltas) else _advance(ch, size)))
        start = text.find(keyword)
        while start >= 0:
            last = start + len(keyword) - 1
            last_advance = deltas[last] if last < len(deltas) else _advance(text[last], size)
            left, right = x0 + offsets[start], x0 + offsets[last] + last_advance
            top, bottom = y0 - size, y0
            xs, ys = [], []
            for px, py in ((left, top), (right, top), (left, bottom), (right, bottom)):
                xs.append(a * px + c * py + e)
                ys.append(b * px + d * py + f)
            yield Box(
                boundary.x + min(xs),
                boundary.y + min(ys),
                max(xs) - min(xs) or size,
                max(ys) - min(ys) or size,
            )
            start = text.find(keyword, start + 1)


def find_keyword(
    pkg: OfdPackage, document: DocumentPages, keyword: str, *, page: int | None = None, occurrence: int = 1
) -> KeywordHit:
    """The ``occurrence``-th match of ``keyword`` in page order (only page ``page`` when given)."""
    keyword = keyword.strip()
    if not keyword or len(keyword) > MAX_KEYWORD or not keyword.isprintable():
        raise InvalidInput(
            f"关键字须为 1–{MAX_KEYWORD} 个可打印字符",
            f"the keyword must be 1–{MAX_KEYWORD} printable characters",
        )
    if occurrence < 1:
        raise InvalidInput("关键字序号须从 1 开始", "the keyword occurrence counts from 1")
    numbers = [page] if page is not None else list(range(1, len(document.pages) + 1))
    seen = 0
    for number in numbers:
        root = _page_root(pkg, _page(document, number))
        for obj in descendants(root, "TextObject"):
            for box in _text_hits(obj, keyword):
                seen += 1
                if seen == occurrence:
                    return KeywordHit(page_geometry(pkg, document, number), box)
    where_zh = f"第 {page} 页" if page is not None else "文档"
    where_en = f"page {page}" if page is not None else "the document"
    raise InvalidInput(
        f"{where_zh}中找不到关键字“{keyword}”" + (f"（第 {occurrence} 处）" if occurrence > 1 else ""),
        f"keyword {keyword!r} not found in {where_en}"
        + (f" (occurrence {occurrence})" if occurrence > 1 else ""),
        keyword=keyword,
    )


# --- riding seals ----------------------------------------------------------------------------------------
def riding_boxes(
    pages: Sequence[PageGeometry], width: float, height: float, y: float | None = None
) -> tuple[StampBox, ...]:
    """One StampBox per page at the right edge, as ofdrw's ``RidingStampPos(Side.Right)`` does.

    The seal is cut into ``len(pages)`` vertical slices of equal width; page ``i`` (0-based) shows
    slice ``i`` through ``Clip`` and its Boundary is the whole seal shifted so that slice ends at
    the page's right edge: the rest of the Boundary lies outside the page. Laid edge to edge (or
    fanned, as a bound stack), the slices rebuild the seal.
    """
    if len(pages) < 2:
        raise InvalidInput("骑缝章需要至少两页", "a riding seal needs at least two pages")
    n = len(pages)
    slice_w = width / n
    out: list[StampBox] = []
    for i, geometry in enumerate(pages):
        box = geometry.box
        top = box.y + (box.h - height) / 2 if y is None else box.y + y
        x = box.x + box.w - slice_w * (i + 1)
        out.append(
            StampBox(geometry.page_id, Box(x, top, width, height), Box(i * slice_w, 0.0, slice_w, height))
        )
    return tuple(out)


# --- plans -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlacementPlan:
    """A placement checked against the document; :meth:`stamps` sizes it once the seal is known.

    ``anchor`` is the stamp's top-left (position), its centre (keyword), or None (riding, invisible).
    """

    kind: str  # "position" | "keyword" | "riding" | "invisible"
    pages: tuple[PageGeometry, ...]
    anchor: tuple[float, float] | None = None
    riding_y: float | None = None

    def stamps(self, width: float, height: float) -> tuple[StampBox, ...]:
        if not (math.isfinite(width) and math.isfinite(height)) or width <= 0 or height <= 0:
            raise InvalidInput("印章图片尺寸无效", "the seal picture has an invalid size")
        if self.kind == "invisible":
            return ()
        if self.kind == "riding":
            return riding_boxes(self.pages, width, height, self.riding_y)
        assert self.anchor is not None
        x, y = self.anchor
        if self.kind == "keyword":
            x, y = x - width / 2, y - height / 2
        return (StampBox(self.pages[0].page_id, Box(x, y, width, height)),)


def plan_placement(pkg: OfdPackage, document: DocumentPages, placement: Placement | None) -> PlacementPlan:
    """Check ``placement`` against the document; None means an invisible signature (no StampAnnot)."""
    if not document.pages:
        raise MalformedData("文档没有页面", "the document has no pages")
    if placement is None:
        return PlacementPlan("invisible", ())
    if isinstance(placement, AtPosition):
        geometry = page_geometry(pkg, document, placement.page)
        x, y = _finite(placement.x, "x"), _finite(placement.y, "y")
        box = geometry.box
        if not (0 <= x <= box.w and 0 <= y <= box.h):
            raise InvalidInput(
                f"盖章位置 ({format_mm(x)}, {format_mm(y)}) 不在页面内"
                f"（{format_mm(box.w)}×{format_mm(box.h)} 毫米）",
                f"stamp position ({format_mm(x)}, {format_mm(y)}) mm is outside the page "
                f"({format_mm(box.w)}×{format_mm(box.h)} mm)",
            )
        return PlacementPlan("position", (geometry,), (box.x + x, box.y + y))
    if isinstance(placement, AtKeyword):
        hit = find_keyword(
            pkg, document, placement.keyword, page=placement.page, occurrence=placement.occurrence
        )
        return PlacementPlan("keyword", (hit.page,), hit.box.centre)
    if isinstance(placement, Riding):
        riding_y = None if placement.y is None else _finite(placement.y, "y")
        geometries = tuple(page_geometry(pkg, document, n) for n in range(1, len(document.pages) + 1))
        if len(geometries) < 2:
            raise InvalidInput("骑缝章需要至少两页", "a riding seal needs at least two pages")
        return PlacementPlan("riding", geometries, riding_y=riding_y)
    raise InvalidInput("未知的盖章位置类型", "unknown placement type")  # pragma: no cover - typed union


def placement_from_options(
    *,
    page: int | None = None,
    x: float | None = None,
    y: float | None = None,
    keyword: str | None = None,
    occurrence: int = 1,
    riding: bool = False,
) -> Placement | None:
    """The placement that a flat set of options (CLI flags, form fields, query parameters) names.

    ``riding`` (with an optional ``y``), or ``keyword`` (optionally on ``page``), or ``x`` and ``y``
    (on ``page``, default 1); none of them means an invisible signature. Mixing kinds is refused.
    """
    keyword = keyword if keyword is None or keyword.strip() else None
    kinds = [name for name, used in (("riding", riding), ("keyword", keyword is not None)) if used]
    if x is not None:
        kinds.append("position")
    if len(kinds) > 1:
        raise InvalidInput(
            "盖章位置只能选一种：页面坐标、关键字或骑缝章",
            "choose one placement: page coordinates, a keyword, or a riding seal",
            given=kinds,
        )
    if riding:
        if page is not None:
            raise InvalidInput("骑缝章覆盖所有页面，不能指定页码", "a riding seal covers every page; no page")
        return Riding(y)
    if keyword is not None:
        if y is not None:
            raise InvalidInput("关键字定位不能同时给出坐标", "a keyword placement takes no coordinates")
        return AtKeyword(keyword, page, occurrence)
    if x is not None or y is not None:
        if x is None or y is None:
            raise InvalidInput("坐标定位须同时给出 x 和 y", "a position needs both x and y")
        return AtPosition(1 if page is None else page, x, y)
    if page is not None:
        raise InvalidInput("指定页码时须给出 x 和 y", "a page needs x and y")
    return None


__all__ = [
    "AtKeyword",
    "AtPosition",
    "Box",
    "KeywordHit",
    "PageGeometry",
    "Placement",
    "PlacementPlan",
    "Riding",
    "StampBox",
    "find_keyword",
    "format_mm",
    "page_geometry",
    "parse_box",
    "parse_delta",
    "placement_from_options",
    "plan_placement",
    "riding_boxes",
]
