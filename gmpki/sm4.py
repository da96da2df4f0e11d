"""SM4 (GB/T 32907) encryption: GCM for anything stored, CBC for interoperability."""

from __future__ import annotations

import os

import gmssl_pyx

from core.errors import CryptoError, InvalidInput

KEY_SIZE = 16
BLOCK_SIZE = 16
GCM_NONCE_SIZE = 12
GCM_TAG_SIZE = 16


def _check_key(key: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise InvalidInput("SM4 密钥必须为 16 字节", "SM4 key must be 16 bytes")


def encrypt_block(key: bytes, block: bytes) -> bytes:
    """Single-block SM4 (ECB of one block): used for the GB/T 32907 example only."""
    _check_key(key)
    if len(block) != BLOCK_SIZE:
        raise InvalidInput("SM4 分组必须为 16 字节", "SM4 block must be 16 bytes")
    # CTR with a zero counter XORed back out gives E(K, 0); instead use CBC with a zero IV, whose
    # first ciphertext block is exactly E(K, block).
    return bytes(gmssl_pyx.sm4_cbc_padding_encrypt(key, bytes(16), block))[:BLOCK_SIZE]


def gcm_encrypt(key: bytes, plaintext: bytes, aad: bytes = b"", nonce: bytes | None = None) -> bytes:
    """SM4-GCM; returns ``nonce(12) ‖ ciphertext ‖ tag(16)``."""
    _check_key(key)
    nonce = nonce if nonce is not None else os.urandom(GCM_NONCE_SIZE)
    if len(nonce) != GCM_NONCE_SIZE:
        raise InvalidInput("SM4-GCM 随机数必须为 12 字节", "SM4-GCM nonce must be 12 bytes")
    ct, tag = gmssl_pyx.sm4_gcm_encrypt(key, nonce, aad, plaintext)
    return nonce + bytes(ct) + bytes(tag)


def gcm_decrypt(key: bytes, blob: bytes, aad: bytes = b"") -> bytes:
    """Inverse of :func:`gcm_encrypt`; raises :class:`CryptoError` when authentication fails."""
    _check_key(key)
    if len(blob) < GCM_NONCE_SIZE + GCM_TAG_SIZE:
        raise CryptoError("SM4-GCM 密文过短", "SM4-GCM ciphertext too short")
    nonce, body = blob[:GCM_NONCE_SIZE], blob[GCM_NONCE_SIZE:]
    ct, tag = body[:-GCM_TAG_SIZE], body[-GCM_TAG_SIZE:]
    try:
        return bytes(gmssl_pyx.sm4_gcm_decrypt(key, nonce, aad, ct, tag))
    except gmssl_pyx.GmsslInnerError as exc:
        raise CryptoError("SM4-GCM 认证失败", "SM4-GCM authentication failed") from exc


def cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """SM4-CBC with PKCS#7 padding."""
    _check_key(key)
    if len(iv) != BLOCK_SIZE:
        raise InvalidInput("SM4-CBC 初始向量必须为 16 字节", "SM4-CBC IV must be 16 bytes")
    return bytes(gmssl_pyx.sm4_cbc_padding_encrypt(key, iv, plaintext))


def cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    _check_key(key)
    if len(iv) != BLOCK_SIZE:
        raise InvalidInput("SM4-CBC 初始向量必须为 16 字节", "SM4-CBC IV must be 16 bytes")
    try:
        return bytes(gmssl_pyx.sm4_cbc_padding_decrypt(key, iv, ciphertext))
    except gmssl_pyx.GmsslInnerError as exc:
        raise CryptoError("SM4-CBC 解密失败", "SM4-CBC decryption failed") from exc
