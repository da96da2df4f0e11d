"""Seal pictures: the drawn seals' geometry, font discovery, and hostile-upload rejection."""

from __future__ import annotations

import base64
import io
import math
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from core.errors import ConfigurationError, InputTooLarge, InvalidInput, MalformedData
from seal_registry import fonts
from seal_registry.picture import (
    MAX_PICTURE_BYTES,
    SEAL_RED,
    PictureInfo,
    SealPicture,
    render_name_seal,
    render_oval_seal,
    render_round_seal,
    sniff_picture_type,
    validate_picture,
)
from tests.conftest import require_or_skip

DEPT = "北京市测试区市场监督管理局"
DPI = 300
PX_PER_MM = DPI / 25.4


def _font_available() -> bool:
    try:
        fonts.find_cjk_font()
    except ConfigurationError:
        return False
    return True


@pytest.fixture(scope="module")
def cjk_font() -> Path:
    require_or_skip(
        _font_available(), f"no CJK font installed (apt-get install -y {fonts.DEBIAN_FONT_PACKAGE})"
    )
    return fonts.find_cjk_font()


@pytest.fixture(scope="module")
def plain_seal(cjk_font: Path) -> SealPicture:
    return render_round_seal(DEPT)


@pytest.fixture(scope="module")
def full_seal(cjk_font: Path) -> SealPicture:
    seal = render_round_seal(DEPT, horizontal_text="合同专用章", code="1101080012345")
    Path("/tmp/seal_example.png").write_bytes(seal.png)
    return seal


def _open(png: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(png))
    im.load()
    return im.convert("RGBA")


class Sampler:
    """Pixel access in millimetres from the picture centre (y grows downward)."""

    def __init__(self, png: bytes) -> None:
        self.im = _open(png)
        self.cx, self.cy = self.im.width / 2, self.im.height / 2

    def px(self, x_mm: float, y_mm: float) -> tuple[int, int, int, int]:
        x = min(self.im.width - 1, max(0, int(self.cx + x_mm * PX_PER_MM)))
        y = min(self.im.height - 1, max(0, int(self.cy + y_mm * PX_PER_MM)))
        value = self.im.getpixel((x, y))
        assert isinstance(value, tuple)
        return (value[0], value[1], value[2], value[3])

    def polar(self, r_mm: float, deg_from_top: float) -> tuple[int, int, int, int]:
        a = math.radians(deg_from_top)
        return self.px(r_mm * math.sin(a), -r_mm * math.cos(a))

    def ink_in_sector(self, r0: float, r1: float, a0: float, a1: float) -> int:
        count = 0
        steps_r = max(2, int((r1 - r0) * PX_PER_MM))
        steps_a = max(2, int(abs(a1 - a0) * 3))
        for i in range(steps_r + 1):
            r = r0 + (r1 - r0) * i / steps_r
            for j in range(steps_a + 1):
                if self.polar(r, a0 + (a1 - a0) * j / steps_a)[3] > 128:
                    count += 1
        return count


def _is_red(p: tuple[int, int, int, int]) -> bool:
    r, g, b, a = p
    return a > 0 and r > 180 and g < 60 and b < 80


# ---- round seal -----------------------------------------------------------------------------------


def test_round_seal_is_a_valid_png_of_the_requested_size(full_seal: SealPicture) -> None:
    assert full_seal.width_mm == full_seal.height_mm == 42
    assert full_seal.type == "png"
    png, w_mm, h_mm = full_seal  # usable as a plain (bytes, width_mm, height_mm) tuple
    assert (w_mm, h_mm) == (42, 42)
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG"
        im.verify()
    with Image.open(io.BytesIO(png)) as im:
        side = round(42 / 25.4 * DPI)
        assert im.size == (side, side)
        assert im.mode == "RGBA"
        assert im.info["dpi"] == pytest.approx((DPI, DPI), abs=0.1)


def test_ring_is_red_and_opaque_all_round(plain_seal: SealPicture) -> None:
    s = Sampler(plain_seal.png)
    ring_r = 21 - 0.15 - 0.6  # centre line of the 1.2 mm ring
    samples = [s.polar(ring_r, a) for a in range(0, 360, 3)]
    red = [p for p in samples if _is_red(p) and p[3] > 200]
    assert len(red) == len(samples)
    # Outside the ring the picture is transparent (corners of the square canvas).
    for x, y in ((-20.9, -20.9), (20.9, -20.9), (-20.9, 20.9), (20.9, 20.9)):
        assert s.px(x, y)[3] == 0


def test_star_is_centred_and_background_between_star_and_text_is_transparent(
    plain_seal: SealPicture,
) -> None:
    s = Sampler(plain_seal.png)
    assert _is_red(s.px(0, 0)) and s.px(0, 0)[3] == 255
    assert _is_red(s.px(0, -6.0))  # inside the upper point of the 14 mm star
    for a in (72, 144, 216, 288):  # inside the other four points
        assert _is_red(s.polar(6.0, a))
    # Between two points the star is concave: transparent there.
    assert s.polar(6.0, 36)[3] == 0
    # The annulus between the star (r 7 mm) and the name (inner edge ~12.8 mm) is empty all round.
    for r in (8.0, 10.0, 12.0):
        for a in range(0, 360, 2):
            assert s.polar(r, a)[3] == 0, (r, a)


def test_name_runs_along_the_upper_arc_only(plain_seal: SealPicture) -> None:
    s = Sampler(plain_seal.png)
    band = (13.0, 19.0)
    # Every 20° sector of the upper arc holds part of a character ...
    for a0 in range(-110, 110, 20):
        assert s.ink_in_sector(*band, a0, a0 + 20) > 20, a0
    # ... and the bottom of the ring, below the name's ends, is empty.
    assert s.ink_in_sector(*band, 140, 220) == 0


def test_different_names_change_only_the_text(plain_seal: SealPicture, cjk_font: Path) -> None:
    other = Sampler(render_round_seal("上海市测试区人民政府办公厅").png)
    mine = Sampler(plain_seal.png)
    diff_in_band = sum(
        1
        for a in range(-110, 111, 2)
        for r in (14.0, 15.5, 17.0)
        if abs(mine.polar(r, a)[3] - other.polar(r, a)[3]) > 128
    )
    assert diff_in_band > 20
    for a in range(0, 360, 5):
        assert mine.polar(20.25, a) == other.polar(20.25, a)
    assert mine.px(0, 0) == other.px(0, 0)


def _ink_bbox(s: Sampler, x_mm: float, y_mm: float, half_mm: float) -> tuple[int, int, int, int] | None:
    box = (
        int(s.cx + (x_mm - half_mm) * PX_PER_MM),
        int(s.cy + (y_mm - half_mm) * PX_PER_MM),
        int(s.cx + (x_mm + half_mm) * PX_PER_MM),
        int(s.cy + (y_mm + half_mm) * PX_PER_MM),
    )
    return s.im.crop(box).getchannel("A").point(lambda v: 255 if v > 128 else 0).getbbox()


def test_characters_are_rotated_to_follow_the_arc(cjk_font: Path) -> None:
    # 一 is a single horizontal stroke: at the top it lies flat, at the sides it stands up.
    s = Sampler(render_round_seal("一一一一一").png)
    r = 21 - 0.15 - 1.2 - 0.7 - 3.1
    top = _ink_bbox(s, 0, -r, 3.0)
    assert top is not None
    assert top[2] - top[0] > 3 * (top[3] - top[1])
    # The outermost characters sit 105° either side of the top (210° span for five characters).
    for deg in (-105, 105):
        a = math.radians(deg)
        side = _ink_bbox(s, r * math.sin(a), -r * math.cos(a), 3.0)
        assert side is not None
        assert side[3] - side[1] > 2 * (side[2] - side[0])


def test_horizontal_text_and_code_are_drawn_where_expected(
    plain_seal: SealPicture, full_seal: SealPicture
) -> None:
    plain, full = Sampler(plain_seal.png), Sampler(full_seal.png)

    def ink(s: Sampler, x0: float, x1: float, y0: float, y1: float) -> int:
        return sum(
            1
            for i in range(41)
            for j in range(21)
            if s.px(x0 + (x1 - x0) * i / 40, y0 + (y1 - y0) * j / 20)[3] > 128
        )

    # 合同专用章 under the star.
    assert ink(plain, -8, 8, 7.8, 11.0) == 0
    assert ink(full, -8, 8, 7.8, 11.0) > 50
    # Seal code along the lower arc, inside the ring.
    assert plain.ink_in_sector(18.3, 19.5, 150, 210) == 0
    assert full.ink_in_sector(18.3, 19.5, 150, 210) > 30
    # The ring and star are unchanged by the extra text.
    assert all(plain.polar(20.25, a) == full.polar(20.25, a) for a in range(0, 360, 10))


def test_dpi_and_diameter_scale_the_picture(cjk_font: Path) -> None:
    seal = render_round_seal(DEPT, diameter_mm=38, dpi=150)
    with Image.open(io.BytesIO(seal.png)) as im:
        assert im.size == (round(38 / 25.4 * 150),) * 2
    assert (seal.width_mm, seal.height_mm) == (38, 38)


def test_custom_colour(cjk_font: Path) -> None:
    s = Sampler(render_round_seal("测试单位", color=(0, 0, 200)).png)
    assert s.px(0, 0) == (0, 0, 200, 255)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"name": ""}, InvalidInput),
        ({"name": "  "}, InvalidInput),
        ({"name": "测试\x00单位"}, InvalidInput),
        ({"name": "测" * 31}, InvalidInput),
        ({"name": DEPT, "diameter_mm": 5}, InvalidInput),
        ({"name": DEPT, "dpi": 5000}, InvalidInput),
        ({"name": DEPT, "diameter_mm": 100, "dpi": 1200}, InvalidInput),  # > 4096 px
        ({"name": DEPT, "code": "编码"}, InvalidInput),
    ],
)
def test_round_seal_rejects_bad_arguments(
    cjk_font: Path, kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        render_round_seal(**kwargs)  # type: ignore[arg-type]


# ---- oval and name seals ----------------------------------------------------------------------------


def test_oval_invoice_seal(cjk_font: Path) -> None:
    seal = render_oval_seal("北京测试科技有限公司", tax_number="91110108MA01ABCD2X")
    assert (seal.width_mm, seal.height_mm) == (40, 30)
    s = Sampler(seal.png)
    assert s.im.size == (round(40 / 25.4 * DPI), round(30 / 25.4 * DPI))
    # Elliptical ring: red at the ends of both axes, transparent just outside along the diagonal.
    for x, y in ((0, -14.35), (0, 14.35), (-19.35, 0), (19.35, 0)):
        assert _is_red(s.px(x, y)), (x, y)
    assert s.px(-19.5, -14.5)[3] == 0
    # Tax number across the middle, the seal type below it, empty centre band between them.
    assert sum(1 for i in range(-120, 121) if s.px(i / 10, 0.8)[3] > 128) > 20
    assert sum(1 for i in range(-90, 91) if s.px(i / 10, 7.4)[3] > 128) > 20
    without_tax = Sampler(render_oval_seal("北京测试科技有限公司").png)
    assert sum(1 for i in range(-120, 121) if without_tax.px(i / 10, 0.8)[3] > 128) == 0
    assert validate_picture(seal.png, "png").type == "png"


@pytest.mark.parametrize("name", ["张三", "李小龙", "欧阳一一"])
def test_name_seal_grid(cjk_font: Path, name: str) -> None:
    seal = render_name_seal(name)
    assert (seal.width_mm, seal.height_mm) == (20, 20)
    s = Sampler(seal.png)
    assert s.im.size == (round(20 / 25.4 * DPI),) * 2
    for x, y in ((0, -9.3), (0, 9.3), (-9.3, 0), (9.3, 0), (-9.3, -9.3), (9.3, 9.3)):
        assert _is_red(s.px(x, y)), (x, y)  # the border, corners included
    # Both columns carry ink: traditional right-to-left columns fill the square.
    left = s.im.crop((int(s.cx - 7.5 * PX_PER_MM), 0, int(s.cx - 1 * PX_PER_MM), s.im.height))
    right = s.im.crop((int(s.cx + 1 * PX_PER_MM), 0, int(s.cx + 7.5 * PX_PER_MM), s.im.height))
    assert left.getchannel("A").getbbox() is not None
    assert right.getchannel("A").getbbox() is not None


def test_name_seal_reads_right_to_left(cjk_font: Path) -> None:
    # 一 (flat) in the right column and 丨 (upright) in the left column.
    s = Sampler(render_name_seal("一丨").png)
    right = _ink_bbox(s, 4.0, 0, 3.5)
    left = _ink_bbox(s, -4.0, 0, 3.5)
    assert right is not None and left is not None
    assert right[2] - right[0] > right[3] - right[1]
    assert left[3] - left[1] > left[2] - left[0]


@pytest.mark.parametrize("name", ["张", "欧阳小小明"])
def test_name_seal_needs_two_to_four_characters(cjk_font: Path, name: str) -> None:
    with pytest.raises(InvalidInput):
        render_name_seal(name)


# ---- fonts -------------------------------------------------------------------------------------------


def test_missing_cjk_font_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(fonts.FONT_ENV, raising=False)
    monkeypatch.setattr(fonts, "KNOWN_FONT_PATHS", ())
    monkeypatch.setattr(fonts, "FONT_DIRS", (str(tmp_path),))
    with pytest.raises(ConfigurationError) as info:
        render_round_seal(DEPT)
    assert "fonts-wqy-zenhei" in info.value.message_zh
    assert "fonts-wqy-zenhei" in info.value.message_en


def test_latin_only_fonts_are_not_taken_for_cjk(monkeypatch: pytest.MonkeyPatch) -> None:
    dejavu = Path("/usr/share/fonts/truetype/dejavu")
    require_or_skip(dejavu.is_dir(), "DejaVu fonts not installed")
    monkeypatch.delenv(fonts.FONT_ENV, raising=False)
    monkeypatch.setattr(fonts, "KNOWN_FONT_PATHS", ())
    monkeypatch.setattr(fonts, "FONT_DIRS", (str(dejavu),))
    with pytest.raises(ConfigurationError):
        fonts.find_cjk_font()


def test_font_search_walks_font_directories(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cjk_font: Path
) -> None:
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    (nested / cjk_font.name).symlink_to(cjk_font)
    (tmp_path / "broken.ttf").write_bytes(b"not a font")
    monkeypatch.delenv(fonts.FONT_ENV, raising=False)
    monkeypatch.setattr(fonts, "KNOWN_FONT_PATHS", ("/nonexistent/font.ttc",))
    monkeypatch.setattr(fonts, "FONT_DIRS", (str(tmp_path),))
    assert fonts.find_cjk_font() == nested / cjk_font.name


def test_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cjk_font: Path) -> None:
    monkeypatch.setenv(fonts.FONT_ENV, str(cjk_font))
    monkeypatch.setattr(fonts, "KNOWN_FONT_PATHS", ())
    monkeypatch.setattr(fonts, "FONT_DIRS", ())
    assert fonts.find_cjk_font() == cjk_font
    # An explicit choice is final: a bad one is an error, not a reason to fall back.
    monkeypatch.setenv(fonts.FONT_ENV, str(tmp_path / "missing.ttf"))
    with pytest.raises(ConfigurationError):
        render_round_seal(DEPT)
    dejavu = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if dejavu.is_file():
        monkeypatch.setenv(fonts.FONT_ENV, str(dejavu))
        with pytest.raises(ConfigurationError):
            render_round_seal(DEPT)


def test_glyph_coverage_is_checked_not_drawn_as_tofu(cjk_font: Path) -> None:
    assert fonts.missing_glyphs(cjk_font, DEPT) == []
    # U+2A6D6 (CJK Extension B) is absent from the common free CJK fonts.
    rare = "\U0002a6d6"
    if fonts.missing_glyphs(cjk_font, rare):
        with pytest.raises(ConfigurationError) as info:
            render_round_seal("测试" + rare + "单位")
        assert rare in info.value.message_zh


# ---- upload validation ------------------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, idat: bytes, colour_type: int = 0) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _encode(fmt: str, size: tuple[int, int], **params: object) -> bytes:
    buf = io.BytesIO()
    mode = "P" if fmt == "GIF" else "RGB"
    Image.new(mode, size, 1 if mode == "P" else (230, 0, 18)).save(buf, format=fmt, **params)
    return buf.getvalue()


def test_accepts_png_with_dpi(full_seal: SealPicture) -> None:
    info = validate_picture(full_seal.png, "png")
    assert info == PictureInfo("png", 496, 496, 42, 42)
    assert info.mime == "image/png"
    assert validate_picture(full_seal.png, "image/PNG") == info
    assert validate_picture(full_seal.png, None) == info


def test_accepts_jpeg_and_gif() -> None:
    jpeg = _encode("JPEG", (300, 200), dpi=(254, 254))
    assert validate_picture(jpeg, "jpg") == PictureInfo("jpg", 300, 200, 30, 20)
    assert validate_picture(jpeg, "jpeg").type == "jpg"
    gif = _encode("GIF", (120, 80))
    # No resolution in a GIF: the longer side is suggested at 40 mm.
    assert validate_picture(gif, "gif") == PictureInfo("gif", 120, 80, 40, 27)


SVG_NS = 'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
TINY_PNG = base64.b64encode(_encode("PNG", (2, 2))).decode()


def test_accepts_safe_svg() -> None:
    svg = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<!-- seal -->\n<svg {SVG_NS} width="42mm" height="42mm"'
        ' viewBox="0 0 42 42"><defs><linearGradient id="g"/><circle id="c" r="3"/></defs>'
        "<style>circle { fill: url(#g); }</style>"
        '<circle cx="21" cy="21" r="20" fill="none" stroke="url(#g)"/>'
        '<use href="#c" x="21" y="21"/><use xlink:href="#c"/>'
        f'<image width="4" height="4" href="data:image/png;base64,{TINY_PNG}"/>'
        "<text>北京市测试区市场监督管理局</text></svg>"
    ).encode()
    assert validate_picture(svg, "svg") == PictureInfo("svg", 159, 159, 42, 42)
    assert validate_picture(svg, "image/svg+xml").mime == "image/svg+xml"
    # viewBox only: CSS pixels; too small to be a seal as drawn, so the suggestion is 40 mm.
    viewbox_only = f'<svg {SVG_NS} viewBox="0 0 200 100"><rect width="1" height="1"/></svg>'.encode()
    assert validate_picture(viewbox_only) == PictureInfo("svg", 200, 100, 53, 26)
    width_only = f'<svg {SVG_NS} width="4cm" viewBox="0 0 200 100"/>'.encode()
    assert validate_picture(width_only).width_mm == 40
    assert validate_picture(width_only).height_mm == 20


@pytest.mark.parametrize(
    ("declared", "data_factory"),
    [
        ("jpg", lambda: _encode("PNG", (10, 10))),
        ("image/jpeg", lambda: _encode("PNG", (10, 10))),
        ("png", lambda: _encode("JPEG", (10, 10))),
        ("gif", lambda: _encode("PNG", (10, 10))),
        ("svg", lambda: _encode("PNG", (10, 10))),
        ("png", lambda: f'<svg {SVG_NS} width="10" height="10"/>'.encode()),
    ],
)
def test_declared_type_must_match_content(declared: str, data_factory: Callable[[], bytes]) -> None:
    with pytest.raises(MalformedData) as info:
        validate_picture(data_factory(), declared)
    assert "不符" in info.value.message_zh and "does not match" in info.value.message_en


@pytest.mark.parametrize("declared", ["bmp", "ofd", "image/webp", ""])
def test_unsupported_declared_types(declared: str) -> None:
    with pytest.raises(MalformedData):
        validate_picture(_encode("PNG", (10, 10)), declared)


def _no_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixel data must not be decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", forbidden)


@pytest.mark.parametrize("side", [5000, 100_000])
def test_huge_dimensions_rejected_before_decoding(monkeypatch: pytest.MonkeyPatch, side: int) -> None:
    # Zero rows compress ~1000:1: cheap to send, costly to decode (complete data for the 5000 case).
    rows = side if side <= 5000 else 16
    idat = zlib.compress(b"\x00" * ((side + 1) * rows), 9)
    data = _png(side, side, idat)
    assert len(data) < 200_000
    _no_decode(monkeypatch)
    with pytest.raises(InputTooLarge):
        validate_picture(data, "png")


def test_limit_is_per_side_not_only_area(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_decode(monkeypatch)
    with pytest.raises(InputTooLarge):
        validate_picture(_png(4097, 1, zlib.compress(b"\x00" * 4098)), "png")


def test_byte_size_limit() -> None:
    data = _encode("PNG", (10, 10))
    data += b"\x00" * (MAX_PICTURE_BYTES + 1 - len(data))
    with pytest.raises(InputTooLarge):
        validate_picture(data, "png")


def test_truncated_and_corrupt_rasters_rejected(full_seal: SealPicture) -> None:
    png = full_seal.png
    for bad in (png[: len(png) // 2], png[:40], png[:-12]):
        with pytest.raises(MalformedData):
            validate_picture(bad, "png")
    # One flipped bit in the compressed pixel data: the chunk CRC no longer matches.
    idat = png.index(b"IDAT") + 40
    flipped = png[:idat] + bytes([png[idat] ^ 0x01]) + png[idat + 1 :]
    with pytest.raises(MalformedData):
        validate_picture(flipped, "png")
    # Garbage zlib data with a valid CRC: only a full decode notices.
    garbage = _png(8, 8, b"\x78\x9c" + b"\xff" * 30)
    with pytest.raises(MalformedData):
        validate_picture(garbage, "png")
    jpeg = _encode("JPEG", (64, 64))
    with pytest.raises(MalformedData):
        validate_picture(jpeg[: len(jpeg) // 2], "jpg")
    gif = _encode("GIF", (64, 64))
    with pytest.raises(MalformedData):
        validate_picture(gif[:20], "gif")


def test_animated_gif_rejected() -> None:
    frames = [Image.new("RGB", (16, 16), (i * 80, 0, 0)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(MalformedData):
        validate_picture(buf.getvalue(), "gif")


@pytest.mark.parametrize("data", [os.urandom(4096), b"", b"\x00" * 64, b"BM" + b"\x00" * 64, b"PK\x03\x04xx"])
def test_unrecognised_bytes_rejected(data: bytes) -> None:
    with pytest.raises(MalformedData):
        validate_picture(data)


_S = f'<svg {SVG_NS} width="10" height="10">'

# name -> (document, a phrase the English message must contain, so each is rejected for its own reason)
HOSTILE_SVG: dict[str, tuple[str, str]] = {
    "xxe": (
        '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        f"{_S}<text>&xxe;</text></svg>",
        "DTD",
    ),
    "doctype": (
        '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
        f'"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">{_S}</svg>',
        "DTD",
    ),
    "billion_laughs": (
        '<!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        f"{_S}<text>&b;</text></svg>",
        "DTD",
    ),
    "script": (f"{_S}<script>alert(1)</script></svg>", "<script>"),
    "nested_script": (f'{_S}<g><g><script xlink:href="#x"/></g></g></svg>', "<script>"),
    "onload": (f'<svg {SVG_NS} width="10" height="10" onload="alert(1)"/>', "event attribute"),
    "onclick_child": (f'{_S}<rect ONCLICK="x()"/></svg>', "event attribute"),
    "external_href": (f'{_S}<image href="https://evil.example/x.png"/></svg>', "external reference"),
    "external_xlink": (f'{_S}<use xlink:href="other.svg#a"/></svg>', "external reference"),
    "file_href": (f'{_S}<image href="file:///etc/passwd"/></svg>', "external reference"),
    "javascript_link": (f'{_S}<a href="javascript:alert(1)"><rect/></a></svg>', "external reference"),
    "nested_svg_data": (f'{_S}<image href="data:image/svg+xml;base64,AAAA"/></svg>', "external reference"),
    "css_url": (f'{_S}<rect style="fill: url(http://evil/x)"/></svg>', "external reference"),
    "css_import": (f'{_S}<style>@import "http://evil/x.css";</style></svg>', "@import"),
    "style_url": (f"{_S}<style>rect {{ fill: url('//evil/a') }}</style></svg>", "external reference"),
    "attr_url": (f'{_S}<rect filter="url(https://evil/f#x)"/></svg>', "external reference"),
    "foreign_object": (
        f'{_S}<foreignObject><div xmlns="http://www.w3.org/1999/xhtml">x</div></foreignObject></svg>',
        "<foreignObject>",
    ),
    "xinclude": (
        f'{_S}<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="/etc/passwd"/></svg>',
        "<include>",
    ),
    "set_href": (f'{_S}<a><set attributeName="href" to="javascript:x"/></a></svg>', "<set>"),
    "stylesheet_pi": (f'<?xml-stylesheet href="http://evil/x.css"?>{_S}</svg>', "processing instruction"),
    "html_root": (f"<html><body>{_S}</svg></body></html>", "root element"),
    "svg_without_namespace": ('<svg width="10" height="10"/>', "root element"),
    "not_well_formed": (f"{_S}<g></svg>", "well-formed"),
    "no_size": (f"<svg {SVG_NS}/>", "width/height or viewBox"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_SVG))
def test_hostile_or_invalid_svg_rejected(name: str) -> None:
    document, reason = HOSTILE_SVG[name]
    with pytest.raises(MalformedData) as info:
        validate_picture(document.encode(), "svg")
    assert reason in info.value.message_en
    assert info.value.message_zh != info.value.message_en


def test_svg_declared_size_limit() -> None:
    for attrs in ('width="5000" height="10"', 'width="2m" height="1e400"', 'width="200in" height="1in"'):
        with pytest.raises((InputTooLarge, MalformedData)):
            validate_picture(f"<svg {SVG_NS} {attrs}/>".encode(), "svg")
    with pytest.raises(InputTooLarge):
        validate_picture(f'<svg {SVG_NS} width="1e400" height="10"/>'.encode(), "svg")
    many = f'<svg {SVG_NS} width="10" height="10">' + "<g/>" * 20_001 + "</svg>"
    with pytest.raises(InputTooLarge):
        validate_picture(many.encode(), "svg")


def test_sniffing() -> None:
    assert sniff_picture_type(_encode("PNG", (1, 1))) == "png"
    assert sniff_picture_type(_encode("JPEG", (1, 1))) == "jpg"
    assert sniff_picture_type(_encode("GIF", (1, 1))) == "gif"
    assert sniff_picture_type(b"\xef\xbb\xbf  <svg xmlns='http://www.w3.org/2000/svg'/>") == "svg"
    assert sniff_picture_type(b"<html></html>") is None
    assert sniff_picture_type(b"\x1f\x8b\x08\x00") is None  # svgz is not accepted


def test_every_generated_seal_passes_upload_validation(full_seal: SealPicture, cjk_font: Path) -> None:
    for seal in (full_seal, render_oval_seal("测试科技有限公司"), render_name_seal("张三")):
        info = validate_picture(seal.png, seal.type)
        assert (info.width_mm, info.height_mm) == (seal.width_mm, seal.height_mm)


def test_seal_red_is_the_customary_colour() -> None:
    assert SEAL_RED == (0xE6, 0x00, 0x12)
