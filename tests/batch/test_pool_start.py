"""How batch pool processes start: forked only where that is safe (no other thread in the caller, the
soft key store), from a fork server otherwise (which seals for a threaded caller, as the API is); and
forked signers share no random state."""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from core.blobstore import BlobStore
from core.db import transaction
from core.settings import Settings
from gmpki import sm2
from signer.batch import JobSpec, add_items, create_job, item_output, job_results, pool_context
from signer.batch_models import BatchItem
from signer.batch_worker import WorkerResources, pool_initializer, pool_task
from verify import Indication, verify_bytes

from .conftest import SIGNER, BatchEnv, licences


def _resources(tmp_path: Path, keystore: str) -> WorkerResources:
    settings = Settings(var_dir=tmp_path, keystore=keystore, keystore_passphrase="unused")
    return WorkerResources(settings, None, None, BlobStore(tmp_path / "blobs"))  # type: ignore[arg-type]


def test_fork_only_from_a_single_threaded_caller_with_the_soft_key_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    soft, pkcs11 = _resources(tmp_path, "soft"), _resources(tmp_path, "pkcs11")
    # Another thread (an API server's, a progress bar's) might hold a lock at the fork: workers are
    # forked from the fork server, a fresh single-threaded process, instead.
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert pool_context(soft).get_start_method() == "forkserver"
    finally:
        stop.set()
        other.join()
    # Alone (other tests of this run may have left daemon threads: counted as none here).
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert pool_context(soft).get_start_method() == "fork"
    # A PKCS#11 library must be initialised anew in a child, which the fork server has not loaded.
    assert pool_context(pkcs11).get_start_method() == "forkserver"
    # Without fork (Windows): spawn.
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    assert pool_context(soft).get_start_method() == "spawn"


def _parent_pid(_: int) -> int:
    return os.getppid()


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


@pytest.mark.interop
def test_fork_server_workers_seal_for_a_threaded_caller(env: BatchEnv, helloworld: bytes) -> None:
    """The API runs jobs in a thread: its pool comes from the fork server, whose workers open their
    own database, key store and blob store from the settings and seal what they are handed."""
    documents = licences(helloworld, 6)
    with transaction(env.reg.sessions) as s:
        job = create_job(s, JobSpec(env.department_id, env.seal.es_id, name="forkserver"), actor=SIGNER)
        add_items(s, env.res.blobs, job, documents)
        job_id = job.id
    with env.reg.sessions() as s:
        ids = list(s.scalars(select(BatchItem.id).where(BatchItem.job_id == job_id).order_by(BatchItem.id)))
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        context = pool_context(env.res)
        assert context.get_start_method() == "forkserver"
        with ProcessPoolExecutor(
            max_workers=2,
            mp_context=context,
            initializer=pool_initializer,
            initargs=(env.res.settings.model_dump(mode="json"),),
        ) as pool:
            futures = [pool.submit(pool_task, job_id, ids[i::2], SIGNER) for i in range(2)]
            results = [f.result(timeout=120) for f in futures]
            parents = set(pool.map(_parent_pid, range(4)))
    finally:
        stop.set()
        other.join()
    assert sum(r.done for r in results) == 6 and not any(r.failed for r in results)
    # Forked by the fork server, not by this process (as fork or spawn would have made them).
    assert parents and os.getpid() not in parents
    trust = env.trust()
    with env.reg.sessions() as s:
        for r in job_results(s, job_id):
            _item, sealed = item_output(s, env.res.blobs, job_id, r.key)
            assert verify_bytes(sealed, trust=trust).indication is Indication.PASSED
