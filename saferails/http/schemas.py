"""Request and response bodies of the HTTP API (pydantic; they are also the OpenAPI schema).

No request body names who is acting: the proposer, approver or actor is always the authenticated principal.
Unknown fields are refused (422), so a client that sends ``proposer`` learns it is ignored instead of trusting it.
The models the Python client shares live in ``saferails.models`` (no FastAPI import) and are re-exported here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

# Re-exported: the wire models the Python client shares.
from saferails.models import (
    ActionOut,
    ActionPage,
    AuditPageOut,
    DecisionIn,
    DecisionOut,
    Health,
    ProposalIn,
    ReasonIn,
    _aware,
    _Body,
)

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


# The shared models are re-exported (``from saferails.http.schemas import ProposalIn`` keeps working).
__all__ = ["ActionOut", "ActionPage", "AuditPageOut", "DecisionIn", "DecisionOut", "Health", "ProposalIn", "ReasonIn"]
