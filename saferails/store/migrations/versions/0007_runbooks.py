"""runbooks: templates, executions, step states, logs, evidence and delivered events

Revision ID: 0007
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runbook_templates",
        sa.Column("runbook_id", sa.String(100), nullable=False),
        sa.Column("runbook_version", sa.String(50), nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("definition", JSON, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("registered_by", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("runbook_id", "runbook_version"),
    )
    op.create_table(
        "runbook_executions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("runbook_id", sa.String(100), nullable=False),
        sa.Column("runbook_version", sa.String(50), nullable=False),
        sa.Column("state", sa.String(30), nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("initiated_by", sa.String(200), nullable=False),
        sa.Column("inputs", JSON, nullable=False),
        sa.Column("context", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("replay_of", sa.String(36), nullable=True),
        sa.Column("deadline", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_runbook_executions_state", "runbook_executions", ["state"])
    op.create_index("ix_runbook_executions_runbook", "runbook_executions", ["runbook_id", "runbook_version"])
    op.create_table(
        "runbook_steps",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("execution_id", sa.String(36), sa.ForeignKey("runbook_executions.id"), nullable=False),
        sa.Column("step_id", sa.String(100), nullable=False),
        sa.Column("step_type", sa.String(30), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(30), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("output", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("skip_reason", sa.Text(), nullable=True),
        sa.Column("halted_by", sa.String(100), nullable=True),
        sa.Column("approval_action_id", sa.String(36), nullable=True),
        sa.Column("correlation_id", sa.String(300), nullable=True),
        sa.Column("wait_deadline", TS, nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("execution_id", "step_id", name="uq_runbook_steps_execution_step"),
    )
    op.create_table(
        "runbook_logs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("execution_id", sa.String(36), sa.ForeignKey("runbook_executions.id"), nullable=False),
        sa.Column("step_id", sa.String(100), nullable=True),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_runbook_logs_execution", "runbook_logs", ["execution_id", "id"])
    op.create_table(
        "runbook_evidence",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("execution_id", sa.String(36), sa.ForeignKey("runbook_executions.id"), nullable=False),
        sa.Column("step_id", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("content", JSON, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_runbook_evidence_execution", "runbook_evidence", ["execution_id", "id"])
    op.create_table(
        "runbook_events",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("correlation_id", sa.String(300), nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_runbook_events_correlation", "runbook_events", ["correlation_id", "received_at"])


def downgrade() -> None:
    for index, table in (
        ("ix_runbook_events_correlation", "runbook_events"),
        ("ix_runbook_evidence_execution", "runbook_evidence"),
        ("ix_runbook_logs_execution", "runbook_logs"),
    ):
        op.drop_index(index, table_name=table)
        op.drop_table(table)
    op.drop_table("runbook_steps")
    op.drop_index("ix_runbook_executions_runbook", table_name="runbook_executions")
    op.drop_index("ix_runbook_executions_state", table_name="runbook_executions")
    op.drop_table("runbook_executions")
    op.drop_table("runbook_templates")
