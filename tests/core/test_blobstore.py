"""Content-addressed blob store: round trip, corruption detection, hostile ids."""

from __future__ import annotations

import io
import os

import pytest

from core.blobstore import BlobCorrupted, BlobNotFound, BlobStore
from core.errors import InputTooLarge, InvalidInput

from .conftest import sm3_independent


def test_round_trip_is_keyed_by_sm3_and_sharded(store: BlobStore) -> None:
    data = "电子印章 blob".encode() * 10
    blob_id = store.put(data)
    assert blob_id == sm3_independent(data)
    assert store.path(blob_id) == store.root / blob_id[:2] / blob_id[2:4] / blob_id
    assert store.exists(blob_id)
    assert store.get(blob_id) == data
    with store.open(blob_id) as f:
        assert f.read() == data
    assert store.put(data) == blob_id  # idempotent
    assert os.listdir(store.root / ".tmp") == []


def test_stream_spanning_chunks(store: BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    blob_id = store.put_stream(io.BytesIO(data))
    assert blob_id == sm3_independent(data)
    assert store.get(blob_id) == data


def test_empty_blob(store: BlobStore) -> None:
    blob_id = store.put(b"")
    assert store.get(blob_id) == b"" and blob_id == sm3_independent(b"")


def test_size_limit_leaves_nothing_behind(store: BlobStore) -> None:
    with pytest.raises(InputTooLarge):
        store.put_stream(io.BytesIO(b"x" * 101), max_bytes=100)
    assert os.listdir(store.root / ".tmp") == []
    assert store.get(store.put_stream(io.BytesIO(b"x" * 100), max_bytes=100)) == b"x" * 100


def test_corruption_is_detected_and_repaired_by_a_new_put(store: BlobStore) -> None:
    data = b"sealed document bytes" * 100
    blob_id = store.put(data)
    path = store.path(blob_id)
    corrupt = bytearray(path.read_bytes())
    corrupt[500] ^= 0x01
    path.write_bytes(bytes(corrupt))
    with pytest.raises(BlobCorrupted) as info:
        store.get(blob_id)
    assert info.value.code == "blob_corrupted"
    with pytest.raises(BlobCorrupted):
        store.open(blob_id)
    path.write_bytes(data[:-1])  # truncated
    with pytest.raises(BlobCorrupted):
        store.get(blob_id)
    assert store.put(data) == blob_id
    assert store.get(blob_id) == data


def test_missing_blob(store: BlobStore) -> None:
    missing = sm3_independent(b"never stored")
    assert not store.exists(missing)
    with pytest.raises(BlobNotFound):
        store.get(missing)
    with pytest.raises(BlobNotFound):
        store.open(missing)


@pytest.mark.parametrize(
    "bad",
    [
        "../../../../etc/passwd",
        "ab/cd/" + "0" * 58,
        "..",
        "",
        "0" * 63,
        "0" * 65,
        "A" * 64,
        "g" * 64,
        "0" * 63 + "\n",
        "/" + "0" * 63,
        "0" * 62 + "/.",
    ],
)
def test_hostile_ids_are_rejected(store: BlobStore, bad: str) -> None:
    for op in (store.get, store.open, store.exists, store.path):
        with pytest.raises(InvalidInput):
            op(bad)


def test_uppercase_form_of_a_stored_id_is_rejected(store: BlobStore) -> None:
    blob_id = store.put(b"x")
    with pytest.raises(InvalidInput):
        store.get(blob_id.upper())
