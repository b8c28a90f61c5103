"""sweep indexes: a partial index on pending approvals for the expire sweep (issue 15)

Revision ID: 0012_sweep_indexes
Revises: 0011_fleet_audit

``ix_actions_pending_deadline (approval_deadline, id) WHERE state = 'pending_approval'`` holds only pending
actions, in the order the expire sweep takes them, so its due query stops after one batch and its due count
reads only the due entries, whatever the size of the table (SQLite and PostgreSQL both support partial indexes).
It replaces ``ix_actions_state_deadline (state, approval_deadline)``, which only that sweep used (queries by
state alone have ``ix_actions_state_priority``): every action write then maintains one index fewer, and the
planners never prefer the wider index, whose order (deadline, then a sort by id) costs a sort of every due row
per batch.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_sweep_indexes"
down_revision = "0011_fleet_audit"
branch_labels = None
depends_on = None

PENDING_ONLY = "state = 'pending_approval'"


def upgrade() -> None:
    op.drop_index("ix_actions_state_deadline", table_name="actions")
    op.create_index("ix_actions_pending_deadline", "actions", ["approval_deadline", "id"],
                    sqlite_where=sa.text(PENDING_ONLY), postgresql_where=sa.text(PENDING_ONLY))


def downgrade() -> None:
    op.drop_index("ix_actions_pending_deadline", table_name="actions")
    op.create_index("ix_actions_state_deadline", "actions", ["state", "approval_deadline"])
