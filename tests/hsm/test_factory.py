"""open_keystore: backend choice and configuration errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.db import make_engine, make_session_factory
from core.errors import ConfigurationError, WrongPassphrase
from core.settings import Settings
from hsm_adapters import KeyAlgorithm, KeyStore, open_keystore
from hsm_adapters.pkcs11 import Pkcs11KeyStore, WrongPin
from hsm_adapters.soft import SoftKeyStore

from . import independent
from .conftest import SoftHsmToken


def test_soft_from_passphrase_and_file(tmp_path: Path) -> None:
    factory = make_session_factory(make_engine(f"sqlite:///{tmp_path / 'k.db'}"))
    store = open_keystore(
        Settings(keystore="soft", keystore_passphrase="pass-1"), factory, create_tables=True
    )
    assert isinstance(store, SoftKeyStore) and isinstance(store, KeyStore)
    info = store.generate(KeyAlgorithm.SM2, "k")

    secret_file = tmp_path / "passphrase"
    secret_file.write_text("pass-1\nignored second line\n", encoding="utf-8")
    again = open_keystore(Settings(keystore="soft", keystore_passphrase_file=secret_file), factory)
    assert independent.verify(info, b"m", again.sign(info.id, b"m"))

    secret_file.write_text("pass-2\n", encoding="utf-8")
    with pytest.raises(WrongPassphrase):
        open_keystore(Settings(keystore="soft", keystore_passphrase_file=secret_file), factory)


def test_configuration_errors(tmp_path: Path) -> None:
    factory = make_session_factory(make_engine(f"sqlite:///{tmp_path / 'k.db'}"))
    with pytest.raises(ConfigurationError):
        open_keystore(Settings(keystore="soft", keystore_passphrase=None), factory, create_tables=True)
    with pytest.raises(ConfigurationError):
        open_keystore(
            Settings(keystore="soft", keystore_passphrase_file=tmp_path / "missing"),
            factory,
            create_tables=True,
        )
    with pytest.raises(ConfigurationError):
        open_keystore(Settings(keystore="vault", keystore_passphrase="x"), factory)
    with pytest.raises(ConfigurationError):
        open_keystore(Settings(keystore="pkcs11", pkcs11_pin=None), factory)


@pytest.mark.softhsm
def test_pkcs11_from_settings(softhsm_token: SoftHsmToken, tmp_path: Path) -> None:
    factory = make_session_factory(make_engine(f"sqlite:///{tmp_path / 'unused.db'}"))
    settings = Settings(
        keystore="pkcs11",
        pkcs11_module=softhsm_token.module,
        pkcs11_token_label=softhsm_token.label,
        pkcs11_pin=softhsm_token.pin,
    )
    with pytest.raises(WrongPin):
        open_keystore(settings.model_copy(update={"pkcs11_pin": "000000"}), factory)
    store = open_keystore(settings, factory)
    try:
        assert isinstance(store, Pkcs11KeyStore)
        info = store.generate(KeyAlgorithm.EC_P256, "from-settings")
        assert independent.verify(info, b"m", store.sign(info.id, b"m"))
    finally:
        store.close()
