"""licence print pdf: the type flag (同步生成、同步签章) and each version's sealed PDF

Revision ID: 0006_licence_print_pdf
Revises: 0005_licences
Create Date: 2026-11-23 11:24:08.982685
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_licence_print_pdf"
down_revision: str | None = "0005_licences"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing types keep issuing the OFD only; existing licences have no PDF.
    with op.batch_alter_table("licence_types", schema=None) as batch_op:
        batch_op.add_column(sa.Column("print_pdf", sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table("licences", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pdf_sm3", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("pdf_size", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("licences", schema=None) as batch_op:
        batch_op.drop_column("pdf_size")
        batch_op.drop_column("pdf_sm3")

    with op.batch_alter_table("licence_types", schema=None) as batch_op:
        batch_op.drop_column("print_pdf")
