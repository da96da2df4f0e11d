"""Packed blobs: many blobs in one ZIP pack, read back verified by SM3, found from another process's
store, swept as a whole only when no record names any of them, and never half-written."""

from __future__ import annotations

import datetime as dt
import os
import time
import zipfile
from pathlib import Path

import pytest

from core.blobstore import BlobCorrupted, BlobNotFound, BlobStore, StagedBlobs

from .conftest import sm3_independent

DAY = 86_400




def _packs(store: BlobStore) -> list[Path]:
    return sorted(store.pack_dir.glob("*.zip")) if store.pack_dir.is_dir() else []


def _stage(store: BlobStore, blobs: list[bytes]) -> list[str]:
    staged = StagedBlobs(store)
    ids = [staged.put(data) for data in blobs]
    staged.sync()
    return ids


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_group_goes_into_one_pack_readable_by_any_zip_reader(store: BlobStore) -> None:
    blobs = [f"sealed document {i}".encode() * (i + 1) for i in range(20)]
    ids = _stage(store, blobs)
    assert ids == [sm3_independent(b) for b in blobs]
    (pack,) = _packs(store)
    assert not any(store.path(i).exists() for i in ids)  # no loose file per blob
    for blob_id, data in zip(ids, blobs, strict=True):
        assert store.exists(blob_id) and store.get(blob_id) == data
        with store.open(blob_id) as handle:
            assert handle.read() == data
    with zipfile.ZipFile(pack) as archive:  # a plain ZIP of stored entries named by SM3
        assert sorted(archive.namelist()) == sorted(ids)
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
        assert archive.testzip() is None
    assert sorted(store.ids()) == sorted(ids)
    assert os.listdir(store.root / ".tmp") == []


def test_another_store_finds_packs_written_after_it_looked(store: BlobStore) -> None:
    reader = BlobStore(store.root)  # another process's view of the same directory
    first = _stage(store, [b"one"])[0]
    assert reader.get(first) == b"one"
    second = _stage(store, [b"two"])[0]  # written after the reader indexed
    assert reader.get(second) == b"two"
    with pytest.raises(BlobNotFound):
        reader.get(sm3_independent(b"never stored"))


def test_a_flipped_byte_in_a_pack_is_caught_on_read(store: BlobStore) -> None:
    data = b"sealed document bytes" * 50
    (blob_id,) = _stage(store, [data])
    (pack,) = _packs(store)
    raw = bytearray(pack.read_bytes())
    at = raw.find(data) + 100
    raw[at] ^= 0x01
    pack.write_bytes(bytes(raw))
    fresh = BlobStore(store.root)
    with pytest.raises(BlobCorrupted):
        fresh.get(blob_id)
    # Storing the content again keeps a good copy (loose) and reads prefer it.
    assert fresh.put(data) == blob_id and fresh.get(blob_id) == data


def test_staging_reuses_stored_copies_and_touches_them(store: BlobStore) -> None:
    (blob_id,) = _stage(store, [b"reused"])
    (pack,) = _packs(store)
    _age(pack, 2 * DAY)
    again = _stage(store, [b"reused"])
    assert again == [blob_id] and _packs(store) == [pack]  # no second copy, no empty pack
    assert pack.stat().st_mtime > time.time() - 60  # refreshed: the sweep's grace period restarts


def test_sweep_removes_a_pack_only_when_no_record_names_any_of_its_blobs(store: BlobStore) -> None:
    kept_ids = _stage(store, [b"a1", b"a2", b"a3"])
    orphan_ids = _stage(store, [b"b1", b"b2"])
    fresh_ids = _stage(store, [b"c1"])
    by_pack = {tuple(sorted(zipfile.ZipFile(p).namelist())): p for p in _packs(store)}
    kept, orphan = by_pack[tuple(sorted(kept_ids))], by_pack[tuple(sorted(orphan_ids))]
    _age(kept, 2 * DAY)
    _age(orphan, 2 * DAY)
    wanted = {kept_ids[1]}  # one blob of the pack is still named: the pack stays

    dry = store.sweep(lambda: wanted, older_than=dt.timedelta(days=1), dry_run=True)
    assert (dry.examined, dry.referenced, dry.recent, dry.removed) == (6, 1, 1, 2)
    assert orphan.exists()

    report = store.sweep(lambda: wanted, older_than=dt.timedelta(days=1))
    assert report.removed == 2 and report.removed_bytes > len(b"b1b2")
    assert kept.exists() and not orphan.exists()
    assert all(store.get(i) for i in kept_ids + fresh_ids)
    for blob_id in orphan_ids:
        assert not store.exists(blob_id)
        with pytest.raises(BlobNotFound):
            store.get(blob_id)


def test_a_group_staged_again_during_the_sweep_is_not_lost(store: BlobStore) -> None:
    (blob_id,) = _stage(store, [b"signed again while the sweep runs"])
    (pack,) = _packs(store)
    _age(pack, 2 * DAY)

    def referenced() -> set[str]:
        _stage(store, [b"signed again while the sweep runs"])  # touches the pack
        return set()

    assert store.sweep(referenced, older_than=dt.timedelta(days=1)).removed == 0
    assert store.get(blob_id) == b"signed again while the sweep runs"


def test_a_discarded_or_crashed_pack_leaves_nothing_readable(store: BlobStore) -> None:
    staged = StagedBlobs(store)
    blob_id = staged.put(b"never synced")
    staged.discard()
    assert not store.exists(blob_id) and _packs(store) == []
    assert os.listdir(store.root / ".tmp") == []

    # A crash while a pack is written: the temporary file is not a pack and is swept when old.
    writer = store.new_pack()
    writer.add(sm3_independent(b"half"), b"half")
    (temporary,) = (store.root / ".tmp").iterdir()
    del writer  # the process dies: no install
    assert not store.exists(sm3_independent(b"half"))
    _age(temporary, 2 * DAY)
    assert store.sweep(set, older_than=dt.timedelta(days=1)).temporaries == 1


def test_foreign_files_in_the_pack_directory_are_ignored(store: BlobStore) -> None:
    _stage(store, [b"real"])
    (store.pack_dir / "README").write_text("not a pack")
    (store.pack_dir / ("0" * 32 + ".zip")).write_bytes(b"PK\x03\x04 broken")
    fresh = BlobStore(store.root)
    assert fresh.get(sm3_independent(b"real")) == b"real"
    assert sorted(fresh.ids()) == [sm3_independent(b"real")]
    report = fresh.sweep(set, older_than=dt.timedelta(seconds=0), now=time.time() + 2 * DAY)
    assert report.removed == 1  # the real, unreferenced pack; the broken file is left alone
    assert (store.pack_dir / ("0" * 32 + ".zip")).exists() and (store.pack_dir / "README").exists()


def test_a_damaged_loose_copy_is_served_from_a_good_packed_one(store: BlobStore) -> None:
    data = b"stored loose first, then again in a batch group" * 20
    blob_id = store.put(data)
    loose = store.path(blob_id)
    loose.write_bytes(data[:-1])  # truncated on disk
    assert _stage(store, [data]) == [blob_id]  # the damaged loose copy is not reused: packed
    assert store.get(blob_id) == data
    with store.open(blob_id) as handle:
        assert handle.read() == data
