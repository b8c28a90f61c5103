"""Session-level workflow operations shared by the service (user calls) and the dispatcher (trigger actions).

They take the caller's session and never commit. Permission checks are the caller's job; everything else
(validation, SLA start/stop, the one ``transitions`` call) happens here, so a task created by a trigger is
indistinguishable from one created by a person except for its actor.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.orm import Session

from saferails import transitions
from saferails.errors import InvalidInput, NotFound
from saferails.workflow import sla
from saferails.workflow.machines import ACTION_PLAN, CANCELLED, COMPLETED, PRIORITIES, TASK
from saferails.workflow.tables import ActionPlan, Task

M = TypeVar("M", bound=BaseModel)

# Audit event per target state (the outbox event type is ``TaskStateChanged`` / ``ActionPlanStateChanged``).
TARGET_EVENTS = {
    (TASK, "in_progress"): "task_started",
    (TASK, "blocked"): "task_blocked",
    (TASK, COMPLETED): "task_completed",
    (TASK, CANCELLED): "task_cancelled",
    (ACTION_PLAN, "active"): "action_plan_activated",
    (ACTION_PLAN, "archived"): "action_plan_archived",
}


class TaskInput(BaseModel):
    """A new task as a caller describes it (seed 004's fields)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=20_000)
    task_type: str = Field(default="general", min_length=1, max_length=100)
    priority: str = "medium"
    assigned_to: str | None = Field(default=None, max_length=200)
    due_date: datetime | None = None
    action_plan_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("priority")
    @classmethod
    def _known_priority(cls, value: str) -> str:
        if value not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}")
        return value

    @field_validator("due_date")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("due_date must be timezone-aware")
        return value


class PlanInput(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=20_000)
    goals: list[str] = Field(default_factory=list, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)


def parse(model: type[M], data: dict[str, Any], what: str) -> M:
    """Validate ``data`` into ``model`` or raise ``InvalidInput`` listing every problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or what}: {e['msg']}" for e in exc.errors()]
        raise InvalidInput(f"invalid {what}: {'; '.join(problems)}", problems=problems) from None


def create_task(
    session: Session, spec: TaskInput, *, actor: str, now: datetime, correlation_id: str | None = None
) -> Task:
    if spec.action_plan_id is not None and session.get(ActionPlan, spec.action_plan_id) is None:
        raise NotFound(ACTION_PLAN, spec.action_plan_id)
    row = Task(
        id=str(uuid.uuid4()),
        title=spec.title,
        description=spec.description,
        task_type=spec.task_type,
        priority=spec.priority,
        assigned_to=spec.assigned_to,
        created_by=actor,
        due_date=spec.due_date,
        action_plan_id=spec.action_plan_id,
        meta=spec.metadata,
    )
    transitions.create(session, TASK, row, actor=actor, event="task_created", now=now,
                       details={"task_type": spec.task_type, "priority": spec.priority},
                       correlation_id=correlation_id)
    sla.start(session, row, now)
    return row


def create_plan(session: Session, spec: PlanInput, *, actor: str, now: datetime) -> ActionPlan:
    row = ActionPlan(
        id=str(uuid.uuid4()),
        title=spec.title,
        description=spec.description,
        goals=list(spec.goals),
        created_by=actor,
        meta=spec.metadata,
    )
    transitions.create(session, ACTION_PLAN, row, actor=actor, event="action_plan_created", now=now)
    return row


def change_state(
    session: Session,
    entity_type: str,
    entity_id: str,
    target: str,
    *,
    actor: str,
    now: datetime,
    details: dict[str, Any] | None = None,
    correlation_id: str | None = None,
) -> Any:
    """Move a task or action plan to ``target`` through ``saferails.transitions``; closes the SLA record of a
    task that completes or is cancelled. Raises ``InvalidInput`` for another entity type."""
    if entity_type not in (TASK, ACTION_PLAN):
        raise InvalidInput(f"workflow entities are {TASK!r} and {ACTION_PLAN!r}, not {entity_type!r}")
    event = TARGET_EVENTS.get((entity_type, target), f"{entity_type}_{target}")
    row = transitions.transition(session, entity_type, entity_id, target, actor=actor, event=event, now=now,
                                 details=details, correlation_id=correlation_id)
    if entity_type == TASK and target in (COMPLETED, CANCELLED):
        sla.stop(session, entity_id, target, now)
    return row
