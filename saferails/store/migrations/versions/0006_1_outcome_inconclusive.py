"""outcome checks may end ``inconclusive``: the did judge saw a large effect it could not separate from noise,
and a person decides (``OutcomeMonitor.resolve_inconclusive``)

Revision ID: 0006_1
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0006_1"
down_revision = "0006"
branch_labels = None
depends_on = None

NEW = "state IN ('pending', 'claimed', 'ok', 'negative', 'inconclusive', 'error')"
OLD = "state IN ('pending', 'claimed', 'ok', 'negative', 'error')"


def _replace(condition: str) -> None:
    # SQLite cannot alter a CHECK constraint in place: batch mode copies the table.
    with op.batch_alter_table("outcome_checks", recreate="auto") as batch:
        batch.drop_constraint("ck_outcome_checks_state", type_="check")
        batch.create_check_constraint("ck_outcome_checks_state", condition)


def upgrade() -> None:
    _replace(NEW)


def downgrade() -> None:
    op.execute("UPDATE outcome_checks SET state = 'error' WHERE state = 'inconclusive'")
    _replace(OLD)
