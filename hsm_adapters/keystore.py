"""The key-custody interface every signer in eseal goes through, and its value types.

A key store holds private keys and never hands them out: callers get an opaque key id (a string,
never key bytes), public keys, and signatures. Implementations: the software HSM in
:mod:`hsm_adapters.soft` (keys SM4-GCM-wrapped in the database) and PKCS#11 tokens in
:mod:`hsm_adapters.pkcs11`.

Signature conventions at this boundary (all implementations must agree, the contract tests check):

============  =========================================  ===========================================
algorithm     ``sign(key_id, message)``                  ``sign_digest(key_id, digest)``
============  =========================================  ===========================================
SM2           SM2-with-SM3, Z pre-hash with the default  ``digest`` is e = SM3(Z ‖ M), 32 bytes
              ID ``1234567812345678``, DER ``SEQUENCE``
EC_P256       ECDSA with SHA-256, DER ``SEQUENCE``       ``digest`` is SHA-256(M), 32 bytes
RSA_3072      RSASSA-PKCS1-v1_5 with SHA-256             ``digest`` is SHA-256(M), 32 bytes
============  =========================================  ===========================================
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from core.errors import InvalidInput, KeyStoreError
from gmpki import sm2

KeyId = str
"""Opaque key handle: a short ASCII string chosen by the key store. Never contains key material."""

KeyRef = KeyId

MAX_LABEL_LENGTH = 200
DIGEST_SIZE = 32

# SubjectPublicKeyInfo of an SM2 key: AlgorithmIdentifier{id-ecPublicKey, sm2 curve} then the point.
# The header is constant because the point is always 65 bytes (GM/T 0010, GB/T 20518).
_SM2_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")


class KeyAlgorithm(StrEnum):
    SM2 = "SM2"
    EC_P256 = "EC_P256"
    RSA_3072 = "RSA_3072"


def sm2_spki_der(point: bytes) -> bytes:
    """DER SubjectPublicKeyInfo of an SM2 public key given as the 65-byte uncompressed point."""
    public = sm2.SM2PublicKey.from_bytes(point)
    return _SM2_SPKI_PREFIX + public.point


def sm2_point_from_spki(spki: bytes) -> bytes:
    """Inverse of :func:`sm2_spki_der`: the 65-byte point, or MalformedData-like InvalidInput."""
    if len(spki) != len(_SM2_SPKI_PREFIX) + 65 or not spki.startswith(_SM2_SPKI_PREFIX):
        raise InvalidInput("不是 SM2 公钥信息结构", "Not an SM2 SubjectPublicKeyInfo")
    return sm2.SM2PublicKey(spki[len(_SM2_SPKI_PREFIX) :]).point


def check_label(label: str) -> str:
    """Labels are human-facing names; keep them printable and short so every backend stores them."""
    if not isinstance(label, str) or not 1 <= len(label) <= MAX_LABEL_LENGTH:
        raise InvalidInput(
            f"密钥标签长度必须为 1 至 {MAX_LABEL_LENGTH} 个字符",
            f"Key label must be 1 to {MAX_LABEL_LENGTH} characters",
        )
    if not label.isprintable():
        raise InvalidInput("密钥标签包含不可打印字符", "Key label contains non-printable characters")
    return label


def check_digest(digest: bytes) -> bytes:
    if len(digest) != DIGEST_SIZE:
        raise InvalidInput(
            f"待签名摘要必须为 {DIGEST_SIZE} 字节", f"Digest to sign must be {DIGEST_SIZE} bytes"
        )
    return bytes(digest)


@dataclass(frozen=True)
class KeyInfo:
    """Public facts about one key. Holds no secret; safe to log and to return from the API."""

    id: KeyId
    label: str
    algorithm: KeyAlgorithm
    # None only for keys provisioned on a token by other tools, where no creation time is recorded.
    created_at: datetime | None
    public_key_der: bytes = field(repr=False)
    """SubjectPublicKeyInfo, DER."""
    sm2_point: bytes | None = field(default=None, repr=False)
    """For SM2 keys the 65-byte uncompressed point ``04‖x‖y``; None otherwise."""

    @property
    def sm2_public_key(self) -> sm2.SM2PublicKey:
        if self.algorithm is not KeyAlgorithm.SM2 or self.sm2_point is None:
            raise KeyStoreError(
                f"密钥 {self.id} 不是 SM2 密钥", f"Key {self.id} is not an SM2 key", key_id=self.id
            )
        return sm2.SM2PublicKey(self.sm2_point)


@runtime_checkable
class KeyStore(Protocol):
    """Generates keys, signs with them, and destroys them; private keys never leave it.

    Errors: unknown or destroyed ids raise :class:`core.errors.KeyNotFound`; a label already in use
    raises :class:`core.errors.Conflict`; malformed arguments raise :class:`core.errors.InvalidInput`.
    """

    def generate(self, algorithm: KeyAlgorithm, label: str) -> KeyInfo: ...

    def sign(self, key_id: KeyId, message: bytes) -> bytes: ...

    def sign_digest(self, key_id: KeyId, digest: bytes) -> bytes: ...

    def public_key(self, key_id: KeyId) -> KeyInfo: ...

    def list(self) -> builtins.list[KeyInfo]: ...

    def find(self, label: str) -> KeyInfo | None: ...

    def destroy(self, key_id: KeyId) -> None: ...

    def import_sm2(self, private_key: sm2.SM2PrivateKey, label: str) -> KeyInfo: ...

    def close(self) -> None: ...


class KeyStoreSigner:
    """A :class:`gmpki.signing.MessageSigner` over an SM2 key held in a key store.

    The public key is fetched once and cached: builders read it for every certificate or seal.
    """

    __slots__ = ("_info", "_public", "key_id", "store")

    def __init__(self, store: KeyStore, key_id: KeyId) -> None:
        self.store = store
        self.key_id = key_id
        self._info: KeyInfo | None = None
        self._public: sm2.SM2PublicKey | None = None

    @property
    def info(self) -> KeyInfo:
        if self._info is None:
            info = self.store.public_key(self.key_id)
            if info.algorithm is not KeyAlgorithm.SM2:
                raise KeyStoreError(
                    f"密钥 {self.key_id} 的算法为 {info.algorithm.value}，不能用作 SM2 签名者",
                    f"Key {self.key_id} is {info.algorithm.value}, not usable as an SM2 signer",
                    key_id=self.key_id,
                )
            # One SM2PublicKey object per signer keeps its Z cache warm across calls.
            self._public = info.sm2_public_key
            self._info = info
        return self._info

    @property
    def public_key(self) -> sm2.SM2PublicKey:
        if self._public is None:
            self.info  # noqa: B018 - fills the cache
        assert self._public is not None
        return self._public

    def sign(self, message: bytes) -> bytes:
        self.info  # noqa: B018 - refuses non-SM2 keys before anything is signed
        return self.store.sign(self.key_id, message)

    def __repr__(self) -> str:
        return f"KeyStoreSigner(key_id={self.key_id!r})"
