"""Seal pictures (印章图像): drawing standard seals and vetting uploaded ones.

Drawing follows the customary layout of Chinese seals (GA 241-2000 style round official seal, the oval
invoice seal, the square personal-name seal). Everything is drawn into one supersampled greyscale
coverage mask and then emitted as a single-colour RGBA PNG, because a real seal is one ink: colour is
constant and only coverage varies.

Uploads are sniffed by magic bytes, decoded only after their declared dimensions pass the limits, and
SVG is parsed without DTDs/entities and rejected if it could run script or fetch anything.
"""

from __future__ import annotations

import io
import math
import os
import re
from dataclasses import dataclass
from typing import NamedTuple
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as DefusedET
from PIL import Image, ImageDraw

from core.errors import InputTooLarge, InvalidInput, MalformedData
from seal_registry import fonts

SEAL_RED: tuple[int, int, int] = (0xE6, 0x00, 0x12)

MIN_SIDE_MM = 10
MAX_SIDE_MM = 100
MIN_DPI = 72
MAX_DPI = 1200

MAX_PICTURE_BYTES = 2 * 1024 * 1024
MAX_PICTURE_SIDE_PX = 4096
MAX_PICTURE_PIXELS = MAX_PICTURE_SIDE_PX * MAX_PICTURE_SIDE_PX
MAX_SVG_ELEMENTS = 20_000
# When an upload carries no usable resolution, its longer side is suggested at this size (a typical
# official seal).
DEFAULT_SUGGESTED_MM = 40

# Enough supersampling for smooth ring edges without Pillow's non-antialiased primitives showing.
_SUPERSAMPLE = 4
_MAX_SUPERSAMPLED_SIDE = 4000
_CJK_REF = "国"
_DIGIT_REF = "0"
_STROKE = 0.018  # extra stroke weight, as a fraction of the font size


class SealPicture(NamedTuple):
    """A rendered seal: PNG bytes plus the display size (mm) to put in SES_ESPictrueInfo."""

    png: bytes
    width_mm: int
    height_mm: int

    @property
    def type(self) -> str:
        return "png"


# ==================================================================================================
# Drawing
# ==================================================================================================


def _check_size(width_mm: int, height_mm: int, dpi: int) -> tuple[int, int]:
    for value, name_zh, name_en in ((width_mm, "宽度", "width"), (height_mm, "高度", "height")):
        if not MIN_SIDE_MM <= value <= MAX_SIDE_MM:
            raise InvalidInput(
                f"印章{name_zh}必须在 {MIN_SIDE_MM}–{MAX_SIDE_MM} 毫米之间（收到 {value}）",
                f"Seal {name_en} must be {MIN_SIDE_MM}–{MAX_SIDE_MM} mm (got {value})",
            )
    if not MIN_DPI <= dpi <= MAX_DPI:
        raise InvalidInput(
            f"分辨率必须在 {MIN_DPI}–{MAX_DPI} DPI 之间（收到 {dpi}）",
            f"Resolution must be {MIN_DPI}–{MAX_DPI} DPI (got {dpi})",
        )
    px = (round(width_mm / 25.4 * dpi), round(height_mm / 25.4 * dpi))
    if max(px) > MAX_PICTURE_SIDE_PX:
        raise InvalidInput(
            f"印章图像超过 {MAX_PICTURE_SIDE_PX} 像素，请降低分辨率",
            f"Seal picture would exceed {MAX_PICTURE_SIDE_PX} pixels; lower the DPI",
        )
    return px


def _clean_text(text: str | None, what_zh: str, what_en: str, max_chars: int, *, required: bool) -> str:
    cleaned = "".join((text or "").split())  # seal text is set without spaces
    if not cleaned:
        if required:
            raise InvalidInput(f"{what_zh}不能为空", f"The {what_en} must not be empty")
        return ""
    if len(cleaned) > max_chars:
        raise InvalidInput(
            f"{what_zh}过长（最多 {max_chars} 个字符）",
            f"The {what_en} is too long (at most {max_chars} characters)",
        )
    fonts.check_drawable_text(cleaned, what_zh, what_en)
    return cleaned


def _clean_ascii(text: str | None, what_zh: str, what_en: str, max_chars: int) -> str:
    cleaned = (text or "").strip()
    if len(cleaned) > max_chars or not all("!" <= ch <= "~" for ch in cleaned):
        raise InvalidInput(
            f"{what_zh}只能包含不超过 {max_chars} 个可见 ASCII 字符",
            f"The {what_en} must be at most {max_chars} visible ASCII characters",
        )
    return cleaned


class _Canvas:
    """A supersampled coverage mask with millimetre coordinates centred on the picture."""

    def __init__(self, width_mm: int, height_mm: int, dpi: int, font_path: str) -> None:
        self.width_mm, self.height_mm, self.dpi = width_mm, height_mm, dpi
        self.out_px = _check_size(width_mm, height_mm, dpi)
        self.ss = max(1, min(_SUPERSAMPLE, _MAX_SUPERSAMPLED_SIDE // max(self.out_px)))
        self.size = (self.out_px[0] * self.ss, self.out_px[1] * self.ss)
        self.mask = Image.new("L", self.size, 0)
        self.draw = ImageDraw.Draw(self.mask)
        self.font_path = font_path
        # Scale so that the picture's mm grid maps exactly onto the pixel grid of each axis.
        self.kx = self.size[0] / width_mm
        self.ky = self.size[1] / height_mm
        self.k = min(self.kx, self.ky)

    def at(self, x_mm: float, y_mm: float) -> tuple[float, float]:
        return (self.size[0] / 2 + x_mm * self.kx, self.size[1] / 2 + y_mm * self.ky)

    def ellipse_ring(self, rx_mm: float, ry_mm: float, width_mm: float) -> None:
        cx, cy = self.at(0, 0)
        rx, ry = rx_mm * self.kx, ry_mm * self.ky
        self.draw.ellipse(
            (cx - rx, cy - ry, cx + rx, cy + ry), outline=255, width=max(1, round(width_mm * self.k))
        )

    def star(self, outer_mm: float, y_mm: float = 0.0) -> None:
        inner_mm = outer_mm * math.sin(math.radians(18)) / math.sin(math.radians(54))
        points = []
        for i in range(10):
            r = outer_mm if i % 2 == 0 else inner_mm
            angle = math.radians(36 * i)
            points.append(self.at(r * math.sin(angle), y_mm - r * math.cos(angle)))
        self.draw.polygon(points, fill=255)

    def glyph(
        self,
        ch: str,
        x_mm: float,
        y_mm: float,
        height_mm: float,
        width_mm: float,
        *,
        ref: str,
        rotate_cw_deg: float = 0.0,
    ) -> None:
        """Draw ``ch`` into a ``width_mm`` × ``height_mm`` cell centred at (x, y), rotated clockwise."""
        tile = _glyph_tile(self.font_path, ch, ref, height_mm * self.k, width_mm * self.k)
        if rotate_cw_deg:
            tile = tile.rotate(-rotate_cw_deg, resample=Image.Resampling.BICUBIC, expand=True)
        cx, cy = self.at(x_mm, y_mm)
        x0, y0 = round(cx - tile.width / 2), round(cy - tile.height / 2)
        self.mask.paste(255, (x0, y0, x0 + tile.width, y0 + tile.height), tile)

    def text_line(
        self, text: str, y_mm: float, height_mm: float, max_width_mm: float, *, ref: str, spacing: float
    ) -> None:
        """Horizontal text centred on the vertical axis, condensed if it would exceed ``max_width_mm``."""
        aspect = _natural_aspect(self.font_path, ref)
        cell = height_mm * aspect * (1 + spacing)
        cell = min(cell, max_width_mm / len(text))
        glyph_w = min(height_mm * aspect, cell / (1 + spacing))
        x = -cell * (len(text) - 1) / 2
        for ch in text:
            self.glyph(ch, x, y_mm, height_mm, glyph_w, ref=ref)
            x += cell

    def text_arc(
        self,
        text: str,
        outer_rx_mm: float,
        outer_ry_mm: float,
        height_mm: float,
        span_deg: float,
        *,
        ref: str,
        upper: bool,
        fill: float = 0.9,
    ) -> None:
        """Set ``text`` left to right along the upper (or lower) arc of an ellipse, evenly by arc length.

        The glyphs' outer edges follow the ellipse ``outer_rx_mm`` × ``outer_ry_mm``. Glyphs stand on
        the ellipse with their tops pointing outward on the upper arc and toward the centre on the
        lower arc, so both read upright from below as on a real seal.
        """
        n = len(text)
        aspect = _natural_aspect(self.font_path, ref)
        glyph_h = height_mm
        for _ in range(4):
            rx, ry = outer_rx_mm - glyph_h / 2, outer_ry_mm - glyph_h / 2
            ts, cumulative = _arc_table(rx, ry, span_deg, upper)
            step = cumulative[-1] / (n - 1) if n > 1 else cumulative[-1]
            # Neighbouring cells converge toward the centre; size them to fit at their inner edge.
            mean_r = (rx + ry) / 2
            inner_ratio = max(0.3, (mean_r - glyph_h / 2) / mean_r)
            glyph_w = min(glyph_h * aspect, step * inner_ratio * fill)
            if glyph_w >= _MIN_GLYPH_RATIO * glyph_h * 0.99:
                break
            # Too narrow to read: shrink the whole glyph (and move it out to the ring) instead.
            glyph_h = glyph_w / _MIN_GLYPH_RATIO

        total = cumulative[-1]
        targets = [total / 2] if n == 1 else [step * i for i in range(n)]
        last = len(ts) - 1
        j = 0
        for ch, target in zip(text, targets, strict=True):
            while j < last - 1 and cumulative[j + 1] < target:
                j += 1
            seg = cumulative[j + 1] - cumulative[j]
            frac = min(1.0, max(0.0, (target - cumulative[j]) / seg)) if seg > 0 else 0.0
            x, y = _arc_point(rx, ry, ts[j] + frac * (ts[j + 1] - ts[j]), upper)
            # Outward normal of the ellipse x²/a² + y²/b² = 1 at (x, y).
            nx, ny = x / (rx * rx), y / (ry * ry)
            rotation = math.degrees(math.atan2(nx, -ny) if upper else math.atan2(-nx, ny))
            self.glyph(ch, x, y, glyph_h, glyph_w, ref=ref, rotate_cw_deg=rotation)

    def to_png(self, color: tuple[int, int, int]) -> bytes:
        mask = self.mask
        if self.ss > 1:
            mask = mask.resize(self.out_px, Image.Resampling.LANCZOS)
        image = Image.new("RGBA", self.out_px, (*color, 0))
        image.putalpha(mask)
        buf = io.BytesIO()
        image.save(buf, format="PNG", dpi=(self.dpi, self.dpi), optimize=True)
        return buf.getvalue()


_METRIC_SIZE = 200
_MIN_GLYPH_RATIO = 0.42  # narrowest readable width/height of a condensed glyph
_ARC_SAMPLES = 1024


def _arc_point(rx: float, ry: float, t: float, upper: bool) -> tuple[float, float]:
    # t is measured from the top (upper arc) or the bottom (lower arc), positive to the right.
    return (rx * math.sin(t), -ry * math.cos(t) if upper else ry * math.cos(t))


def _arc_table(rx: float, ry: float, span_deg: float, upper: bool) -> tuple[list[float], list[float]]:
    """Parameter samples over the arc and the cumulative arc length at each."""
    half = math.radians(span_deg) / 2
    ts = [-half + 2 * half * i / _ARC_SAMPLES for i in range(_ARC_SAMPLES + 1)]
    cumulative = [0.0]
    prev = _arc_point(rx, ry, ts[0], upper)
    for t in ts[1:]:
        cur = _arc_point(rx, ry, t, upper)
        cumulative.append(cumulative[-1] + math.dist(prev, cur))
        prev = cur
    return ts, cumulative


def _ref_metrics(font_path: str, ref: str) -> tuple[float, float, float]:
    """(ink top, ink bottom, advance) of ``ref`` at the metric size, relative to the baseline."""
    font = fonts.load_font(font_path, _METRIC_SIZE)
    _left, top, _right, bottom = font.getbbox(ref, anchor="ls")
    return float(top), float(bottom), float(font.getlength(ref))


def _natural_aspect(font_path: str, ref: str) -> float:
    top, bottom, advance = _ref_metrics(font_path, ref)
    return advance / (bottom - top)


def _glyph_tile(font_path: str, ch: str, ref: str, height_px: float, width_px: float) -> Image.Image:
    """``ch`` drawn so that ``ref`` would fill ``width_px`` × ``height_px`` of ink, centred in the tile.

    Sizing by a reference glyph instead of each glyph's own ink box keeps flat characters (一) flat
    and keeps all glyphs of a line on one baseline.
    """
    top0, bottom0, _adv0 = _ref_metrics(font_path, ref)
    size = max(4, round(height_px * _METRIC_SIZE / (bottom0 - top0)))
    font = fonts.load_font(font_path, size)
    _l, top, _r, bottom = font.getbbox(ref, anchor="ls")
    ref_advance = font.getlength(ref)
    advance = font.getlength(ch)
    tile_w = math.ceil(max(advance, ref_advance) * 1.4) + 4
    tile_h = math.ceil((bottom - top) * 1.6) + 4
    tile = Image.new("L", (tile_w, tile_h), 0)
    baseline = tile_h / 2 - (top + bottom) / 2
    # Seal engraving is heavier than screen type; a thin stroke gives it that weight.
    ImageDraw.Draw(tile).text(
        (tile_w / 2 - advance / 2, baseline),
        ch,
        fill=255,
        font=font,
        anchor="ls",
        stroke_width=max(0, round(size * _STROKE)),
        stroke_fill=255,
    )
    scale_x = width_px / ref_advance
    if abs(scale_x - 1) > 0.01:
        tile = tile.resize((max(1, round(tile_w * scale_x)), tile_h), Image.Resampling.LANCZOS)
    return tile


def _resolve_font(font_path: str | os.PathLike[str] | None, *texts: tuple[str, str, str]) -> str:
    path = os.fspath(fonts.find_cjk_font(font_path))
    for text, what_zh, what_en in texts:
        if text:
            fonts.require_glyphs(path, text, what_zh, what_en)
    return path


def render_round_seal(
    name: str,
    *,
    horizontal_text: str | None = None,
    code: str | None = None,
    diameter_mm: int = 42,
    dpi: int = 300,
    color: tuple[int, int, int] = SEAL_RED,
    font_path: str | os.PathLike[str] | None = None,
) -> SealPicture:
    """The round official seal (公章): ring, centre star, ``name`` on the upper arc.

    ``horizontal_text`` (e.g. 合同专用章) goes under the star; ``code`` (the seal's esID or 13-digit
    code) runs in small characters along the lower arc.
    """
    name = _clean_text(name, "单位名称", "organisation name", 30, required=True)
    horizontal = _clean_text(horizontal_text, "横排文字", "horizontal text", 10, required=False)
    code_text = _clean_ascii(code, "印章编码", "seal code", 32)
    path = _resolve_font(
        font_path,
        (name, "单位名称", "organisation name"),
        (horizontal, "横排文字", "horizontal text"),
        (code_text, "印章编码", "seal code"),
    )
    canvas = _Canvas(diameter_mm, diameter_mm, dpi, path)
    s = diameter_mm / 42  # proportions are those of the 42 mm standard seal
    radius = diameter_mm / 2 - 0.15 * s
    ring = 1.2 * s
    canvas.ellipse_ring(radius, radius, ring)

    name_h = 6.2 * s
    text_outer = radius - ring - 0.7 * s
    # Long names spread further round the ring; short ones keep their characters close together.
    n = len(name)
    span = min(240.0, max(210.0, 200.0 + (n - 5) * 4.0), 45.0 * max(n - 1, 1))
    canvas.text_arc(name, text_outer, text_outer, name_h, span, ref=_CJK_REF, upper=True)

    canvas.star(7.0 * s)  # 14 mm star for a 42 mm seal

    if horizontal:
        canvas.text_line(horizontal, 9.4 * s, 3.8 * s, 17.0 * s, ref=_CJK_REF, spacing=0.08)

    if code_text:
        code_h = 1.9 * s
        code_outer = radius - ring - 0.5 * s
        natural = len(code_text) * code_h * _natural_aspect(path, _DIGIT_REF) * 1.15
        code_span = min(70.0, math.degrees(natural / (code_outer - code_h / 2)))
        canvas.text_arc(
            code_text, code_outer, code_outer, code_h, code_span, ref=_DIGIT_REF, upper=False, fill=0.95
        )
    return SealPicture(canvas.to_png(color), diameter_mm, diameter_mm)


def render_oval_seal(
    name: str,
    *,
    tax_number: str | None = None,
    seal_type_text: str | None = "发票专用章",
    width_mm: int = 40,
    height_mm: int = 30,
    dpi: int = 300,
    color: tuple[int, int, int] = SEAL_RED,
    font_path: str | os.PathLike[str] | None = None,
) -> SealPicture:
    """The oval seal (e.g. 发票专用章): name on the upper arc, tax number across the middle, type below."""
    name = _clean_text(name, "单位名称", "organisation name", 30, required=True)
    tax = _clean_ascii(tax_number, "纳税人识别号", "taxpayer number", 20)
    kind = _clean_text(seal_type_text, "印章类型文字", "seal type text", 10, required=False)
    path = _resolve_font(
        font_path,
        (name, "单位名称", "organisation name"),
        (tax, "纳税人识别号", "taxpayer number"),
        (kind, "印章类型文字", "seal type text"),
    )
    canvas = _Canvas(width_mm, height_mm, dpi, path)
    s = min(width_mm / 40, height_mm / 30)
    rx, ry = width_mm / 2 - 0.15 * s, height_mm / 2 - 0.15 * s
    ring = 1.0 * s
    canvas.ellipse_ring(rx, ry, ring)

    name_h = 4.4 * s
    inset = ring + 0.6 * s
    n = len(name)
    span = min(210.0, max(180.0, 170.0 + (n - 6) * 5.0), 40.0 * max(n - 1, 1))
    canvas.text_arc(name, rx - inset, ry - inset, name_h, span, ref=_CJK_REF, upper=True)

    if tax:
        canvas.text_line(tax, 0.8 * s, 3.0 * s, 23.0 * s, ref=_DIGIT_REF, spacing=0.05)
    if kind:
        canvas.text_line(kind, 7.4 * s, 4.0 * s, 19.0 * s, ref=_CJK_REF, spacing=0.05)
    return SealPicture(canvas.to_png(color), width_mm, height_mm)


def render_name_seal(
    name: str,
    *,
    width_mm: int = 20,
    height_mm: int = 20,
    dpi: int = 300,
    color: tuple[int, int, int] = SEAL_RED,
    font_path: str | os.PathLike[str] | None = None,
) -> SealPicture:
    """The square personal-name seal (法定代表人名章): 2–4 characters in a bordered grid.

    Traditional order: columns from right to left, each read top to bottom. With three characters the
    surname fills the right column alone; with two, each character fills a column.
    """
    name = _clean_text(name, "姓名", "name", 4, required=True)
    if len(name) < 2:
        raise InvalidInput("名章姓名须为 2–4 个字", "A name seal needs 2–4 characters")
    path = _resolve_font(font_path, (name, "姓名", "name"))
    canvas = _Canvas(width_mm, height_mm, dpi, path)
    s = min(width_mm, height_mm) / 20
    border = 1.1 * s
    half_w, half_h = width_mm / 2 - 0.15 * s, height_mm / 2 - 0.15 * s
    x0, y0 = canvas.at(-half_w, -half_h)
    x1, y1 = canvas.at(half_w, half_h)
    canvas.draw.rectangle((x0, y0, x1, y1), outline=255, width=max(1, round(border * canvas.k)))

    pad = 0.8 * s
    inner_w, inner_h = 2 * (half_w - border - pad), 2 * (half_h - border - pad)
    col_w = inner_w / 2
    # (column, row, rows in that column) per character; column 0 is the right-hand one.
    layout = {
        2: [(0, 0, 1), (1, 0, 1)],
        3: [(0, 0, 1), (1, 0, 2), (1, 1, 2)],
        4: [(0, 0, 2), (0, 1, 2), (1, 0, 2), (1, 1, 2)],
    }[len(name)]
    gap = 0.5 * s
    for ch, (col, row, rows) in zip(name, layout, strict=True):
        cell_h = inner_h / rows
        x = inner_w / 2 - col_w * (col + 0.5)
        y = -inner_h / 2 + cell_h * (row + 0.5)
        canvas.glyph(ch, x, y, cell_h - gap, col_w - gap, ref=_CJK_REF)
    return SealPicture(canvas.to_png(color), width_mm, height_mm)


# ==================================================================================================
# Upload validation
# ==================================================================================================

_TYPE_ALIASES: dict[str, str] = {
    "png": "png",
    "image/png": "png",
    "jpg": "jpg",
    "jpeg": "jpg",
    "jpe": "jpg",
    "image/jpeg": "jpg",
    "image/jpg": "jpg",
    "gif": "gif",
    "image/gif": "gif",
    "svg": "svg",
    "svg+xml": "svg",
    "image/svg+xml": "svg",
}
_PIL_FORMAT = {"png": "PNG", "jpg": "JPEG", "gif": "GIF"}
_MIME = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif", "svg": "image/svg+xml"}

SVG_NS = "http://www.w3.org/2000/svg"
_XLINK_NS = "http://www.w3.org/1999/xlink"
_FORBIDDEN_NAMESPACES = frozenset({"http://www.w3.org/1999/xhtml", "http://www.w3.org/2001/XInclude"})
# Elements that run code, embed other documents, or can rewrite attributes (href) at run time.
_FORBIDDEN_SVG_ELEMENTS = frozenset(
    {
        "script", "foreignObject", "iframe", "embed", "object", "handler", "listener",
        "set", "animate", "animateMotion", "animateTransform", "animateColor", "discard",
    }
)  # fmt: skip
_SAFE_DATA_URI = re.compile(r"data:image/(png|jpeg|jpg|gif|webp)[;,]", re.IGNORECASE)
_CSS_URL = re.compile(r"url\(\s*(['\"]?)(.*?)\1\s*\)", re.IGNORECASE | re.DOTALL)
_NON_DECL_PI = re.compile(rb"<\?(?!xml[\s?])", re.IGNORECASE)
_SVG_LENGTH = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(px|mm|cm|in|pt|pc)?\s*$")
_MM_PER_UNIT = {"px": 25.4 / 96, "mm": 1.0, "cm": 10.0, "in": 25.4, "pt": 25.4 / 72, "pc": 25.4 / 6}


@dataclass(frozen=True, slots=True)
class PictureInfo:
    """What an accepted upload is: its SES_ESPictrueInfo ``type``, pixel size and a suggested mm size."""

    type: str  # png | jpg | gif | svg
    width_px: int
    height_px: int
    width_mm: int
    height_mm: int

    @property
    def mime(self) -> str:
        return _MIME[self.type]


def sniff_picture_type(data: bytes) -> str | None:
    """``png``/``jpg``/``gif``/``svg`` from the leading bytes, or None when unrecognised."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    head = data[:512].removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    if head.startswith(b"<") and re.search(rb"<svg[\s>/]|<[A-Za-z_][\w.-]*:svg[\s>/]", data[:4096]):
        return "svg"
    return None


def normalise_picture_type(declared: str) -> str:
    """Map a declared type (``PNG``, ``image/jpeg``, ``.svg``…) onto png/jpg/gif/svg."""
    key = declared.strip().lower().removeprefix(".")
    try:
        return _TYPE_ALIASES[key]
    except KeyError:
        raise MalformedData(
            f"不支持的图像类型：{declared}（支持 PNG、JPEG、GIF、SVG）",
            f"Unsupported picture type: {declared} (PNG, JPEG, GIF and SVG are supported)",
            declared_type=declared,
        ) from None


def _suggest_mm(width_px: int, height_px: int, dpi: tuple[float, float] | None) -> tuple[int, int]:
    if dpi is not None and dpi[0] > 0 and dpi[1] > 0:
        w, h = width_px / dpi[0] * 25.4, height_px / dpi[1] * 25.4
        if MIN_SIDE_MM <= max(w, h) <= MAX_SIDE_MM:
            return max(1, round(w)), max(1, round(h))
    scale = DEFAULT_SUGGESTED_MM / max(width_px, height_px)
    return max(1, round(width_px * scale)), max(1, round(height_px * scale))


def _too_many_pixels(width: int, height: int) -> InputTooLarge:
    return InputTooLarge(
        f"图像尺寸 {width}×{height} 像素超出上限 {MAX_PICTURE_SIDE_PX}×{MAX_PICTURE_SIDE_PX}",
        f"Picture of {width}×{height} pixels exceeds the {MAX_PICTURE_SIDE_PX}×{MAX_PICTURE_SIDE_PX} limit",
        width=width,
        height=height,
    )


def _malformed(kind: str, exc: BaseException | None = None) -> MalformedData:
    reason = f"{type(exc).__name__}: {exc}" if exc is not None else ""
    return MalformedData(
        f"{kind.upper()} 图像数据损坏或无法解码",
        f"{kind.upper()} picture is corrupt or cannot be decoded",
        reason=reason[:200],
    )


def _validate_raster(data: bytes, kind: str) -> PictureInfo:
    fmt = _PIL_FORMAT[kind]
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            width, height = im.size
            if width <= 0 or height <= 0:
                raise _malformed(kind)
            if width > MAX_PICTURE_SIDE_PX or height > MAX_PICTURE_SIDE_PX:
                raise _too_many_pixels(width, height)
            if getattr(im, "is_animated", False):
                raise MalformedData("印章图像不能是动画", "A seal picture must not be animated")
            raw_dpi = im.info.get("dpi")
            im.verify()  # chunk CRCs and structure, before paying for a full decode
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            im.load()  # the compressed pixel data itself must decode completely
    except (MalformedData, InputTooLarge):
        raise
    except Image.DecompressionBombError as exc:
        raise InputTooLarge(
            "图像声明的像素数量过大（疑似解压炸弹）",
            "Picture declares far too many pixels (decompression bomb)",
        ) from exc
    except Exception as exc:
        # Pillow's decoders signal bad input with a spread of exception types (OSError, SyntaxError,
        # ValueError, EOFError, struct.error, ...); every one of them means "not a valid picture".
        raise _malformed(kind, exc) from exc
    dpi: tuple[float, float] | None = None
    if isinstance(raw_dpi, tuple) and len(raw_dpi) == 2:
        try:
            dpi = (float(raw_dpi[0]), float(raw_dpi[1]))
        except (TypeError, ValueError):
            dpi = None
    w_mm, h_mm = _suggest_mm(width, height, dpi)
    return PictureInfo(kind, width, height, w_mm, h_mm)


def _svg_reject(reason_zh: str, reason_en: str) -> MalformedData:
    return MalformedData(f"SVG 图像不安全或无效：{reason_zh}", f"Unsafe or invalid SVG picture: {reason_en}")


def _split_tag(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def _check_reference(value: str) -> None:
    target = value.strip()
    if target.startswith("#") or _SAFE_DATA_URI.match(target):
        return
    raise _svg_reject(f"不允许引用外部资源 {target[:80]}", f"external reference not allowed: {target[:80]}")


def _check_css(text: str) -> None:
    if "@import" in text.lower():
        raise _svg_reject("不允许 CSS @import", "CSS @import not allowed")
    for match in _CSS_URL.finditer(text):
        _check_reference(match.group(2))


def _svg_length_mm(value: str | None) -> float | None:
    if value is None:
        return None
    match = _SVG_LENGTH.match(value)
    if match is None:
        return None  # percentages and unknown units: fall back to the viewBox
    number = float(match.group(1))
    return number * _MM_PER_UNIT[match.group(2) or "px"] if number > 0 else None


def _validate_svg(data: bytes) -> PictureInfo:
    if _NON_DECL_PI.search(data):
        raise _svg_reject("不允许处理指令（如 xml-stylesheet）", "processing instructions are not allowed")
    try:
        root: Element = DefusedET.fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except defusedxml.DTDForbidden as exc:
        raise _svg_reject("不允许 DOCTYPE/DTD", "DOCTYPE/DTD not allowed") from exc
    except defusedxml.EntitiesForbidden as exc:
        raise _svg_reject("不允许实体声明", "entity declarations not allowed") from exc
    except defusedxml.ExternalReferenceForbidden as exc:
        raise _svg_reject("不允许外部实体", "external entities not allowed") from exc
    except (ParseError, ValueError, UnicodeError) as exc:
        raise MalformedData(
            "SVG 不是格式正确的 XML", "SVG is not well-formed XML", reason=str(exc)[:200]
        ) from exc

    ns, local = _split_tag(root.tag)
    if (ns, local) != (SVG_NS, "svg"):
        raise _svg_reject(
            "根元素必须是 SVG 命名空间中的 <svg>", "root element must be <svg> in the SVG namespace"
        )
    count = 0
    for element in root.iter():
        count += 1
        if count > MAX_SVG_ELEMENTS:
            raise InputTooLarge(
                f"SVG 元素数量超过 {MAX_SVG_ELEMENTS}", f"SVG has more than {MAX_SVG_ELEMENTS} elements"
            )
        if not isinstance(element.tag, str):
            continue  # comments
        ns, local = _split_tag(element.tag)
        if ns in _FORBIDDEN_NAMESPACES or (ns in (SVG_NS, "") and local in _FORBIDDEN_SVG_ELEMENTS):
            raise _svg_reject(f"不允许 <{local}> 元素", f"<{local}> element not allowed")
        if local == "style" and element.text:
            _check_css(element.text)
        for name, value in element.attrib.items():
            attr_ns, attr_local = _split_tag(name)
            if attr_local.lower().startswith("on"):
                raise _svg_reject(f"不允许事件属性 {attr_local}", f"event attribute {attr_local} not allowed")
            if attr_local == "href" and attr_ns in ("", _XLINK_NS):
                _check_reference(value)
            elif "url(" in value.lower() or "@import" in value.lower():
                _check_css(value)

    width_mm = _svg_length_mm(root.get("width"))
    height_mm = _svg_length_mm(root.get("height"))
    if width_mm is None or height_mm is None:
        view_box = (root.get("viewBox") or "").replace(",", " ").split()
        try:
            vb_w, vb_h = float(view_box[2]), float(view_box[3])
        except (IndexError, ValueError):
            raise MalformedData(
                "SVG 缺少有效的 width/height 或 viewBox", "SVG lacks a usable width/height or viewBox"
            ) from None
        if not (vb_w > 0 and vb_h > 0 and math.isfinite(vb_w) and math.isfinite(vb_h)):
            raise MalformedData("SVG 的 viewBox 无效", "SVG viewBox is invalid")
        # Only the aspect ratio is known; the viewBox units are CSS pixels.
        if width_mm is None and height_mm is None:
            width_mm, height_mm = vb_w * _MM_PER_UNIT["px"], vb_h * _MM_PER_UNIT["px"]
        elif width_mm is None:
            assert height_mm is not None
            width_mm = height_mm * vb_w / vb_h
        else:
            height_mm = width_mm * vb_h / vb_w
    limit_mm = MAX_PICTURE_SIDE_PX * _MM_PER_UNIT["px"]
    if not (width_mm <= limit_mm and height_mm <= limit_mm):  # also catches inf and NaN
        raise InputTooLarge(
            f"SVG 声明的尺寸超出上限 {MAX_PICTURE_SIDE_PX} 像素",
            f"SVG declares a size beyond the {MAX_PICTURE_SIDE_PX} pixel limit",
        )
    width_px = max(1, round(width_mm / _MM_PER_UNIT["px"]))
    height_px = max(1, round(height_mm / _MM_PER_UNIT["px"]))
    if MIN_SIDE_MM <= max(width_mm, height_mm) <= MAX_SIDE_MM:
        suggested = (max(1, round(width_mm)), max(1, round(height_mm)))
    else:
        suggested = _suggest_mm(width_px, height_px, None)
    return PictureInfo("svg", width_px, height_px, *suggested)


def validate_picture(data: bytes, declared_type: str | None = None) -> PictureInfo:
    """Accept an uploaded seal picture (PNG, JPEG, GIF or SVG) or raise a typed error.

    The type comes from the content's magic bytes; ``declared_type`` (``png``, ``image/jpeg``...) must
    agree with it. Raises :class:`InputTooLarge` for byte or pixel limits and :class:`MalformedData`
    for anything unreadable, unsupported, mismatched or (SVG) unsafe.
    """
    if len(data) > MAX_PICTURE_BYTES:
        raise InputTooLarge(
            f"图像文件超过 {MAX_PICTURE_BYTES // (1024 * 1024)} MiB",
            f"Picture file exceeds {MAX_PICTURE_BYTES // (1024 * 1024)} MiB",
            size=len(data),
        )
    if not data:
        raise MalformedData("图像数据为空", "Picture data is empty")
    declared = normalise_picture_type(declared_type) if declared_type is not None else None
    actual = sniff_picture_type(data)
    if actual is None:
        raise MalformedData(
            "无法识别的图像格式（支持 PNG、JPEG、GIF、SVG）",
            "Unrecognised picture format (PNG, JPEG, GIF and SVG are supported)",
        )
    if declared is not None and declared != actual:
        raise MalformedData(
            f"声明的图像类型 {declared} 与实际内容 {actual} 不符",
            f"Declared picture type {declared} does not match its content ({actual})",
            declared_type=declared,
            actual_type=actual,
        )
    if actual == "svg":
        return _validate_svg(data)
    return _validate_raster(data, actual)
