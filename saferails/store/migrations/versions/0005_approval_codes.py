"""approval codes: one-time approval codes, stored as keyed hashes

Revision ID: 0005
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approval_codes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("action_id", sa.String(length=36), nullable=False),
        sa.Column("approver", sa.String(length=200), nullable=False),
        sa.Column("action_hash", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["action_id"], ["actions.id"], name="fk_approval_codes_action_id"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("action_id", "approver", name="uq_approval_codes_action_approver"),
    )


def downgrade() -> None:
    op.drop_table("approval_codes")
