"""recover index: a partial index on pending actions that have a flow run, for the recover sweep (issue 14)

Revision ID: 0013_recover_index
Revises: 0012_sweep_indexes

The recover sweep's third part looks for ``state = 'pending_approval' AND flow_run_id IS NOT NULL`` in
``(updated_at, id)`` order, every run (every 10 minutes, and from every worker that runs it). Without an index
that is a scan of the whole actions table and a sort of every pending row per batch.
``ix_actions_pending_run (updated_at, id) WHERE state = 'pending_approval' AND flow_run_id IS NOT NULL`` holds
exactly those rows in that order, so the query reads one batch off the index whatever the size of the table
(SQLite and PostgreSQL both support partial indexes; the planners use it when the query's predicate implies the
index's, which the sweep's equality and IS NOT NULL do).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_recover_index"
down_revision = "0012_sweep_indexes"
branch_labels = None
depends_on = None

PENDING_WITH_RUN = "state = 'pending_approval' AND flow_run_id IS NOT NULL"


def upgrade() -> None:
    op.create_index("ix_actions_pending_run", "actions", ["updated_at", "id"],
                    sqlite_where=sa.text(PENDING_WITH_RUN), postgresql_where=sa.text(PENDING_WITH_RUN))


def downgrade() -> None:
    op.drop_index("ix_actions_pending_run", table_name="actions")
