"""Read-only views returned by the workflow service (frozen, detached from any session)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from saferails.clock import as_utc
from saferails.workflow.tables import ActionPlan, AutomationTrigger, SlaConfig, SlaRecord, Task


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


@dataclass(frozen=True)
class TaskView:
    id: str
    title: str
    description: str
    task_type: str
    priority: str
    state: str
    assigned_to: str | None
    created_by: str
    due_date: datetime | None
    action_plan_id: str | None
    metadata: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: Task) -> TaskView:
        return cls(r.id, r.title, r.description, r.task_type, r.priority, r.state, r.assigned_to, r.created_by,
                   _utc(r.due_date), r.action_plan_id, dict(r.meta or {}), r.version, as_utc(r.created_at),
                   as_utc(r.updated_at))


@dataclass(frozen=True)
class ActionPlanView:
    id: str
    title: str
    description: str
    goals: tuple[str, ...]
    state: str
    created_by: str
    metadata: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: ActionPlan) -> ActionPlanView:
        return cls(r.id, r.title, r.description, tuple(r.goals or ()), r.state, r.created_by, dict(r.meta or {}),
                   r.version, as_utc(r.created_at), as_utc(r.updated_at))


@dataclass(frozen=True)
class SlaConfigView:
    id: str
    service_area: str
    task_type: str
    target_minutes: int
    active: bool
    created_at: datetime

    @classmethod
    def of(cls, r: SlaConfig) -> SlaConfigView:
        return cls(r.id, r.service_area, r.task_type, r.target_minutes, r.active, as_utc(r.created_at))


@dataclass(frozen=True)
class SlaRecordView:
    id: str
    task_id: str
    sla_config_id: str
    target_minutes: int
    started_at: datetime
    due_at: datetime
    completed_at: datetime | None
    end_state: str | None
    actual_minutes: float | None
    breached: bool
    breached_at: datetime | None

    @classmethod
    def of(cls, r: SlaRecord) -> SlaRecordView:
        return cls(r.id, r.task_id, r.sla_config_id, r.target_minutes, as_utc(r.started_at), as_utc(r.due_at),
                   _utc(r.completed_at), r.end_state, r.actual_minutes, r.breached, _utc(r.breached_at))


@dataclass(frozen=True)
class TriggerView:
    id: str
    event_type: str
    predicate: dict[str, Any] | None
    actions: tuple[dict[str, Any], ...]
    description: str
    active: bool

    @classmethod
    def of(cls, r: AutomationTrigger) -> TriggerView:
        return cls(r.id, r.event_type, r.predicate, tuple(r.actions), r.description, r.active)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "event_type": self.event_type, "predicate": self.predicate,
                "actions": list(self.actions), "description": self.description, "active": self.active}
