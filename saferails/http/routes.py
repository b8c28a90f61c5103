"""The action endpoints: ``/api/v1/...`` and the seed aliases (``/api/actions``, ``/api/interventions``).

Each endpoint is a thin call into the same services the CLI uses (``store.actions``, ``store.execution``); the
aliases reuse the v1 handlers and only reshape bodies. Order of checks, everywhere: authenticate (401), the
role's permission (403), the object's tenant / ownership (404, never 403), then the service's own rules.
"""


import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError

from saferails.actions.lifecycle import PENDING_APPROVAL
from saferails.actions.models import ActionView, Proposal
from saferails.actions.repository import ActionFilter
from saferails.api import Store, refusal_for
from saferails.audit import AuditQuery, query_audit
from saferails.errors import (
    IdempotencyKeyReused,
    InsufficientPermissions,
    InvalidInput,
    NotFound,
    PermissionDenied,
    StoreUnavailable,
    Unauthenticated,
)
from saferails.http import auth
from saferails.http.auth import Authenticator, Principal, require
from saferails.http.executor import Executor
from saferails.http.idempotency import HEADER, IdempotencyCache, check_key, fingerprint
from saferails.http.schemas import (
    ActionOut,
    ActionPage,
    AuditPageOut,
    DecisionIn,
    DecisionOut,
    Health,
    InterventionIn,
    InterventionOut,
    ProposalIn,
    ReasonIn,
    SeedActionCreated,
    SeedActionIn,
    SeedApproveIn,
    SeedDecisionOut,
    SeedRejectIn,
)
from saferails.store.db import read_transaction

MAX_LIST = 200
_bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer <key>`")
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": {"application/problem+json": {}}}
    for status, text in (
        (401, "missing or invalid credentials"),
        (403, "missing permission, or refused by the policy / approval rules"),
        (404, "no such object in the caller's tenants"),
        (409, "the object is not in a state that allows this"),
        (422, "the request is invalid"),
    )
}


def action_json(view: ActionView) -> dict[str, Any]:
    return view.to_dict()


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset = data["o"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidInput("invalid cursor: pass back the next_cursor of the previous page") from exc
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise InvalidInput("invalid cursor: pass back the next_cursor of the previous page")
    return offset


class Api:
    """The handlers, over one store and one authenticator. Routes call these; aliases too."""

    def __init__(
        self, store: Store, authenticator: Authenticator, idempotency: IdempotencyCache,
        executor: Executor | None = None,
    ) -> None:
        self.store = store
        self.authenticator = authenticator
        self.idempotency = idempotency
        self.executor = executor

    def _approved(self, view: ActionView) -> ActionView:
        """Hand an approved action that no flow run owns to the executor (when the app has one)."""
        if self.executor is not None:
            self.executor.after(view)
        return view

    # --- who is calling -----------------------------------------------------------------------------------
    def principal(
        self, request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
            raise Unauthenticated("authentication required: send Authorization: Bearer <api key>")
        principal = self.authenticator.authenticate(credentials.credentials)
        request.state.principal_id = principal.id
        return principal

    def _visible(self, principal: Principal, action_id: str) -> ActionView:
        """The action if the caller may see it; ``NotFound`` otherwise (another tenant's or another agent's
        action does not exist as far as the caller can tell)."""
        view = self.store.actions.get(action_id)
        own = view.proposer == principal.id and principal.can(auth.READ_OWN)
        if not principal.sees_tenant(view.tenant) or not (principal.can(auth.READ) or own):
            raise NotFound("action", action_id)
        return view

    def _tenant_for(self, principal: Principal, tenant: str | None) -> str:
        if tenant is None:
            named = sorted(principal.tenants - {auth.ALL_TENANTS})
            tenant = named[0] if len(named) == 1 else "default"
        if not principal.sees_tenant(tenant):
            raise InsufficientPermissions(principal.id, sorted(principal.roles), f"tenant:{tenant}")
        return tenant

    # --- idempotent POSTs ---------------------------------------------------------------------------------
    def idempotent(
        self, request: Request, principal: Principal, body: BaseModel | None, status: int, op: Callable[[], Any]
    ) -> JSONResponse:
        key = request.headers.get(HEADER)
        if key is None:
            return JSONResponse(op(), status_code=status)
        key = check_key(key)
        print_ = fingerprint("POST", request.url.path, b"" if body is None else body.model_dump_json().encode())
        with self.idempotency.lock(principal.id, key):
            stored = self.idempotency.lookup(principal.id, key, print_)
            if stored is not None:
                return JSONResponse(stored.body, status_code=stored.status, headers={"Idempotent-Replayed": "true"})
            result = op()
            self.idempotency.store(principal.id, key, print_, status, result)
            return JSONResponse(result, status_code=status)

    # --- handlers -----------------------------------------------------------------------------------------
    def propose(self, principal: Principal, body: ProposalIn, key: str | None) -> ActionView:
        """Record a proposal by the caller. A policy refusal is recorded (state ``blocked``) and raised as its
        typed refusal (403, 429 for rate limits) naming the action id."""
        require(principal, auth.PROPOSE)
        tenant = self._tenant_for(principal, body.tenant)
        # The store's key is per tenant; scope it to the caller too, so one caller's key never finds (or
        # blocks) another's action.
        scoped = None if key is None else "http:" + hashlib.sha256(f"{principal.id}\0{key}".encode()).hexdigest()
        try:
            proposal = Proposal(
                action_type=body.action_type, target=body.target, params=body.params, proposer=principal.id,
                reason=body.reason, tenant=tenant, priority=body.priority, scheduled_for=body.scheduled_for,
                idempotency_key=scoped,
            )
        except ValidationError as exc:
            raise InvalidInput(f"invalid proposal: {exc.errors()[0]['msg']}") from exc
        view = self.store.actions.propose(proposal)
        if key is not None and (view.proposer, view.reason, view.priority, view.scheduled_for) != (
            principal.id, body.reason, body.priority, body.scheduled_for
        ):
            # The store matched the key on (type, target, params); the rest of the body must match too.
            raise IdempotencyKeyReused(
                f"{HEADER} {key!r} was already used for a different proposal", idempotency_key=key
            )
        refusal = refusal_for(view)
        if refusal is not None:
            raise refusal
        return self._approved(view)

    def get(self, principal: Principal, action_id: str) -> ActionView:
        require(principal, auth.READ_OWN)
        return self._visible(principal, action_id)

    def list(
        self,
        principal: Principal,
        *,
        states: tuple[str, ...] = (),
        action_type: str | None = None,
        target: str | None = None,
        proposer: str | None = None,
        tenant: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        require(principal, auth.READ_OWN)
        for name, value in (("created_after", created_after), ("created_before", created_before)):
            if value is not None and value.tzinfo is None:
                raise InvalidInput(f"{name} needs a timezone (e.g. 2026-11-22T10:00:00Z)")
        if not principal.can(auth.READ):
            if proposer not in (None, principal.id):
                return {"items": [], "next_cursor": None}
            proposer = principal.id
        if tenant is not None and not principal.sees_tenant(tenant):
            return {"items": [], "next_cursor": None}
        if tenant is None and auth.ALL_TENANTS not in principal.tenants:
            if len(principal.tenants) != 1:
                raise InvalidInput("you belong to several tenants: pass ?tenant=")
            tenant = next(iter(principal.tenants))
        offset = _decode_cursor(cursor)
        views = self.store.actions.list(ActionFilter(
            states=states, action_type=action_type, target=target, proposer=proposer, tenant=tenant,
            created_after=created_after, created_before=created_before, limit=limit + 1, offset=offset,
        ))
        more = len(views) > limit
        return {
            "items": [action_json(v) for v in views[:limit]],
            "next_cursor": _encode_cursor(offset + limit) if more else None,
        }

    def decide(self, principal: Principal, action_id: str, decision: str, body: DecisionIn) -> ActionView:
        require(principal, auth.DECIDE)
        view = self.store.actions.get(action_id)
        if not principal.sees_tenant(view.tenant):
            raise NotFound("action", action_id)
        if decision == "approve":
            return self._approved(self.store.actions.approve(
                action_id, principal.id, reason=body.reason, code=body.code, action_hash=body.action_hash
            ))
        return self.store.actions.reject(
            action_id, principal.id, reason=body.reason, code=body.code, action_hash=body.action_hash
        )

    def cancel(self, principal: Principal, action_id: str, body: ReasonIn) -> ActionView:
        require(principal, auth.CANCEL_OWN)
        view = self._visible(principal, action_id)
        if view.proposer != principal.id:
            require(principal, auth.CANCEL)
        return self.store.actions.cancel(action_id, principal.id, reason=body.reason)

    def rollback(self, principal: Principal, action_id: str, body: ReasonIn) -> ActionView:
        require(principal, auth.ROLLBACK)
        self._visible(principal, action_id)
        return self.store.execution.rollback(action_id, principal.id, reason=body.reason)

    def audit(self, principal: Principal, action_id: str, limit: int, cursor: int | None) -> dict[str, Any]:
        require(principal, auth.AUDIT_READ)
        self._visible(principal, action_id)
        query = AuditQuery(entity_type="action", entity_id=action_id, limit=limit, after_sequence=cursor)
        with read_transaction(self.store.sessions) as session:
            return query_audit(session, query).to_dict()

    def check(self, principal: Principal, body: ProposalIn) -> dict[str, Any]:
        require(principal, auth.POLICY_CHECK)
        tenant = self._tenant_for(principal, body.tenant)
        proposal = Proposal(
            action_type=body.action_type, target=body.target, params=body.params, proposer=principal.id,
            reason=body.reason, tenant=tenant, priority=body.priority, scheduled_for=body.scheduled_for,
        )
        return self.store.actions.check(proposal).to_dict()

    def ready(self) -> dict[str, str]:
        try:
            with self.store.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            raise StoreUnavailable("the store does not answer") from exc
        return {"status": "ready"}


def _seed_message(view: ActionView) -> str:
    return {
        PENDING_APPROVAL: "Action created and awaiting approval",
        "approved": "Action created and approved by policy",
    }.get(view.state, f"Action created ({view.state})")


def _same_principal(principal: Principal, named: str | None, field: str) -> None:
    if named is not None and named != principal.id:
        raise PermissionDenied(
            f"{field} must be the authenticated principal ({principal.id}); decisions cannot be made for others",
            field=field,
        )


def build_router(api: Api) -> APIRouter:
    """Every JSON route. The e-mail approval page lives in ``approval_page`` and must be included first (its
    ``/api/actions/approve`` would otherwise match ``/api/actions/{action_id}``)."""
    router = APIRouter(responses=_ERRORS)
    Caller = Annotated[Principal, Depends(api.principal)]

    # --- health (no authentication) -----------------------------------------------------------------------
    @router.get("/api/v1/health/live", response_model=Health, tags=["health"], responses={})
    @router.get("/health/live", response_model=Health, include_in_schema=False)
    def live() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @router.get("/api/v1/health/ready", response_model=Health, tags=["health"])
    @router.get("/health/ready", response_model=Health, include_in_schema=False)
    def ready() -> dict[str, str]:
        """The store answers (503 ``STORE_UNAVAILABLE`` otherwise)."""
        return api.ready()

    # --- v1 -----------------------------------------------------------------------------------------------
    @router.post("/api/v1/actions", status_code=201, response_model=ActionOut, tags=["actions"])
    def propose(request: Request, body: ProposalIn, caller: Caller) -> JSONResponse:
        """Propose an action as the authenticated principal. 201 with the action (``pending_approval``,
        ``approved``); a policy refusal is 403 (429 for rate limits) with the recorded action's id."""
        key = request.headers.get(HEADER)
        return api.idempotent(request, caller, body, 201,
                              lambda: action_json(api.propose(caller, body, key and check_key(key))))

    @router.get("/api/v1/actions", response_model=ActionPage, tags=["actions"])
    def list_actions(
        caller: Caller,
        state: Annotated[list[str] | None, Query()] = None,
        action_type: str | None = None,
        target: str | None = None,
        proposer: str | None = None,
        tenant: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Actions the caller may see (agents: their own), most urgent first; page with ``next_cursor``."""
        return api.list(caller, states=tuple(state or ()), action_type=action_type, target=target,
                        proposer=proposer, tenant=tenant, created_after=created_after,
                        created_before=created_before, limit=limit, cursor=cursor)

    @router.get("/api/v1/actions/pending", response_model=ActionPage, tags=["actions"])
    def pending(
        caller: Caller,
        tenant: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Actions waiting for approval (the approval queue)."""
        return api.list(caller, states=(PENDING_APPROVAL,), tenant=tenant, limit=limit, cursor=cursor)

    @router.get("/api/v1/actions/{action_id}", response_model=ActionOut, tags=["actions"])
    def get_action(action_id: str, caller: Caller) -> dict[str, Any]:
        return action_json(api.get(caller, action_id))

    @router.post("/api/v1/actions/{action_id}/approve", response_model=ActionOut, tags=["actions"])
    def approve(request: Request, action_id: str, body: DecisionIn, caller: Caller) -> JSONResponse:
        """Approve as the authenticated principal, with your one-time code. The action moves to ``approved``
        once the policy's quorum of distinct approvers is reached."""
        return api.idempotent(request, caller, body, 200,
                              lambda: action_json(api.decide(caller, action_id, "approve", body)))

    @router.post("/api/v1/actions/{action_id}/reject", response_model=ActionOut, tags=["actions"])
    def reject(request: Request, action_id: str, body: DecisionIn, caller: Caller) -> JSONResponse:
        """Reject as the authenticated principal: one authorised rejection ends the request."""
        return api.idempotent(request, caller, body, 200,
                              lambda: action_json(api.decide(caller, action_id, "reject", body)))

    @router.post("/api/v1/actions/{action_id}/cancel", response_model=ActionOut, tags=["actions"])
    def cancel(request: Request, action_id: str, caller: Caller, body: ReasonIn | None = None) -> JSONResponse:
        """Withdraw an action that has not started executing (agents: their own)."""
        reason = body or ReasonIn()
        return api.idempotent(request, caller, reason, 200,
                              lambda: action_json(api.cancel(caller, action_id, reason)))

    @router.post("/api/v1/actions/{action_id}/rollback", response_model=ActionOut, tags=["actions"])
    def rollback(request: Request, action_id: str, caller: Caller, body: ReasonIn | None = None) -> JSONResponse:
        """Restore the captured pre-state of a finished action. The answer is the action afterwards:
        ``rolled_back``, or ``rollback_failed`` with its error (the attempt is audited either way)."""
        reason = body or ReasonIn()
        return api.idempotent(request, caller, reason, 200,
                              lambda: action_json(api.rollback(caller, action_id, reason)))

    @router.get("/api/v1/actions/{action_id}/audit", response_model=AuditPageOut, tags=["audit"])
    def action_audit(
        action_id: str,
        caller: Caller,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    ) -> dict[str, Any]:
        """The action's audit trail, oldest first (hash-chained records; page with ``next_cursor``)."""
        return api.audit(caller, action_id, limit, cursor)

    @router.post("/api/v1/policy/check", response_model=DecisionOut, tags=["policy"])
    def policy_check(body: ProposalIn, caller: Caller) -> dict[str, Any]:
        """Dry run: what the policy would decide for this proposal by the caller now. Writes nothing."""
        return api.check(caller, body)

    # --- seed 001 aliases ---------------------------------------------------------------------------------
    @router.post("/api/actions", status_code=201, response_model=SeedActionCreated, tags=["seed aliases"])
    def seed_create(request: Request, body: SeedActionIn, caller: Caller) -> JSONResponse:
        """Seed 001's create: ``user_id`` is the target, ``payload`` the params; the proposer is the caller."""
        proposal = ProposalIn(action_type=body.action_type, target=body.user_id, params=body.payload,
                              reason=body.reason, tenant=body.tenant, priority=body.priority,
                              scheduled_for=body.scheduled_for)
        key = request.headers.get(HEADER)

        def run() -> dict[str, Any]:
            view = api.propose(caller, proposal, key and check_key(key))
            return {"success": True, "action_id": view.id, "status": view.state,
                    "requires_approval": view.state == PENDING_APPROVAL, "message": _seed_message(view)}

        return api.idempotent(request, caller, body, 201, run)

    @router.get("/api/actions/{action_id}", response_model=ActionOut, tags=["seed aliases"])
    def seed_get(action_id: str, caller: Caller) -> dict[str, Any]:
        return action_json(api.get(caller, action_id))

    @router.get("/api/actions/{action_id}/audit", response_model=AuditPageOut, tags=["seed aliases"])
    def seed_audit(action_id: str, caller: Caller) -> dict[str, Any]:
        return api.audit(caller, action_id, 1000, None)

    @router.post("/api/actions/{action_id}/approve", response_model=SeedDecisionOut, tags=["seed aliases"])
    def seed_approve(request: Request, action_id: str, body: SeedApproveIn, caller: Caller) -> JSONResponse:
        """Seed 001's approve. ``approved_by`` may be sent but must be the caller."""
        _same_principal(caller, body.approved_by, "approved_by")

        def run() -> dict[str, Any]:
            view = api.decide(caller, action_id, "approve", DecisionIn(code=body.code, reason=body.reason))
            return {"success": True, "action_id": view.id, "status": view.state,
                    "message": f"approval by {caller.id} recorded"}

        return api.idempotent(request, caller, body, 200, run)

    @router.post("/api/actions/{action_id}/reject", response_model=SeedDecisionOut, tags=["seed aliases"])
    def seed_reject(request: Request, action_id: str, body: SeedRejectIn, caller: Caller) -> JSONResponse:
        """Seed 001's reject. ``rejected_by`` may be sent but must be the caller."""
        _same_principal(caller, body.rejected_by, "rejected_by")

        def run() -> dict[str, Any]:
            view = api.decide(caller, action_id, "reject", DecisionIn(code=body.code, reason=body.reason))
            return {"success": True, "action_id": view.id, "status": view.state,
                    "message": f"rejection by {caller.id} recorded"}

        return api.idempotent(request, caller, body, 200, run)

    # --- seed 000 aliases ---------------------------------------------------------------------------------
    @router.post("/api/interventions/propose", status_code=201, response_model=InterventionOut,
                 tags=["seed aliases"])
    def propose_intervention(request: Request, body: InterventionIn, caller: Caller) -> JSONResponse:
        """Seed 000's propose: an intervention is an action whose target is the employee."""
        proposal = ProposalIn(action_type=body.intervention_type, target=body.target_employee_id,
                              params=body.params, reason=body.reason)
        key = request.headers.get(HEADER)

        def run() -> dict[str, Any]:
            view = api.propose(caller, proposal, key and check_key(key))
            return {"intervention_id": view.id, "status": view.state, "impact_level": view.impact.upper(),
                    "requires_approval": view.state == PENDING_APPROVAL}

        return api.idempotent(request, caller, body, 201, run)

    @router.get("/api/interventions/pending", response_model=ActionPage, tags=["seed aliases"])
    def pending_interventions(caller: Caller) -> dict[str, Any]:
        return api.list(caller, states=(PENDING_APPROVAL,), limit=MAX_LIST)

    return router
