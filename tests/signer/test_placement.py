"""Placement: option parsing, DeltaX, keyword geometry (with CTM and fallback advances), riding slices,
page sizes (document default vs the page's own PhysicalBox)."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from gmpki.ofd import DocumentPages, OfdPackage, read_doc_bodies, read_document
from signer.placement import (
    AtKeyword,
    AtPosition,
    Box,
    PageGeometry,
    Riding,
    find_keyword,
    format_mm,
    page_geometry,
    parse_delta,
    placement_from_options,
    plan_placement,
    riding_boxes,
)

from .conftest import make_zip, two_page_ofd, zip_entries

NS = 'xmlns:ofd="http://www.ofdspec.org/2016"'

pytestmark = pytest.mark.interop


def _doc(data: bytes) -> tuple[OfdPackage, DocumentPages]:
    pkg = OfdPackage(data)
    body = read_doc_bodies(pkg)[0]
    assert body.doc_root is not None
    return pkg, read_document(pkg, body.doc_root)


def _with_page(helloworld: bytes, content: str) -> bytes:
    entries = zip_entries(helloworld)
    entries["Doc_0/Pages/Page_0/Content.xml"] = (
        f'<?xml version="1.0" encoding="UTF-8"?><ofd:Page {NS}><ofd:Content><ofd:Layer ID="2">'
        f"{content}</ofd:Layer></ofd:Content></ofd:Page>"
    ).encode()
    return make_zip(entries)


def test_options_name_exactly_one_placement() -> None:
    assert placement_from_options() is None
    assert placement_from_options(x=1, y=2) == AtPosition(1, 1, 2)
    assert placement_from_options(page=3, x=1.5, y=2) == AtPosition(3, 1.5, 2)
    assert placement_from_options(keyword="合同", page=2, occurrence=2) == AtKeyword("合同", 2, 2)
    assert placement_from_options(riding=True) == Riding(None)
    assert placement_from_options(riding=True, y=30) == Riding(30)
    assert placement_from_options(keyword="   ") is None
    for bad in (
        {"x": 1.0},
        {"y": 1.0},
        {"page": 2},
        {"keyword": "a", "x": 1.0, "y": 1.0},
        {"keyword": "a", "y": 1.0},
        {"riding": True, "keyword": "a"},
        {"riding": True, "x": 1.0, "y": 1.0},
        {"riding": True, "page": 1},
    ):
        with pytest.raises(InvalidInput):
            placement_from_options(**bad)


def test_delta_x_repeat_notation_and_limits() -> None:
    assert parse_delta("3 g 3 1.5 2", 10) == [3, 1.5, 1.5, 1.5, 2]
    assert parse_delta("g 4 2", 2) == [2, 2]
    assert parse_delta("1 x 2", 5) == [1, 0, 2]  # junk counts as zero, never raises
    assert parse_delta(None, 5) == []
    assert parse_delta("g 999999999 1", 3) == [1, 1, 1]  # a huge repeat count is bounded
    assert parse_delta("g 9999999999 1 2", 3) == [2]  # an absurd one is ignored


def test_format_mm() -> None:
    assert [format_mm(v) for v in (0, 40, 12.5, 1 / 3, -0.0001, 297.0)] == [
        "0",
        "40",
        "12.5",
        "0.333",
        "0",
        "297",
    ]
    assert Box(1, 2.25, 40, 40).text() == "1 2.25 40 40"


def test_keyword_geometry_with_ctm_and_fallback_advances(helloworld: bytes) -> None:
    # Scaled ×2 by CTM; no DeltaX, so CJK glyphs advance by Size (4) and Latin ones by Size / 2.
    content = (
        '<ofd:TextObject ID="9" Boundary="10 20 100 20" Size="4" CTM="2 0 0 2 0 0">'
        '<ofd:TextCode X="1" Y="5">甲乙AB合同</ofd:TextCode></ofd:TextObject>'
    )
    pkg, document = _doc(_with_page(helloworld, content))
    hit = find_keyword(pkg, document, "合同")
    # Left edge: X 1 + 4 + 4 + 2 + 2 = 13, right edge 13 + 4 + 4 = 21; top 5 - 4 = 1, bottom 5; all ×2.
    assert (hit.box.x, hit.box.y, hit.box.w, hit.box.h) == pytest.approx((10 + 26, 20 + 2, 16, 8))
    assert hit.page.page_id == "1" and hit.page.box == Box(0, 0, 210, 297)
    plan = plan_placement(pkg, document, AtKeyword("合同"))
    (stamp,) = plan.stamps(40, 30)
    assert stamp.boundary.centre == pytest.approx(hit.box.centre)
    assert stamp.boundary.w == 40 and stamp.boundary.h == 30 and stamp.clip is None


def test_keyword_occurrences_and_pages(helloworld: bytes) -> None:
    pkg, document = _doc(two_page_ofd(helloworld))
    assert find_keyword(pkg, document, "合同").page.page_id == "5"
    assert find_keyword(pkg, document, "OFD", page=1).page.number == 1
    with pytest.raises(InvalidInput):
        find_keyword(pkg, document, "合同", page=1)
    with pytest.raises(InvalidInput):
        find_keyword(pkg, document, "OFD", occurrence=2)
    with pytest.raises(InvalidInput):
        find_keyword(pkg, document, "")


def test_page_size_comes_from_the_page_before_the_document(helloworld: bytes) -> None:
    pkg, document = _doc(two_page_ofd(helloworld))
    assert page_geometry(pkg, document, 1) == PageGeometry(1, "1", Box(0, 0, 210, 297))
    assert page_geometry(pkg, document, 2) == PageGeometry(2, "5", Box(0, 0, 297, 210))
    with pytest.raises(InvalidInput):
        page_geometry(pkg, document, 3)


def test_riding_slices_rebuild_the_seal() -> None:
    pages = [PageGeometry(i + 1, str(10 + i), Box(0, 0, 210, 297)) for i in range(3)]
    boxes = riding_boxes(pages, 42, 40, y=100)
    assert [b.page_id for b in boxes] == ["10", "11", "12"]
    clips = [b.clip for b in boxes]
    assert all(c is not None for c in clips)
    # The clips tile the seal's width without gap or overlap.
    assert [v for c in clips if c for v in (c.x, c.w)] == pytest.approx([0, 14, 14, 14, 28, 14])
    for box in boxes:
        assert box.boundary.y == 100 and box.boundary.w == 42
        assert box.clip is not None and box.boundary.x + box.clip.x == pytest.approx(210 - 14)
    with pytest.raises(InvalidInput):
        riding_boxes(pages[:1], 40, 40)
