"""org data: employees, teams, roles, meetings, task assignments, calendar events, ledger, effects

Revision ID: 0003
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "roles",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "employees",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("manager_id", sa.String(length=100), nullable=True),
        sa.Column("team_id", sa.String(length=100), nullable=True),
        sa.Column("role", sa.String(length=100), nullable=True),
        sa.Column("weekly_meeting_hours_cap", sa.Float(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["manager_id"], ["employees.id"], name="fk_employees_manager_id"),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name="fk_employees_team_id"),
        sa.ForeignKeyConstraint(["role"], ["roles.id"], name="fk_employees_role"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_employees_manager", "employees", ["manager_id"])
    op.create_index("ix_employees_team", "employees", ["team_id"])
    op.create_table(
        "meetings",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("organizer_id", sa.String(length=100), nullable=False),
        sa.Column("start_at", _ts(), nullable=False),
        sa.Column("end_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(["organizer_id"], ["employees.id"], name="fk_meetings_organizer_id"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "meeting_attendees",
        sa.Column("meeting_id", sa.String(length=100), nullable=False),
        sa.Column("employee_id", sa.String(length=100), nullable=False),
        sa.Column("response", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(["meeting_id"], ["meetings.id"], name="fk_meeting_attendees_meeting_id"),
        sa.ForeignKeyConstraint(["employee_id"], ["employees.id"], name="fk_meeting_attendees_employee_id"),
        sa.PrimaryKeyConstraint("meeting_id", "employee_id"),
    )
    op.create_index("ix_meeting_attendees_employee", "meeting_attendees", ["employee_id"])
    op.create_table(
        "task_assignments",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("assignee_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(["assignee_id"], ["employees.id"], name="fk_task_assignments_assignee_id"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_task_assignments_assignee", "task_assignments", ["assignee_id", "status"])
    op.create_table(
        "calendar_events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("calendar_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("location", sa.String(length=500), nullable=False),
        sa.Column("attendees", _json(), nullable=False),
        sa.Column("start_at", _ts(), nullable=False),
        sa.Column("end_at", _ts(), nullable=False),
        sa.Column("action_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_calendar_events_calendar", "calendar_events", ["calendar_id", "start_at"])
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("action_id", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("counterparty", sa.String(length=200), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("memo", sa.Text(), nullable=False),
        sa.Column("reverses_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(["reverses_id"], ["ledger_entries.id"], name="fk_ledger_entries_reverses_id"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ledger_entries_account", "ledger_entries", ["account", "currency"])
    op.create_table(
        "effects",
        sa.Column("idempotency_key", sa.String(length=300), nullable=False),
        sa.Column("action_id", sa.String(length=36), nullable=False),
        sa.Column("action_type", sa.String(length=100), nullable=False),
        sa.Column("result", _json(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(["action_id"], ["actions.id"], name="fk_effects_action_id"),
        sa.PrimaryKeyConstraint("idempotency_key"),
    )
    op.create_index("ix_effects_action", "effects", ["action_id"])


def downgrade() -> None:
    for table in (
        "effects",
        "ledger_entries",
        "calendar_events",
        "task_assignments",
        "meeting_attendees",
        "meetings",
        "employees",
        "roles",
        "teams",
    ):
        op.drop_table(table)
