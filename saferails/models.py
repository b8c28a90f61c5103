"""The wire models of the HTTP API shared by the server (``saferails.http``) and the Python client
(``saferails.client``): request bodies, the action as served, pages, the policy dry-run and the events of
``GET /api/v1/actions/{id}/events``.

Pydantic only: importing this module never imports FastAPI, Starlette or the store, so an agent that only talks
HTTP installs nothing else. No request body names who is acting: the proposer, approver or actor is always the
authenticated principal. Unknown request fields are refused (422); unknown response fields are kept
(``extra="allow"``), so an older client reads a newer server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The action's final states (``saferails.actions.lifecycle.FINAL_STATES``, restated here so a client needs no
# store code; a test keeps them equal): nothing happens to an action after one of these.
FINAL_STATES = frozenset({"blocked", "rejected", "timed_out", "cancelled", "completed", "failed", "rolled_back"})


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
    version: int = Field(description="grows by one at every state change: pass as ?after_version= to wait")
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


class ActionEvent(BaseModel):
    """One server-sent event of ``GET /api/v1/actions/{id}/events``: a state change of the action, read from its
    audit trail (``sequence`` is the audit record's, also the SSE ``id``: reconnect with ``Last-Event-ID`` to
    resume after it). ``action`` is the action as ``GET /api/v1/actions/{id}`` showed it when the event was
    sent (it may already be past ``to_state``)."""

    model_config = ConfigDict(extra="allow")

    sequence: int
    event: str
    from_state: str | None
    to_state: str
    occurred_at: str
    action: ActionOut
