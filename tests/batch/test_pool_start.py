"""How batch pool processes start: forked only where that is safe (no other thread in the caller, the
soft key store), spawned otherwise; and forked signers share no random state."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from core.blobstore import BlobStore
from core.settings import Settings
from gmpki import sm2
from signer.batch import pool_context
from signer.batch_worker import WorkerResources


def _resources(tmp_path: Path, keystore: str) -> WorkerResources:
    settings = Settings(var_dir=tmp_path, keystore=keystore, keystore_passphrase="unused")
    return WorkerResources(settings, None, None, BlobStore(tmp_path / "blobs"))  # type: ignore[arg-type]


def test_fork_only_from_a_single_threaded_caller_with_the_soft_key_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    soft, pkcs11 = _resources(tmp_path, "soft"), _resources(tmp_path, "pkcs11")
    # Another thread (an API server's, a progress bar's) might hold a lock at the fork: spawn.
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert pool_context(soft).get_start_method() == "spawn"
    finally:
        stop.set()
        other.join()
    # Alone (other tests of this run may have left daemon threads: counted as none here).
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert pool_context(soft).get_start_method() == "fork"
    # A PKCS#11 library must be initialised anew in a child: spawn.
    assert pool_context(pkcs11).get_start_method() == "spawn"


_INHERITED: list[sm2.SM2PrivateKey] = []  # the parent's key, as a forked worker finds it


def _sign(message: bytes) -> bytes:
    return sm2.sign(_INHERITED[0], message)


def test_forked_workers_draw_their_own_sm2_nonces() -> None:
    """Forking copies the parent's memory: any random state kept in user space would repeat in
    every child, and two SM2 signatures with one nonce over different data give the key away."""
    key = sm2.SM2PrivateKey.generate()
    message = b"the same TBS_Sign in every worker"
    _INHERITED[:] = [key]
    parent = sm2.sign(key, message)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        children = pool.map(_sign, [message] * 4)
    signatures = [parent, *children]
    assert len(set(signatures)) == len(signatures)
    assert all(sm2.verify(key.public_key, message, s) for s in signatures)
