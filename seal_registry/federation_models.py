"""ORM models of cross-region recognition: peer registries, their last good trust lists, seal type
mappings, and this region's own published trust lists and announced next signer."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UtcDateTime


class FederationPeer(Base):
    """A peer region whose trust list this registry fetches, and the key pinned to sign it."""

    __tablename__ = "federation_peers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    region_code: Mapped[str] = mapped_column(String(6), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(2000))
    # SM3 of the registry certificate given out of band; rolls to the announced successor when a
    # list signed by it is accepted.
    pinned_sm3: Mapped[str] = mapped_column(String(64))
    successor_sm3: Mapped[str | None] = mapped_column(String(64), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    use_delta: Mapped[bool] = mapped_column(Boolean)
    # True once any seal type mapping exists: then only mapped types are accepted.
    restrict_seal_types: Mapped[bool] = mapped_column(Boolean)
    added_at: Mapped[datetime] = mapped_column(UtcDateTime())
    added_by: Mapped[str] = mapped_column(String(200))
    last_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    refused_count: Mapped[int] = mapped_column(Integer)
    etag: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Bumped on every change a verifier must see (new list, pin, mapping): caches key on it.
    generation: Mapped[int] = mapped_column(Integer)


class FederationPeerList(Base):
    """The last good trust list of a peer: its state after every accepted full list and delta."""

    __tablename__ = "federation_peer_lists"

    peer_id: Mapped[int] = mapped_column(ForeignKey("federation_peers.id"), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    next_update: Mapped[datetime] = mapped_column(UtcDateTime())
    signer_sm3: Mapped[str] = mapped_column(String(64))
    signer_der: Mapped[bytes] = mapped_column(LargeBinary)
    # Canonical payload of the merged state (a full list); unsigned once a delta was merged, so it is
    # only ever read back from this database, never served as the peer's word.
    state: Mapped[bytes] = mapped_column(LargeBinary)
    # The last accepted envelope exactly as received (full list or delta), for inspection.
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())


class SealTypeMapping(Base):
    """Which of a peer's seal types this region accepts, as which local type, for which purposes."""

    __tablename__ = "federation_seal_type_mappings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    peer_id: Mapped[int] = mapped_column(ForeignKey("federation_peers.id"), index=True)
    remote_code: Mapped[str] = mapped_column(String(2))
    local_code: Mapped[str] = mapped_column(String(2))
    purposes: Mapped[str] = mapped_column(String(500))  # comma-separated; "any" for every purpose

    __table_args__ = (UniqueConstraint("peer_id", "remote_code"),)


class TrustListPublication(Base):
    """A full trust list this region signed and served; the newest is served until it is replaced."""

    __tablename__ = "trust_list_publications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sequence: Mapped[int] = mapped_column(BigInteger, index=True)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    next_update: Mapped[datetime] = mapped_column(UtcDateTime())
    etag: Mapped[str] = mapped_column(String(64))
    envelope: Mapped[bytes] = mapped_column(LargeBinary)


class TrustListNextSigner(Base):
    """A registry certificate announced in the trust list before it takes over signing (rollover)."""

    __tablename__ = "trust_list_next_signers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    sm3: Mapped[str] = mapped_column(String(64), unique=True)
    key_id: Mapped[str] = mapped_column(String(128))
    announced_at: Mapped[datetime] = mapped_column(UtcDateTime())
    announced_by: Mapped[str] = mapped_column(String(200))
