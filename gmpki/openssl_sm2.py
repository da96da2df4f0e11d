"""SM2 signature verification through the system OpenSSL 3 libcrypto, called with ctypes.

Why: gmssl-pyx verifies at about half of OpenSSL's rate, holds the GIL, and prints GmSSL error
traces to stderr on every failed verify; pyca ``cryptography`` refuses SM2 keys. OpenSSL 3's SM2
signature provider verifies a prepared digest ``e = SM3(Z ‖ M)`` directly when no message digest
is set on the context, so gmpki keeps computing Z and e itself (with any signer ID) and hands
OpenSSL only the 32-byte e. ctypes releases the GIL for the duration of each call, so threads
verify in parallel.

Signing stays on gmssl-pyx: measured here, OpenSSL 3.0 signs at ~0.7x gmssl-pyx's rate.

:data:`AVAILABLE` is False when no OpenSSL 3.x libcrypto can be loaded, or when the loaded one
fails the GB/T 32918.5 known-answer check at import (some distributions build OpenSSL without
SM2); :mod:`gmpki.sm2` then falls back to gmssl-pyx.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
import weakref
from collections import OrderedDict

from core.errors import CryptoError

__all__ = ["AVAILABLE", "CACHE_SIZE", "OPENSSL_VERSION", "cache_len", "clear_cache", "verify_digest"]

# SubjectPublicKeyInfo header for id-ecPublicKey on the SM2 curve (1.2.156.10197.1.301) with a
# 65-byte uncompressed point; OpenSSL 3.0 decodes it to a key of type "SM2", not plain "EC".
_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")

# Each cached EVP_PKEY is a few hundred bytes of native memory; the bound keeps a flood of
# distinct keys (e.g. verifying many third-party seals) from growing the process without limit.
CACHE_SIZE = 512

# Longest DER SEQUENCE{r, s} for a 256-bit curve is 72 bytes; anything far past that is not a
# signature and is refused before reaching native code.
_MAX_SIGNATURE_LEN = 80

_VP = ctypes.c_void_p


def _candidates() -> list[str]:
    names = ["libcrypto.so.3", "libcrypto.3.dylib", "libcrypto-3-x64.dll", "libcrypto-3.dll"]
    found = ctypes.util.find_library("crypto")
    # macOS' unversioned /usr/lib/libcrypto.dylib aborts the process when loaded; never try it.
    if found and found not in names and not (sys.platform == "darwin" and found.endswith("libcrypto.dylib")):
        names.append(found)
    return names


def _load() -> ctypes.CDLL | None:
    for name in _candidates():
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            version_num = lib.OpenSSL_version_num
        except AttributeError:  # pre-1.1 libcrypto
            continue
        version_num.argtypes = []
        version_num.restype = ctypes.c_ulong
        if int(version_num()) >> 28 != 3:
            continue
        try:
            _declare(lib)
        except AttributeError:
            continue
        return lib
    return None


def _declare(lib: ctypes.CDLL) -> None:
    """Prototypes for every function used: a wrong default (int) return type truncates pointers."""
    lib.OpenSSL_version.argtypes = [ctypes.c_int]
    lib.OpenSSL_version.restype = ctypes.c_char_p
    lib.d2i_PUBKEY.argtypes = [_VP, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long]
    lib.d2i_PUBKEY.restype = _VP
    lib.EVP_PKEY_is_a.argtypes = [_VP, ctypes.c_char_p]
    lib.EVP_PKEY_is_a.restype = ctypes.c_int
    lib.EVP_PKEY_free.argtypes = [_VP]
    lib.EVP_PKEY_free.restype = None
    lib.EVP_PKEY_CTX_new.argtypes = [_VP, _VP]
    lib.EVP_PKEY_CTX_new.restype = _VP
    lib.EVP_PKEY_CTX_free.argtypes = [_VP]
    lib.EVP_PKEY_CTX_free.restype = None
    lib.EVP_PKEY_verify_init.argtypes = [_VP]
    lib.EVP_PKEY_verify_init.restype = ctypes.c_int
    lib.EVP_PKEY_verify.argtypes = [_VP, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
    lib.EVP_PKEY_verify.restype = ctypes.c_int
    lib.ERR_clear_error.argtypes = []
    lib.ERR_clear_error.restype = None


class _PublicKey:
    """Owns one EVP_PKEY; freed by a finaliser once neither the cache nor any verifying thread
    holds this object, so eviction can never free a key another thread is still using."""

    __slots__ = ("__weakref__", "_finalizer", "ptr")

    def __init__(self, lib: ctypes.CDLL, ptr: int) -> None:
        self.ptr = ptr
        # The finaliser holds the bound C function itself, not the module global, so it still
        # works during interpreter shutdown.
        self._finalizer = weakref.finalize(self, lib.EVP_PKEY_free, ptr)
        # Not at exit: atexit would free keys that a daemon thread may still be about to use;
        # the process is ending and the OS reclaims the memory anyway.
        self._finalizer.atexit = False


def _new_public_key(lib: ctypes.CDLL, point: bytes) -> _PublicKey | None:
    spki = _SPKI_PREFIX + point
    cursor = ctypes.c_char_p(spki)
    ptr = lib.d2i_PUBKEY(None, ctypes.byref(cursor), len(spki))
    if not ptr:
        lib.ERR_clear_error()
        return None
    key = _PublicKey(lib, ptr)  # owns ptr from here on, including on the early return below
    if lib.EVP_PKEY_is_a(ptr, b"SM2") != 1:
        lib.ERR_clear_error()
        return None
    return key


_cache: OrderedDict[bytes, _PublicKey] = OrderedDict()
_cache_lock = threading.Lock()


def _public_key(lib: ctypes.CDLL, point: bytes) -> _PublicKey | None:
    with _cache_lock:
        key = _cache.get(point)
        if key is not None:
            _cache.move_to_end(point)
            return key
    # Decoded outside the lock: two threads may both decode a new key; the loser's copy is
    # simply dropped (and freed) instead of serialising every miss.
    key = _new_public_key(lib, point)
    if key is None:
        return None
    with _cache_lock:
        existing = _cache.get(point)
        if existing is not None:
            return existing
        _cache[point] = key
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return key


def _reset_lock_after_fork() -> None:
    # A fork while another thread held the lock would leave the child's copy locked forever.
    global _cache_lock
    _cache_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_reset_lock_after_fork)


def clear_cache() -> None:
    """Drop every cached key (each EVP_PKEY is freed once no thread still uses it)."""
    with _cache_lock:
        _cache.clear()


def cache_len() -> int:
    with _cache_lock:
        return len(_cache)


def _verify(lib: ctypes.CDLL, point: bytes, digest: bytes, signature: bytes) -> bool:
    if len(point) != 65 or point[0] != 0x04 or len(digest) != 32:
        return False
    if not 0 < len(signature) <= _MAX_SIGNATURE_LEN:
        return False
    key = _public_key(lib, point)
    if key is None:
        return False
    ctx = lib.EVP_PKEY_CTX_new(key.ptr, None)  # takes its own reference on the EVP_PKEY
    if not ctx:
        lib.ERR_clear_error()
        return False
    try:
        # Only 1 means valid: 0 is a bad signature and negative values are errors.
        ok = bool(
            lib.EVP_PKEY_verify_init(ctx) == 1
            and lib.EVP_PKEY_verify(ctx, signature, len(signature), digest, len(digest)) == 1
        )
    finally:
        lib.EVP_PKEY_CTX_free(ctx)
    if not ok:
        # The error queue is per thread and never printed by OpenSSL; clearing keeps it from
        # growing on a thread that verifies many bad signatures.
        lib.ERR_clear_error()
    return ok


def verify_digest(public_point: bytes, digest: bytes, signature: bytes) -> bool:
    """Verify a DER SM2 signature over a prepared 32-byte ``e = SM3(Z ‖ M)``.

    ``public_point`` is the 65-byte uncompressed point. Returns False for any invalid key,
    digest, encoding or signature; never raises for bad input. Raises :class:`CryptoError` only
    when the backend is not available (check :data:`AVAILABLE` first).
    """
    if _lib is None:
        raise CryptoError("OpenSSL SM2 后端不可用", "OpenSSL SM2 backend is not available")
    return _verify(_lib, bytes(public_point), bytes(digest), bytes(signature))


# GB/T 32918.5-2017 Annex A: key, e = SM3(Z ‖ "message digest") with ID 1234567812345678, (r, s).
_KAT_POINT = bytes.fromhex(
    "0409f9df311e5421a150dd7d161e4bc5c672179fad1833fc076bb08ff356f35020"
    "ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13"
)
_KAT_DIGEST = bytes.fromhex("f0b43e94ba45accaace692ed534382eb17e6ab5a19ce7b31f4486fdfc0d28640")
_KAT_SIGNATURE = bytes.fromhex(
    "3046022100f5a03b0648d2c4630eeac513e1bb81a15944da3827d5b74143ac7eaceee720b3"
    "022100b1b6aa29df212fd8763182bc0d421ca1bb9038fd1f7f42d4840b69c485bbc1aa"
)


def _self_test(lib: ctypes.CDLL) -> bool:
    # Both directions: a build that rejects everything (no SM2) or accepts everything (a digest
    # silently re-hashed or ignored) must not become the verifier.
    tampered = bytes([_KAT_DIGEST[0] ^ 1]) + _KAT_DIGEST[1:]
    try:
        return _verify(lib, _KAT_POINT, _KAT_DIGEST, _KAT_SIGNATURE) and not _verify(
            lib, _KAT_POINT, tampered, _KAT_SIGNATURE
        )
    finally:
        clear_cache()


def _init() -> tuple[ctypes.CDLL | None, str | None]:
    lib = _load()
    if lib is None or not _self_test(lib):
        return None, None
    version = lib.OpenSSL_version(0)  # OPENSSL_VERSION
    return lib, (version.decode("ascii", "replace") if version else None)


_lib, OPENSSL_VERSION = _init()
AVAILABLE: bool = _lib is not None
