"""federation: peer registries, their trust lists, seal type mappings, published trust lists

Revision ID: 0004_federation
Revises: 0003_batch
Create Date: 2026-11-24 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_federation"
down_revision: str | None = "0003_batch"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "federation_peers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("region_code", sa.String(length=6), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("pinned_sm3", sa.String(length=64), nullable=False),
        sa.Column("successor_sm3", sa.String(length=64), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("use_delta", sa.Boolean(), nullable=False),
        sa.Column("restrict_seal_types", sa.Boolean(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added_by", sa.String(length=200), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refused_count", sa.Integer(), nullable=False),
        sa.Column("etag", sa.String(length=200), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_federation_peers")),
        sa.UniqueConstraint("region_code", name=op.f("uq_federation_peers_region_code")),
    )
    op.create_table(
        "trust_list_next_signers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("sm3", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("announced_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trust_list_next_signers")),
        sa.UniqueConstraint("sm3", name=op.f("uq_trust_list_next_signers_sm3")),
    )
    op.create_table(
        "trust_list_publications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("etag", sa.String(length=64), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trust_list_publications")),
    )
    with op.batch_alter_table("trust_list_publications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trust_list_publications_sequence"), ["sequence"], unique=False)

    op.create_table(
        "federation_peer_lists",
        sa.Column("peer_id", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signer_sm3", sa.String(length=64), nullable=False),
        sa.Column("signer_der", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["peer_id"],
            ["federation_peers.id"],
            name=op.f("fk_federation_peer_lists_peer_id_federation_peers"),
        ),
        sa.PrimaryKeyConstraint("peer_id", name=op.f("pk_federation_peer_lists")),
    )
    op.create_table(
        "federation_seal_type_mappings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("peer_id", sa.Integer(), nullable=False),
        sa.Column("remote_code", sa.String(length=2), nullable=False),
        sa.Column("local_code", sa.String(length=2), nullable=False),
        sa.Column("purposes", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["peer_id"],
            ["federation_peers.id"],
            name=op.f("fk_federation_seal_type_mappings_peer_id_federation_peers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_federation_seal_type_mappings")),
        sa.UniqueConstraint("peer_id", "remote_code", name=op.f("uq_federation_seal_type_mappings_peer_id")),
    )
    with op.batch_alter_table("federation_seal_type_mappings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_federation_seal_type_mappings_peer_id"), ["peer_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("federation_seal_type_mappings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_federation_seal_type_mappings_peer_id"))

    op.drop_table("federation_seal_type_mappings")
    op.drop_table("federation_peer_lists")
    with op.batch_alter_table("trust_list_publications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trust_list_publications_sequence"))

    op.drop_table("trust_list_publications")
    op.drop_table("trust_list_next_signers")
    op.drop_table("federation_peers")
