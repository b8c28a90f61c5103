"""fleet audit: the action's scope and actor role, and indexes for the playbook's audit queries (seed 003)

Revision ID: 0011_fleet_audit
Revises: 0001

Queries served, newest first: by workspace (``tenant, created_at``), by workspace and scope (``tenant, scope,
created_at``), by type (``action_type, created_at``) and by actor (the existing ``ix_actions_rate``: ``proposer,
action_type, created_at``). Existing actions with a ``scope`` parameter get it copied into the column.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0011_fleet_audit"
down_revision = "0001"
branch_labels = None
depends_on = None

AGENT_SCOPED = ("pause_agent", "resume_agent", "set_budget")


def upgrade() -> None:
    op.add_column("actions", sa.Column("scope", sa.String(length=20), nullable=True))
    op.add_column("actions", sa.Column("actor_role", sa.String(length=500), nullable=True))
    op.create_index("ix_actions_tenant_scope_created", "actions", ["tenant", "scope", "created_at"])
    op.create_index("ix_actions_tenant_created", "actions", ["tenant", "created_at"])
    op.create_index("ix_actions_type_created", "actions", ["action_type", "created_at"])
    actions = sa.table("actions", sa.column("id", sa.String), sa.column("action_type", sa.String),
                       sa.column("params", sa.JSON), sa.column("scope", sa.String))
    conn = op.get_bind()
    rows = conn.execute(sa.select(actions.c.id, actions.c.params)
                        .where(actions.c.action_type.in_(AGENT_SCOPED))).all()
    for action_id, params in rows:
        data = json.loads(params) if isinstance(params, str) else (params or {})
        scope = data.get("scope") if isinstance(data.get("scope"), str) else "agent"
        conn.execute(sa.update(actions).where(actions.c.id == action_id).values(scope=scope))


def downgrade() -> None:
    op.drop_index("ix_actions_type_created", table_name="actions")
    op.drop_index("ix_actions_tenant_created", table_name="actions")
    op.drop_index("ix_actions_tenant_scope_created", table_name="actions")
    with op.batch_alter_table("actions") as batch:  # SQLite drops columns by copying the table
        batch.drop_column("actor_role")
        batch.drop_column("scope")
