"""The action type registry: every action type is a name, a pydantic parameter model and (once registered) a
handler. A type unknown to the registry is refused at the boundary; the policy decides everything else.

The built-in parameter models below cover seed 000's interventions and seed 001's agent actions. Handlers
attach to them in ``saferails.handlers``; user types register with ``register_action_type``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError, model_validator

from saferails.errors import InvalidInput, InvalidParams, UnknownActionType


class Params(BaseModel):
    """Base of every parameter model: unknown keys are refused, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- seed 000: org interventions (target: an employee id) ----------------------------------------------------
class ReassignManagerParams(Params):
    new_manager_id: str = Field(min_length=1)


class TeamRestructureParams(Params):
    new_team_id: str = Field(min_length=1, description="team the target employee moves to")


class RoleChangeParams(Params):
    new_role: str = Field(min_length=1)


class ReduceMeetingsParams(Params):
    max_weekly_meeting_hours: float = Field(gt=0, le=60)


class RedistributeTasksParams(Params):
    to_employee_ids: list[str] = Field(min_length=1)
    max_tasks: int | None = Field(default=None, ge=1)


class ScheduleFocusTimeParams(Params):
    start: datetime
    end: datetime
    title: str = "Focus time"

    @model_validator(mode="after")
    def _ordered(self) -> ScheduleFocusTimeParams:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


# --- seed 001: agent actions -------------------------------------------------------------------------------
class CreateCalendarEventParams(Params):
    title: str = Field(min_length=1, max_length=500)
    start_time: datetime
    end_time: datetime
    description: str = ""
    attendees: list[EmailStr] = Field(default_factory=list)
    location: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> CreateCalendarEventParams:
        if self.end_time <= self.start_time:
            raise ValueError("end_time must be after start_time")
        return self


class SendEmailParams(Params):
    to: list[EmailStr] = Field(min_length=1)
    subject: str = Field(min_length=1, max_length=998)
    body: str
    html: str | None = None
    cc: list[EmailStr] = Field(default_factory=list)


class MoveFileParams(Params):
    source: str = Field(min_length=1)
    destination: str = Field(min_length=1)


class CreateDocumentParams(Params):
    path: str = Field(min_length=1)
    content: str
    overwrite: bool = False


class MakePaymentParams(Params):
    amount: Decimal = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    payee: str = Field(min_length=1)
    memo: str = ""


class MakePurchaseParams(Params):
    item: str = Field(min_length=1)
    quantity: int = Field(ge=1)
    max_total: Decimal = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    vendor: str = Field(min_length=1)


@dataclass(frozen=True)
class ActionTypeSpec:
    name: str
    params_model: type[Params]
    description: str
    target_kind: str  # what ``target`` names: employee, mailbox, path, account, ...
    handler: Any = None  # an ActionHandler once one is registered (saferails.handlers)


_REGISTRY: dict[str, ActionTypeSpec] = {}


def register_action_type(spec: ActionTypeSpec, *, replace: bool = False) -> ActionTypeSpec:
    if not spec.name or not spec.name.replace("_", "").isalnum():
        raise InvalidInput(f"action type names are snake_case identifiers, got {spec.name!r}")
    if spec.name in _REGISTRY and not replace and _REGISTRY[spec.name] != spec:
        raise InvalidInput(f"action type {spec.name!r} is already registered", action_type=spec.name)
    _REGISTRY[spec.name] = spec
    return spec


def action_type(name: str) -> ActionTypeSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownActionType(name, list(_REGISTRY)) from None


def registered_action_types() -> Mapping[str, ActionTypeSpec]:
    return dict(_REGISTRY)


def validate_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``params`` for action type ``name`` and return their canonical JSON-ready form.

    Raises ``UnknownActionType`` or ``InvalidParams`` (listing every problem with its field path).
    """
    spec = action_type(name)
    try:
        model = spec.params_model.model_validate(dict(params))
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()]
        raise InvalidParams(name, problems) from None
    return model.model_dump(mode="json")


_BUILTINS = [
    ActionTypeSpec("reassign_manager", ReassignManagerParams, "Move an employee under a new manager", "employee"),
    ActionTypeSpec("team_restructure", TeamRestructureParams, "Move an employee to another team", "employee"),
    ActionTypeSpec("role_change", RoleChangeParams, "Change an employee's role", "employee"),
    ActionTypeSpec("reduce_meetings", ReduceMeetingsParams, "Cap an employee's weekly meeting load", "employee"),
    ActionTypeSpec("redistribute_tasks", RedistributeTasksParams, "Move open tasks to colleagues", "employee"),
    ActionTypeSpec("schedule_focus_time", ScheduleFocusTimeParams, "Block focus time in a calendar", "employee"),
    ActionTypeSpec("create_calendar_event", CreateCalendarEventParams, "Create a calendar event", "calendar"),
    ActionTypeSpec("send_email", SendEmailParams, "Send an email over SMTP", "mailbox"),
    ActionTypeSpec("move_file", MoveFileParams, "Move or rename a file inside the file root", "path"),
    ActionTypeSpec("create_document", CreateDocumentParams, "Create a document inside the file root", "path"),
    ActionTypeSpec("make_payment", MakePaymentParams, "Pay a payee (blocked by the default policy)", "account"),
    ActionTypeSpec("make_purchase", MakePurchaseParams, "Buy something (needs a KYC-verified proposer)", "account"),
]
for _spec in _BUILTINS:
    register_action_type(_spec)
