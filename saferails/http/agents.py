"""The fleet-control endpoints of the action playbook (seed 003):

- ``POST /api/v1/actions/{action_name}`` for ``pause_agent``, ``resume_agent`` and ``set_budget``: authenticate
  (401), the permission ``actions:{action_name}`` (403 ``INSUFFICIENT_PERMISSIONS`` with ``required_permission``
  and ``user_role``, also under ``error`` as the playbook's clients read it), then propose the action under the
  caller's id so the policy and the approval gate apply. An action the policy lets run is executed at once:
  200 ``{"action_id", "status": "completed", "result"}``; one that needs approval answers 202 with status
  ``pending_approval`` (approve through ``/api/v1/actions/{id}/approve``, then it is executed like any other);
  a policy refusal is its typed problem (403). An unknown action name, or a target outside the caller's
  workspace, is 404 (nothing recorded); a control recorded ``failed`` by its handler is 409 with
  ``error_message``.
- ``GET /api/v1/agents``: the agents of the caller's workspaces (permission ``actions:read``).
- ``GET /api/v1/agents/actions``: the playbook's audit records of these actions, filtered by workspace, scope,
  actor and type, newest first (permission ``audit:read``).
"""


from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from saferails.actions.models import Proposal
from saferails.agents.audit import MAX_LIMIT, ActionAuditQuery
from saferails.api import refusal_for
from saferails.errors import InsufficientPermissions, InvalidInput, NotFound
from saferails.http import auth
from saferails.http.auth import Principal, require
from saferails.http.problems import error_body, problem_response, request_id_of
from saferails.http.routes import Api

ACTIONS = ("pause_agent", "resume_agent", "set_budget")


class FleetActionIn(BaseModel):
    """The playbook's body. ``agent_id`` names the agent (scope ``agent``); ``department`` the department (scope
    ``department``); scope ``fleet`` means every agent of ``workspace_id`` (default: the caller's workspace)."""

    model_config = ConfigDict(extra="forbid")

    agent_id: str | None = Field(default=None, max_length=200)
    department: str | None = Field(default=None, max_length=200)
    workspace_id: str | None = Field(default=None, max_length=100)
    scope: Literal["agent", "department", "fleet"] = "agent"
    reason: str = Field(default="", max_length=1000)
    duration_minutes: int = 30
    amount: Decimal | None = None
    currency: str | None = None
    period: Literal["day", "week", "month"] = "month"


class FleetActionOut(BaseModel):
    action_id: str
    status: str
    result: dict[str, Any] | None
    error_message: str | None = None


def _target(body: FleetActionIn, tenant: str) -> str:
    if body.scope == "fleet":
        return tenant
    named = body.department if body.scope == "department" else body.agent_id
    if not named:
        raise InvalidInput(f"scope {body.scope} needs {'department' if body.scope == 'department' else 'agent_id'}")
    return named


def _params(action_name: str, body: FleetActionIn) -> dict[str, Any]:
    if action_name == "pause_agent":
        return {"scope": body.scope, "duration_minutes": body.duration_minutes, "reason": body.reason}
    if action_name == "resume_agent":
        return {"scope": body.scope, "reason": body.reason}
    return {"amount": None if body.amount is None else str(body.amount), "currency": body.currency,
            "period": body.period}


def build_router(api: Api) -> APIRouter:
    router = APIRouter()

    def _check_target(body: FleetActionIn, tenant: str) -> None:
        """Refuse (404, before anything is recorded) a target outside the caller's workspace: another
        workspace's agent does not exist as far as the caller can tell."""
        target = _target(body, tenant)
        if body.scope == "agent":
            try:
                found = api.store.agents.get(target).tenant == tenant
            except NotFound:
                found = False
            if not found:
                raise NotFound("agent", target)
        elif body.scope == "department" and not api.store.agents.list(tenant=tenant, department=target):
            raise NotFound("department", target)
        elif body.scope == "fleet" and not api.store.agents.list(tenant=tenant):
            raise NotFound("workspace", target)

    Caller = Annotated[Principal, Depends(api.principal)]
    store = api.store

    @router.post("/api/v1/actions/{action_name}", response_model=FleetActionOut, tags=["fleet controls"],
                 responses={202: {"model": FleetActionOut, "description": "waiting for approval"}})
    def fleet_action(action_name: str, body: FleetActionIn, principal: Caller, request: Request) -> JSONResponse:
        if action_name not in ACTIONS:
            raise NotFound("action type", action_name)
        try:
            require(principal, f"actions:{action_name}")
        except InsufficientPermissions as exc:
            problem = error_body(exc, instance=request.url.path, request_id=request_id_of(request))
            problem["error"] = {"code": exc.code, "message": exc.message, **exc.details}
            return problem_response(exc.http_status, problem)
        tenant = api._tenant_for(principal, body.workspace_id)
        _check_target(body, tenant)
        try:
            proposal = Proposal(action_type=action_name, target=_target(body, tenant),
                                params=_params(action_name, body), proposer=principal.id,
                                reason=body.reason, tenant=tenant)
        except ValidationError as exc:
            raise InvalidInput(f"invalid proposal: {exc.errors()[0]['msg']}") from exc
        view = store.actions.propose(proposal)
        refusal = refusal_for(view)
        if refusal is not None:
            raise refusal
        if view.state == "approved":
            view = store.execution.execute(view.id)
        out = FleetActionOut(action_id=view.id, status=view.state, result=view.result, error_message=view.error)
        # A control that could not run against the current world (the agents changed since the check) is
        # recorded failed with its error: 409, the caller's request was fine and nothing is half-done.
        status = 200 if view.state == "completed" else 202 if view.state == "pending_approval" else 409
        return JSONResponse(out.model_dump(mode="json"), status_code=status)

    @router.get("/api/v1/agents", tags=["fleet controls"])
    def list_agents(
        principal: Caller,
        tenant: Annotated[str | None, Query(max_length=100)] = None,
        department: Annotated[str | None, Query(max_length=200)] = None,
        status: Annotated[Literal["active", "paused", "retired"] | None, Query()] = None,
    ) -> dict[str, Any]:
        require(principal, auth.READ)
        agents = store.agents.list(tenant=tenant, department=department, status=status)
        return {"items": [a.to_dict() for a in agents if principal.sees_tenant(a.tenant)]}

    @router.get("/api/v1/agents/actions", tags=["fleet controls"])
    def list_fleet_actions(
        principal: Caller,
        workspace: Annotated[str | None, Query(max_length=100)] = None,
        scope: Annotated[Literal["agent", "department", "fleet"] | None, Query()] = None,
        actor: Annotated[str | None, Query(max_length=200)] = None,
        action_type: Annotated[Literal["pause_agent", "resume_agent", "set_budget"] | None,
                               Query(alias="type")] = None,
        before: Annotated[datetime | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    ) -> dict[str, Any]:
        """The playbook's action audit records of the fleet controls (workspace, scope, actor and role,
        parameters, status, result, error, can-rollback, started / completed / rolled-back times), newest first;
        filter by ``workspace``, ``scope``, ``actor``, ``type``; page with ``before`` (the last ``created_at``).
        Permission ``audit:read`` (operators, auditors, admins); only the caller's workspaces."""
        require(principal, auth.AUDIT_READ)
        tenants = None if auth.ALL_TENANTS in principal.tenants else principal.tenants
        records = store.agents.actions(ActionAuditQuery(workspace=workspace, scope=scope, actor=actor,
                                                        action_type=action_type, before=before, limit=limit),
                                       tenants)
        items = [r.to_dict() for r in records]
        return {"items": items, "next_before": items[-1]["created_at"] if len(items) == limit else None}

    return router


__all__ = ["ACTIONS", "FleetActionIn", "FleetActionOut", "build_router"]
