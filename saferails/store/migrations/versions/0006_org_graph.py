"""org graph and outcome checks: interactions, wellbeing, metric snapshots, outcome checks

Revision ID: 0006
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0001"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "interactions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("person_a", sa.String(length=100), nullable=False),
        sa.Column("person_b", sa.String(length=100), nullable=False),
        sa.Column("occurred_at", _ts(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_interactions_occurred_at", "interactions", ["occurred_at"])
    op.create_index("ix_interactions_person_a", "interactions", ["person_a", "occurred_at"])
    op.create_index("ix_interactions_person_b", "interactions", ["person_b", "occurred_at"])
    op.create_table(
        "wellbeing",
        sa.Column("person", sa.String(length=100), nullable=False),
        sa.Column("observed_at", _ts(), nullable=False),
        sa.Column("burnout_score", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("person", "observed_at"),
    )
    op.create_index("ix_wellbeing_observed_at", "wellbeing", ["observed_at"])
    op.create_table(
        "metric_snapshots",
        sa.Column("snapshot_hash", sa.String(length=64), nullable=False),
        sa.Column("person", sa.String(length=100), nullable=False),
        sa.Column("metrics", _json(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("snapshot_hash", "person"),
    )
    op.create_table(
        "outcome_checks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("action_id", sa.String(length=36), nullable=False),
        sa.Column("action_type", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("due_at", _ts(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("baseline", _json(), nullable=False),
        sa.Column("baseline_snapshot_hash", sa.String(length=64), nullable=False),
        sa.Column("result", _json(), nullable=True),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("claimed_until", _ts(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("decided_at", _ts(), nullable=True),
        sa.Column("algorithm", sa.String(length=200), nullable=True),
        sa.Column("library_versions", _json(), nullable=True),
        sa.Column("params", _json(), nullable=True),
        sa.Column("snapshot_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(["action_id"], ["actions.id"], name="fk_outcome_checks_action_id"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("action_id", name="uq_outcome_checks_action_id"),
        sa.CheckConstraint(
            "state IN ('pending', 'claimed', 'ok', 'negative', 'error')", name="ck_outcome_checks_state"
        ),
    )
    op.create_index("ix_outcome_checks_due", "outcome_checks", ["state", "due_at"])


def downgrade() -> None:
    for table in ("outcome_checks", "metric_snapshots", "wellbeing", "interactions"):
        op.drop_table(table)
