"""agents: the fleet an operator can pause and give a budget (seed 003)

Revision ID: 0010_agents
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_agents"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False, server_default="default"),
        sa.Column("department", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("display_name", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pause_reason", sa.Text(), nullable=True),
        sa.Column("paused_by_action", sa.String(length=36), nullable=True),
        sa.Column("budget_amount", sa.String(length=40), nullable=True),
        sa.Column("budget_currency", sa.String(length=3), nullable=True),
        sa.Column("budget_period", sa.String(length=10), nullable=True),
        sa.Column("spent_outside", sa.String(length=40), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_agents_tenant_department", "agents", ["tenant", "department"])
    op.create_index("ix_agents_state_paused_until", "agents", ["state", "paused_until"])


def downgrade() -> None:
    op.drop_index("ix_agents_state_paused_until", table_name="agents")
    op.drop_index("ix_agents_tenant_department", table_name="agents")
    op.drop_table("agents")
