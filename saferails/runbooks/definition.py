"""Runbook definitions: the pydantic models a runbook YAML document is validated against.

These models check the shape of each field (types, ranges, unknown keys refused). The checks that need the
whole document (duplicate ids, the dependency graph, branch targets, template references) live in
``saferails.runbooks.validation``; ``load_runbook`` runs both, so a loaded definition is always sound.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from saferails.errors import InvalidInput

STEP_TYPES = ("call-service", "wait-for-event", "human-approval", "conditional", "loop", "action")
StepType = Literal["call-service", "wait-for-event", "human-approval", "conditional", "loop", "action"]
MAX_LOOP_ITERATIONS = 1000
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_\-]*$"


class RunbookInvalid(InvalidInput):
    """A runbook document was refused at validation; the message names the offending step (or field)."""

    code = "RUNBOOK_INVALID"


def parse_duration(text: str) -> timedelta:
    """``"500ms"``, ``"1s"``, ``"30m"``, ``"1h"``, ``"2d"`` -> timedelta. Raises ``ValueError`` otherwise."""
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError(f"expected a duration like 500ms, 1s, 30m, 1h or 2d, got {text!r}")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[str, AfterValidator(_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(_Model):
    """Exponential backoff: attempt n (n >= 2) waits ``min(initial_delay * multiplier**(n-2), max_delay)``."""

    max_attempts: int = Field(default=3, ge=1, le=20)
    initial_delay: Duration = "1s"
    max_delay: Duration = "10s"
    multiplier: float = Field(default=2.0, ge=1.0, le=10.0)

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 = the first retry)."""
        initial = parse_duration(self.initial_delay).total_seconds()
        cap = parse_duration(self.max_delay).total_seconds()
        return float(min(initial * self.multiplier ** max(attempt - 2, 0), cap))


class InputSpec(_Model):
    type: Literal["string", "number", "integer", "boolean", "object", "array"] = "string"
    required: bool = True
    default: Any = None
    description: str = ""


class CallServiceConfig(_Model):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str = Field(min_length=1)
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)
    idempotency_key: str | None = None
    timeout: Duration = "30s"


class WaitForEventConfig(_Model):
    correlation_id: str = Field(min_length=1)
    timeout: Duration
    match: dict[str, Any] | None = Field(default=None, description="a saferails condition over `event.payload`")


class HumanApprovalConfig(_Model):
    approvers: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    min_approvals: int = Field(default=1, ge=1)
    timeout: Duration
    timeout_action: Literal["fail", "approve", "reject"] = "fail"
    prompt: str = Field(min_length=1)
    require_codes: bool = True


class ConditionalConfig(_Model):
    condition: dict[str, Any]
    true_branch: str | None = None
    false_branch: str | None = None


class LoopConfig(_Model):
    iterate_over: str | None = Field(default=None, description="a template resolving to a list")
    continue_while: dict[str, Any] | None = None
    max_iterations: int | None = Field(default=None, ge=1)
    step: StepDefinition


class ActionConfig(_Model):
    action_type: str = Field(min_length=1)
    target: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""


StepConfig = (
    CallServiceConfig | WaitForEventConfig | HumanApprovalConfig | ConditionalConfig | LoopConfig | ActionConfig
)
CONFIG_MODELS: dict[str, type[_Model]] = {
    "call-service": CallServiceConfig,
    "wait-for-event": WaitForEventConfig,
    "human-approval": HumanApprovalConfig,
    "conditional": ConditionalConfig,
    "loop": LoopConfig,
    "action": ActionConfig,
}


class StepDefinition(_Model):
    """One step. ``config`` is validated by the model for ``type`` (so ``type`` must come first)."""

    id: str = Field(min_length=1, max_length=100, pattern=_ID_RE)
    name: str = ""
    type: StepType
    config: StepConfig
    depends_on: list[str] = Field(default_factory=list)
    retry_policy: RetryPolicy | None = None

    @field_validator("config", mode="before")
    @classmethod
    def _config_for_type(cls, value: Any, info: ValidationInfo) -> Any:
        step_type = info.data.get("type")
        if step_type is None:
            raise ValueError("config cannot be checked: the step type is missing or unknown")
        model = CONFIG_MODELS[step_type]
        if isinstance(value, model):
            return value
        return model.model_validate(value)

    @property
    def title(self) -> str:
        return self.name or self.id


class RunbookDefinition(_Model):
    """A runbook template: identified by ``(id, version)``; executions always run one exact version."""

    id: str = Field(min_length=1, max_length=100, pattern=_ID_RE)
    name: str = Field(min_length=1, max_length=300)
    version: str = Field(min_length=1, max_length=50)
    description: str = ""
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    steps: list[StepDefinition] = Field(min_length=1)
    default_retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    global_timeout: Duration = "1h"
    max_concurrency: int = Field(default=5, ge=1, le=50)

    def step(self, step_id: str) -> StepDefinition:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def retry_for(self, step: StepDefinition) -> RetryPolicy:
        return step.retry_policy or self.default_retry_policy


LoopConfig.model_rebuild()
StepDefinition.model_rebuild()
