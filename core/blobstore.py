"""Content-addressed blob store: files named by their SM3 hex digest under a root directory.

Layout ``<root>/ab/cd/<hash>`` keeps directories small. Writes go to a temporary file in
``<root>/.tmp`` (same file system), are fsynced and then renamed into place with ``os.replace``, so a
reader never sees a partial blob and a crash leaves at most a stray temporary file. Every read checks
the content against its name.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from gmpki import sm3

from .errors import EsealError, InputTooLarge, InvalidInput, NotFound

_HASH_RE = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1024 * 1024


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


class BlobStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._tmp = self.root / ".tmp"

    def path(self, blob_id: str) -> Path:
        check_blob_id(blob_id)
        return self.root / blob_id[:2] / blob_id[2:4] / blob_id

    def exists(self, blob_id: str) -> bool:
        return self.path(blob_id).is_file()

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
            if final.is_file() and self._matches(final, blob_id):
                try:
                    # Refreshing the time marks the blob as wanted again: a sweep spares blobs
                    # touched within its grace period (see sweep()).
                    os.utime(final)
                except FileNotFoundError:
                    pass  # swept meanwhile: store this copy below
                else:
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
        """Every stored blob's id (files named like a blob under ``ab/cd/``; anything else is ignored)."""
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
        rewrites a missing one), so a concurrent store of the same content is never lost.
        """
        cutoff = (time.time() if now is None else now) - older_than.total_seconds()
        stored = list(self.ids())
        old = [blob_id for blob_id in stored if self.path(blob_id).stat().st_mtime < cutoff]
        wanted = referenced()
        report = SweepReport(
            examined=len(stored),
            referenced=sum(1 for blob_id in old if blob_id in wanted),
            recent=len(stored) - len(old),
            removed=0,
            removed_bytes=0,
            temporaries=0,
        )
        trash = self.root / ".trash"
        for blob_id in old:
            if blob_id in wanted:
                continue
            path = self.path(blob_id)
            size = path.stat().st_size
            if dry_run:
                report.removed += 1
                report.removed_bytes += size
                continue
            trash.mkdir(parents=True, exist_ok=True)
            aside = trash / blob_id
            try:
                os.replace(path, aside)
            except FileNotFoundError:
                continue
            if aside.stat().st_mtime >= cutoff:  # put() reused it just before the move
                if path.exists():
                    aside.unlink()
                else:
                    os.replace(aside, path)
                continue
            aside.unlink()
            report.removed += 1
            report.removed_bytes += size
        if self._tmp.is_dir():
            # Writers keep temporaries in .tmp and in per-process folders below it (batch workers).
            for stray in self._tmp.rglob("*"):
                with contextlib.suppress(FileNotFoundError):
                    if stray.is_file() and stray.stat().st_mtime < cutoff:
                        if not dry_run:
                            stray.unlink()
                        report.temporaries += 1
        return report

    def get(self, blob_id: str) -> bytes:
        """The blob's bytes, verified against its name."""
        path = self._existing(blob_id)
        data = path.read_bytes()
        if sm3.sm3_hex(data) != blob_id:
            raise self._corrupted(blob_id)
        return data

    def open(self, blob_id: str) -> BinaryIO:
        """A binary file positioned at the start, after the whole content was verified (streamed).

        Blobs are never rewritten in place (only atomically replaced), so the verified file stays the
        one read through the returned handle.
        """
        path = self._existing(blob_id)
        handle = path.open("rb")
        try:
            if sm3.sm3_stream(handle).hex() != blob_id:
                raise self._corrupted(blob_id)
            handle.seek(0)
        except BaseException:
            handle.close()
            raise
        return handle

    def _existing(self, blob_id: str) -> Path:
        path = self.path(blob_id)
        if not path.is_file():
            raise BlobNotFound(f"存储内容 {blob_id} 不存在", f"blob {blob_id} not found", blob_id=blob_id)
        return path

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
