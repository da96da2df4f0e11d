"""SM3 (GB/T 32905) hashing.

hashlib's ``sm3`` (OpenSSL 3) is used where the interpreter's OpenSSL has it: it streams and releases
the GIL on large buffers. gmssl-pyx's one-shot ``sm3_hash`` is the fallback.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import BinaryIO, Protocol

import gmssl_pyx

DIGEST_SIZE = 32
_HAVE_HASHLIB_SM3 = "sm3" in hashlib.algorithms_available
_CHUNK = 1024 * 1024


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


class _BufferingHasher:
    """Fallback incremental hasher when hashlib lacks SM3 (the native one-shot API has no update)."""

    def __init__(self) -> None:
        self._parts = bytearray()

    def update(self, data: bytes, /) -> None:
        self._parts += data

    def digest(self) -> bytes:
        return bytes(gmssl_pyx.sm3_hash(bytes(self._parts)))

    def hexdigest(self) -> str:
        return self.digest().hex()


def new(data: bytes = b"") -> Hasher:
    """An incremental SM3 hasher."""
    h: Hasher = hashlib.new("sm3") if _HAVE_HASHLIB_SM3 else _BufferingHasher()
    if data:
        h.update(data)
    return h


def sm3(data: bytes) -> bytes:
    """SM3 digest of ``data`` (32 bytes)."""
    if _HAVE_HASHLIB_SM3:
        return hashlib.new("sm3", data).digest()
    return bytes(gmssl_pyx.sm3_hash(data))


def sm3_hex(data: bytes) -> str:
    return sm3(data).hex()


def sm3_chunks(chunks: Iterable[bytes]) -> bytes:
    h = new()
    for c in chunks:
        h.update(c)
    return h.digest()


def sm3_stream(stream: BinaryIO, chunk_size: int = _CHUNK) -> bytes:
    """SM3 of a binary stream read in chunks, so memory stays flat for large files."""
    h = new()
    while True:
        block = stream.read(chunk_size)
        if not block:
            return h.digest()
        h.update(block)


def sm3_hmac(key: bytes, data: bytes) -> bytes:
    return bytes(gmssl_pyx.sm3_hmac(key, data))
