"""The stamp caption's font: embedded, cut down to the caption's characters, and still complete."""

from __future__ import annotations

import io
import re

from fontTools.ttLib import TTFont  # type: ignore[import-untyped]
from pyhanko.pdf_utils.generic import DictionaryObject
from pyhanko.pdf_utils.reader import PdfFileReader

from seal_registry.models import Seal
from tests.registry.conftest import Registry

from .conftest import make_pdf, seal_document


def _fonts(node: DictionaryObject, seen: set[int]) -> list[DictionaryObject]:
    """Every font dictionary reachable from ``node``'s resources and the XObjects inside them."""
    found: list[DictionaryObject] = []
    if id(node) in seen:
        return found
    seen.add(id(node))
    resources = node.get("/Resources")
    if resources is None:
        return found
    resources = resources.get_object()
    for font in (resources.get("/Font") or DictionaryObject()).get_object().values():
        found.append(font.get_object())
    for xobject in (resources.get("/XObject") or DictionaryObject()).get_object().values():
        found.extend(_fonts(xobject.get_object(), seen))
    return found


def _to_unicode_chars(font: DictionaryObject) -> set[str]:
    """The characters a ToUnicode CMap maps to (bfchar, bfrange with an array or a start value)."""
    cmap = font["/ToUnicode"].get_object().data.decode("latin-1")
    targets: list[str] = []
    for block in re.findall(r"beginbfchar(.*?)endbfchar", cmap, re.S):
        targets += re.findall(r"<[0-9A-Fa-f]+>\s*<([0-9A-Fa-f]+)>", block)
    entry = re.compile(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*(\[[^\]]*\]|<[0-9A-Fa-f]+>)")
    for block in re.findall(r"beginbfrange(.*?)endbfrange", cmap, re.S):
        for lo, hi, rest in entry.findall(block):
            if rest.startswith("["):
                targets += re.findall(r"<([0-9A-Fa-f]+)>", rest)
            else:
                first = int(rest[1:-1], 16)
                targets += [f"{first + i:04x}" for i in range(int(hi, 16) - int(lo, 16) + 1)]
    return {bytes.fromhex(t).decode("utf-16-be") for t in targets}


def test_caption_font_is_a_small_subset_holding_the_caption(region: Registry, seal: Seal) -> None:
    sealed = seal_document(region, seal, make_pdf(), key_kind="sm2")
    reader = PdfFileReader(io.BytesIO(sealed))
    widgets = [
        annot.get_object()
        for annot in reader.root["/Pages"]["/Kids"][0].get_object().get("/Annots", [])
        if annot.get_object().get("/FT") == "/Sig" or "/AP" in annot.get_object()
    ]
    assert widgets, "the sealed page has no signature widget"
    appearance = widgets[0]["/AP"]["/N"].get_object()
    fonts = [f for f in _fonts(appearance, set()) if f.get("/Subtype") == "/Type0"]
    assert len(fonts) == 1, "the caption is drawn with one embedded CJK font"
    descendant = fonts[0]["/DescendantFonts"][0].get_object()
    program = descendant["/FontDescriptor"]["/FontFile2"].get_object().data
    # The whole wqy-zenhei face is ~11 MiB; the caption needs a few dozen glyphs.
    assert len(program) < 200 * 1024
    face = TTFont(io.BytesIO(program))
    assert face["maxp"].numGlyphs < 100
    mapped = _to_unicode_chars(fonts[0])
    for ch in region.department.name + "-:(UTC+8)":
        assert ch in mapped, f"caption character {ch!r} missing from the embedded font"
