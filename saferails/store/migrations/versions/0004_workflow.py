"""workflow: tasks, action plans, SLA configs and records, automation triggers and their effects

Seeds seed 004's default SLA configs (intake 60, assessment 240, review 120, general 480 minutes) and its two
built-in triggers (a completed intake task creates a high-priority assessment task; an activated plan emits a
notification alert). The trigger documents are literal here on purpose: a migration must not change meaning
when application code changes later (``saferails.workflow.triggers.BUILTIN_TRIGGERS`` holds the same data).

Revision ID: 0004
Revises: 0001
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TS = sa.DateTime(timezone=True)

DEFAULT_SLA = (
    ("00000000-0000-4000-8000-000000000001", "intake", "intake", 60),
    ("00000000-0000-4000-8000-000000000002", "assessment", "assessment", 240),
    ("00000000-0000-4000-8000-000000000003", "review", "review", 120),
    ("00000000-0000-4000-8000-000000000004", "general", "general", 480),
)

BUILTIN_TRIGGERS = (
    {
        "id": "intake_completed_followup",
        "event_type": "TaskStateChanged",
        "predicate": {"all": [
            {"field": "payload.task_type", "operator": "eq", "value": "intake"},
            {"field": "payload.to_state", "operator": "eq", "value": "completed"},
        ]},
        "actions": [{"type": "create_task", "title": "Assessment: ${payload.title}", "task_type": "assessment",
                     "priority": "high", "description": "Follow-up of completed intake task ${aggregate_id}"}],
        "description": "A completed intake task creates a high-priority assessment task",
    },
    {
        "id": "action_plan_activated_alert",
        "event_type": "ActionPlanStateChanged",
        "predicate": {"field": "payload.to_state", "operator": "eq", "value": "active"},
        "actions": [{"type": "emit_alert", "alert_type": "action_plan_activated",
                     "message": "Action plan ${payload.title} was activated", "severity": "info"}],
        "description": "An activated action plan notifies its stakeholders",
    },
)


def upgrade() -> None:
    op.create_table(
        "action_plans",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("goals", JSON, nullable=False),
        sa.Column("state", sa.String(30), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_action_plans_state", "action_plans", ["state"])

    op.create_table(
        "tasks",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("task_type", sa.String(100), nullable=False),
        sa.Column("priority", sa.String(20), nullable=False),
        sa.Column("state", sa.String(30), nullable=False),
        sa.Column("assigned_to", sa.String(200), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("due_date", TS, nullable=True),
        sa.Column("action_plan_id", sa.String(36), nullable=True),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("escalated_at", TS, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["action_plan_id"], ["action_plans.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tasks_state_type", "tasks", ["state", "task_type"])
    op.create_index("ix_tasks_assigned_to", "tasks", ["assigned_to"])
    op.create_index("ix_tasks_action_plan", "tasks", ["action_plan_id"])

    sla_configs = op.create_table(
        "sla_configs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("service_area", sa.String(100), nullable=False),
        sa.Column("task_type", sa.String(100), nullable=False),
        sa.Column("target_minutes", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("service_area", "task_type", name="uq_sla_configs_area_type"),
    )

    op.create_table(
        "sla_records",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("sla_config_id", sa.String(36), nullable=False),
        sa.Column("target_minutes", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("completed_at", TS, nullable=True),
        sa.Column("end_state", sa.String(30), nullable=True),
        sa.Column("actual_minutes", sa.Float(), nullable=True),
        sa.Column("breached", sa.Boolean(), nullable=False),
        sa.Column("breached_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id"),
    )
    op.create_index("ix_sla_records_open_due", "sla_records", ["completed_at", "breached", "due_at"])

    triggers = op.create_table(
        "automation_triggers",
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("predicate", JSON, nullable=True),
        sa.Column("actions", JSON, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_automation_triggers_event", "automation_triggers", ["event_type", "active"])

    op.create_table(
        "trigger_effects",
        sa.Column("trigger_id", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("action_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("action_type", sa.String(50), nullable=False),
        sa.Column("result", JSON, nullable=False),
        sa.Column("worker_id", sa.String(100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("trigger_id", "event_id", "action_index"),
    )

    now = datetime.now(UTC)
    op.bulk_insert(sla_configs, [
        {"id": i, "service_area": area, "task_type": task_type, "target_minutes": minutes, "active": True,
         "created_at": now}
        for i, area, task_type, minutes in DEFAULT_SLA
    ])
    op.bulk_insert(triggers, [{**t, "active": True, "created_at": now, "updated_at": now} for t in BUILTIN_TRIGGERS])


def downgrade() -> None:
    op.drop_table("trigger_effects")
    op.drop_index("ix_automation_triggers_event", table_name="automation_triggers")
    op.drop_table("automation_triggers")
    op.drop_index("ix_sla_records_open_due", table_name="sla_records")
    op.drop_table("sla_records")
    op.drop_table("sla_configs")
    op.drop_index("ix_tasks_action_plan", table_name="tasks")
    op.drop_index("ix_tasks_assigned_to", table_name="tasks")
    op.drop_index("ix_tasks_state_type", table_name="tasks")
    op.drop_table("tasks")
    op.drop_index("ix_action_plans_state", table_name="action_plans")
    op.drop_table("action_plans")
