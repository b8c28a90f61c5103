"""The rest of the seeds' action paths, as thin aliases over the ``routes.Api`` handlers, and their ``/api/v1``
equivalents.

- ``/api/v1``: ``POST /actions/{id}/execute`` (an approved action, now; ``actions:execute``),
  ``GET /rate-limits/{proposer}/{action_type}`` (the policy's rate-limit windows and how much of each is used);
- seed 000 (``/api/interventions``): ``POST /approve`` and ``/reject`` with ``intervention_id`` in the body,
  ``GET /{id}``, ``POST /timeout-expired`` (the expiry sweep, now; ``sweeps:run``), ``POST /{id}/rollback``,
  ``GET /audit/query`` (``start_date``, ``end_date``, ``intervention_id``, ``action_type``, ``employee_id``; a time
  without an offset is UTC);
- seed 001 (``/api/actions``): ``POST /{id}/rollback``, ``GET /user/{user_id}`` (actions for that user, i.e.
  whose target it is; ``limit``/``offset``), ``GET /rate-limits/{user_id}/{action_type}`` (rate limits count per
  proposer here, so ``user_id`` names the proposer).

As everywhere, a name sent in a body (``approved_by``, ``rolled_back_by``) must be the authenticated principal.
"""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from saferails.actions.repository import ActionFilter, ActionRepository
from saferails.audit import AuditQuery, query_audit
from saferails.errors import NotFound
from saferails.http import auth
from saferails.http.auth import Principal, require
from saferails.http.routes import MAX_LIST, Api, _encode_cursor, _same_principal, action_json
from saferails.http.schemas import ActionOut, ActionPage, AuditPageOut, DecisionIn, ReasonIn
from saferails.store.db import read_transaction
from saferails.sweeps.expire import ExpireSweep

_WINDOWS = (("per_hour", "hour", timedelta(hours=1)), ("per_day", "day", timedelta(days=1)))


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InterventionDecisionIn(_Body):
    """Seed 000's approve / reject body. ``approved_by`` / ``rejected_by``, if sent, must be the caller."""

    intervention_id: str = Field(min_length=1, max_length=100)
    code: str | None = Field(default=None, max_length=100)
    reason: str = Field(default="", max_length=10_000)
    approved_by: str | None = None
    rejected_by: str | None = None


class RollbackIn(_Body):
    """Seed 001's rollback body. ``rolled_back_by``, if sent, must be the caller."""

    rolled_back_by: str | None = None
    reason: str = Field(default="", max_length=10_000)


class InterventionDecisionOut(BaseModel):
    intervention_id: str
    status: str
    message: str


class RateLimitWindow(BaseModel):
    rule: str
    window: str
    current: int
    limit: int
    remaining: int
    conditional: bool = Field(description="the rule has a `when` condition: it counts only when that holds")


class RateLimitsOut(BaseModel):
    success: bool
    proposer: str
    action_type: str
    rate_limits: list[RateLimitWindow]


def _aware(value: datetime | None) -> datetime | None:
    """Seed 000's example sends times without an offset: read them as UTC."""
    return None if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)


def build_router(api: Api) -> APIRouter:
    router = APIRouter()
    store = api.store
    Caller = Annotated[Principal, Depends(api.principal)]

    def rate_limits(caller: Principal, proposer: str, action_type: str) -> dict[str, Any]:
        """The policy's rate-limit windows for ``proposer`` and ``action_type``: used and allowed. Callers read
        their own; others need ``actions:read`` and a proposer with actions in one of their tenants."""
        require(caller, auth.READ_OWN)
        if proposer != caller.id:
            require(caller, auth.READ)
            if auth.ALL_TENANTS not in caller.tenants and not any(
                store.actions.list(ActionFilter(proposer=proposer, tenant=t, limit=1)) for t in caller.tenants
            ):
                raise NotFound("proposer", proposer)
        now = store.clock.now()
        windows: list[dict[str, Any]] = []
        with read_transaction(store.sessions) as session:
            counter = ActionRepository(session)
            for rule in store.actions.policy.rules:  # the policy proposals are judged by
                if rule.kind != "rate_limit" or rule.limits is None:
                    continue
                if rule.action_types is not None and action_type not in rule.action_types:
                    continue
                for field, label, width in _WINDOWS:
                    limit = getattr(rule.limits, field)
                    if limit is None:
                        continue
                    used = counter.count(proposer, action_type, now - width)
                    windows.append({"rule": rule.id, "window": f"1 {label}", "current": used, "limit": limit,
                                    "remaining": max(0, limit - used), "conditional": rule.when is not None})
        return {"success": True, "proposer": proposer, "action_type": action_type, "rate_limits": windows}

    # --- /api/v1 ------------------------------------------------------------------------------------------
    @router.post("/api/v1/actions/{action_id}/execute", response_model=ActionOut, tags=["actions"])
    def execute(request: Request, action_id: str, caller: Caller) -> JSONResponse:
        """Execute an approved action now (409 in any other state). The answer is the action afterwards:
        ``completed`` with its result, or ``failed`` with its error."""
        require(caller, auth.EXECUTE)
        api.get(caller, action_id)
        return api.idempotent(request, caller, None, 200,
                              lambda: action_json(store.execution.execute(action_id, caller.id)))

    @router.get("/api/v1/rate-limits/{proposer}/{action_type}", response_model=RateLimitsOut, tags=["policy"])
    def rate_limit_status(proposer: str, action_type: str, caller: Caller) -> dict[str, Any]:
        """How much of each rate-limit window ``proposer`` has used for ``action_type`` (refused proposals
        do not count)."""
        return rate_limits(caller, proposer, action_type)

    # --- seed 001 -----------------------------------------------------------------------------------------
    @router.post("/api/actions/{action_id}/rollback", response_model=ActionOut, tags=["seed aliases"])
    def seed_rollback(request: Request, action_id: str, body: RollbackIn, caller: Caller) -> JSONResponse:
        _same_principal(caller, body.rolled_back_by, "rolled_back_by")
        return api.idempotent(request, caller, body, 200, lambda: action_json(
            api.rollback(caller, action_id, ReasonIn(reason=body.reason))))

    @router.get("/api/actions/user/{user_id}", response_model=ActionPage, tags=["seed aliases"])
    def seed_user_actions(
        user_id: str,
        caller: Caller,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
        offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    ) -> dict[str, Any]:
        """Actions for ``user_id`` (their target), as ``GET /api/v1/actions?target=``."""
        return api.list(caller, target=user_id, limit=limit, cursor=_encode_cursor(offset) if offset else None)

    @router.get("/api/actions/rate-limits/{user_id}/{action_type}", response_model=RateLimitsOut,
                tags=["seed aliases"])
    def seed_rate_limits(user_id: str, action_type: str, caller: Caller) -> dict[str, Any]:
        return rate_limits(caller, user_id, action_type)

    # --- seed 000 -----------------------------------------------------------------------------------------
    def decide(request: Request, caller: Principal, body: InterventionDecisionIn, decision: str) -> JSONResponse:
        _same_principal(caller, body.approved_by, "approved_by")
        _same_principal(caller, body.rejected_by, "rejected_by")

        def run() -> dict[str, Any]:
            view = api.decide(caller, body.intervention_id, decision,
                              DecisionIn(code=body.code, reason=body.reason))
            word = "approval" if decision == "approve" else "rejection"
            return {"intervention_id": view.id, "status": view.state,
                    "message": f"{word} by {caller.id} recorded"}

        return api.idempotent(request, caller, body, 200, run)

    @router.post("/api/interventions/approve", response_model=InterventionDecisionOut, tags=["seed aliases"])
    def approve_intervention(request: Request, body: InterventionDecisionIn, caller: Caller) -> JSONResponse:
        """Approve as the authenticated principal, with your one-time code."""
        return decide(request, caller, body, "approve")

    @router.post("/api/interventions/reject", response_model=InterventionDecisionOut, tags=["seed aliases"])
    def reject_intervention(request: Request, body: InterventionDecisionIn, caller: Caller) -> JSONResponse:
        return decide(request, caller, body, "reject")

    @router.post("/api/interventions/timeout-expired", tags=["seed aliases"])
    def timeout_expired(request: Request, caller: Caller) -> JSONResponse:
        """Resolve every approval whose deadline has passed (what the expiry sweep does on its schedule)."""
        require(caller, auth.SWEEP)
        return api.idempotent(request, caller, None, 200,
                              lambda: ExpireSweep(store.actions, worker_id=f"http:{caller.id}").run().to_dict())

    @router.get("/api/interventions/audit/query", response_model=AuditPageOut, tags=["seed aliases"])
    def audit_query(
        caller: Caller,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        intervention_id: str | None = None,
        action_type: str | None = None,
        employee_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    ) -> dict[str, Any]:
        """Audit records of the caller's tenants, oldest first (``employee_id`` is the target)."""
        require(caller, auth.AUDIT_READ)
        named = sorted(caller.tenants - {auth.ALL_TENANTS})
        tenant = None if auth.ALL_TENANTS in caller.tenants else named[0] if len(named) == 1 else ""
        query = AuditQuery(start=_aware(start_date), end=_aware(end_date), entity_id=intervention_id,
                           action_type=action_type, target=employee_id, tenant=tenant, limit=limit,
                           after_sequence=cursor)
        with read_transaction(store.sessions) as session:
            return query_audit(session, query).to_dict()

    @router.get("/api/interventions/{intervention_id}", response_model=ActionOut, tags=["seed aliases"])
    def get_intervention(intervention_id: str, caller: Caller) -> dict[str, Any]:
        return action_json(api.get(caller, intervention_id))

    @router.post("/api/interventions/{intervention_id}/rollback", response_model=ActionOut, tags=["seed aliases"])
    def rollback_intervention(request: Request, intervention_id: str, caller: Caller,
                              body: ReasonIn | None = None) -> JSONResponse:
        reason = body or ReasonIn()
        return api.idempotent(request, caller, reason, 200,
                              lambda: action_json(api.rollback(caller, intervention_id, reason)))

    return router


__all__ = ["build_router"]
