"""Finding a CJK font for seal pictures and checking that it can draw the text.

Pillow does no font fallback: a font without a glyph silently draws its ``.notdef`` box ("tofu"). A
seal with tofu in the department name is worse than no seal, so every lookup here either yields a font
that has every glyph of the text or raises :class:`core.errors.ConfigurationError`.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from core.errors import ConfigurationError, InvalidInput

FONT_ENV = "ESEAL_SEAL_FONT"
DEBIAN_FONT_PACKAGE = "fonts-wqy-zenhei"

# Checked in order before any directory walk; the first one that has the probe glyphs wins.
KNOWN_FONT_PATHS: tuple[str, ...] = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/usr/share/fonts/truetype/arphic/ukai.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/wqy-zenhei/wqy-zenhei.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/STHeiti Medium.ttc",
    "C:/Windows/Fonts/simsun.ttc",
    "C:/Windows/Fonts/simhei.ttf",
)

# Walked (like fontconfig would) when none of the known paths is usable.
FONT_DIRS: tuple[str, ...] = (
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "~/.local/share/fonts",
    "~/.fonts",
)

_FONT_SUFFIXES = (".ttf", ".ttc", ".otf", ".otc")
# Common seal characters; a font lacking any of them is not a CJK font worth using.
PROBE_TEXT = "中华人民共和国市场监督管理局合同专用章发票"
_CHECK_SIZE = 48


def _config_error(detail_zh: str, detail_en: str, **details: object) -> ConfigurationError:
    return ConfigurationError(
        f"{detail_zh}。请安装 Debian 软件包 {DEBIAN_FONT_PACKAGE}"
        f"（apt-get install -y {DEBIAN_FONT_PACKAGE}）或设置环境变量 {FONT_ENV} 指向一个中文字体文件",
        f"{detail_en}. Install the Debian package {DEBIAN_FONT_PACKAGE} "
        f"(apt-get install -y {DEBIAN_FONT_PACKAGE}) or set {FONT_ENV} to a CJK font file",
        **details,
    )


@lru_cache(maxsize=64)
def load_font(path: str, size_px: int) -> ImageFont.FreeTypeFont:
    """Load face 0 of ``path`` at ``size_px`` pixels (cached; fonts are immutable once loaded)."""
    try:
        return ImageFont.truetype(path, size_px, layout_engine=ImageFont.Layout.BASIC)
    except OSError as exc:
        raise _config_error(f"无法加载字体文件 {path}", f"Cannot load font file {path}", font=path) from exc


def _render(font: ImageFont.FreeTypeFont, ch: str) -> bytes:
    tile = Image.new("L", (_CHECK_SIZE * 2, _CHECK_SIZE * 2), 0)
    ImageDraw.Draw(tile).text((_CHECK_SIZE // 2, _CHECK_SIZE // 2), ch, fill=255, font=font)
    return tile.tobytes()


@lru_cache(maxsize=16)
def _notdef_bitmap(path: str) -> bytes:
    # U+FFFF is a Unicode noncharacter: no font maps it, so FreeType draws glyph 0 (.notdef).
    return _render(load_font(path, _CHECK_SIZE), "\uffff")


@lru_cache(maxsize=4096)
def _has_glyph(path: str, ch: str) -> bool:
    bitmap = _render(load_font(path, _CHECK_SIZE), ch)
    # An empty bitmap for a visible character means the font maps it to an empty glyph.
    return bitmap != _notdef_bitmap(path) and any(bitmap)


def missing_glyphs(path: str | os.PathLike[str], text: str) -> list[str]:
    """Characters of ``text`` (whitespace ignored) that the font at ``path`` cannot draw, in order."""
    key = os.fspath(path)
    seen: list[str] = []
    for ch in text:
        if ch.isspace() or ch in seen:
            continue
        if not _has_glyph(key, ch):
            seen.append(ch)
    return seen


def check_drawable_text(text: str, what_zh: str, what_en: str) -> None:
    """Reject control/format/private-use/separator characters, which can never render as seal text."""
    for ch in text:
        if ch == " ":
            continue
        category = unicodedata.category(ch)
        if category[0] in ("C", "Z"):
            raise InvalidInput(
                f"{what_zh}包含不可显示的字符 U+{ord(ch):04X}",
                f"{what_en} contains a non-printable character U+{ord(ch):04X}",
                character=f"U+{ord(ch):04X}",
            )


def _candidate_files(dirs: Iterable[str]) -> Iterable[Path]:
    for raw in dirs:
        root = Path(raw).expanduser()
        if not root.is_dir():
            continue
        found: list[Path] = []
        for dirpath, _dirnames, filenames in os.walk(root, followlinks=False):
            found.extend(Path(dirpath) / f for f in filenames if f.lower().endswith(_FONT_SUFFIXES))
        yield from sorted(found)


def _usable(path: Path, probe: str) -> bool:
    if not path.is_file():
        return False
    try:
        return not missing_glyphs(path, probe)
    except ConfigurationError:
        return False


def find_cjk_font(
    override: str | os.PathLike[str] | None = None,
    *,
    known_paths: Sequence[str] | None = None,
    font_dirs: Sequence[str] | None = None,
) -> Path:
    """Locate a font that can draw Chinese seal text.

    Order: ``override`` argument, then the ``ESEAL_SEAL_FONT`` environment variable (either one is
    final: a bad explicit choice is an error, not a reason to fall back), then
    :data:`KNOWN_FONT_PATHS`, then every font file under :data:`FONT_DIRS`.
    """
    explicit = os.fspath(override) if override is not None else os.environ.get(FONT_ENV) or None
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise _config_error(
                f"指定的印章字体文件不存在：{path}",
                f"Configured seal font does not exist: {path}",
                font=str(path),
            )
        missing = missing_glyphs(path, PROBE_TEXT)
        if missing:
            raise _config_error(
                f"指定的印章字体 {path} 不是中文字体（缺少字形：{''.join(missing)}）",
                f"Configured seal font {path} is not a CJK font (missing glyphs: {''.join(missing)})",
                font=str(path),
            )
        return path

    for raw in KNOWN_FONT_PATHS if known_paths is None else known_paths:
        if _usable(Path(raw), PROBE_TEXT):
            return Path(raw)
    for candidate in _candidate_files(FONT_DIRS if font_dirs is None else font_dirs):
        if _usable(candidate, PROBE_TEXT):
            return candidate
    raise _config_error("未找到可用的中文（CJK）字体", "No CJK font found")


def require_glyphs(path: str | os.PathLike[str], text: str, what_zh: str, what_en: str) -> None:
    """Raise ConfigurationError naming the characters of ``text`` the font cannot draw."""
    missing = missing_glyphs(path, text)
    if missing:
        chars = "".join(missing)
        raise ConfigurationError(
            f"印章字体 {os.fspath(path)} 缺少{what_zh}中的字形：{chars}；"
            f"请通过 {FONT_ENV} 指定包含这些字的字体",
            f"Seal font {os.fspath(path)} lacks glyphs used in the {what_en}: {chars}; "
            f"set {FONT_ENV} to a font that has them",
            font=os.fspath(path),
            missing=chars,
        )
