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
from email.header import decode_header
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, ValidationError, model_validator

from saferails.boundary import datetime_problem, text_problem
from saferails.errors import InvalidInput, InvalidParams, UnknownActionType


def _single_line(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _relative_path(value: str) -> str:
    """A path inside the file root, checked without the root: relative, no ``..``, no NUL or control
    characters, no backslashes, at most 1024 characters with components of at most 255 bytes. (Symlinks that
    lead out of the root are refused by the handler once the root is known.)"""
    _single_line(value)
    if "\\" in value:
        raise ValueError("backslashes are not allowed in paths")
    pure = PurePosixPath(value)
    if pure.is_absolute() or ".." in pure.parts or value.startswith("~"):
        raise ValueError("must be a relative path inside the file root, without '..'")
    if not pure.parts or pure.parts == (".",):
        raise ValueError("must name a file")
    if len(value) > 1024 or any(len(part.encode("utf-8")) > 255 for part in pure.parts):
        raise ValueError("path too long (1024 characters, 255 bytes per component)")
    return value


def _header_safe(value: str) -> str:
    """Header text that cannot inject header lines: no CR/LF/NUL, neither raw nor inside RFC 2047 encoded
    words (Python 3.11.7's email package folds a decoded CR/LF into a real header line, CVE-2024-6923)."""
    _single_line(value)
    if "=?" in value:
        try:
            decoded = "".join(
                part.decode(charset or "ascii", errors="strict") if isinstance(part, bytes) else part
                for part, charset in decode_header(value)
            )
        except Exception as exc:  # noqa: BLE001 - an undecodable encoded word is refused, whatever the reason
            raise ValueError(f"undecodable encoded word: {type(exc).__name__}") from None
        if any(c in decoded for c in "\r\n\x00"):
            raise ValueError("encoded words must not hide CR, LF or NUL")
    return value


def _bounded_time(value: datetime) -> datetime:
    problem = datetime_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Line = Annotated[str, AfterValidator(_single_line)]
RelativePath = Annotated[str, AfterValidator(_relative_path)]
HeaderText = Annotated[str, AfterValidator(_header_safe)]
Moment = Annotated[datetime, AfterValidator(_bounded_time)]
Address = Annotated[EmailStr, AfterValidator(_header_safe)]


class Params(BaseModel):
    """Base of every parameter model: unknown keys are refused, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- seed 000: org interventions (target: an employee id) ----------------------------------------------------
class ReassignManagerParams(Params):
    new_manager_id: Line = Field(min_length=1, max_length=200)


class TeamRestructureParams(Params):
    new_team_id: Line = Field(min_length=1, max_length=200, description="team the target employee moves to")


class RoleChangeParams(Params):
    new_role: Line = Field(min_length=1, max_length=200)


class ReduceMeetingsParams(Params):
    max_weekly_meeting_hours: float = Field(gt=0, le=60)


class RedistributeTasksParams(Params):
    to_employee_ids: list[Line] = Field(min_length=1, max_length=100)
    max_tasks: int | None = Field(default=None, ge=1, le=100_000)


class ScheduleFocusTimeParams(Params):
    start: Moment
    end: Moment
    title: Line = Field(default="Focus time", max_length=500)

    @model_validator(mode="after")
    def _ordered(self) -> ScheduleFocusTimeParams:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


# --- seed 001: agent actions -------------------------------------------------------------------------------
class CreateCalendarEventParams(Params):
    title: Line = Field(min_length=1, max_length=500)
    start_time: Moment
    end_time: Moment
    description: str = Field(default="", max_length=20_000)
    attendees: list[Address] = Field(default_factory=list, max_length=500)
    location: Line = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _ordered(self) -> CreateCalendarEventParams:
        if self.end_time <= self.start_time:
            raise ValueError("end_time must be after start_time")
        return self


class SendEmailParams(Params):
    to: list[Address] = Field(min_length=1, max_length=100)
    subject: HeaderText = Field(min_length=1, max_length=998)
    body: str = Field(max_length=60_000)
    html: str | None = Field(default=None, max_length=60_000)
    cc: list[Address] = Field(default_factory=list, max_length=100)


class MoveFileParams(Params):
    source: RelativePath = Field(min_length=1)
    destination: RelativePath = Field(min_length=1)


class CreateDocumentParams(Params):
    path: RelativePath = Field(min_length=1)
    content: str = Field(max_length=60_000)
    overwrite: bool = False


class MakePaymentParams(Params):
    amount: Decimal = Field(gt=0, le=Decimal("1e12"))
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    payee: Line = Field(min_length=1, max_length=200)
    memo: Line = Field(default="", max_length=1000)


class MakePurchaseParams(Params):
    item: Line = Field(min_length=1, max_length=500)
    quantity: int = Field(ge=1, le=1_000_000)
    max_total: Decimal = Field(gt=0, le=Decimal("1e12"))
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    vendor: Line = Field(min_length=1, max_length=200)


# --- seed 003: agent fleet controls (target: an agent id, a department, or a workspace for the fleet) ---------
Scope = Literal["agent", "department", "fleet"]


class PauseAgentParams(Params):
    """Pause the agents ``scope`` names (``target``: the agent id, the department, or the workspace) for
    ``duration_minutes`` (1 minute .. 30 days); their new proposals are refused until then."""

    scope: Scope = "agent"
    duration_minutes: int = Field(default=30, ge=1, le=43_200)
    reason: Line = Field(min_length=1, max_length=1000)


class ResumeAgentParams(Params):
    """Resume the paused agents ``scope`` names before their pause runs out."""

    scope: Scope = "agent"
    reason: Line = Field(default="", max_length=1000)


class SetBudgetParams(Params):
    """Cap what the target agent may spend (purchases, payments) per ``period``."""

    amount: Decimal = Field(ge=0, le=Decimal("1e12"), max_digits=16, decimal_places=2)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    period: Literal["day", "week", "month"] = "month"


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


def action_scope(name: str, params: Mapping[str, Any]) -> str | None:
    """What an action acts on, for the audit record (seed 003): its ``scope`` parameter (``agent``,
    ``department``, ``fleet``); ``agent`` for an agent action without one (``set_budget``); None otherwise."""
    scope = params.get("scope")
    if isinstance(scope, str):
        return scope[:20]
    spec = _REGISTRY.get(name)
    return "agent" if spec is not None and spec.target_kind == "agent" else None


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
    ActionTypeSpec("pause_agent", PauseAgentParams, "Pause an agent, a department or the fleet", "agent"),
    ActionTypeSpec("resume_agent", ResumeAgentParams, "Resume paused agents", "agent"),
    ActionTypeSpec("set_budget", SetBudgetParams, "Cap an agent's spending per period", "agent"),
]
for _spec in _BUILTINS:
    register_action_type(_spec)
