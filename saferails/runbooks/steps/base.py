"""What a step is given (``StepRun``) and what it gives back (``StepResult``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from saferails.actions.service import ActionService
from saferails.clock import Clock
from saferails.net.egress import EgressPolicy
from saferails.runbooks.definition import RetryPolicy, RunbookDefinition, StepDefinition

Sleeper = Callable[[float], None]
# Returns an object with ``execute(action_id, actor) -> ActionView``, or None when execution is unavailable.
ExecutorFactory = Callable[[], Any]


@dataclass(frozen=True)
class Services:
    clock: Clock
    actions: ActionService
    http: httpx.Client
    sleeper: Sleeper
    executor_factory: ExecutorFactory
    # Where call-service steps may send requests (the default refuses private, loopback and link-local hosts).
    egress: EgressPolicy = field(default_factory=EgressPolicy)


@dataclass(frozen=True)
class StepRun:
    """One step about to start (or be polled) in one execution. ``context`` is the template context:
    inputs, completed steps' outputs, execution facts, ``step.id``."""

    definition: RunbookDefinition
    step: StepDefinition
    execution_id: str
    tenant: str
    initiated_by: str
    execution_context: Mapping[str, Any]
    context: Mapping[str, Any]
    attempt: int
    services: Services

    @property
    def retry(self) -> RetryPolicy:
        return self.definition.retry_for(self.step)

    def now(self) -> datetime:
        return self.services.clock.now()


@dataclass
class StepResult:
    """The outcome of starting or polling a step. ``state`` is the step's next state."""

    state: str
    output: Any = None
    error: str | None = None
    logs: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    evidence: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    approval_action_id: str | None = None
    correlation_id: str | None = None
    wait_deadline: datetime | None = None
    skip: dict[str, str] = field(default_factory=dict)  # branch not taken: step id -> reason
    rejected: bool = False

    def log(self, message: str, level: str = "info", **data: Any) -> StepResult:
        self.logs.append((level, message, data))
        return self
