"""identity: roles and tenants on principals, hashed API credentials

Revision ID: 0009_identity
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009_identity"
down_revision = "0001"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.add_column(sa.Column("roles", JSONType, nullable=False, server_default=sa.text("'[]'")))
        batch.add_column(sa.Column("tenant", sa.String(length=100), nullable=False, server_default="default"))
        batch.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "credentials",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("principal_id", sa.String(length=200), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["principal_id"], ["principals.id"], name="fk_credentials_principal_id"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_credentials_principal", "credentials", ["principal_id"])


def downgrade() -> None:
    op.drop_index("ix_credentials_principal", table_name="credentials")
    op.drop_table("credentials")
    with op.batch_alter_table("principals") as batch:
        batch.drop_column("disabled_at")
        batch.drop_column("tenant")
        batch.drop_column("roles")
