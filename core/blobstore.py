"""Content-addressed blob store: files named by their SM3 hex digest under a root directory.

Layout ``<root>/ab/cd/<hash>`` keeps directories small. Writes go to a temporary file in
``<root>/.tmp`` (same file system), are fsynced and then renamed into place with ``os.replace``, so a
reader never sees a partial blob and a crash leaves at most a stray temporary file. Every read checks
the content against its name.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
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
