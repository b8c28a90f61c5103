"""sweeps: claims that keep two sweep workers off the same item

Revision ID: 0008
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweep_claims",
        sa.Column("sweep", sa.String(length=50), nullable=False),
        sa.Column("item_id", sa.String(length=100), nullable=False),
        sa.Column("claimed_by", sa.String(length=100), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sweep", "item_id", name="pk_sweep_claims"),
    )
    op.create_index("ix_sweep_claims_until", "sweep_claims", ["sweep", "claimed_until"])


def downgrade() -> None:
    op.drop_index("ix_sweep_claims_until", table_name="sweep_claims")
    op.drop_table("sweep_claims")
