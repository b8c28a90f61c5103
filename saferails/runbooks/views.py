"""Value objects callers get back (frozen, detached from the session)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from saferails.clock import as_utc
from saferails.runbooks.tables import RunbookEvidence, RunbookExecution, RunbookLog, RunbookStep, RunbookTemplate


class LegalBasis(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    authority: str = Field(min_length=1)
    classification: str = Field(min_length=1)
    retention_days: int = Field(ge=1)


class ExecutionContext(BaseModel):
    """Who runs the runbook, for whom, and on what legal basis. Audited with the execution."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str = Field(default="default", min_length=1, max_length=100)
    initiated_by: str = Field(min_length=1, max_length=200)
    legal_basis: LegalBasis | None = None
    authorized_users: list[str] = Field(default_factory=list)


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


@dataclass(frozen=True)
class TemplateView:
    runbook_id: str
    version: str
    name: str
    content_hash: str
    registered_by: str
    created_at: datetime
    definition: dict[str, Any]

    @classmethod
    def from_row(cls, row: RunbookTemplate) -> TemplateView:
        return cls(
            row.runbook_id,
            row.runbook_version,
            row.name,
            row.content_hash,
            row.registered_by,
            as_utc(row.created_at),
            dict(row.definition),
        )


@dataclass(frozen=True)
class StepView:
    step_id: str
    step_type: str
    state: str
    attempts: int
    output: Any
    error: str | None
    skip_reason: str | None
    approval_action_id: str | None
    correlation_id: str | None
    wait_deadline: datetime | None
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: RunbookStep) -> StepView:
        return cls(
            row.step_id,
            row.step_type,
            row.state,
            row.attempts,
            row.output,
            row.error,
            row.skip_reason,
            row.approval_action_id,
            row.correlation_id,
            _aware(row.wait_deadline),
            _aware(row.started_at),
            _aware(row.finished_at),
        )


@dataclass(frozen=True)
class ExecutionView:
    id: str
    runbook_id: str
    runbook_version: str
    state: str
    tenant: str
    initiated_by: str
    inputs: dict[str, Any]
    context: dict[str, Any]
    error: str | None
    replay_of: str | None
    deadline: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    steps: tuple[StepView, ...] = field(default=())

    def step(self, step_id: str) -> StepView:
        """The step ``step_id``; raises ``KeyError`` when the runbook has no such step."""
        for s in self.steps:
            if s.step_id == step_id:
                return s
        raise KeyError(step_id)

    @property
    def step_states(self) -> dict[str, str]:
        return {s.step_id: s.state for s in self.steps}

    @classmethod
    def from_row(cls, row: RunbookExecution, steps: list[RunbookStep]) -> ExecutionView:
        return cls(
            id=row.id,
            runbook_id=row.runbook_id,
            runbook_version=row.runbook_version,
            state=row.state,
            tenant=row.tenant,
            initiated_by=row.initiated_by,
            inputs=dict(row.inputs),
            context=dict(row.context),
            error=row.error,
            replay_of=row.replay_of,
            deadline=as_utc(row.deadline),
            created_at=as_utc(row.created_at),
            started_at=_aware(row.started_at),
            finished_at=_aware(row.finished_at),
            steps=tuple(StepView.from_row(s) for s in sorted(steps, key=lambda s: s.position)),
        )


@dataclass(frozen=True)
class LogLine:
    at: datetime
    step_id: str | None
    level: str
    message: str
    data: dict[str, Any]

    @classmethod
    def from_row(cls, row: RunbookLog) -> LogLine:
        return cls(as_utc(row.created_at), row.step_id, row.level, row.message, dict(row.data))


@dataclass(frozen=True)
class Evidence:
    at: datetime
    step_id: str
    kind: str
    content: dict[str, Any]
    digest: str

    @classmethod
    def from_row(cls, row: RunbookEvidence) -> Evidence:
        return cls(as_utc(row.created_at), row.step_id, row.kind, dict(row.content), row.digest)
