"""Automation triggers: stored rules evaluated by the outbox dispatcher.

A trigger names an outbox ``event_type``, an optional ``predicate`` in the shared condition language (evaluated
over ``{"event_type", "aggregate_type", "aggregate_id", "payload", "actor"}``; never eval) and a list of actions:

* ``create_task``: ``{"type": "create_task", "title": ..., "task_type": ..., "priority": ..., ...}``
* ``transition``: ``{"type": "transition", "entity_type": "task" | "action_plan", "entity_id": ..., "target": ...}``
* ``emit_alert``: ``{"type": "emit_alert", "alert_type": ..., "message": ..., "severity": ...}``
* ``call_webhook``: ``{"type": "call_webhook", "url": "http(s)://...", "max_attempts": 3}``

String parameters may contain ``${path}`` placeholders resolved in the same context
(``"Assess: ${payload.title}"``, ``"${aggregate_id}"``); an unresolved placeholder fails the action, so a
typo is dead-lettered rather than silently creating a task titled "None".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from saferails.conditions import Condition, parse_condition, resolve_path
from saferails.errors import ExecutionError, InvalidInput
from saferails.workflow.machines import PRIORITIES
from saferails.workflow.ops import parse
from saferails.workflow.tables import AutomationTrigger

_PLACEHOLDER = re.compile(r"\$\{([^}\s]+)\}")


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateTaskAction(_Action):
    type: Literal["create_task"]
    title: str = Field(min_length=1, max_length=300)
    task_type: str = Field(default="general", min_length=1)
    priority: str = "medium"
    description: str = ""
    assigned_to: str | None = None
    # Put the new task in the triggering task's action plan (payload.action_plan_id), when it has one.
    inherit_action_plan: bool = True

    @field_validator("priority")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in PRIORITIES and not _PLACEHOLDER.search(value):
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}")
        return value


class TransitionAction(_Action):
    type: Literal["transition"]
    entity_type: Literal["task", "action_plan"] = "task"
    entity_id: str = "${aggregate_id}"
    target: str = Field(min_length=1)


class EmitAlertAction(_Action):
    type: Literal["emit_alert"]
    alert_type: str = Field(min_length=1, max_length=100)
    message: str = Field(min_length=1)
    severity: Literal["info", "warning", "critical"] = "info"


class CallWebhookAction(_Action):
    type: Literal["call_webhook"]
    url: str = Field(pattern=r"^https?://")
    max_attempts: int = Field(default=3, ge=1, le=10)


TriggerAction = Annotated[
    CreateTaskAction | TransitionAction | EmitAlertAction | CallWebhookAction, Field(discriminator="type")
]
_ACTIONS: TypeAdapter[list[TriggerAction]] = TypeAdapter(list[TriggerAction])


class TriggerInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,99}$")
    event_type: str = Field(min_length=1, max_length=100)
    predicate: dict[str, Any] | None = None
    actions: list[dict[str, Any]] = Field(min_length=1, max_length=20)
    description: str = ""
    active: bool = True


def validate_trigger(data: dict[str, Any]) -> TriggerInput:
    """Check a trigger document: its fields, its predicate (``CONDITION_INVALID``) and every action."""
    spec = parse(TriggerInput, data, "trigger")
    if spec.predicate is not None:
        parse_condition(spec.predicate, root="predicate")
    parse_actions(spec.actions)
    return spec


def parse_actions(data: list[dict[str, Any]]) -> list[TriggerAction]:
    try:
        return _ACTIONS.validate_python(data)
    except ValidationError as exc:
        problems = [f"actions.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise InvalidInput(f"invalid trigger actions: {'; '.join(problems)}", problems=problems) from None


class CompiledTrigger:
    """A stored trigger parsed once per dispatch batch."""

    def __init__(self, row: AutomationTrigger) -> None:
        self.id = row.id
        self.event_type = row.event_type
        self.predicate: Condition | None = None if row.predicate is None else parse_condition(row.predicate)
        self.actions = parse_actions(list(row.actions))

    def matches(self, context: Mapping[str, Any]) -> bool:
        return self.predicate is None or self.predicate.evaluate(context)


def render(template: str, context: Mapping[str, Any]) -> str:
    """Replace ``${path}`` placeholders; raise ``ExecutionError`` for a path that does not resolve."""

    def value(match: re.Match[str]) -> str:
        found, resolved = resolve_path(context, match.group(1))
        if not found or resolved is None:
            raise ExecutionError(f"placeholder ${{{match.group(1)}}} does not resolve in the event",
                                 placeholder=match.group(1))
        return str(resolved)

    return _PLACEHOLDER.sub(value, template)


BUILTIN_TRIGGERS: tuple[dict[str, Any], ...] = (
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
"""Seed 004's built-in triggers; migration 0004 inserts the same documents (kept literal there)."""
