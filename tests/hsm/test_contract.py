"""The KeyStore contract, run on every backend (see conftest.py for the matrix)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from core.errors import Conflict, InvalidInput, KeyNotFound, KeyStoreError
from gmpki import sm2
from gmpki.signing import MessageSigner
from hsm_adapters.keystore import KeyAlgorithm, KeyStore, KeyStoreSigner, sm2_spki_der

from . import independent
from .conftest import Backend

MESSAGE = "电子印章 contract message".encode() * 7


def _label(prefix: str = "key") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def test_store_satisfies_protocol(keystore: Backend) -> None:
    assert isinstance(keystore.store, KeyStore)


def test_generate_sign_verify(keystore: Backend, algorithm: KeyAlgorithm) -> None:
    store = keystore.store
    before = datetime.now(UTC) - timedelta(seconds=2)
    label = _label("signing 印章")
    info = store.generate(algorithm, label)

    assert isinstance(info.id, str) and info.id.isascii() and 0 < len(info.id) <= 128
    assert info.label == label
    assert info.algorithm is algorithm
    assert info.created_at is not None and before <= info.created_at <= datetime.now(UTC) + timedelta(
        seconds=2
    )
    if algorithm is KeyAlgorithm.SM2:
        assert info.sm2_point is not None and len(info.sm2_point) == 65
        assert info.public_key_der == sm2_spki_der(info.sm2_point)
    else:
        assert info.sm2_point is None
        public = serialization.load_der_public_key(info.public_key_der)
        if algorithm is KeyAlgorithm.EC_P256:
            assert isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1)
        else:
            assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 3072

    signature = store.sign(info.id, MESSAGE)
    assert independent.verify(info, MESSAGE, signature)
    assert not independent.verify(info, _flip(MESSAGE, 5), signature)
    assert not independent.verify(info, MESSAGE, _flip(signature, len(signature) - 3))

    # sign_digest over the digest of MESSAGE must verify as a signature of MESSAGE itself.
    if algorithm is KeyAlgorithm.SM2:
        assert info.sm2_point is not None
        digest = independent.sm2_e_by_gmalg(info.sm2_point, MESSAGE)
    else:
        digest = hashlib.sha256(MESSAGE).digest()
    digest_signature = store.sign_digest(info.id, digest)
    assert independent.verify(info, MESSAGE, digest_signature)
    assert not independent.verify(info, MESSAGE + b"!", digest_signature)

    assert store.public_key(info.id) == info
    assert store.find(label) == info
    assert info.id in {k.id for k in store.list()}


def test_destroy_then_key_is_gone(keystore: Backend, algorithm: KeyAlgorithm) -> None:
    store = keystore.store
    keep = store.generate(KeyAlgorithm.EC_P256, _label("keep"))
    info = store.generate(algorithm, _label("doomed"))
    assert independent.verify(info, MESSAGE, store.sign(info.id, MESSAGE))  # also fills any cache

    store.destroy(info.id)

    with pytest.raises(KeyNotFound):
        store.sign(info.id, MESSAGE)
    with pytest.raises(KeyNotFound):
        store.sign_digest(info.id, bytes(32))
    with pytest.raises(KeyNotFound):
        store.public_key(info.id)
    with pytest.raises(KeyNotFound):
        store.destroy(info.id)
    assert store.find(info.label) is None
    assert [k.id for k in store.list()] == [keep.id]
    # The other key is untouched.
    assert independent.verify(keep, MESSAGE, store.sign(keep.id, MESSAGE))


def test_list_and_find_by_label(keystore: Backend) -> None:
    store = keystore.store
    assert store.list() == []
    labels = [_label("a"), _label("b"), _label("c")]
    infos = [store.generate(KeyAlgorithm.EC_P256, label) for label in labels]

    listed = store.list()
    assert sorted(k.id for k in listed) == sorted(i.id for i in infos)
    assert {k.id: k.label for k in listed} == {i.id: i.label for i in infos}
    assert len({i.id for i in infos}) == 3
    for info in infos:
        assert store.find(info.label) == info
    assert store.find(_label("absent")) is None
    assert store.find("") is None


def test_label_rules(keystore: Backend) -> None:
    store = keystore.store
    label = _label("unique")
    first = store.generate(KeyAlgorithm.EC_P256, label)
    with pytest.raises(Conflict):
        store.generate(KeyAlgorithm.EC_P256, label)
    assert [k.id for k in store.list()] == [first.id]
    for bad in ("", "x" * 201, "line\nbreak", "nul\x00"):
        with pytest.raises(InvalidInput):
            store.generate(KeyAlgorithm.EC_P256, bad)
    assert [k.id for k in store.list()] == [first.id]


@pytest.mark.parametrize(
    "key_id",
    [uuid.uuid4().hex, "e55e" + "00" * 14, "", "../../etc/passwd", "zz", "A" * 10_000, "' OR 1=1 --"],
)
def test_unknown_ids_are_key_not_found(keystore: Backend, key_id: str) -> None:
    store = keystore.store
    store.generate(KeyAlgorithm.EC_P256, _label())
    for call in (
        lambda: store.sign(key_id, MESSAGE),
        lambda: store.sign_digest(key_id, bytes(32)),
        lambda: store.public_key(key_id),
        lambda: store.destroy(key_id),
    ):
        with pytest.raises(KeyNotFound) as caught:
            call()
        assert len(str(caught.value)) < 400  # a hostile id is not echoed in full


def test_sign_digest_requires_32_bytes(keystore: Backend) -> None:
    info = keystore.store.generate(KeyAlgorithm.EC_P256, _label())
    for bad in (b"", bytes(31), bytes(33), bytes(64)):
        with pytest.raises(InvalidInput):
            keystore.store.sign_digest(info.id, bad)


def test_unknown_algorithm_is_rejected(keystore: Backend) -> None:
    with pytest.raises(InvalidInput):
        keystore.store.generate("ED25519", _label())  # type: ignore[arg-type]
    assert keystore.store.list() == []


def test_keystore_signer(keystore: Backend) -> None:
    store = keystore.store
    p256 = store.generate(KeyAlgorithm.EC_P256, _label("not-sm2"))
    with pytest.raises(KeyStoreError):
        KeyStoreSigner(store, p256.id).sign(MESSAGE)
    with pytest.raises(KeyNotFound):
        _ = KeyStoreSigner(store, uuid.uuid4().hex).public_key
    if KeyAlgorithm.SM2 not in keystore.algorithms:
        return
    info = store.generate(KeyAlgorithm.SM2, _label("sm2-signer"))
    signer = KeyStoreSigner(store, info.id)
    assert isinstance(signer, MessageSigner)
    assert signer.public_key.point == info.sm2_point
    assert signer.public_key is signer.public_key  # cached, Z cache included
    signature = signer.sign(MESSAGE)
    assert sm2.verify(signer.public_key, MESSAGE, signature)
    assert independent.verify(info, MESSAGE, signature)
    assert info.id in repr(signer)
