"""Fixtures for core tests: a migrated database on each backend and a session factory over it, and a
blob store in a temporary directory with an independent SM3 (gmalg) to name what it stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gmalg
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core import migrate
from core.blobstore import BlobStore
from core.db import make_engine, make_session_factory


@pytest.fixture
def migrated_url(db_url: str) -> str:
    migrate.upgrade(db_url)
    return db_url


@pytest.fixture
def migrated_engine(migrated_url: str) -> Iterator[Engine]:
    eng = make_engine(migrated_url)
    yield eng
    eng.dispose()


@pytest.fixture
def factory(migrated_engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(migrated_engine)


def sm3_independent(data: bytes) -> str:
    """SM3 hex by gmalg, an implementation independent of the one the blob store uses."""
    h = gmalg.SM3()
    h.update(data)
    return bytes(h.value()).hex()


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")
