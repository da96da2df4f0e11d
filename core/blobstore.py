"""Content-addressed blob store: blobs named by their SM3 hex digest under a root directory.

A blob is stored either **loose**, as a file ``<root>/ab/cd/<hash>`` (``put``, ``put_stream``: one
blob at a time), or **packed**: many blobs written together (:class:`StagedBlobs`, e.g. the outputs
of one batch-sealing group) go into one pack ``<root>/packs/<random>.zip``, a ZIP archive of stored
(uncompressed) entries each named by its blob's SM3, so one file is created for the lot instead of
one per blob (creating files is what costs on most file systems, far more than writing small ones).
Readers find packed blobs through an in-memory index built from the packs' central directories and
extended when a blob is not found (another process may have written the pack since).

Every write goes to a temporary file in ``<root>/.tmp`` (same file system) and is renamed into place
with ``os.replace``, so a reader never sees a partial blob or pack and a crash leaves at most a stray
temporary file. Every read, loose or packed, checks the content against its name.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import io
import os
import re
import secrets
import struct
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Final

from gmpki import sm3

from .errors import EsealError, InputTooLarge, InvalidInput, NotFound

_HASH_RE = re.compile(r"[0-9a-f]{64}")
_PACK_RE = re.compile(r"[0-9a-f]{32}\.zip")
_CHUNK = 1024 * 1024
PACK_DIR: Final = "packs"
_LOCAL_HEADER: Final = struct.Struct("<4s22xHH")  # signature ... file name length, extra length
_FIXED_ZIP_TIME: Final = (1980, 1, 1, 0, 0, 0)  # packs carry no times of their own: mtime says it


class BlobCorrupted(EsealError):
    """A stored blob no longer matches its SM3 name (disk corruption or tampering)."""

    code = "blob_corrupted"
    status = 500
    title_zh, title_en = "存储内容已损坏", "Stored blob corrupted"


class BlobNotFound(NotFound):
    code = "blob_not_found"
    title_zh, title_en = "存储内容不存在", "Blob not found"


def check_blob_id(blob_id: str) -> str:
    """Accept exactly 64 lowercase hex digits: anything else could name a path outside the store."""
    if not isinstance(blob_id, str) or _HASH_RE.fullmatch(blob_id) is None:
        raise InvalidInput(
            "存储标识必须为 64 位小写十六进制 SM3 摘要",
            "blob id must be a 64-character lowercase hex SM3 digest",
        )
    return blob_id


def _fsync_dir(path: Path) -> None:
    # Durability of the rename itself needs the directory entry flushed (POSIX).
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class SweepReport:
    """What a sweep found: blobs examined, kept (named by a record, or within the grace period),
    removed (with their size) and stray temporaries removed; counts of what *would* go on a dry run."""

    examined: int
    referenced: int
    recent: int
    removed: int
    removed_bytes: int
    temporaries: int

    def to_json(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class _Packed:
    """Where a packed blob's bytes are: pack file name, offset of the data, size."""

    pack: str
    offset: int
    size: int


def _pack_entries(path: Path) -> list[tuple[str, int, int]]:
    """(blob id, data offset, size) of each blob entry of a pack, from its central directory and
    local headers; entries that are not stored blobs (a foreign or damaged file) are left out."""
    entries: list[tuple[str, int, int]] = []
    with path.open("rb") as f, zipfile.ZipFile(f) as archive:
        for info in archive.infolist():
            if (
                _HASH_RE.fullmatch(info.filename) is None
                or info.compress_type != zipfile.ZIP_STORED
                or info.flag_bits & 0x1
            ):
                continue
            f.seek(info.header_offset)
            signature, name_length, extra_length = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
            if signature != b"PK\x03\x04":
                continue
            offset = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
            entries.append((info.filename, offset, info.file_size))
    return entries


class PackWriter:
    """Blobs written into one new pack: a temporary file until :meth:`install` renames it into
    ``packs/`` (not synced: see :class:`StagedBlobs`); :meth:`discard` removes it."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        store._tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=store._tmp, prefix="pack-")
        self._tmp = Path(name)
        self._file = os.fdopen(fd, "w+b")
        self._zip = zipfile.ZipFile(self._file, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self._ids: set[str] = set()

    def add(self, blob_id: str, data: bytes) -> None:
        """Add a blob whose SM3 hex the caller computed (re-checked when read, as every blob is)."""
        check_blob_id(blob_id)
        if blob_id in self._ids:
            return
        info = zipfile.ZipInfo(blob_id, _FIXED_ZIP_TIME)
        info.compress_type = zipfile.ZIP_STORED
        self._zip.writestr(info, data)
        self._ids.add(blob_id)

    def __len__(self) -> int:
        return len(self._ids)

    def install(self) -> Path:
        """Finish the pack and make its blobs readable (renamed into ``packs/``); its path."""
        try:
            self._zip.close()
            self._file.flush()
            entries = _pack_entries(self._tmp)
            self._file.close()
            if {blob_id for blob_id, _o, _s in entries} != self._ids:
                raise OSError(f"pack {self._tmp.name} does not read back")
            return self._store._install_pack(self._tmp, entries)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._zip.close()
        with contextlib.suppress(Exception):
            self._file.close()
        self._tmp.unlink(missing_ok=True)


class BlobStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._tmp = self.root / ".tmp"
        # Packed blobs by id, and each indexed pack's ids; guarded for the API's threads.
        self._index: dict[str, _Packed] = {}
        self._packs: dict[str, tuple[str, ...]] = {}
        self._index_lock = threading.Lock()

    def path(self, blob_id: str) -> Path:
        check_blob_id(blob_id)
        return self.root / blob_id[:2] / blob_id[2:4] / blob_id

    def exists(self, blob_id: str) -> bool:
        return self.path(blob_id).is_file() or self._packed(blob_id) is not None

    # -- packs --
    @property
    def pack_dir(self) -> Path:
        return self.root / PACK_DIR

    def _packed(self, blob_id: str, *, scan: bool = True) -> _Packed | None:
        """Where a packed blob is; with ``scan``, packs written since the last look are indexed
        first when the index does not know it."""
        found = self._index.get(blob_id)
        if found is None and scan:
            self._scan_packs()
            found = self._index.get(blob_id)
        return found

    def _scan_packs(self) -> None:
        with self._index_lock:
            try:
                names = os.listdir(self.pack_dir)
            except FileNotFoundError:
                return
            for name in names:
                if name not in self._packs and _PACK_RE.fullmatch(name):
                    self._index_pack(name)

    def _index_pack(self, name: str) -> None:
        """Add one pack's entries to the index (lock held). A pack that cannot be read is skipped
        with its blobs: a read of one of them then says not found, and the sweep spares the file."""
        try:
            entries = _pack_entries(self.pack_dir / name)
        except (OSError, zipfile.BadZipFile, ValueError, struct.error):
            return
        self._packs[name] = tuple(blob_id for blob_id, _offset, _size in entries)
        for blob_id, offset, size in entries:
            self._index[blob_id] = _Packed(name, offset, size)

    def _forget_pack(self, name: str) -> None:
        with self._index_lock:
            for blob_id in self._packs.pop(name, ()):
                if (found := self._index.get(blob_id)) is not None and found.pack == name:
                    del self._index[blob_id]

    def _read_packed(self, blob_id: str) -> bytes | None:
        """A packed blob's bytes as stored (not yet checked), or None when no pack holds it."""
        for _attempt in range(2):
            found = self._packed(blob_id)
            if found is None:
                return None
            try:
                with (self.pack_dir / found.pack).open("rb") as f:
                    f.seek(found.offset)
                    return f.read(found.size)
            except FileNotFoundError:  # swept since it was indexed: look again
                self._forget_pack(found.pack)
        return None

    def new_pack(self) -> PackWriter:
        """A pack to add blobs to; nothing is visible until :meth:`PackWriter.install`."""
        return PackWriter(self)

    def _install_pack(self, tmp: Path, entries: list[tuple[str, int, int]]) -> Path:
        self.pack_dir.mkdir(parents=True, exist_ok=True)
        name = f"{secrets.token_hex(16)}.zip"
        final = self.pack_dir / name
        os.replace(tmp, final)
        with self._index_lock:
            self._packs[name] = tuple(blob_id for blob_id, _o, _s in entries)
            for blob_id, offset, size in entries:
                self._index[blob_id] = _Packed(name, offset, size)
        return final

    def refresh(self, blob_id: str, *, scan: bool = True) -> bool:
        """If a good copy of the blob is stored, mark it wanted again (a sweep spares blobs and packs
        touched within its grace period) and say so; False: store it again (absent, or corrupted)."""
        path = self.path(blob_id)
        try:
            if path.is_file() and self._matches(path, blob_id):
                os.utime(path)
                return True
        except FileNotFoundError:
            pass  # swept meanwhile
        found = self._packed(blob_id, scan=scan)
        if found is None:
            return False
        data = self._read_packed(blob_id)
        if data is None or sm3.sm3_hex(data) != blob_id:
            return False
        try:
            os.utime(self.pack_dir / found.pack)
        except FileNotFoundError:
            return False
        return True

    def put(self, data: bytes) -> str:
        """Store ``data``; returns its SM3 hex. Storing the same content twice is a no-op."""
        return self.put_stream(io.BytesIO(data))

    def put_stream(self, stream: BinaryIO, *, max_bytes: int | None = None) -> str:
        """Store a stream read in chunks (flat memory); returns its SM3 hex.

        Raises InputTooLarge once more than ``max_bytes`` have been read.
        """
        self._tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="blob-")
        tmp = Path(tmp_name)
        try:
            hasher = sm3.new()
            size = 0
            with os.fdopen(fd, "wb") as out:
                while block := stream.read(_CHUNK):
                    size += len(block)
                    if max_bytes is not None and size > max_bytes:
                        raise InputTooLarge(
                            f"内容超过 {max_bytes} 字节上限", f"content exceeds the {max_bytes}-byte limit"
                        )
                    hasher.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            blob_id = hasher.hexdigest()
            final = self.path(blob_id)
            # Packs are not rescanned here (a listing per stored file): a copy in a pack this
            # process has not indexed yet is merely stored twice.
            if self.refresh(blob_id, scan=False):
                tmp.unlink()
                return blob_id
            # A missing or corrupted copy is (re)placed atomically.
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
            return blob_id
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    def ids(self) -> Iterator[str]:
        """Every stored blob's id, loose then packed (a blob stored twice is named twice)."""
        yield from self._loose_ids()
        self._scan_packs()
        for name in sorted(self._packs):
            yield from self._packs.get(name, ())

    def _loose_ids(self) -> Iterator[str]:
        """Files named like a blob under ``ab/cd/``; anything else is ignored."""
        for first in sorted(self.root.glob("[0-9a-f][0-9a-f]")):
            for second in sorted(first.glob("[0-9a-f][0-9a-f]")):
                for path in sorted(second.iterdir()):
                    name = path.name
                    if _HASH_RE.fullmatch(name) and name[:2] == first.name and name[2:4] == second.name:
                        yield name

    def sweep(
        self,
        referenced: Callable[[], AbstractSet[str]],
        *,
        older_than: dt.timedelta,
        dry_run: bool = False,
        now: float | None = None,
    ) -> SweepReport:
        """Remove blobs no record names and nobody stored within ``older_than``; stray temporaries too.

        Orphans come from crashes: a blob is written before the row that names it commits, and a
        transaction that then rolls back leaves it behind. The grace period spares blobs whose row
        may still be on its way to a commit; ``referenced`` is asked *after* the candidates are
        listed, so a row committed before that is seen. A blob is first moved aside, and put back
        if ``put`` refreshed it meanwhile (put touches an existing blob before reusing it and
        rewrites a missing one), so a concurrent store of the same content is never lost. A pack is
        removed as a whole once none of its blobs is named, under the same rules (``refresh`` touches
        the pack of a packed blob it reuses).
        """
        cutoff = (time.time() if now is None else now) - older_than.total_seconds()
        stored = list(self._loose_ids())
        old = [blob_id for blob_id in stored if self.path(blob_id).stat().st_mtime < cutoff]
        self._scan_packs()
        packs = {name: self._packs.get(name, ()) for name in sorted(self._packs)}
        old_packs = {name: ids for name, ids in packs.items() if self._pack_mtime(name) < cutoff}
        wanted = referenced()
        packed_total = sum(len(ids) for ids in packs.values())
        packed_old = sum(len(ids) for ids in old_packs.values())
        report = SweepReport(
            examined=len(stored) + packed_total,
            referenced=sum(1 for blob_id in old if blob_id in wanted)
            + sum(1 for ids in old_packs.values() for blob_id in ids if blob_id in wanted),
            recent=len(stored) - len(old) + packed_total - packed_old,
            removed=0,
            removed_bytes=0,
            temporaries=0,
        )
        for blob_id in old:
            if blob_id not in wanted:
                self._sweep_file(self.path(blob_id), blob_id, cutoff, dry_run, report, count=1)
        # A pack goes as a whole, once no record names any blob in it.
        for name, ids in old_packs.items():
            if ids and not any(blob_id in wanted for blob_id in ids):
                path = self.pack_dir / name
                if self._sweep_file(path, name, cutoff, dry_run, report, count=len(ids)) and not dry_run:
                    self._forget_pack(name)
        if self._tmp.is_dir():
            # Writers keep temporaries in .tmp (older batch workers: in per-process folders below it).
            for stray in self._tmp.rglob("*"):
                with contextlib.suppress(FileNotFoundError):
                    if stray.is_file() and stray.stat().st_mtime < cutoff:
                        if not dry_run:
                            stray.unlink()
                        report.temporaries += 1
        return report

    def _pack_mtime(self, name: str) -> float:
        try:
            return (self.pack_dir / name).stat().st_mtime
        except FileNotFoundError:
            return float("inf")  # gone already: nothing to sweep

    def _sweep_file(
        self, path: Path, name: str, cutoff: float, dry_run: bool, report: SweepReport, *, count: int
    ) -> bool:
        """Remove one old file (a loose blob or a pack holding ``count`` blobs) unless a store
        refreshed it meanwhile; True when it was (or, on a dry run, would be) removed."""
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return False
        if dry_run:
            report.removed += count
            report.removed_bytes += size
            return True
        trash = self.root / ".trash"
        trash.mkdir(parents=True, exist_ok=True)
        aside = trash / name
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            return False
        if aside.stat().st_mtime >= cutoff:  # put() or refresh() reused it just before the move
            if path.exists():
                aside.unlink()
            else:
                os.replace(aside, path)
            return False
        aside.unlink()
        report.removed += count
        report.removed_bytes += size
        return True

    def get(self, blob_id: str) -> bytes:
        """The blob's bytes, verified against its name: the loose copy, else a packed one (a blob
        stored both ways, e.g. re-stored after one copy was damaged, is served from a good copy)."""
        path = self.path(blob_id)
        try:
            loose: bytes | None = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            loose = None
        if loose is not None and sm3.sm3_hex(loose) == blob_id:
            return loose
        packed = self._read_packed(blob_id)
        if packed is not None and sm3.sm3_hex(packed) == blob_id:
            return packed
        if loose is None and packed is None:
            raise self._not_found(blob_id)
        raise self._corrupted(blob_id)

    def open(self, blob_id: str) -> BinaryIO:
        """A binary file positioned at the start, after the whole content was verified (streamed).

        Blobs are never rewritten in place (only atomically replaced), so the verified file stays the
        one read through the returned handle. A packed blob (at most a batch document) is read whole.
        """
        path = self.path(blob_id)
        if not path.is_file():
            return io.BytesIO(self.get(blob_id))
        handle = path.open("rb")
        try:
            good = sm3.sm3_stream(handle).hex() == blob_id
            handle.seek(0)
        except BaseException:
            handle.close()
            raise
        if not good:
            handle.close()
            return io.BytesIO(self.get(blob_id))  # a good packed copy, or BlobCorrupted
        return handle

    @staticmethod
    def _not_found(blob_id: str) -> BlobNotFound:
        return BlobNotFound(f"存储内容 {blob_id} 不存在", f"blob {blob_id} not found", blob_id=blob_id)

    @staticmethod
    def _matches(path: Path, blob_id: str) -> bool:
        with path.open("rb") as f:
            return sm3.sm3_stream(f).hex() == blob_id

    @staticmethod
    def _corrupted(blob_id: str) -> BlobCorrupted:
        return BlobCorrupted(
            f"存储内容 {blob_id} 与其 SM3 摘要不符",
            f"blob {blob_id} does not match its SM3 digest",
            blob_id=blob_id,
        )


# --- many blobs made durable together ---------------------------------------------------------------------
def _load_syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    syncfs: Callable[[int], int] = fn
    return syncfs


_SYNCFS: Final = _load_syncfs()


class StagedBlobs:
    """Blobs stored together in one pack of a :class:`BlobStore` and made durable together.

    ``put`` reuses a stored copy (refreshed for the sweep) or adds the blob to the group's pack;
    :meth:`sync` installs the pack and makes everything durable with one ``syncfs`` of the store's
    file system (fsync of the pack and its directory where syncfs is unavailable). Callers
    reference the blobs (commit) only after :meth:`sync` returned: a crash before leaves, at worst,
    an unreferenced pack or a stray temporary file, which the sweep removes.
    """

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self._pack: PackWriter | None = None
        self._touched = False

    def put(self, data: bytes) -> str:
        blob_id = sm3.sm3_hex(data)
        # Only the packs already indexed are looked at: a copy in a pack written meanwhile by
        # another process is merely stored twice.
        if self.store.refresh(blob_id, scan=False):
            self._touched = True
            return blob_id
        if self._pack is None:
            self._pack = self.store.new_pack()
        self._pack.add(blob_id, data)
        return blob_id

    def discard(self) -> None:
        """Drop what was added and not yet synced."""
        if self._pack is not None:
            self._pack.discard()
            self._pack = None

    def sync(self) -> None:
        pack, self._pack = self._pack, None
        installed = pack.install() if pack is not None else None
        if installed is None and not self._touched:
            return
        self._touched = False
        if _SYNCFS is not None:
            fd = os.open(self.store.root, os.O_RDONLY)
            try:
                if _SYNCFS(fd) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"syncfs failed: {os.strerror(err)}")
            finally:
                os.close(fd)
            return
        if installed is not None:  # pragma: no cover - non-Linux: the pack and its directory
            with installed.open("rb") as handle:
                os.fsync(handle.fileno())
            _fsync_dir(installed.parent)
