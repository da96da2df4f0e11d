"""Fixtures for the key-store tests: a SoftHSM2 token per test and the contract's backend matrix.

The contract tests request ``keystore`` (a :class:`Backend`); :func:`pytest_generate_tests` runs
each of them on the soft store over SQLite and over PostgreSQL (through the shared ``db_url``
fixture) and on PKCS#11 over SoftHSM2, and, when a test also takes ``algorithm``, once per
algorithm that backend supports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.db import make_engine, make_session_factory
from hsm_adapters.keystore import KeyAlgorithm, KeyStore
from hsm_adapters.soft import ScryptParams, SoftKeyStore
from tests.conftest import require_or_skip

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
USER_PIN = "246810"
SO_PIN = "13579-so"
PASSPHRASE = "correct horse battery staple 密码"
# The lowest cost ScryptParams accepts: the tests exercise the logic, not the work factor.
FAST_SCRYPT = ScryptParams(n=2**10, r=8, p=1)

ALL_ALGORITHMS = tuple(KeyAlgorithm)
# SoftHSM2 cannot make SM2 signatures (see sm-crypto.md); SM2 on PKCS#11 has its own tests.
PKCS11_ALGORITHMS = (KeyAlgorithm.EC_P256, KeyAlgorithm.RSA_3072)

_BACKENDS = (
    ("soft-sqlite", "soft", "sqlite", (), ALL_ALGORITHMS),
    ("soft-postgresql", "soft", "postgresql", (pytest.mark.postgres,), ALL_ALGORITHMS),
    ("pkcs11-softhsm", "pkcs11", "sqlite", (pytest.mark.softhsm,), PKCS11_ALGORITHMS),
)


# Added as a parametrize *mark* in a tryfirst hook: pytest then lets it replace db_url's own params
# (a plain metafunc.parametrize would clash with them).
@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "keystore_backend" not in metafunc.fixturenames:
        return
    with_algorithm = "algorithm" in metafunc.fixturenames
    params = []
    for name, backend, db, marks, algorithms in _BACKENDS:
        if with_algorithm:
            params += [
                pytest.param(backend, db, alg, id=f"{name}-{alg.value}", marks=marks) for alg in algorithms
            ]
        else:
            params.append(pytest.param(backend, db, id=name, marks=marks))
    names = ["keystore_backend", "db_url"] + (["algorithm"] if with_algorithm else [])
    # db_url is the shared fixture, parametrised indirectly so PostgreSQL gets its own schema.
    metafunc.definition.add_marker(pytest.mark.parametrize(names, params, indirect=["db_url"]))


@dataclass
class SoftHsmToken:
    module: str
    label: str
    pin: str
    so_pin: str


@dataclass
class Backend:
    store: KeyStore
    kind: str
    algorithms: tuple[KeyAlgorithm, ...]


@pytest.fixture(scope="session")
def softhsm_conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_or_skip(
        shutil.which("softhsm2-util") is not None and Path(SOFTHSM_MODULE).is_file(),
        "SoftHSM2 is not installed (apt-get install softhsm2)",
    )
    base = tmp_path_factory.mktemp("softhsm")
    tokens = base / "tokens"
    tokens.mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n",
        encoding="utf-8",
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    yield conf
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


@pytest.fixture
def softhsm_token(softhsm_conf: Path) -> SoftHsmToken:
    """A freshly initialised token of its own (so listings and PIN state never leak between tests)."""
    import pkcs11

    label = f"eseal-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", USER_PIN, "--so-pin", SO_PIN],
        check=True,
        capture_output=True,
        env={**os.environ, "SOFTHSM2_CONF": str(softhsm_conf)},
    )
    # SoftHSM2 reads its token directory in C_Initialize only: re-initialise to see the new token.
    pkcs11.lib(SOFTHSM_MODULE).reinitialize()
    return SoftHsmToken(module=SOFTHSM_MODULE, label=label, pin=USER_PIN, so_pin=SO_PIN)


@pytest.fixture
def keystore(keystore_backend: str, db_url: str, request: pytest.FixtureRequest) -> Iterator[Backend]:
    if keystore_backend == "soft":
        engine = make_engine(db_url)
        store = SoftKeyStore(
            make_session_factory(engine), PASSPHRASE, create_tables=True, scrypt_params=FAST_SCRYPT
        )
        yield Backend(store=store, kind="soft", algorithms=ALL_ALGORITHMS)
        store.close()
        engine.dispose()
        return
    from hsm_adapters.pkcs11 import Pkcs11KeyStore

    token: SoftHsmToken = request.getfixturevalue("softhsm_token")
    p11 = Pkcs11KeyStore(token.module, token.label, token.pin)
    yield Backend(store=p11, kind="pkcs11", algorithms=PKCS11_ALGORITHMS)
    p11.close()
