"""RC2 (RFC 2268) block cipher, decryption-side CBC only: reading legacy PKCS#12 files.

Why this exists: PKCS#12 files from Chinese CA tools and Java keystores still encrypt the
certificate bag with pbeWithSHAAnd40BitRC2-CBC. pyca/cryptography's ``decrepit`` RC2 accepts only
128-bit keys, and OpenSSL 3 moved RC2 into the legacy provider, so neither can read RC2-40. RC2 is
broken and must never protect anything new: this module offers no CBC encryption, and the
single-block ``encrypt_block`` exists only to check the RFC 2268 test vectors.
"""

from __future__ import annotations

from typing import Final

from core.errors import CryptoError, InvalidInput

BLOCK_SIZE: Final = 8

# RFC 2268 section 2: PITABLE, the permutation of 0..255 derived from the digits of pi.
_PITABLE: Final = bytes.fromhex(
    "d978f9c419ddb5ed28e9fd794aa0d89d"
    "c67e37832b76538e624c6488448bfba2"
    "179a59f587b34f1361456d8d09817d32"
    "bd8f40eb86b77b0bf09521225c6b4e82"
    "54d66593ce60b21c7356c014a78cf1dc"
    "1275ca1f3bbee4d1423dd430a33cb626"
    "6fbf0eda4669075727f21d9bbc944303"
    "f811c7f690ef3ee706c3d52fc8661ed7"
    "08e8eade8052eef784aa72ac354d6a2a"
    "961ad2715a1549744b9fd05e0418a4ec"
    "c2e0416e0f51cbcc2491af50a1f47039"
    "997c3a8523b8b47afc02365b25559731"
    "2d5dfa98e38a92ae05df2910676cbac9"
    "d300e6cfe19ea82c6316013f58e289a9"
    "0d38341bab33ffb0bb480c5fb9b1cd2e"
    "c5f3db47e5a59c770aa62068fe7fc1ad"
)


def _expand_key(key: bytes, effective_bits: int) -> list[int]:
    if not 1 <= len(key) <= 128:
        raise InvalidInput("RC2 密钥长度必须为 1 到 128 字节", "RC2 key must be 1 to 128 bytes")
    if not 1 <= effective_bits <= 1024:
        raise InvalidInput("RC2 有效密钥位数必须为 1 到 1024", "RC2 effective key bits must be 1 to 1024")
    t = len(key)
    t8 = (effective_bits + 7) // 8
    tm = 0xFF >> (8 * t8 - effective_bits)
    buf = bytearray(128)
    buf[:t] = key
    for i in range(t, 128):
        buf[i] = _PITABLE[(buf[i - 1] + buf[i - t]) & 0xFF]
    buf[128 - t8] = _PITABLE[buf[128 - t8] & tm]
    for i in range(127 - t8, -1, -1):
        buf[i] = _PITABLE[buf[i + 1] ^ buf[i + t8]]
    return [buf[2 * i] | (buf[2 * i + 1] << 8) for i in range(64)]


def _rol(x: int, s: int) -> int:
    return ((x << s) | (x >> (16 - s))) & 0xFFFF


def _ror(x: int, s: int) -> int:
    return ((x >> s) | (x << (16 - s))) & 0xFFFF


_SHIFTS: Final = (1, 2, 3, 5)


class RC2:
    """RC2 with an explicit effective key length (40 for PKCS#12's RC2-40, 128 for RC2-128)."""

    __slots__ = ("_k",)

    def __init__(self, key: bytes, effective_bits: int) -> None:
        self._k = _expand_key(bytes(key), effective_bits)

    def encrypt_block(self, block: bytes) -> bytes:
        if len(block) != BLOCK_SIZE:
            raise InvalidInput("RC2 分组必须为 8 字节", "RC2 block must be 8 bytes")
        k = self._k
        r = [block[2 * i] | (block[2 * i + 1] << 8) for i in range(4)]
        j = 0
        for rnd in range(16):
            for i in range(4):
                r[i] = (r[i] + k[j] + (r[i - 1] & r[i - 2]) + (~r[i - 1] & r[i - 3])) & 0xFFFF
                r[i] = _rol(r[i], _SHIFTS[i])
                j += 1
            if rnd in (4, 10):  # mashing rounds after the 5th and 11th mixing rounds
                for i in range(4):
                    r[i] = (r[i] + k[r[i - 1] & 63]) & 0xFFFF
        return b"".join(w.to_bytes(2, "little") for w in r)

    def decrypt_block(self, block: bytes) -> bytes:
        if len(block) != BLOCK_SIZE:
            raise InvalidInput("RC2 分组必须为 8 字节", "RC2 block must be 8 bytes")
        k = self._k
        r = [block[2 * i] | (block[2 * i + 1] << 8) for i in range(4)]
        j = 63
        for rnd in range(15, -1, -1):
            for i in range(3, -1, -1):
                r[i] = _ror(r[i], _SHIFTS[i])
                r[i] = (r[i] - k[j] - (r[i - 1] & r[i - 2]) - (~r[i - 1] & r[i - 3])) & 0xFFFF
                j -= 1
            if rnd in (5, 11):  # undo the mashing that followed mixing rounds 5 and 11
                for i in range(3, -1, -1):
                    r[i] = (r[i] - k[r[i - 1] & 63]) & 0xFFFF
        return b"".join(w.to_bytes(2, "little") for w in r)


def cbc_decrypt(key: bytes, effective_bits: int, iv: bytes, ciphertext: bytes) -> bytes:
    """RC2-CBC decryption with PKCS#7 padding removed; CryptoError on bad length or padding."""
    if len(iv) != BLOCK_SIZE:
        raise InvalidInput("RC2-CBC 初始向量必须为 8 字节", "RC2-CBC IV must be 8 bytes")
    if not ciphertext or len(ciphertext) % BLOCK_SIZE:
        raise CryptoError("RC2-CBC 密文长度无效", "Invalid RC2-CBC ciphertext length")
    cipher = RC2(key, effective_bits)
    out = bytearray()
    prev = iv
    for pos in range(0, len(ciphertext), BLOCK_SIZE):
        block = ciphertext[pos : pos + BLOCK_SIZE]
        plain = cipher.decrypt_block(block)
        out += bytes(a ^ b for a, b in zip(plain, prev, strict=True))
        prev = block
    pad = out[-1]
    if not 1 <= pad <= BLOCK_SIZE or out[-pad:] != bytes([pad]) * pad:
        raise CryptoError("RC2-CBC 填充无效", "Invalid RC2-CBC padding")
    return bytes(out[:-pad])
