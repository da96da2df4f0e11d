"""The running service's shared objects (settings, database, key store, blob store).

Built once per process by :func:`open_context`; the FastAPI app and the CLI both use it, so the two
front ends behave identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, make_session_factory
from core.settings import Settings

if TYPE_CHECKING:
    from core.blobstore import BlobStore
    from hsm_adapters.keystore import KeyStore


@dataclass
class ServiceContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    _keystore: KeyStore | None = field(default=None, repr=False)
    _blobs: BlobStore | None = field(default=None, repr=False)

    @property
    def keystore(self) -> KeyStore:
        if self._keystore is None:
            from hsm_adapters.factory import open_keystore

            self._keystore = open_keystore(self.settings, self.sessions)
        return self._keystore

    @property
    def blobs(self) -> BlobStore:
        if self._blobs is None:
            from core.blobstore import BlobStore

            self._blobs = BlobStore(self.settings.var_dir / "blobs")
        return self._blobs

    def close(self) -> None:
        self.engine.dispose()


def open_context(settings: Settings, *, migrate: bool = True) -> ServiceContext:
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url()
    if migrate:
        from core.migrate import upgrade

        upgrade(url)
    engine = make_engine(url)
    return ServiceContext(settings=settings, engine=engine, sessions=make_session_factory(engine))
