"""A read-only OFD package (a ZIP archive) with limits against hostile archives, and a small writer.

Reference: ``../shared/spec/seal-formats.md`` §5.1 (package layout, ST_Loc path rules).

Nothing here trusts the sizes an archive declares. They are used only to reject obvious bombs
early; every byte actually inflated is counted against the per-entry size, the compression ratio
and the package-wide budget while it is being read, so a lying header cannot make the reader
allocate more than the limits allow. Entry names are checked once, when the package is opened:
``..`` segments, absolute and drive paths, backslashes, NUL bytes and duplicates are refused, so
every later lookup is an exact match on a clean, slash-separated name without a leading slash.

Writing (:meth:`OfdPackage.rewrite`, :func:`write_package`) goes through a small ZIP writer of our
own: an entry that is kept is copied as stored (its compressed bytes, CRC and sizes, under a fresh
local header), never inflated and deflated again, but only after it has been read through the
checked path once (inflated against the limits, CRC verified), so a copy never passes on bytes
that were not checked. New entries are deflated with a window no larger than they need (the same
matches as zlib's default for entries up to 32 KiB, at a fraction of the set-up cost) and stored
when deflate would not make them smaller.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import posixpath
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from core.errors import InputTooLarge, MalformedData

from .. import sm3 as _sm3

MIB: Final = 1024 * 1024
_CHUNK: Final = 64 * 1024
_CACHE_LIMIT: Final = 4 * MIB  # entries up to this size stay in memory once read
_SUPPORTED_METHODS: Final = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_DRIVE = re.compile(r"^[A-Za-z]:")
_FLAG_ENCRYPTED: Final = 0x1
_FLAG_PATCHED: Final = 0x20
_FLAG_STRONG_ENCRYPTION: Final = 0x40
_FLAG_UTF8: Final = 0x800
_LOCAL_HEADER: Final = struct.Struct("<4s5H3L2H")  # PKWARE APPNOTE 4.3.7
_CENTRAL_HEADER: Final = struct.Struct("<4s6H3L5H2L")  # 4.3.12
_END_RECORD: Final = struct.Struct("<4s4H2LH")  # 4.3.16
_LOCAL_SIGNATURE: Final = b"PK\x03\x04"
_ZIP_VERSION: Final = 20  # 2.0: deflate, folders; what zipfile writes for the same entries
_MAX_32: Final = 0xFFFFFFFF
_MEMO_LIMIT: Final = 64 * 1024  # entries up to this size have their deflated form remembered

# What zipfile and zlib raise on damaged or hostile archives.
_ZIP_ERRORS: Final = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    OverflowError,
    KeyError,
    UnicodeError,
)

DIGEST_ALGORITHMS: Final = frozenset({"sm3", "sha256"})


@dataclass(frozen=True)
class ContainerLimits:
    """Bounds on what reading one package may cost.

    ``max_ratio`` applies to an entry once it has inflated past ``ratio_floor`` bytes: small
    entries (XML full of repeated markup) legitimately compress far better than large ones.
    """

    max_entries: int = 10_000
    max_total_size: int = 512 * MIB
    max_entry_size: int | None = None  # None: only max_total_size applies
    max_ratio: int = 200
    ratio_floor: int = 1 * MIB
    max_input_size: int = 1024 * MIB

    @property
    def entry_limit(self) -> int:
        return self.max_total_size if self.max_entry_size is None else self.max_entry_size


# --- names -------------------------------------------------------------------------------------------
def _check_segments(name: str, original: str) -> str:
    if not name:
        raise MalformedData("包内路径为空", "empty path in the package", name=original)
    if "\\" in name:
        raise MalformedData(f"包内路径含反斜杠：{original!r}", f"backslash in package path {original!r}")
    if "\x00" in name:
        raise MalformedData(f"包内路径含 NUL 字符：{original!r}", f"NUL byte in package path {original!r}")
    if _DRIVE.match(name):
        raise MalformedData(f"包内路径为盘符路径：{original!r}", f"drive path in package: {original!r}")
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            raise MalformedData(
                f"包内路径含非法段（空、. 或 ..）：{original!r}",
                f"package path has an empty, '.' or '..' segment: {original!r}",
            )
    return name


# Both name functions are pure and see the same few names again and again (every document of a
# batch, every verification of one producer's files); the caches are bounded, and a refusal,
# being an exception, is never cached.
@functools.lru_cache(maxsize=4096)
def check_entry_name(name: str) -> str:
    """Validate a ZIP entry name as stored (file entries; a trailing ``/`` marks a directory).

    Absolute names are refused rather than silently re-rooted: no conforming producer writes them,
    and two spellings of one path would defeat the duplicate check.
    """
    if name.startswith("/"):
        raise MalformedData(f"压缩包条目为绝对路径：{name!r}", f"absolute ZIP entry name {name!r}")
    body = name[:-1] if name.endswith("/") else name
    _check_segments(body, name)
    return name


@functools.lru_cache(maxsize=4096)
def resolve_loc(loc: str, base: str | None = None) -> str:
    """Resolve an OFD ST_Loc to a package entry name (no leading slash).

    ``/x`` is absolute from the package root; anything else is relative to the directory of
    ``base``, the package path of the XML file that contains the value. ``.`` and ``..`` are
    resolved; climbing above the package root is an error (MalformedData).
    """
    text = loc.strip()
    if not text:
        raise MalformedData("路径（ST_Loc）为空", "empty ST_Loc path")
    if "\\" in text or "\x00" in text or _DRIVE.match(text) or "://" in text:
        raise MalformedData(f"路径（ST_Loc）非法：{loc!r}", f"invalid ST_Loc path {loc!r}")
    if text.startswith("/"):
        parts: list[str] = []
        rest = text.lstrip("/")
    else:
        parts = [p for p in posixpath.dirname(base or "").split("/") if p]
        rest = text
    for segment in rest.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not parts:
                raise MalformedData(
                    f"路径（ST_Loc）越出包根目录：{loc!r}", f"ST_Loc path escapes the package root: {loc!r}"
                )
            parts.pop()
            continue
        parts.append(segment)
    if not parts:
        raise MalformedData(f"路径（ST_Loc）未指向文件：{loc!r}", f"ST_Loc path names no file: {loc!r}")
    return "/".join(parts)


def _decoded_name(info: zipfile.ZipInfo) -> str:
    """The entry name as the producer meant it.

    zipfile decodes names without the UTF-8 flag as CP437; Chinese producers write UTF-8 or GBK
    there, so a name like ``附件.xml`` would never match the FileRef that points to it.
    """
    name = info.orig_filename
    if info.flag_bits & _FLAG_UTF8 or name.isascii():
        return name
    try:
        raw = name.encode("cp437")
    except UnicodeEncodeError:
        return name
    for encoding in ("utf-8", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return name


def _declared_entry_count(data: bytes) -> int | None:
    """Entry count from the end-of-central-directory record, read before zipfile builds its index."""
    pos = data.rfind(b"PK\x05\x06", max(0, len(data) - (0xFFFF + 22)))
    if pos < 0 or pos + 22 > len(data):
        return None
    count = int.from_bytes(data[pos + 10 : pos + 12], "little")
    if count == 0xFFFF and pos >= 20 and data[pos - 20 : pos - 16] == b"PK\x06\x07":
        offset = int.from_bytes(data[pos - 12 : pos - 4], "little")
        if offset + 40 <= len(data) and data[offset : offset + 4] == b"PK\x06\x06":
            count = int.from_bytes(data[offset + 32 : offset + 40], "little")
    return count


def _inflated(data: bytes, declared: int) -> Iterator[bytes]:
    """Raw deflate ``data`` inflated in blocks of at most :data:`_CHUNK` bytes (so a bomb is caught
    by the caller's limits after one block), never more than one byte past the ``declared`` size
    (the caller refuses that byte); EOFError if the stream does not end."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending = data
    left = declared + 1
    while not inflater.eof and left > 0:
        block = inflater.decompress(pending, min(_CHUNK, left))
        pending = inflater.unconsumed_tail
        if block:
            left -= len(block)
            yield block
        elif not pending:
            raise EOFError("the deflate stream ends early")


def is_zip(data: bytes) -> bool:
    """Whether ``data`` looks like a ZIP archive (local header or an empty archive's end record)."""
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


# --- the package ----------------------------------------------------------------------------------------
class OfdPackage:
    """Read-only view of an OFD package held in memory.

    Raises MalformedData when ``data`` is not a readable ZIP or an entry name is unsafe, and
    InputTooLarge when a limit is exceeded (now or later, while an entry is being read).
    """

    def __init__(self, data: bytes, *, limits: ContainerLimits | None = None) -> None:
        self.limits = limits or ContainerLimits()
        data = bytes(data)
        if len(data) > self.limits.max_input_size:
            raise InputTooLarge(
                f"OFD 文件过大（{len(data)} 字节，上限 {self.limits.max_input_size}）",
                f"OFD file too large ({len(data)} bytes, limit {self.limits.max_input_size})",
            )
        if not is_zip(data):
            raise MalformedData(
                "不是 ZIP 压缩包（OFD 文件应为 ZIP 格式）", "not a ZIP archive (an OFD is a ZIP)"
            )
        declared = _declared_entry_count(data)
        if declared is not None and declared > self.limits.max_entries:
            raise self._too_many(declared)
        self._data = data
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(data))
            infos = self._zip.infolist()
        except _ZIP_ERRORS as exc:
            raise MalformedData(
                f"无法读取 ZIP 压缩包：{_brief(exc)}", f"cannot read the ZIP archive: {_brief(exc)}"
            ) from exc
        if len(infos) > self.limits.max_entries:
            raise self._too_many(len(infos))
        self._infos: dict[str, zipfile.ZipInfo] = {}
        self._directories: set[str] = set()
        self._order: list[tuple[str, zipfile.ZipInfo]] = []  # files and directories, archive order
        declared_total = 0
        for info in infos:
            name = check_entry_name(_decoded_name(info))
            key = name.rstrip("/")
            if key in self._infos or key in self._directories:
                raise MalformedData(f"压缩包条目重复：{name}", f"duplicate ZIP entry {name}")
            if info.flag_bits & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION):
                raise MalformedData(f"压缩包条目已加密：{name}", f"encrypted ZIP entry {name}")
            if info.flag_bits & _FLAG_PATCHED:
                raise MalformedData(
                    f"压缩包条目 {name} 为补丁数据（不支持）",
                    f"ZIP entry {name} holds patch data (unsupported)",
                )
            if name.endswith("/"):
                if info.file_size or info.compress_size > 2:  # an empty deflate stream is 2 bytes
                    raise MalformedData(f"目录条目 {name} 含有数据", f"directory entry {name} carries data")
                self._directories.add(key)
                self._order.append((name, info))
                continue
            if info.compress_type not in _SUPPORTED_METHODS:
                raise MalformedData(
                    f"压缩包条目 {name} 使用不支持的压缩方法 {info.compress_type}",
                    f"ZIP entry {name} uses unsupported compression method {info.compress_type}",
                )
            self._precheck(name, info)
            declared_total += info.file_size
            self._infos[name] = info
            self._order.append((name, info))
        if declared_total > self.limits.max_total_size:
            raise self._total_too_large(declared_total)
        # Each entry's stored bytes must end before the next local header (or the central
        # directory): entries sharing bytes are the overlapping-ZIP bomb (zipfile >= 3.12 refuses
        # them too).
        self._end_offsets: dict[str, int] = {}
        bound = self._zip.start_dir
        for name, info in sorted(self._order, key=lambda entry: entry[1].header_offset, reverse=True):
            if not name.endswith("/"):  # directories bound the files before them, nothing more
                self._end_offsets[name] = bound
            bound = info.header_offset
        self._inflated: dict[str, int] = {}
        self._cache: dict[str, bytes] = {}
        self._digests: dict[tuple[str, str], bytes] = {}
        self._verified: set[str] = set()  # read to the end: inflated within the limits, CRC matched

    # -- limits --
    def _too_many(self, count: int) -> InputTooLarge:
        return InputTooLarge(
            f"压缩包条目过多（{count}，上限 {self.limits.max_entries}）",
            f"too many ZIP entries ({count}, limit {self.limits.max_entries})",
        )

    def _total_too_large(self, total: int) -> InputTooLarge:
        return InputTooLarge(
            f"解压后总大小超出上限（{total} 字节，上限 {self.limits.max_total_size}）",
            f"total uncompressed size exceeds the limit ({total} bytes, limit {self.limits.max_total_size})",
        )

    def _entry_too_large(self, name: str, size: int) -> InputTooLarge:
        return InputTooLarge(
            f"压缩包条目 {name} 解压后过大（{size} 字节，上限 {self.limits.entry_limit}）",
            f"ZIP entry {name} inflates too far ({size} bytes, limit {self.limits.entry_limit})",
        )

    def _ratio_exceeded(self, name: str, size: int, compressed: int) -> InputTooLarge:
        return InputTooLarge(
            f"压缩包条目 {name} 压缩比过高（{size}/{compressed}，"
            f"上限 {self.limits.max_ratio}），疑似压缩炸弹",
            f"ZIP entry {name} has a compression ratio above {self.limits.max_ratio} "
            f"({size}/{compressed}): a ZIP bomb?",
        )

    def _precheck(self, name: str, info: zipfile.ZipInfo) -> None:
        if info.file_size > self.limits.entry_limit:
            raise self._entry_too_large(name, info.file_size)
        if info.file_size > self.limits.ratio_floor and info.file_size > self.limits.max_ratio * max(
            info.compress_size, 1
        ):
            raise self._ratio_exceeded(name, info.file_size, info.compress_size)

    def _charge(self, name: str, produced: int, compressed: int) -> None:
        if produced > self.limits.entry_limit:
            raise self._entry_too_large(name, produced)
        if produced > self.limits.ratio_floor and produced > self.limits.max_ratio * max(compressed, 1):
            raise self._ratio_exceeded(name, produced, compressed)
        previous = self._inflated.get(name, 0)
        if produced > previous:
            # Each entry is charged once, by the most it ever inflated: re-reading is not an attack.
            self._inflated[name] = produced
            total = sum(self._inflated.values())
            if total > self.limits.max_total_size:
                raise self._total_too_large(total)

    # -- lookups --
    @property
    def names(self) -> tuple[str, ...]:
        """File entries (no directories), in archive order."""
        return tuple(self._infos)

    @property
    def directories(self) -> frozenset[str]:
        return frozenset(self._directories)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._infos

    def size(self, name: str) -> int:
        """Declared uncompressed size (informational only)."""
        return self._info(name).file_size

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = self._infos.get(name)
        if info is None:
            raise MalformedData(
                f"包内找不到文件：{name}", f"file not found in the package: {name}", name=name
            )
        return info

    def chunks(self, name: str) -> Iterator[bytes]:
        """The entry's bytes, inflated in bounded chunks and counted against every limit; the
        inflated size and CRC-32 must be those the central directory declares."""
        info = self._info(name)
        entry = self.stored_entry(name)
        produced = 0
        crc = 0
        try:
            if entry.method == zipfile.ZIP_STORED:
                if len(entry.data) != info.file_size:
                    raise zipfile.BadZipFile("stored size differs from the declared size")
                blocks: Iterator[bytes] = (
                    entry.data[i : i + _CHUNK] for i in range(0, len(entry.data), _CHUNK)
                )
            else:
                blocks = _inflated(entry.data, info.file_size)
            for block in blocks:
                produced += len(block)
                if produced > info.file_size:
                    raise zipfile.BadZipFile(f"inflates past its declared size of {info.file_size} bytes")
                self._charge(name, produced, info.compress_size)
                crc = zlib.crc32(block, crc)
                yield block
            if produced != info.file_size:
                raise zipfile.BadZipFile(f"inflated to {produced} bytes, declared {info.file_size}")
            if crc != info.CRC:
                raise zipfile.BadZipFile(f"Bad CRC-32 for file {name!r}")
            self._verified.add(name)
        except _ZIP_ERRORS as exc:
            raise MalformedData(
                f"无法读取包内文件 {name}：{_brief(exc)}",
                f"cannot read {name} from the package: {_brief(exc)}",
            ) from exc

    def read(self, name: str) -> bytes:
        """The entry's raw bytes, exactly as stored (after inflation)."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        data = b"".join(self.chunks(name))
        if len(data) <= _CACHE_LIMIT:
            self._cache[name] = data
        return data

    def digest(self, name: str, algorithm: str = "sm3") -> bytes:
        """Digest of the entry's raw bytes; large entries are hashed while streaming."""
        algorithm = algorithm.lower()
        if algorithm not in DIGEST_ALGORITHMS:
            raise MalformedData(f"不支持的摘要算法 {algorithm}", f"unsupported digest algorithm {algorithm}")
        key = (name, algorithm)
        if key in self._digests:
            return self._digests[key]
        hasher: _sm3.Hasher = _sm3.new() if algorithm == "sm3" else hashlib.sha256()
        cached = self._cache.get(name)
        if cached is not None:
            hasher.update(cached)
        else:
            for block in self.chunks(name):
                hasher.update(block)
        value = hasher.digest()
        self._digests[key] = value
        return value

    def sm3(self, name: str) -> bytes:
        return self.digest(name, "sm3")

    def resolve(self, loc: str, base: str | None = None) -> str:
        """:func:`resolve_loc`; the result need not exist in the package."""
        return resolve_loc(loc, base)

    def stored_entry(self, name: str) -> StoredEntry:
        """The entry as stored: method, CRC-32, size and the compressed bytes, taken where a ZIP
        reader takes them (after the local header, whose name must be the central directory's,
        and before the next entry: overlapping entries are refused). Not inflated and not checked
        here: compare them, or :meth:`read` the entry first."""
        info = self._info(name)
        offset = info.header_offset
        try:
            header = _LOCAL_HEADER.unpack_from(self._data, offset) if offset >= 0 else (b"",)
        except struct.error as exc:
            raise MalformedData(
                f"包内文件 {name} 的本地文件头损坏", f"the local header of {name} is damaged", name=name
            ) from exc
        if header[0] != _LOCAL_SIGNATURE:
            raise MalformedData(
                f"包内文件 {name} 的本地文件头损坏", f"the local header of {name} is damaged", name=name
            )
        name_start = offset + _LOCAL_HEADER.size
        start = name_start + header[9] + header[10]
        end = start + info.compress_size
        if end > len(self._data):
            raise MalformedData(f"包内文件 {name} 被截断", f"{name} is truncated in the package", name=name)
        if end > self._end_offsets[name]:
            raise MalformedData(
                f"包内文件 {name} 与其他条目重叠（疑似压缩炸弹）",
                f"{name} overlaps another entry of the package (a ZIP bomb?)",
                name=name,
            )
        local_name = self._data[name_start : name_start + header[9]]
        # As zipfile compares them: by the local header's UTF-8 flag, else CP437.
        if local_name.decode("utf-8" if header[2] & _FLAG_UTF8 else "cp437", "replace") != info.orig_filename:
            raise MalformedData(
                f"包内文件 {name} 的本地文件头与目录中的名称不同",
                f"the local header of {name} names another file than the central directory",
                name=name,
            )
        return StoredEntry(info.compress_type, info.CRC, info.file_size, self._data[start:end])

    # -- writing --
    def rewrite(
        self,
        changes: Mapping[str, bytes | None],
        *,
        date_time: tuple[int, int, int, int, int, int] | None = None,
    ) -> bytes:
        """A new package: every entry copied with its original bytes, except ``changes``.

        A name mapped to bytes replaces the entry (keeping its position) or is appended; a name
        mapped to None is dropped. Directory entries are kept. Kept entries are copied as stored
        (see the module notes); each is read through the checked path first if it was not yet.
        """
        return self.draft(changes, date_time=date_time).finish()

    def draft(
        self,
        changes: Mapping[str, bytes | None],
        *,
        date_time: tuple[int, int, int, int, int, int] | None = None,
    ) -> PackageDraft:
        """:meth:`rewrite` without the end: :meth:`PackageDraft.finish` appends the last entries.

        Everything but those entries is compressed and laid out here, so a signer can build the
        package before it holds the signing lock and add only the signed value inside it.
        """
        for name in changes:
            check_entry_name(name)
        stamp = date_time or _now_stamp()
        writer = _ZipWriter(stamp)
        for name, info in self._order:
            if name.endswith("/"):
                writer.add_bytes(name, b"", info.date_time)
            elif name in changes:
                replacement = changes[name]
                if replacement is not None:
                    writer.add_bytes(name, bytes(replacement), stamp)
            else:
                if name not in self._verified:
                    self.digest(name)  # read through the checked path (limits, CRC) before copying
                writer.add(name, self.stored_entry(name), info.date_time)
        for name, value in changes.items():
            if value is not None and not writer.holds(name):
                writer.add_bytes(name, bytes(value), stamp)
        return PackageDraft(writer)


@dataclass(frozen=True)
class StoredEntry:
    """A ZIP entry as stored: compression method, CRC-32, uncompressed size, stored bytes."""

    method: int
    crc: int
    size: int
    data: bytes = field(repr=False)


class PackageDraft:
    """A package laid out up to its last entries (:meth:`OfdPackage.draft`)."""

    def __init__(self, writer: _ZipWriter) -> None:
        self._writer = writer

    def finish(self, appended: Mapping[str, bytes] | None = None, *, compress: bool = True) -> bytes:
        """The package bytes with ``appended`` (name → bytes) added at the end, in order (stored
        as they are with ``compress=False``); the draft itself is unchanged, so it can be finished
        again."""
        writer = self._writer.copy()
        for name, value in (appended or {}).items():
            data = bytes(value)
            if compress:
                writer.add_bytes(name, data, writer.stamp)
            else:
                writer.add(
                    name, StoredEntry(zipfile.ZIP_STORED, zlib.crc32(data), len(data), data), writer.stamp
                )
        return writer.finish()


def _dos_time(stamp: tuple[int, int, int, int, int, int]) -> tuple[int, int]:
    year, month, day, hour, minute, second = stamp
    if not 1980 <= year <= 2107:
        raise ValueError("ZIP timestamps must lie between 1980 and 2107")
    return hour << 11 | minute << 5 | second // 2, (year - 1980) << 9 | month << 5 | day


def _deflate(data: bytes) -> tuple[int, bytes]:
    """(method, stored bytes): raw deflate, or the bytes themselves when deflate does not help.

    The window is the smallest that holds the whole entry (so the matches found are those of a
    32 KiB window), which spares zlib most of its set-up cost on small XML parts. Small entries
    written again and again (a seal sealing many documents) are remembered.
    """
    return _deflate_small(data) if len(data) <= _MEMO_LIMIT else _deflate_once(data)


@functools.lru_cache(maxsize=32)
def _deflate_small(data: bytes) -> tuple[int, bytes]:
    return _deflate_once(data)


def _deflate_once(data: bytes) -> tuple[int, bytes]:
    if not data:
        return zipfile.ZIP_STORED, b""
    bits = min(15, max(9, (len(data) - 1).bit_length()))
    compressor = zlib.compressobj(6, zlib.DEFLATED, -bits, min(8, max(1, bits - 7)))
    packed = compressor.compress(data) + compressor.flush()
    if len(packed) >= len(data):
        return zipfile.ZIP_STORED, data
    return zipfile.ZIP_DEFLATED, packed


class _ZipWriter:
    """Local headers and data in order, then the central directory: no ZIP64, no data descriptors,
    no extra fields; names in UTF-8 (flagged) unless ASCII."""

    def __init__(self, stamp: tuple[int, int, int, int, int, int]) -> None:
        _dos_time(stamp)
        self.stamp = stamp
        self._parts: list[bytes] = []
        self._central: list[bytes] = []
        self._names: set[str] = set()
        self._offset = 0

    def copy(self) -> _ZipWriter:
        other = _ZipWriter(self.stamp)
        other._parts = list(self._parts)
        other._central = list(self._central)
        other._names = set(self._names)
        other._offset = self._offset
        return other

    def holds(self, name: str) -> bool:
        return name in self._names

    def add_bytes(self, name: str, data: bytes, stamp: tuple[int, int, int, int, int, int]) -> None:
        method, stored = (zipfile.ZIP_STORED, b"") if name.endswith("/") else _deflate(data)
        self.add(name, StoredEntry(method, zlib.crc32(data), len(data), stored), stamp)

    def add(self, name: str, entry: StoredEntry, stamp: tuple[int, int, int, int, int, int]) -> None:
        check_entry_name(name)
        if name in self._names:
            raise MalformedData(f"压缩包条目重复：{name}", f"duplicate ZIP entry {name}")
        if name.isascii():
            encoded, flags = name.encode("ascii"), 0
        else:
            encoded, flags = name.encode("utf-8"), _FLAG_UTF8
        if max(self._offset, entry.size, len(entry.data)) > _MAX_32 or len(self._names) >= 0xFFFF:
            raise InputTooLarge("OFD 包过大，无法写出", "the OFD package is too large to write (no ZIP64)")
        # method, time, date, CRC-32, compressed size, size, name length: the same in both headers
        common = (entry.method, *_dos_time(stamp), entry.crc, len(entry.data), entry.size, len(encoded))
        local = _LOCAL_HEADER.pack(_LOCAL_SIGNATURE, _ZIP_VERSION, flags, *common, 0)
        # extra and comment lengths, disk, internal and external attributes: all zero
        versions = (_ZIP_VERSION, _ZIP_VERSION)  # made by, needed to extract
        central = _CENTRAL_HEADER.pack(b"PK\x01\x02", *versions, flags, *common, 0, 0, 0, 0, 0, self._offset)
        self._central.append(central + encoded)
        self._parts += (local, encoded, entry.data)
        self._offset += len(local) + len(encoded) + len(entry.data)
        self._names.add(name)

    def finish(self) -> bytes:
        directory = b"".join(self._central)
        if self._offset + len(directory) > _MAX_32:
            raise InputTooLarge("OFD 包过大，无法写出", "the OFD package is too large to write (no ZIP64)")
        count = len(self._central)
        end = _END_RECORD.pack(b"PK\x05\x06", 0, 0, count, count, len(directory), self._offset, 0)
        return b"".join((*self._parts, directory, end))


def _now_stamp() -> tuple[int, int, int, int, int, int]:
    now = dt.datetime.now(dt.UTC)
    return (now.year, now.month, now.day, now.hour, now.minute, now.second)


def write_package(
    entries: Iterable[tuple[str, bytes]], *, date_time: tuple[int, int, int, int, int, int] | None = None
) -> bytes:
    """A new OFD package (a ZIP, entries deflated where that helps) from ``(name, bytes)`` pairs, in
    the given order."""
    writer = _ZipWriter(date_time or _now_stamp())
    for name, data in entries:
        writer.add_bytes(name, bytes(data), writer.stamp)
    return writer.finish()


def _brief(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
