"""The software HSM: private keys kept in the database, wrapped with SM4-GCM under a passphrase key.

Layout:

- ``soft_keystore_meta`` (one row): scrypt salt and parameters, and a *check value* (a constant
  sealed with SM4-GCM under the key-encryption key) so that a wrong passphrase is reported up front
  as :class:`core.errors.WrongPassphrase` instead of as a failure on the first signature.
- ``soft_keys``: one row per key. ``wrapped_key`` is ``nonce ‖ SM4-GCM ciphertext ‖ tag`` of the
  private key (SM2: the 32-byte scalar; P-256 and RSA: PKCS#8 DER). The GCM associated data binds
  the row id, the algorithm and the public key, so a blob moved to another row, or a row whose
  algorithm or public key was edited, fails authentication rather than signing with the wrong key.

Destroying a key deletes its row. Decrypted keys are cached in memory per key id because signing
is hot; a cache entry is re-read from the database after ``cache_ttl`` seconds, so a key destroyed
through another process stops signing here within that time (immediately when destroyed here).

The caller owns schema management: tables are created only with ``create_tables=True`` (tests, the
embedded single-file mode); otherwise migrations create them from :data:`SoftKey` /
:data:`SoftKeystoreMeta`.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from sqlalchemy import Integer, LargeBinary, String, select
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from core.db import Base, UtcDateTime, transaction, utcnow
from core.errors import (
    ConfigurationError,
    Conflict,
    CryptoError,
    InvalidInput,
    KeyNotFound,
    KeyStoreError,
    WrongPassphrase,
)
from gmpki import sm2, sm4

from .keystore import (
    MAX_LABEL_LENGTH,
    KeyAlgorithm,
    KeyId,
    KeyInfo,
    check_digest,
    check_label,
    sm2_point_from_spki,
    sm2_spki_der,
)

log = logging.getLogger(__name__)

_META_ROW_ID = 1
_KDF_NAME = "scrypt"
_KEK_CHECK_PLAINTEXT = b"eseal soft key store: key-encryption key check, v1"
_KEK_CHECK_AAD = b"eseal/soft-keystore/kek-check/v1"
_WRAP_AAD_PREFIX = b"eseal/soft-key/v1"
_KEY_ID_RE = re.compile(r"[0-9a-f]{32}")

PrivateKey = sm2.SM2PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


# --- ORM -------------------------------------------------------------------------------------------
class SoftKeystoreMeta(Base):
    """Key-derivation parameters and the KEK check value (a single row, id 1)."""

    __tablename__ = "soft_keystore_meta"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kdf: Mapped[str] = mapped_column(String(16))
    salt: Mapped[bytes] = mapped_column(LargeBinary)
    scrypt_n: Mapped[int] = mapped_column(Integer)
    scrypt_r: Mapped[int] = mapped_column(Integer)
    scrypt_p: Mapped[int] = mapped_column(Integer)
    check_value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    rotated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    def __repr__(self) -> str:
        return f"SoftKeystoreMeta(kdf={self.kdf!r}, n={self.scrypt_n}, r={self.scrypt_r}, p={self.scrypt_p})"


class SoftKey(Base):
    """One wrapped private key. ``wrapped_key`` is ciphertext only; see the module docstring."""

    __tablename__ = "soft_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    label: Mapped[str] = mapped_column(String(MAX_LABEL_LENGTH), unique=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    public_key_der: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    def __repr__(self) -> str:
        return f"SoftKey(id={self.id!r}, label={self.label!r}, algorithm={self.algorithm!r})"


SOFT_KEYSTORE_TABLES = (
    Base.metadata.tables[SoftKeystoreMeta.__tablename__],
    Base.metadata.tables[SoftKey.__tablename__],
)


# --- key derivation --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost. The default takes ~0.1 s and 32 MiB once per process start (RFC 7914 §2)."""

    n: int = 2**15
    r: int = 8
    p: int = 1

    def check(self) -> None:
        # Bounds also protect against a hostile meta row asking for gigabytes of memory.
        if not (2**10 <= self.n <= 2**20 and self.n & (self.n - 1) == 0):
            raise KeyStoreError("scrypt 参数 N 无效", "Invalid scrypt parameter N")
        if not (1 <= self.r <= 32 and 1 <= self.p <= 16):
            raise KeyStoreError("scrypt 参数 r/p 无效", "Invalid scrypt parameters r/p")


def _derive_kek(passphrase: bytes, salt: bytes, params: ScryptParams) -> bytes:
    params.check()
    return hashlib.scrypt(
        passphrase,
        salt=salt,
        n=params.n,
        r=params.r,
        p=params.p,
        maxmem=256 * params.r * params.n + (1 << 20),
        dklen=sm4.KEY_SIZE,
    )


def _wrap_aad(key_id: str, algorithm: str, public_key_der: bytes) -> bytes:
    parts = [key_id.encode("ascii"), algorithm.encode("ascii"), public_key_der]
    return _WRAP_AAD_PREFIX + b"".join(len(p).to_bytes(4, "big") + p for p in parts)


# --- private-key (de)serialisation -----------------------------------------------------------------
def _generate_private(algorithm: KeyAlgorithm) -> PrivateKey:
    if algorithm is KeyAlgorithm.SM2:
        return sm2.SM2PrivateKey.generate()
    if algorithm is KeyAlgorithm.EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


def _private_plaintext(key: PrivateKey) -> bytes:
    if isinstance(key, sm2.SM2PrivateKey):
        return key.secret_bytes()
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _public_spki(key: PrivateKey) -> bytes:
    if isinstance(key, sm2.SM2PrivateKey):
        return sm2_spki_der(key.public_key.point)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_private(algorithm: KeyAlgorithm, plaintext: bytes, public_key_der: bytes) -> PrivateKey:
    """Rebuild a private key from its unwrapped form; raises ValueError when it does not fit."""
    if algorithm is KeyAlgorithm.SM2:
        # The public point comes from the row, which the GCM tag authenticates; deriving it again
        # from the scalar would cost milliseconds of pure-Python arithmetic on every cache fill.
        point = sm2_point_from_spki(public_key_der)
        return sm2.SM2PrivateKey(plaintext, sm2.SM2PublicKey(point))
    try:
        key = serialization.load_der_private_key(plaintext, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError("undecodable PKCS#8") from exc
    if algorithm is KeyAlgorithm.EC_P256:
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("not a P-256 key")
        return key
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != 3072:
        raise ValueError("not an RSA-3072 key")
    return key


@dataclass(frozen=True, repr=False)
class _Loaded:
    info: KeyInfo
    key: PrivateKey
    loaded_at: float

    def __repr__(self) -> str:
        return f"_Loaded(key_id={self.info.id!r})"


def _info_from_row(row: SoftKey) -> KeyInfo:
    try:
        algorithm = KeyAlgorithm(row.algorithm)
        point = sm2_point_from_spki(bytes(row.public_key_der)) if algorithm is KeyAlgorithm.SM2 else None
    except (ValueError, InvalidInput):
        raise KeyStoreError(
            f"密钥 {row.id} 的记录已损坏（算法或公钥无效）",
            f"The record of key {row.id} is corrupt (invalid algorithm or public key)",
            key_id=row.id,
        ) from None
    return KeyInfo(
        id=row.id,
        label=row.label,
        algorithm=algorithm,
        created_at=row.created_at,
        public_key_der=bytes(row.public_key_der),
        sm2_point=point,
    )


def _coerce_algorithm(algorithm: KeyAlgorithm | str) -> KeyAlgorithm:
    try:
        return KeyAlgorithm(algorithm)
    except ValueError:
        raise InvalidInput(
            f"不支持的密钥算法：{str(algorithm)[:32]!r}",
            f"Unsupported key algorithm: {str(algorithm)[:32]!r}",
        ) from None


def _not_found(key_id: object) -> KeyNotFound:
    shown = repr(key_id)[:80]
    return KeyNotFound(f"密钥不存在：{shown}", f"No such key: {shown}", key_id=shown)


# --- the store -------------------------------------------------------------------------------------
class SoftKeyStore:
    """:class:`hsm_adapters.keystore.KeyStore` over the database. See the module docstring."""

    __slots__ = ("_cache", "_cache_ttl", "_destroyed", "_factory", "_kek", "_lock")

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        passphrase: str | bytes,
        *,
        create_tables: bool = False,
        scrypt_params: ScryptParams | None = None,
        cache_ttl: float | None = 60.0,
    ) -> None:
        """Open (or, on an empty database, initialise) the store and check the passphrase.

        ``scrypt_params`` only applies when the store is initialised; later opens use the stored
        parameters. ``cache_ttl`` is how long a decrypted key is trusted without re-reading its row
        (None: until destroyed through this instance; 0: never cached).
        """
        self._factory = session_factory
        self._cache: dict[str, _Loaded] = {}
        self._cache_ttl = cache_ttl
        self._lock = threading.Lock()
        self._destroyed: set[str] = set()
        secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
        if not secret:
            raise ConfigurationError(
                "软件密钥库口令为空（设置 ESEAL_KEYSTORE_PASSPHRASE 或 ESEAL_KEYSTORE_PASSPHRASE_FILE）",
                "Soft key store passphrase is empty (set ESEAL_KEYSTORE_PASSPHRASE or "
                "ESEAL_KEYSTORE_PASSPHRASE_FILE)",
            )
        if create_tables:
            with self._factory() as session:
                Base.metadata.create_all(session.get_bind(), tables=list(SOFT_KEYSTORE_TABLES))
        meta = self._load_or_init_meta(secret, scrypt_params or ScryptParams())
        self._kek = self._unlock(secret, meta)

    def __repr__(self) -> str:
        return f"SoftKeyStore(cached_keys={len(self._cache)})"

    def __reduce__(self) -> str | tuple[object, ...]:
        # Pickling would copy the key-encryption key into whatever receives the bytes.
        raise TypeError("SoftKeyStore cannot be pickled")

    # -- opening ------------------------------------------------------------------------------------
    def _load_or_init_meta(self, secret: bytes, params: ScryptParams) -> SoftKeystoreMeta:
        try:
            with self._factory() as session:
                meta = session.get(SoftKeystoreMeta, _META_ROW_ID)
        except (OperationalError, ProgrammingError) as exc:
            raise ConfigurationError(
                "软件密钥库数据表不存在或数据库不可用（请执行数据库迁移）",
                "Soft key store tables are missing or the database is unavailable (run the migrations)",
            ) from exc
        if meta is not None:
            return meta
        params.check()
        salt = os.urandom(16)
        kek = _derive_kek(secret, salt, params)
        meta = SoftKeystoreMeta(
            id=_META_ROW_ID,
            kdf=_KDF_NAME,
            salt=salt,
            scrypt_n=params.n,
            scrypt_r=params.r,
            scrypt_p=params.p,
            check_value=sm4.gcm_encrypt(kek, _KEK_CHECK_PLAINTEXT, aad=_KEK_CHECK_AAD),
            created_at=utcnow(),
            rotated_at=None,
        )
        try:
            with transaction(self._factory) as session:
                session.add(meta)
        except IntegrityError:
            # Another process initialised the store first; its parameters win.
            with self._factory() as session:
                existing = session.get(SoftKeystoreMeta, _META_ROW_ID)
            if existing is None:  # pragma: no cover - the conflicting row vanished again
                raise
            return existing
        log.info("soft key store initialised (scrypt n=%d r=%d p=%d)", params.n, params.r, params.p)
        return meta

    @staticmethod
    def _unlock(secret: bytes, meta: SoftKeystoreMeta) -> bytes:
        if meta.kdf != _KDF_NAME:
            raise KeyStoreError(
                f"不支持的密钥派生函数：{meta.kdf[:16]!r}",
                f"Unsupported key derivation function: {meta.kdf[:16]!r}",
            )
        params = ScryptParams(meta.scrypt_n, meta.scrypt_r, meta.scrypt_p)
        kek = _derive_kek(secret, bytes(meta.salt), params)
        try:
            ok = sm4.gcm_decrypt(kek, bytes(meta.check_value), aad=_KEK_CHECK_AAD) == _KEK_CHECK_PLAINTEXT
        except CryptoError:
            ok = False
        if not ok:
            raise WrongPassphrase(
                "软件密钥库口令错误：口令校验值不匹配，未使用任何密钥",
                "Wrong soft key store passphrase: the check value does not match; no key was used",
            )
        return kek

    # -- wrapping -----------------------------------------------------------------------------------
    def _wrap(self, key_id: str, algorithm: KeyAlgorithm, public_key_der: bytes, key: PrivateKey) -> bytes:
        aad = _wrap_aad(key_id, algorithm.value, public_key_der)
        return sm4.gcm_encrypt(self._kek, _private_plaintext(key), aad=aad)

    def _unwrap(self, row: SoftKey) -> _Loaded:
        info = _info_from_row(row)
        aad = _wrap_aad(row.id, row.algorithm, bytes(row.public_key_der))
        key: PrivateKey | None
        try:
            plaintext = sm4.gcm_decrypt(self._kek, bytes(row.wrapped_key), aad=aad)
            key = _load_private(info.algorithm, plaintext, info.public_key_der)
        except (CryptoError, InvalidInput, ValueError, TypeError):
            key = None
        if key is None:
            # Raised outside the handler so that no exception about the plaintext is chained to it.
            raise KeyStoreError(
                f"密钥 {row.id} 解封失败：密文认证失败或内容不符（数据被篡改、行被调换或口令已轮换）",
                f"Unwrapping key {row.id} failed: authentication or content check failed "
                "(tampered data, swapped rows, or a rotated passphrase)",
                key_id=row.id,
            )
        return _Loaded(info=info, key=key, loaded_at=time.monotonic())

    # -- lookups ------------------------------------------------------------------------------------
    @staticmethod
    def _check_id(key_id: object) -> str:
        if not isinstance(key_id, str) or _KEY_ID_RE.fullmatch(key_id) is None:
            raise _not_found(key_id)
        return key_id

    def _row(self, session: Session, key_id: object) -> SoftKey:
        row = session.get(SoftKey, self._check_id(key_id))
        if row is None:
            raise _not_found(key_id)
        return row

    def _loaded(self, key_id: KeyId) -> _Loaded:
        entry = self._cache.get(key_id) if isinstance(key_id, str) else None
        ttl = self._cache_ttl
        if entry is not None and (ttl is None or time.monotonic() - entry.loaded_at < ttl):
            return entry
        try:
            with self._factory() as session:
                row = self._row(session, key_id)
                entry = self._unwrap(row)
        except KeyNotFound:
            if isinstance(key_id, str):
                self._cache.pop(key_id, None)
            raise
        self._remember(entry)
        return entry

    def _remember(self, entry: _Loaded) -> None:
        if self._cache_ttl is not None and self._cache_ttl <= 0:
            return
        with self._lock:
            if entry.info.id in self._destroyed:
                raise _not_found(entry.info.id)
            self._cache[entry.info.id] = entry

    # -- KeyStore -----------------------------------------------------------------------------------
    def generate(self, algorithm: KeyAlgorithm, label: str) -> KeyInfo:
        alg = _coerce_algorithm(algorithm)
        check_label(label)
        return self._store(alg, _generate_private(alg), label)

    def import_sm2(self, private_key: sm2.SM2PrivateKey, label: str) -> KeyInfo:
        if not isinstance(private_key, sm2.SM2PrivateKey):
            raise InvalidInput("需要 SM2 私钥", "An SM2 private key is required")
        check_label(label)
        spki = sm2_spki_der(private_key.public_key.point)
        with self._factory() as session:
            existing = session.scalars(select(SoftKey.id).where(SoftKey.public_key_der == spki)).first()
        if existing is not None:
            raise Conflict(
                f"该 SM2 密钥已在密钥库中（{existing}）",
                f"This SM2 key is already in the key store ({existing})",
                key_id=existing,
            )
        return self._store(KeyAlgorithm.SM2, private_key, label)

    def _store(self, algorithm: KeyAlgorithm, key: PrivateKey, label: str) -> KeyInfo:
        key_id = uuid.uuid4().hex
        spki = _public_spki(key)
        row = SoftKey(
            id=key_id,
            label=label,
            algorithm=algorithm.value,
            public_key_der=spki,
            wrapped_key=self._wrap(key_id, algorithm, spki, key),
            created_at=utcnow(),
        )
        try:
            with transaction(self._factory) as session:
                taken = session.scalars(select(SoftKey.id).where(SoftKey.label == label)).first()
                if taken is not None:
                    raise _label_taken(label)
                session.add(row)
        except IntegrityError:
            # Lost a race with another writer using the same label.
            raise _label_taken(label) from None
        info = _info_from_row(row)
        self._remember(_Loaded(info=info, key=key, loaded_at=time.monotonic()))
        log.info("key created: id=%s label=%r algorithm=%s", key_id, label, algorithm.value)
        return info

    def sign(self, key_id: KeyId, message: bytes) -> bytes:
        entry = self._loaded(key_id)
        key = entry.key
        if isinstance(key, sm2.SM2PrivateKey):
            return sm2.sign(key, bytes(message))
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(bytes(message), ec.ECDSA(hashes.SHA256()))
        return key.sign(bytes(message), padding.PKCS1v15(), hashes.SHA256())

    def sign_digest(self, key_id: KeyId, digest: bytes) -> bytes:
        digest = check_digest(digest)
        entry = self._loaded(key_id)
        key = entry.key
        if isinstance(key, sm2.SM2PrivateKey):
            return sm2.sign_digest(key, digest)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        return key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))

    def public_key(self, key_id: KeyId) -> KeyInfo:
        with self._factory() as session:
            return _info_from_row(self._row(session, key_id))

    def list(self) -> builtins.list[KeyInfo]:
        with self._factory() as session:
            rows = session.scalars(select(SoftKey).order_by(SoftKey.created_at, SoftKey.id)).all()
            return [_info_from_row(row) for row in rows]

    def find(self, label: str) -> KeyInfo | None:
        if not isinstance(label, str) or len(label) > MAX_LABEL_LENGTH:
            return None
        with self._factory() as session:
            row = session.scalars(select(SoftKey).where(SoftKey.label == label)).first()
            return _info_from_row(row) if row is not None else None

    def destroy(self, key_id: KeyId) -> None:
        with transaction(self._factory) as session:
            row = self._row(session, key_id)
            label = row.label
            session.delete(row)
        with self._lock:
            # Remembered so that a signature racing with this destroy cannot re-cache the key.
            self._destroyed.add(key_id)
            self._cache.pop(key_id, None)
        log.info("key destroyed: id=%s label=%r", key_id, label)

    def clear_cache(self) -> None:
        """Forget every decrypted key (e.g. after an administrator destroyed keys elsewhere)."""
        self._cache.clear()

    def close(self) -> None:
        self._cache.clear()

    # -- administration -----------------------------------------------------------------------------
    def change_passphrase(
        self, new_passphrase: str | bytes, *, scrypt_params: ScryptParams | None = None
    ) -> None:
        """Re-wrap every key under a key derived from ``new_passphrase``, in one transaction.

        Other processes keep the old key-encryption key until they reopen the store; until then
        their cache misses fail with KeyStoreError (they cannot unwrap the new blobs).
        """
        secret = new_passphrase.encode("utf-8") if isinstance(new_passphrase, str) else bytes(new_passphrase)
        if not secret:
            raise ConfigurationError("新口令为空", "The new passphrase is empty")
        params = scrypt_params or ScryptParams()
        salt = os.urandom(16)
        new_kek = _derive_kek(secret, salt, params)
        with self._lock, transaction(self._factory) as session:
            meta = session.get(SoftKeystoreMeta, _META_ROW_ID)
            if meta is None:  # pragma: no cover - the store was opened, so the row exists
                raise KeyStoreError("软件密钥库元数据缺失", "Soft key store metadata is missing")
            for row in session.scalars(select(SoftKey)).all():
                loaded = self._unwrap(row)
                aad = _wrap_aad(row.id, row.algorithm, bytes(row.public_key_der))
                row.wrapped_key = sm4.gcm_encrypt(new_kek, _private_plaintext(loaded.key), aad=aad)
            meta.salt = salt
            meta.scrypt_n, meta.scrypt_r, meta.scrypt_p = params.n, params.r, params.p
            meta.check_value = sm4.gcm_encrypt(new_kek, _KEK_CHECK_PLAINTEXT, aad=_KEK_CHECK_AAD)
            meta.rotated_at = utcnow()
        self._kek = new_kek
        log.info("soft key store passphrase changed")


def _label_taken(label: str) -> Conflict:
    shown = label[:80]
    return Conflict(f"密钥标签已被使用：{shown!r}", f"Key label already in use: {shown!r}", label=shown)
