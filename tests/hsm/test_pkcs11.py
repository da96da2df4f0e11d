"""PKCS#11 specifics on SoftHSM2: key attributes, PIN and token errors, SM2 configuration."""

from __future__ import annotations

from collections.abc import Iterator

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from core.errors import ConfigurationError, KeyNotFound, KeyStoreError, WrongPassphrase
from core.settings import Settings
from gmpki import sm2
from hsm_adapters.keystore import KeyAlgorithm, sm2_spki_der
from hsm_adapters.pkcs11 import (
    SM2_EC_PARAMS,
    Pkcs11KeyStore,
    Sm2Mechanisms,
    TokenNotFound,
    WrongPin,
)

from . import independent
from .conftest import SoftHsmToken

pytestmark = pytest.mark.softhsm

MESSAGE = b"pkcs11 message"


@pytest.fixture
def store(softhsm_token: SoftHsmToken) -> Iterator[Pkcs11KeyStore]:
    s = Pkcs11KeyStore(softhsm_token.module, softhsm_token.label, softhsm_token.pin)
    yield s
    s.close()


def _raw_session(token: SoftHsmToken) -> pkcs11.Session:
    """A python-pkcs11 session of our own; login is shared with the store's session."""
    tok = pkcs11.lib(token.module).get_token(token_label=token.label)
    try:
        return tok.open(rw=True, user_pin=token.pin)
    except pkcs11.exceptions.UserAlreadyLoggedIn:
        return tok.open(rw=True)


@pytest.mark.parametrize("algorithm", [KeyAlgorithm.EC_P256, KeyAlgorithm.RSA_3072])
def test_private_keys_are_sensitive_token_objects(
    store: Pkcs11KeyStore, softhsm_token: SoftHsmToken, algorithm: KeyAlgorithm
) -> None:
    info = store.generate(algorithm, f"attrs-{algorithm.value}")
    with _raw_session(softhsm_token) as session:
        private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=bytes.fromhex(info.id))
        assert private[Attribute.LABEL] == info.label
        assert private[Attribute.TOKEN] is True
        assert private[Attribute.PRIVATE] is True
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.ALWAYS_SENSITIVE] is True
        assert private[Attribute.NEVER_EXTRACTABLE] is True
        assert private[Attribute.SIGN] is True
        assert private[Attribute.DECRYPT] is False
        assert private[Attribute.UNWRAP] is False
        secret_attribute = (
            Attribute.VALUE if algorithm is KeyAlgorithm.EC_P256 else Attribute.PRIVATE_EXPONENT
        )
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            private[secret_attribute]
        public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, id=bytes.fromhex(info.id))
        assert public[Attribute.TOKEN] is True


def test_keys_survive_a_new_store(store: Pkcs11KeyStore, softhsm_token: SoftHsmToken) -> None:
    info = store.generate(KeyAlgorithm.EC_P256, "persistent")
    store.close()
    again = Pkcs11KeyStore(softhsm_token.module, softhsm_token.label, softhsm_token.pin)
    try:
        assert again.list() == [info]
        assert independent.verify(info, MESSAGE, again.sign(info.id, MESSAGE))
    finally:
        again.close()


def test_wrong_pin_is_typed(softhsm_token: SoftHsmToken) -> None:
    with pytest.raises(WrongPin) as caught:
        Pkcs11KeyStore(softhsm_token.module, softhsm_token.label, "999999")
    assert isinstance(caught.value, WrongPassphrase)
    assert "999999" not in str(caught.value)
    assert softhsm_token.pin not in str(caught.value)


def test_missing_token_module_and_pin(softhsm_token: SoftHsmToken) -> None:
    with pytest.raises(TokenNotFound):
        Pkcs11KeyStore(softhsm_token.module, "no-such-token", softhsm_token.pin)
    with pytest.raises(ConfigurationError):
        Pkcs11KeyStore("/nonexistent/libpkcs11.so", softhsm_token.label, softhsm_token.pin)
    with pytest.raises(ConfigurationError):
        Pkcs11KeyStore(softhsm_token.module, softhsm_token.label, None)


def test_sm2_without_vendor_mechanism_is_a_configuration_error(store: Pkcs11KeyStore) -> None:
    with pytest.raises(ConfigurationError) as caught:
        store.generate(KeyAlgorithm.SM2, "sm2")
    assert "ESEAL_PKCS11_SM2_MECHANISM" in str(caught.value)
    assert store.list() == []
    with pytest.raises(KeyStoreError):
        store.import_sm2(sm2.SM2PrivateKey.generate(), "imported")


@pytest.mark.parametrize("signs_message", [False, True])
def test_softhsm_cannot_sign_sm2_and_the_self_check_says_so(
    softhsm_token: SoftHsmToken, signs_message: bool
) -> None:
    # Configure the "SM2" mechanism as plain ECDSA on the SM2 curve: keys generate, but the
    # signatures are ECDSA, not SM2, and must never be handed out.
    mechanisms = Sm2Mechanisms(
        key_type=KeyType.EC, sign_mechanism=Mechanism.ECDSA, signs_message=signs_message
    )
    store = Pkcs11KeyStore(
        softhsm_token.module, softhsm_token.label, softhsm_token.pin, sm2_mechanisms=mechanisms
    )
    try:
        info = store.generate(KeyAlgorithm.SM2, "fake-sm2")
        assert info.sm2_point is not None
        sm2.SM2PublicKey(info.sm2_point)  # a real point on the SM2 curve
        assert info.public_key_der == sm2_spki_der(info.sm2_point)
        for _ in range(2):  # the refusal is not a one-off: nothing unverified is ever cached as good
            with pytest.raises(KeyStoreError) as caught:
                store.sign(info.id, MESSAGE)
            assert "ESEAL_PKCS11_SM2_MECHANISM" in str(caught.value)
        with pytest.raises(KeyStoreError):
            store.sign_digest(info.id, sm2.message_digest(info.sm2_public_key, MESSAGE))
        assert [k.id for k in store.list()] == [info.id]
    finally:
        store.close()


def test_vendor_sm2_mechanisms_reach_the_token(softhsm_token: SoftHsmToken) -> None:
    vendor = Sm2Mechanisms(
        key_type=0x80000000 + 0x10, sign_mechanism=0x80000000 + 0x20, keygen_mechanism=0x80000000 + 0x30
    )
    store = Pkcs11KeyStore(
        softhsm_token.module, softhsm_token.label, softhsm_token.pin, sm2_mechanisms=vendor
    )
    try:
        with pytest.raises(KeyStoreError) as caught:  # SoftHSM2 knows no such mechanism
            store.generate(KeyAlgorithm.SM2, "vendor")
        assert caught.value.details.get("pkcs11_error") == "MechanismInvalid"
    finally:
        store.close()


def test_sm2_mechanism_settings_are_validated() -> None:
    with pytest.raises(ConfigurationError):
        Sm2Mechanisms(key_type=5, sign_mechanism=0x80000001)
    with pytest.raises(ConfigurationError):
        Sm2Mechanisms(key_type=0x80000001, sign_mechanism=0x80000002)
    with pytest.raises(ConfigurationError):
        Pkcs11KeyStore.from_settings(Settings(pkcs11_pin="1", pkcs11_sm2_key_type=3))


def test_foreign_and_unsupported_token_keys(store: Pkcs11KeyStore, softhsm_token: SoftHsmToken) -> None:
    with _raw_session(softhsm_token) as session:
        p256 = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True
        )
        p256.generate_keypair(store=True, id=b"\x01\x02", label="made-elsewhere")
        p384 = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp384r1")}, local=True
        )
        p384.generate_keypair(store=True, id=b"\x03", label="p384")
        sm2_curve = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: SM2_EC_PARAMS}, local=True
        )
        sm2_curve.generate_keypair(store=True, id=b"\x04", label="sm2-curve-ecdsa")

    listed = store.list()
    assert [k.label for k in listed] == ["made-elsewhere"]  # P-384 and unconfigured SM2 are skipped
    foreign = listed[0]
    assert foreign.id == "0102" and foreign.created_at is None and foreign.algorithm is KeyAlgorithm.EC_P256
    assert independent.verify(foreign, MESSAGE, store.sign(foreign.id, MESSAGE))
    with pytest.raises(KeyStoreError) as caught:
        store.sign("03", MESSAGE)
    assert not isinstance(caught.value, KeyNotFound)
    assert store.find("p384") is None


def test_key_destroyed_through_another_session(store: Pkcs11KeyStore, softhsm_token: SoftHsmToken) -> None:
    info = store.generate(KeyAlgorithm.EC_P256, "shared")
    store.sign(info.id, MESSAGE)  # caches the object handle
    with _raw_session(softhsm_token) as session:
        for obj in list(session.get_objects({Attribute.ID: bytes.fromhex(info.id)})):
            obj.destroy()
    with pytest.raises(KeyNotFound):
        store.sign(info.id, MESSAGE)
