"""Request and response bodies of the HTTP API (pydantic; they are also the OpenAPI schema).

No request body names who is acting: the proposer, approver or actor is always the authenticated principal.
Unknown fields are refused (422), so a client that sends ``proposer`` learns it is ignored instead of trusting it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("needs a timezone (e.g. 2026-11-22T10:00:00Z)")
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProposalIn(_Body):
    """A proposal. ``tenant`` defaults to the caller's only tenant (or ``default``)."""

    action_type: str = Field(min_length=1, max_length=100, examples=["reassign_manager"])
    target: str = Field(min_length=1, max_length=500, examples=["emp_123"])
    params: dict[str, Any] = Field(default_factory=dict, examples=[{"new_manager_id": "mgr_456"}])
    reason: str = Field(default="", max_length=10_000, examples=["Improve team dynamics"])
    tenant: str | None = Field(default=None, min_length=1, max_length=100)
    priority: int = Field(default=5, ge=1, le=10, description="1 = most urgent, 10 = least")
    scheduled_for: datetime | None = None

    _tz = field_validator("scheduled_for")(_aware)


class DecisionIn(_Body):
    """An approval or rejection by the authenticated principal. ``code`` is the approver's one-time code from the
    approval message; ``action_hash`` (optional) binds the decision to the version of the action it was made on."""

    code: str | None = Field(default=None, max_length=100)
    reason: str = Field(default="", max_length=10_000)
    action_hash: str | None = Field(default=None, min_length=64, max_length=64)


class ReasonIn(_Body):
    reason: str = Field(default="", max_length=10_000)


class ActionOut(BaseModel):
    """An action as stored (see ``saferails.actions.models.ActionView``)."""

    model_config = ConfigDict(extra="allow")

    id: str
    action_type: str
    target: str
    params: dict[str, Any]
    proposer: str
    reason: str
    tenant: str
    priority: int
    state: str
    impact: str
    action_hash: str
    decision: dict[str, Any]
    min_approvals: int
    approval_deadline: str | None
    approvals: list[dict[str, Any]]
    created_at: str
    updated_at: str


class ActionPage(BaseModel):
    items: list[ActionOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


class AuditPageOut(BaseModel):
    records: list[dict[str, Any]]
    next_cursor: int | None


class DecisionOut(BaseModel):
    """What the policy would decide (``POST /policy/check``), with the reasons."""

    model_config = ConfigDict(extra="allow")

    outcome: str
    impact: str
    code: str | None
    reasons: list[dict[str, Any]]


class Health(BaseModel):
    status: str


# --- seed 001 (``/api/actions``) and seed 000 (``/api/interventions``) shapes ---------------------------------


class SeedActionIn(_Body):
    """Seed 001's body: ``user_id`` is the user the action is for (its target), ``payload`` its parameters."""

    user_id: str = Field(min_length=1, max_length=500)
    action_type: str = Field(min_length=1, max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(default=5, ge=1, le=10)
    scheduled_for: datetime | None = None
    reason: str = Field(default="", max_length=10_000)
    tenant: str | None = Field(default=None, min_length=1, max_length=100)

    _tz = field_validator("scheduled_for")(_aware)


class SeedActionCreated(BaseModel):
    success: bool
    action_id: str
    status: str
    requires_approval: bool
    message: str


class SeedApproveIn(_Body):
    """Seed 001's approve body. ``approved_by``, if sent, must be the authenticated principal."""

    approved_by: str | None = None
    code: str | None = Field(default=None, max_length=100)
    reason: str = Field(default="", max_length=10_000)


class SeedRejectIn(_Body):
    rejected_by: str | None = None
    code: str | None = Field(default=None, max_length=100)
    reason: str = Field(default="", max_length=10_000)


class SeedDecisionOut(BaseModel):
    success: bool
    action_id: str
    status: str
    message: str


class InterventionIn(_Body):
    """Seed 000's body."""

    intervention_type: str = Field(min_length=1, max_length=100)
    target_employee_id: str = Field(min_length=1, max_length=500)
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str = Field(default="", max_length=10_000)


class InterventionOut(BaseModel):
    intervention_id: str
    status: str
    impact_level: str
    requires_approval: bool
