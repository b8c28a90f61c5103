"""Value objects callers get back (frozen, detached from the session) and the pydantic boundary model for
proposals. The ORM rows in ``store.tables`` never leave the service."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    field_validator,
    model_validator,
)

from saferails.audit.chain import canonical_json
from saferails.boundary import datetime_problem, identifier_problem, json_problems, text_problem
from saferails.clock import as_utc
from saferails.errors import InvalidInput
from saferails.store import tables
from saferails.transitions import Draft


class Proposal(BaseModel):
    """What a proposer submits (API, CLI, flow, runbook step). Params are validated against the action type.

    Bounds (the proposer is not trusted): ``action_type`` is a registry name (letters, digits, underscores);
    ``proposer``, ``tenant`` and ``idempotency_key`` are short identifiers (letters, digits,
    ``. _ : @ / + = # ~ -``); ``target`` and ``reason`` are text without NUL or control characters (``reason``
    may span lines); ``params`` is a JSON object of at most 64 KiB nested at most 32 deep, with strings free of
    NUL and lone surrogates, 64-bit integers and finite floats below 1e15; ``scheduled_for`` is timezone-aware
    and between 1970 and 2200. Building a Proposal (constructor or ``model_validate``) that breaks any of them
    raises ``InvalidInput`` (code ``INVALID_INPUT``) listing every problem.
    """

    model_config = ConfigDict(extra="forbid")

    action_type: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_]+$")
    target: str = Field(min_length=1, max_length=500)
    params: dict[str, Any] = Field(default_factory=dict)
    proposer: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="", max_length=10_000)
    tenant: str = Field(default="default", min_length=1, max_length=100)
    priority: int = Field(default=5, ge=1, le=10, description="1 = most urgent, 10 = least (seed 001 uses 5)")
    scheduled_for: datetime | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="wrap")
    @classmethod
    def _typed_refusal(cls, data: Any, handler: ModelWrapValidatorHandler[Proposal]) -> Proposal:
        # However a Proposal is built (constructor, model_validate from a flow parameter), a refusal is the
        # saferails InvalidInput, not pydantic's ValidationError: pydantic lets non-ValueErrors through.
        try:
            return handler(data)
        except ValidationError as exc:
            problems = [f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()]
            raise InvalidInput(f"invalid proposal: {'; '.join(problems)}"[:2000], problems=problems) from None

    @field_validator("params", mode="before")
    @classmethod
    def _bounded_params(cls, value: Any) -> Any:
        if isinstance(value, dict):
            problems = json_problems(value)
            if problems:
                raise ValueError("; ".join(problems))
        return value

    @field_validator("proposer", "tenant", "idempotency_key")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None:
            problem = identifier_problem(value)
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("target")
    @classmethod
    def _target_text(cls, value: str) -> str:
        problem = text_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("reason")
    @classmethod
    def _reason_text(cls, value: str) -> str:
        problem = text_problem(value, multiline=True)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("scheduled_for")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None:
            problem = datetime_problem(value)
            if problem is not None:
                raise ValueError(f"scheduled_for {problem}")
        return value


def action_hash(action_type: str, target: str, params: dict[str, Any]) -> str:
    """SHA-256 of the exact action (type, target, canonical params). Approvals are bound to it."""
    body = canonical_json({"action_type": action_type, "target": target, "params": params})
    return hashlib.sha256(body.encode()).hexdigest()


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


@dataclass(frozen=True)
class ApprovalView:
    approver: str
    decision: str
    reason: str
    action_hash: str
    channel: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: tables.Approval) -> ApprovalView:
        return cls(row.approver, row.decision, row.reason, row.action_hash, row.channel, as_utc(row.created_at))


@dataclass(frozen=True)
class ActionView:
    id: str
    action_type: str
    target: str
    params: dict[str, Any]
    proposer: str
    reason: str
    tenant: str
    priority: int
    scheduled_for: datetime | None
    idempotency_key: str
    action_hash: str
    impact: str
    state: str
    decision: dict[str, Any]
    min_approvals: int
    approval_deadline: datetime | None
    timeout_action: str | None
    approvals: tuple[ApprovalView, ...]
    pre_state: dict[str, Any] | None
    result: dict[str, Any] | None
    rollback_data: dict[str, Any] | None
    error: str | None
    flow_run_id: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    decided_at: datetime | None
    executed_at: datetime | None
    finished_at: datetime | None
    rolled_back_at: datetime | None

    @property
    def valid_approvers(self) -> tuple[str, ...]:
        """Approvers whose approval counts: bound to the current action hash."""
        return tuple(
            a.approver for a in self.approvals if a.decision == "approve" and a.action_hash == self.action_hash
        )

    @classmethod
    def from_row(cls, row: tables.Action | Draft, approvals: list[tables.Approval]) -> ActionView:
        return cls(
            id=row.id,
            action_type=row.action_type,
            target=row.target,
            params=dict(row.params),
            proposer=row.proposer,
            reason=row.reason,
            tenant=row.tenant,
            priority=row.priority,
            scheduled_for=_aware(row.scheduled_for),
            idempotency_key=row.idempotency_key,
            action_hash=row.action_hash,
            impact=row.impact,
            state=row.state,
            decision=dict(row.decision),
            min_approvals=row.min_approvals,
            approval_deadline=_aware(row.approval_deadline),
            timeout_action=row.timeout_action,
            approvals=tuple(ApprovalView.from_row(a) for a in sorted(approvals, key=lambda a: a.created_at)),
            pre_state=row.pre_state,
            result=row.result,
            rollback_data=row.rollback_data,
            error=row.error,
            flow_run_id=row.flow_run_id,
            version=row.version,
            created_at=as_utc(row.created_at),
            updated_at=as_utc(row.updated_at),
            decided_at=_aware(row.decided_at),
            executed_at=_aware(row.executed_at),
            finished_at=_aware(row.finished_at),
            rolled_back_at=_aware(row.rolled_back_at),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``--json`` output and artifacts."""
        import json

        return dict(json.loads(canonical_json(self.__dict__ | {"approvals": [a.__dict__ for a in self.approvals]})))
