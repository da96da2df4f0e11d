"""Rendering a licence as a print-ready PDF (同步生成): the same :class:`LicenceView` as the OFD, laid
out by the same :func:`licence_store.rendering.layout_pages`, so the printed copy shows the same
title, fields, holder, issuer, dates and QR code (the same PNG, :func:`rendering.qr_png`) in the same
places. The OFD stays the legal copy; the PDF is sealed with the same department seal when issued
(:func:`licence_store.issuing.make_version`).

The CJK font is embedded (a subset, with a ToUnicode map so the text can be searched and
extracted): the font :func:`seal_registry.fonts.find_cjk_font` finds (``ESEAL_SEAL_FONT`` chooses
another), TrueType outlines only. In a font collection the face whose Latin letters and digits are
exactly half an em wide is preferred (WenQuanYi Zen Hei Mono): its advances are the layout's own
(CJK one font size, the rest half of one), so every line is drawn as one string. With another font a
character whose width differs is placed in its layout cell on its own, squeezed if it is wider.
A character the font cannot draw is refused (ConfigurationError naming it), never printed as a box.

The same view and time always give the same bytes: reportlab's invariant mode (document ID from the
content, no wall-clock time), creation and modification dates set to ``when``.
"""

from __future__ import annotations

import datetime as dt
import io
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont, TTFontFace
from reportlab.pdfgen.canvas import Canvas

from core.errors import ConfigurationError
from gmpki.sm3 import sm3
from seal_registry import fonts

from .rendering import QR_RESOURCE_ID, LicenceView, advance, layout_pages, qr_png, text_width

PDF_MEDIA_TYPE: Final = "application/pdf"
MM: Final = 72 / 25.4  # PDF points per millimetre
FRAME_RGB: Final = (170 / 255, 40 / 255, 40 / 255)  # the OFD frame's "170 40 40"
FRAME_WIDTH_MM: Final = 0.6
FRAME_INSET_MM: Final = 8.0
# Latin letters and digits that show whether a face advances them by half an em, as the layout does.
_HALF_WIDTH_PROBE: Final = "AMWimw019"
_CJK_PROBE: Final = "中国证照"
_WIDTH_TOLERANCE: Final = 0.01  # of the font size


# --- the font -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrintFont:
    """A TrueType face registered with reportlab under ``name``."""

    name: str
    path: str
    face_index: int
    chars: frozenset[int]  # code points the face maps to a glyph


def _face_fits_layout(face: TTFontFace) -> bool:
    widths = face.charWidths
    half = all(abs(widths.get(ord(c), -1.0) - 500.0) < 1.0 for c in _HALF_WIDTH_PROBE)
    full = all(abs(widths.get(ord(c), -1.0) - 1000.0) < 1.0 for c in _CJK_PROBE)
    return half and full


@lru_cache(maxsize=4)
def _load_font(path: str) -> PrintFont:
    try:
        first = TTFontFace(path, subfontIndex=0)
        count = int(getattr(first, "numSubfonts", 1) or 1)
        faces = [first, *(TTFontFace(path, subfontIndex=i) for i in range(1, count))]
    except (TTFError, OSError, ValueError) as exc:
        raise ConfigurationError(
            f"打印版 PDF 无法使用字体 {path}（须为 TrueType 轮廓的中文字体）：{exc}；"
            f"请通过 {fonts.FONT_ENV} 指定其他字体",
            f"the print PDF cannot use font {path} (a CJK font with TrueType outlines is needed): {exc}; "
            f"set {fonts.FONT_ENV} to another font",
            font=path,
        ) from exc
    index = next((i for i, face in enumerate(faces) if _face_fits_layout(face)), 0)
    # One registration per file and face; reportlab keeps per-document state itself.
    name = "eseal-licence-" + sm3(f"{path}\x00{index}".encode()).hex()[:16]
    font = TTFont(name, path, subfontIndex=index)
    pdfmetrics.registerFont(font)
    return PrintFont(name, path, index, frozenset(font.face.charToGlyph))


def print_font() -> PrintFont:
    """The face the licence PDF is set in (ConfigurationError when there is none usable)."""
    return _load_font(os.fspath(fonts.find_cjk_font()))


def _require_glyphs(font: PrintFont, texts: list[str]) -> None:
    missing: list[str] = []
    for text in texts:
        for ch in text:
            if not ch.isspace() and ord(ch) not in font.chars and ch not in missing:
                missing.append(ch)
    if missing:
        chars = "".join(missing[:20])
        raise ConfigurationError(
            f"打印版 PDF 字体 {font.path} 缺少字形：{chars}；请通过 {fonts.FONT_ENV} 指定包含这些字的字体",
            f"the print PDF font {font.path} lacks glyphs for: {chars}; set {fonts.FONT_ENV} to a font "
            "that has them",
            font=font.path,
            missing=chars,
        )


# --- the page -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Text:
    x: float
    y: float
    text: str
    size: float


@dataclass(frozen=True)
class _Image:
    x: float
    y: float
    size: float
    resource_id: int


class _PdfPage:
    """Records what the layout draws (a :class:`rendering.PageSurface`); :func:`_draw` paints it."""

    def __init__(self, width: float, height: float) -> None:
        self.width = width
        self.height = height
        self.framed = False
        self.texts: list[_Text] = []
        self.images: list[_Image] = []

    def text(self, x: float, y: float, text: str, size: float) -> None:
        if text:
            self.texts.append(_Text(x, y, text, size))

    def centred(self, y: float, text: str, size: float) -> None:
        self.text(max((self.width - text_width(text, size)) / 2, 0.0), y, text, size)

    def frame(self) -> None:
        self.framed = True

    def image(self, x: float, y: float, size: float, resource_id: int) -> None:
        self.images.append(_Image(x, y, size, resource_id))


def _draw_text(canvas: Canvas, font: PrintFont, page_height: float, item: _Text) -> None:
    """Draw ``item`` with every character in its layout cell; runs whose font advances equal the
    layout's go out as one string (clean text extraction)."""
    size_pt = item.size * MM
    baseline = (page_height - item.y - item.size) * MM
    cursor = item.x * MM
    run, run_x = "", cursor

    def flush() -> None:
        nonlocal run
        if run:
            canvas.drawString(run_x, baseline, run)
            run = ""

    for ch in item.text:
        cell = advance(ch, item.size) * MM
        actual = pdfmetrics.stringWidth(ch, font.name, size_pt)
        if abs(actual - cell) <= _WIDTH_TOLERANCE * size_pt:
            if not run:
                run_x = cursor
            run += ch
        else:
            flush()
            text = canvas.beginText(cursor, baseline)
            text.setFont(font.name, size_pt)
            if actual > cell:
                text.setHorizScale(100.0 * cell / actual)
            else:
                text.setTextOrigin(cursor + (cell - actual) / 2, baseline)
            text.textOut(ch)
            canvas.drawText(text)
            canvas.setFont(font.name, size_pt)
        cursor += cell
    flush()


def _draw(canvas: Canvas, font: PrintFont, page: _PdfPage, images: dict[int, ImageReader]) -> None:
    w, h = page.width, page.height
    if page.framed:
        canvas.setStrokeColorRGB(*FRAME_RGB)
        canvas.setLineWidth(FRAME_WIDTH_MM * MM)
        inset = FRAME_INSET_MM * MM
        canvas.rect(inset, inset, (w - 2 * FRAME_INSET_MM) * MM, (h - 2 * FRAME_INSET_MM) * MM, stroke=1)
    canvas.setFillColorRGB(0, 0, 0)
    for item in page.texts:
        canvas.setFont(font.name, item.size * MM)
        _draw_text(canvas, font, h, item)
    for image in page.images:
        side = image.size * MM
        canvas.drawImage(images[image.resource_id], image.x * MM, (h - image.y - image.size) * MM, side, side)


def _pdf_date(when: dt.datetime) -> str:
    t = when.astimezone(dt.UTC)
    return f"D:{t:%Y%m%d%H%M%S}+00'00'"


def render_licence_pdf(view: LicenceView, *, when: dt.datetime) -> bytes:
    """The unsealed, print-ready licence PDF; ``when`` (the issue time) dates the document.

    Raises ConfigurationError when no usable CJK font is installed or it lacks a character used.
    """
    font = print_font()
    width, height = view.page_size
    pages = layout_pages(view, lambda: _PdfPage(width, height))
    _require_glyphs(font, [t.text for p in pages for t in p.texts])
    images = {QR_RESOURCE_ID: ImageReader(io.BytesIO(qr_png(view.verify_url)))}

    out = io.BytesIO()
    canvas = Canvas(
        out,
        pagesize=(width * MM, height * MM),
        invariant=1,
        pageCompression=1,
        lang="zh-CN",
        # The font of the page's first BT: ours, so the PDF names no unembedded standard font.
        # (types-reportlab types this name as a float; reportlab takes a registered font name.)
        initialFontName=font.name,  # type: ignore[arg-type]
    )
    date = _pdf_date(when)
    canvas.setDateFormatter(lambda *_ignored: date)
    canvas.setTitle(view.title)
    canvas.setSubject(f"证照标识 {view.identifier}")
    canvas.setAuthor(view.issuer_name)
    canvas.setCreator("eseal")
    canvas.setKeywords(", ".join(f"{name}={value}" for name, value in view.custom_data))
    for page in pages:
        _draw(canvas, font, page, images)
        canvas.showPage()
    canvas.save()
    return out.getvalue()


__all__ = ["PDF_MEDIA_TYPE", "PrintFont", "print_font", "render_licence_pdf"]
