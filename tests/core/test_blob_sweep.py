"""Sweeping the blob store: only old, unreferenced blobs go; a concurrent store of the same content wins."""

from __future__ import annotations

import datetime as dt
import os
import time

from core.blobstore import BlobStore

DAY = 86_400



def _age(store: BlobStore, blob_id: str, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(store.path(blob_id), (then, then))


def test_sweep_removes_only_old_unreferenced_blobs(store: BlobStore) -> None:
    named = store.put(b"named by a record")
    orphan = store.put(b"left by a crash")
    fresh = store.put(b"just written, its row not yet committed")
    for blob_id in (named, orphan):
        _age(store, blob_id, 2 * DAY)
    report = store.sweep(lambda: {named}, older_than=dt.timedelta(days=1))
    assert (report.examined, report.referenced, report.recent, report.removed) == (3, 1, 1, 1)
    assert report.removed_bytes == len(b"left by a crash")
    assert store.exists(named) and store.exists(fresh) and not store.exists(orphan)
    assert store.get(named) == b"named by a record"
    assert sorted(store.ids()) == sorted([named, fresh])


def test_dry_run_counts_but_keeps(store: BlobStore) -> None:
    orphan = store.put(b"orphan")
    _age(store, orphan, 2 * DAY)
    report = store.sweep(set, older_than=dt.timedelta(days=1), dry_run=True)
    assert report.removed == 1 and store.exists(orphan)


def test_put_of_existing_content_refreshes_it(store: BlobStore) -> None:
    blob_id = store.put(b"reused content")
    _age(store, blob_id, 2 * DAY)
    assert store.put(b"reused content") == blob_id  # a new record is about to name it
    assert store.sweep(set, older_than=dt.timedelta(days=1)).removed == 0
    assert store.exists(blob_id)


def test_store_racing_the_sweep_is_not_lost(store: BlobStore) -> None:
    """The same content stored after the candidates were listed (while the records are read)."""
    blob_id = store.put(b"stored again during the sweep")
    _age(store, blob_id, 2 * DAY)

    def referenced() -> set[str]:
        store.put(b"stored again during the sweep")  # a row naming it will commit after this
        return set()

    report = store.sweep(referenced, older_than=dt.timedelta(days=1))
    assert report.removed == 0
    assert store.get(blob_id) == b"stored again during the sweep"
    assert not any((store.root / ".trash").iterdir())


def test_stray_temporaries_and_foreign_files(store: BlobStore) -> None:
    store.put(b"x")
    tmp = store.root / ".tmp"
    old_tmp, new_tmp = tmp / "blob-old", tmp / "blob-new"
    old_tmp.write_bytes(b"partial")
    new_tmp.write_bytes(b"being written")
    worker_tmp = tmp / "batch-3" / "batch-abc"  # a batch worker's own folder
    worker_tmp.parent.mkdir()
    worker_tmp.write_bytes(b"")
    then = time.time() - 2 * DAY
    os.utime(old_tmp, (then, then))
    os.utime(worker_tmp, (then, then))
    foreign = store.root / "ab" / "cd" / "not-a-blob"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"?")
    os.utime(foreign, (then, then))
    report = store.sweep(set, older_than=dt.timedelta(days=1))
    assert report.temporaries == 2 and not old_tmp.exists() and not worker_tmp.exists()
    assert new_tmp.exists()
    assert foreign.exists()  # not named like a blob: never touched
    assert report.examined == 1
