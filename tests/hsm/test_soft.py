"""Soft key store specifics: passphrase, at-rest encryption, AAD binding, reopening, no leaks."""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, make_session_factory
from core.errors import ConfigurationError, Conflict, EsealError, KeyNotFound, KeyStoreError, WrongPassphrase
from gmpki import sm2
from hsm_adapters.keystore import KeyAlgorithm, KeyInfo
from hsm_adapters.soft import ScryptParams, SoftKey, SoftKeyStore, SoftKeystoreMeta

from . import independent
from .conftest import FAST_SCRYPT, PASSPHRASE

MESSAGE = b"soft key store message"


@dataclass
class Db:
    engine: Engine
    factory: sessionmaker[Session]

    def open(self, passphrase: str | bytes = PASSPHRASE, **kwargs: Any) -> SoftKeyStore:
        kwargs.setdefault("scrypt_params", FAST_SCRYPT)
        return SoftKeyStore(self.factory, passphrase, **kwargs)

    def rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            result = conn.execute(select(SoftKey.__table__)).mappings().all()
            meta = conn.execute(select(SoftKeystoreMeta.__table__)).mappings().all()
        return [dict(r) for r in result] + [dict(m) for m in meta]

    def set_column(self, key_id: str, **values: Any) -> None:
        with self.factory.begin() as session:
            session.execute(update(SoftKey).where(SoftKey.id == key_id).values(**values))

    def column(self, key_id: str, name: str) -> Any:
        with self.factory() as session:
            return getattr(session.get(SoftKey, key_id), name)


@pytest.fixture
def db(db_url: str) -> Iterator[Db]:
    engine = make_engine(db_url)
    yield Db(engine, make_session_factory(engine))
    engine.dispose()


@pytest.fixture
def store(db: Db) -> SoftKeyStore:
    return db.open(create_tables=True)


def _secrets_of(store: SoftKeyStore, info: KeyInfo) -> list[bytes]:
    """The private key's own bytes, fetched through the store's internals (white-box on purpose)."""
    key = store._loaded(info.id).key
    if isinstance(key, sm2.SM2PrivateKey):
        return [key.secret_bytes()]
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if isinstance(key, ec.EllipticCurvePrivateKey):
        scalar = key.private_numbers().private_value.to_bytes(32, "big")
        return [pkcs8, scalar]
    numbers = key.private_numbers()
    return [pkcs8, numbers.d.to_bytes(384, "big"), numbers.p.to_bytes(192, "big")]


def _leaks(haystack: bytes | str, secret: bytes) -> bool:
    if isinstance(haystack, str):
        return secret.hex() in haystack.lower() or secret.hex().upper() in haystack
    return secret in haystack or secret.hex().encode() in haystack.lower()


def _all_text(exc: EsealError) -> str:
    return f"{exc!s} {exc!r} {exc.to_problem()!r} {exc.details!r}"


def test_wrong_passphrase_is_detected_up_front(db: Db) -> None:
    first = db.open(create_tables=True)
    info = first.generate(KeyAlgorithm.SM2, "k")
    with pytest.raises(WrongPassphrase) as caught:
        db.open("not the passphrase")
    assert "not the passphrase" not in _all_text(caught.value)
    assert PASSPHRASE not in _all_text(caught.value)
    # The right passphrase, given as bytes, still opens it.
    again = db.open(PASSPHRASE.encode("utf-8"))
    assert independent.verify(info, MESSAGE, again.sign(info.id, MESSAGE))


def test_empty_passphrase_and_missing_tables(db: Db) -> None:
    with pytest.raises(ConfigurationError):
        db.open("")
    with pytest.raises(ConfigurationError):
        db.open(PASSPHRASE)  # tables were never created


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_database_holds_no_plaintext_key(db: Db, store: SoftKeyStore, algorithm: KeyAlgorithm) -> None:
    info = store.generate(algorithm, f"plain-{algorithm.value}")
    secrets = _secrets_of(store, info)
    stored = db.rows()
    blobs = [v for row in stored for v in row.values() if isinstance(v, bytes | str)]
    assert blobs, "nothing read back from the database"
    for secret in secrets:
        for value in blobs:
            assert not _leaks(value, secret)
    assert all(PASSPHRASE.encode() not in v for v in blobs if isinstance(v, bytes))


def test_imported_sm2_key_is_wrapped_and_signs(db: Db, store: SoftKeyStore) -> None:
    private = sm2.SM2PrivateKey.generate()
    info = store.import_sm2(private, "imported")
    assert info.sm2_point == private.public_key.point
    wrapped = db.column(info.id, "wrapped_key")
    assert not _leaks(bytes(wrapped), private.secret_bytes())
    signature = store.sign(info.id, MESSAGE)
    assert sm2.verify(private.public_key, MESSAGE, signature)
    assert independent.verify(info, MESSAGE, signature)
    with pytest.raises(Conflict):
        store.import_sm2(private, "imported-again")
    with pytest.raises(Conflict):
        store.import_sm2(sm2.SM2PrivateKey.generate(), "imported")


def test_swapped_blobs_fail_authentication(db: Db, store: SoftKeyStore) -> None:
    a = store.generate(KeyAlgorithm.SM2, "a")
    b = store.generate(KeyAlgorithm.SM2, "b")
    blob_a, blob_b = db.column(a.id, "wrapped_key"), db.column(b.id, "wrapped_key")
    db.set_column(a.id, wrapped_key=blob_b)
    db.set_column(b.id, wrapped_key=blob_a)
    fresh = db.open()  # no cache: must unwrap from the database
    for info in (a, b):
        with pytest.raises(KeyStoreError) as caught:
            fresh.sign(info.id, MESSAGE)
        assert not isinstance(caught.value, KeyNotFound)
        assert caught.value.__cause__ is None and caught.value.__context__ is None
    # Putting the blobs back restores both keys: only the binding was wrong.
    db.set_column(a.id, wrapped_key=blob_a)
    db.set_column(b.id, wrapped_key=blob_b)
    for info in (a, b):
        assert independent.verify(info, MESSAGE, fresh.sign(info.id, MESSAGE))


def test_edited_rows_fail_authentication(db: Db, store: SoftKeyStore) -> None:
    p256 = store.generate(KeyAlgorithm.EC_P256, "p256")
    other = store.generate(KeyAlgorithm.EC_P256, "other")
    blob = bytes(db.column(p256.id, "wrapped_key"))

    db.set_column(p256.id, wrapped_key=blob[:20] + bytes([blob[20] ^ 1]) + blob[21:])
    with pytest.raises(KeyStoreError):
        db.open().sign(p256.id, MESSAGE)
    db.set_column(p256.id, wrapped_key=blob)

    db.set_column(p256.id, public_key_der=other.public_key_der)  # public key swapped in
    with pytest.raises(KeyStoreError):
        db.open().sign(p256.id, MESSAGE)
    db.set_column(p256.id, public_key_der=p256.public_key_der)

    db.set_column(p256.id, algorithm="RSA_3072")  # algorithm relabelled
    with pytest.raises(KeyStoreError):
        db.open().sign(p256.id, MESSAGE)
    db.set_column(p256.id, algorithm="NOPE")
    with pytest.raises(KeyStoreError):
        db.open().public_key(p256.id)
    db.set_column(p256.id, algorithm="EC_P256")

    assert independent.verify(p256, MESSAGE, db.open().sign(p256.id, MESSAGE))


def test_new_instance_reopens_keys(db: Db, store: SoftKeyStore) -> None:
    infos = [store.generate(alg, f"reopen-{alg.value}") for alg in KeyAlgorithm]
    store.close()
    reopened = db.open()
    assert sorted(reopened.list(), key=lambda i: i.id) == sorted(infos, key=lambda i: i.id)
    for info in infos:
        assert reopened.public_key(info.id) == info
        assert independent.verify(info, MESSAGE, reopened.sign(info.id, MESSAGE))


def test_reprs_and_errors_carry_no_key_material(db: Db, store: SoftKeyStore) -> None:
    info = store.generate(KeyAlgorithm.SM2, "leak-check")
    secrets = _secrets_of(store, info)
    texts = [repr(store), str(store), repr(info), str(info), repr(store._loaded(info.id))]
    with db.factory() as session:
        row = session.get(SoftKey, info.id)
        texts.append(repr(row))
        texts.append(repr(session.get(SoftKeystoreMeta, 1)))
    db.set_column(info.id, wrapped_key=b"\x00" * 60)
    with pytest.raises(KeyStoreError) as caught:
        db.open().sign(info.id, MESSAGE)
    texts.append(_all_text(caught.value))
    for text in texts:
        assert PASSPHRASE not in text
        for secret in secrets:
            assert not _leaks(text, secret)
    assert "wrapped" not in repr(row)
    with pytest.raises(TypeError):
        pickle.dumps(store)


def test_destroy_elsewhere_stops_signing_after_ttl(db: Db, store: SoftKeyStore) -> None:
    info = store.generate(KeyAlgorithm.SM2, "shared")
    short = db.open(cache_ttl=0.05)
    forever = db.open(cache_ttl=None)
    for s in (short, forever):
        s.sign(info.id, MESSAGE)  # both cache the key
    store.destroy(info.id)
    time.sleep(0.06)
    with pytest.raises(KeyNotFound):
        short.sign(info.id, MESSAGE)
    # Without a TTL the cached key lives until the cache is cleared (documented trade-off).
    assert independent.verify(info, MESSAGE, forever.sign(info.id, MESSAGE))
    forever.clear_cache()
    with pytest.raises(KeyNotFound):
        forever.sign(info.id, MESSAGE)


def test_change_passphrase_rewraps_every_key(db: Db, store: SoftKeyStore) -> None:
    infos = [store.generate(alg, f"rotate-{alg.value}") for alg in (KeyAlgorithm.SM2, KeyAlgorithm.EC_P256)]
    before = {i.id: bytes(db.column(i.id, "wrapped_key")) for i in infos}
    store.change_passphrase("a brand new passphrase", scrypt_params=FAST_SCRYPT)
    for info in infos:
        assert bytes(db.column(info.id, "wrapped_key")) != before[info.id]
    with pytest.raises(WrongPassphrase):
        db.open(PASSPHRASE)
    reopened = db.open("a brand new passphrase")
    for info in infos:
        assert independent.verify(info, MESSAGE, reopened.sign(info.id, MESSAGE))
        assert independent.verify(info, MESSAGE, store.sign(info.id, MESSAGE))


def test_hostile_kdf_parameters_are_refused(db: Db, store: SoftKeyStore) -> None:
    with db.factory.begin() as session:
        session.execute(update(SoftKeystoreMeta).values(scrypt_n=2**30))
    with pytest.raises(KeyStoreError):
        db.open()
    with pytest.raises(KeyStoreError):
        ScryptParams(n=1000).check()


def test_stored_kdf_parameters_win_over_requested(db: Db, store: SoftKeyStore) -> None:
    info = store.generate(KeyAlgorithm.EC_P256, "k")
    reopened = db.open(scrypt_params=ScryptParams(n=2**11))
    assert independent.verify(info, MESSAGE, reopened.sign(info.id, MESSAGE))
    with db.factory() as session:
        meta = session.get(SoftKeystoreMeta, 1)
        assert meta is not None and meta.scrypt_n == FAST_SCRYPT.n
