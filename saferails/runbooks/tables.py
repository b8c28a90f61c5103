"""Runbook tables (migration ``0007``), declared on the shared ``Base``.

Templates (definitions, keyed by runbook id and version) are kept apart from executions; an execution keeps
the exact template version it runs. Logs, evidence and delivered events are append-only rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from saferails.store.tables import Base, JSONType


class RunbookTemplate(Base):
    __tablename__ = "runbook_templates"
    runbook_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    runbook_version: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(300))
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    registered_by: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime]


class RunbookExecution(Base):
    """One run of one template version. ``state`` follows ``EXECUTION_MACHINE``; ``version`` is the row version."""

    __tablename__ = "runbook_executions"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    runbook_id: Mapped[str] = mapped_column(sa.String(100))
    runbook_version: Mapped[str] = mapped_column(sa.String(50))
    state: Mapped[str] = mapped_column(sa.String(30))
    tenant: Mapped[str] = mapped_column(sa.String(100))
    initiated_by: Mapped[str] = mapped_column(sa.String(200))
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONType)
    context: Mapped[dict[str, Any]] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    replay_of: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)
    deadline: Mapped[datetime]
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        sa.Index("ix_runbook_executions_state", "state"),
        sa.Index("ix_runbook_executions_runbook", "runbook_id", "runbook_version"),
    )


class RunbookStep(Base):
    """The state of one step in one execution. ``halted_by`` names the failed step that stopped this one
    (skipped or cancelled because of it), so ``retry_step`` knows which steps to bring back."""

    __tablename__ = "runbook_steps"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    execution_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("runbook_executions.id"))
    step_id: Mapped[str] = mapped_column(sa.String(100))
    step_type: Mapped[str] = mapped_column(sa.String(30))
    position: Mapped[int]
    state: Mapped[str] = mapped_column(sa.String(30))
    attempts: Mapped[int] = mapped_column(default=0)
    output: Mapped[Any | None] = mapped_column(JSONType, nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    skip_reason: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    halted_by: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    approval_action_id: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)
    correlation_id: Mapped[str | None] = mapped_column(sa.String(300), nullable=True)
    wait_deadline: Mapped[datetime | None] = mapped_column(nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (sa.UniqueConstraint("execution_id", "step_id", name="uq_runbook_steps_execution_step"),)


class RunbookLog(Base):
    __tablename__ = "runbook_logs"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    execution_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("runbook_executions.id"))
    step_id: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    level: Mapped[str] = mapped_column(sa.String(10))
    message: Mapped[str] = mapped_column(sa.Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime]

    __table_args__ = (sa.Index("ix_runbook_logs_execution", "execution_id", "id"),)


class RunbookEvidence(Base):
    __tablename__ = "runbook_evidence"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    execution_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("runbook_executions.id"))
    step_id: Mapped[str] = mapped_column(sa.String(100))
    kind: Mapped[str] = mapped_column(sa.String(50))
    content: Mapped[dict[str, Any]] = mapped_column(JSONType)
    digest: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime]

    __table_args__ = (sa.Index("ix_runbook_evidence_execution", "execution_id", "id"),)


class RunbookEvent(Base):
    """An event delivered for wait-for-event steps (through the API, CLI or a Prefect event)."""

    __tablename__ = "runbook_events"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    correlation_id: Mapped[str] = mapped_column(sa.String(300))
    tenant: Mapped[str] = mapped_column(sa.String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    actor: Mapped[str] = mapped_column(sa.String(200))
    received_at: Mapped[datetime]

    __table_args__ = (sa.Index("ix_runbook_events_correlation", "correlation_id", "received_at"),)
