"""Workflow tables (migration ``0004``), declared on the shared ``Base`` so one metadata describes the store.

Dead letters need no table of their own: an outbox event with ``dead_lettered_at`` set is one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from saferails.store.tables import Base, JSONType


class ActionPlan(Base):
    """A plan grouping tasks toward goals. ``state`` follows ``ACTION_PLAN_MACHINE``."""

    __tablename__ = "action_plans"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(300))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    goals: Mapped[list[Any]] = mapped_column(default=list)
    state: Mapped[str] = mapped_column(sa.String(30))
    created_by: Mapped[str] = mapped_column(sa.String(200))
    # ``metadata`` is reserved on declarative classes, hence the attribute name ``meta``.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (sa.Index("ix_action_plans_state", "state"),)


class Task(Base):
    """A unit of work. ``state`` follows ``TASK_MACHINE``; priority is low | medium | high | critical."""

    __tablename__ = "tasks"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(300))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    task_type: Mapped[str] = mapped_column(sa.String(100))
    priority: Mapped[str] = mapped_column(sa.String(20))
    state: Mapped[str] = mapped_column(sa.String(30))
    assigned_to: Mapped[str | None] = mapped_column(sa.String(200))
    created_by: Mapped[str] = mapped_column(sa.String(200))
    due_date: Mapped[datetime | None]
    action_plan_id: Mapped[str | None] = mapped_column(sa.ForeignKey("action_plans.id"))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    escalated_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        sa.Index("ix_tasks_state_type", "state", "task_type"),
        sa.Index("ix_tasks_assigned_to", "assigned_to"),
        sa.Index("ix_tasks_action_plan", "action_plan_id"),
    )


class SlaConfig(Base):
    """Target completion time for tasks of one type in one service area."""

    __tablename__ = "sla_configs"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    service_area: Mapped[str] = mapped_column(sa.String(100))
    task_type: Mapped[str] = mapped_column(sa.String(100))
    target_minutes: Mapped[int]
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]

    __table_args__ = (sa.UniqueConstraint("service_area", "task_type", name="uq_sla_configs_area_type"),)


class SlaRecord(Base):
    """One task's SLA clock. Open while ``completed_at`` is NULL; ``breached`` is set once, never cleared.

    ``target_minutes`` is copied from the config so later config edits do not rewrite history (and so no
    foreign key pins the config).
    """

    __tablename__ = "sla_records"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    task_id: Mapped[str] = mapped_column(sa.ForeignKey("tasks.id"), unique=True)
    sla_config_id: Mapped[str] = mapped_column(sa.String(36))
    target_minutes: Mapped[int]
    started_at: Mapped[datetime]
    due_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    end_state: Mapped[str | None] = mapped_column(sa.String(30))
    actual_minutes: Mapped[float | None] = mapped_column(sa.Float)
    breached: Mapped[bool] = mapped_column(default=False)
    breached_at: Mapped[datetime | None]
    created_at: Mapped[datetime]

    __table_args__ = (sa.Index("ix_sla_records_open_due", "completed_at", "breached", "due_at"),)


class AutomationTrigger(Base):
    """A stored automation rule: on ``event_type`` when ``predicate`` (condition-language data, NULL = always)
    holds, run ``actions`` (a list of action documents, see ``saferails.workflow.triggers``)."""

    __tablename__ = "automation_triggers"
    id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    event_type: Mapped[str] = mapped_column(sa.String(100))
    predicate: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    actions: Mapped[list[Any]]
    description: Mapped[str] = mapped_column(sa.Text, default="")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (sa.Index("ix_automation_triggers_event", "event_type", "active"),)


class TriggerEffect(Base):
    """Proof that one action of one trigger ran for one event. Written in the effect's own transaction, so a
    redelivered event skips it: effects happen once although delivery is at least once."""

    __tablename__ = "trigger_effects"
    trigger_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    action_index: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    action_type: Mapped[str] = mapped_column(sa.String(50))
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    worker_id: Mapped[str] = mapped_column(sa.String(100))
    created_at: Mapped[datetime]
