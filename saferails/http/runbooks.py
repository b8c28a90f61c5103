"""Runbooks and their executions (seed 002) under ``/api/v1``: an edge over ``saferails.runbooks.RunbookService``.

- ``GET /api/v1/runbooks``, ``GET /api/v1/runbooks/{id}`` (``?version=``), ``POST /api/v1/runbooks`` (register a
  template version: the runbook document as JSON);
- ``POST /api/v1/executions`` (start), ``GET /api/v1/executions`` (``?runbook_id= &state= &tenant=``, cursor
  pages), ``GET /api/v1/executions/{id}``;
- control: ``POST /api/v1/executions/{id}/pause | resume | cancel | replay | run`` and
  ``POST /api/v1/executions/{id}/steps/{step_id}/retry``; ``POST /api/v1/runbook-events`` delivers an event to
  executions waiting on its correlation id;
- ``GET /api/v1/executions/{id}/logs`` and ``/evidence``. Health is ``/health/live`` and ``/health/ready``
  (``routes``).

Like the CLI without ``--prefect``, ``start``, ``resume``, ``retry`` and ``replay`` then carry the execution
forward in this process (``RunbookService.run``: until it is final, paused, or only waits are left) unless the
body says ``"run": false`` (a Prefect flow run or ``saferails runbook run`` carries it then). A step waiting for
approval is decided through ``POST /api/v1/actions/{id}/approve``, then ``POST .../run`` continues.

Permissions: ``runbooks:read`` (every role's ``read``), ``runbooks:operate`` and ``runbooks:register``
(``operate``). Templates are shared by the store; an execution belongs to one tenant, and another tenant's
execution is a 404. The initiator of an execution is the authenticated principal.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from saferails.errors import InvalidInput, NotFound
from saferails.http import auth
from saferails.http.auth import Principal, require
from saferails.http.paging import jsonable as _json
from saferails.http.paging import offset_of, page
from saferails.http.routes import MAX_LIST, Api
from saferails.runbooks.lifecycle import EXECUTION_MACHINE
from saferails.runbooks.service import RunbookService
from saferails.runbooks.validation import validate_data
from saferails.runbooks.views import ExecutionContext, ExecutionView, LegalBasis

# Executions are listed newest first by the service, which has no offset: deeper pages than this are refused.
MAX_EXECUTION_OFFSET = 10_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartIn(_Body):
    """Start an execution of a registered runbook (``version``: default the latest registered)."""

    runbook_id: str = Field(min_length=1, max_length=200, examples=["investigate-threat"])
    inputs: dict[str, Any] = Field(default_factory=dict)
    version: str | None = Field(default=None, min_length=1, max_length=100)
    tenant: str | None = Field(default=None, min_length=1, max_length=100)
    legal_basis: LegalBasis | None = None
    authorized_users: list[str] = Field(default_factory=list, max_length=100)
    run: bool = Field(default=True, description="carry the execution forward in this process until it waits")


class DocumentIn(BaseModel):
    """A runbook document (``saferails runbook schema`` prints its JSON Schema): id, name, version, steps ..."""

    model_config = ConfigDict(extra="allow")


class ReasonIn(_Body):
    reason: str = Field(default="", max_length=10_000)


class CarryIn(_Body):
    reason: str = Field(default="", max_length=10_000)
    run: bool = Field(default=True, description="carry the execution forward in this process until it waits")


class EventIn(_Body):
    correlation_id: str = Field(min_length=1, max_length=500)
    payload: dict[str, Any] = Field(default_factory=dict)
    tenant: str | None = Field(default=None, min_length=1, max_length=100)


class TemplateOut(BaseModel):
    """A registered template version (``saferails.runbooks.TemplateView``)."""

    model_config = ConfigDict(extra="allow")

    runbook_id: str
    version: str
    name: str
    content_hash: str
    registered_by: str
    created_at: str
    definition: dict[str, Any]


class ExecutionOut(BaseModel):
    """An execution and its steps (``saferails.runbooks.ExecutionView``); a step awaiting approval names its
    ``approval_action_id``."""

    model_config = ConfigDict(extra="allow")

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
    deadline: str
    created_at: str
    steps: list[dict[str, Any]]


class Page(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


class EventOut(BaseModel):
    event_id: str
    correlation_id: str
    tenant: str


def build_router(api: Api) -> APIRouter:
    router = APIRouter(tags=["runbooks"])
    store = api.store
    svc = RunbookService(store.sessions, store.clock, store.actions, egress=store.settings.egress)
    Caller = Annotated[Principal, Depends(api.principal)]

    def visible(principal: Principal, execution_id: str) -> ExecutionView:
        """The execution if it is in one of the caller's tenants; ``NotFound`` otherwise."""
        view = svc.status(execution_id)
        if not principal.sees_tenant(view.tenant):
            raise NotFound("runbook_execution", execution_id)
        return view

    def carried(view: ExecutionView, run: bool) -> dict[str, Any]:
        return dict(_json(svc.run(view.id) if run else view))

    # --- templates ----------------------------------------------------------------------------------------
    @router.get("/api/v1/runbooks", response_model=Page)
    def list_runbooks(
        caller: Caller,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Registered runbook template versions, by id then registration time."""
        require(caller, auth.RUNBOOKS_READ)
        return page(svc.templates(), limit, cursor)

    @router.post("/api/v1/runbooks", status_code=201, response_model=TemplateOut)
    def register(request: Request, body: DocumentIn, caller: Caller) -> JSONResponse:
        """Register a template version (the runbook document as JSON). The same content again answers the
        stored version; other content under the same id and version is 409 ``RUNBOOK_VERSION_CONFLICT``."""
        require(caller, auth.RUNBOOKS_REGISTER)
        return api.idempotent(request, caller, body, 201,
                              lambda: _json(svc.register(validate_data(body.model_dump()), caller.id)))

    @router.get("/api/v1/runbooks/{runbook_id}", response_model=TemplateOut)
    def get_runbook(runbook_id: str, caller: Caller, version: str | None = None) -> Any:
        """One template version (default: the latest registered), with its definition."""
        require(caller, auth.RUNBOOKS_READ)
        return _json(svc.template(runbook_id, version))

    # --- executions ---------------------------------------------------------------------------------------
    @router.post("/api/v1/executions", status_code=201, response_model=ExecutionOut)
    def start(request: Request, body: StartIn, caller: Caller) -> JSONResponse:
        """Start an execution as the authenticated principal (in the caller's tenant unless ``tenant`` names
        another it belongs to). Bad inputs are 422 ``RUNBOOK_INPUT_INVALID``; nothing is written then."""
        require(caller, auth.RUNBOOKS_OPERATE)
        tenant = api._tenant_for(caller, body.tenant)
        try:
            context = ExecutionContext(tenant=tenant, initiated_by=caller.id, legal_basis=body.legal_basis,
                                       authorized_users=body.authorized_users)
        except ValidationError as exc:
            raise InvalidInput(f"invalid execution context: {exc.errors()[0]['msg']}") from None

        def run() -> dict[str, Any]:
            view = svc.start(body.runbook_id, body.inputs, context=context, version=body.version)
            return carried(view, body.run)

        return api.idempotent(request, caller, body, 201, run)

    @router.get("/api/v1/executions", response_model=Page)
    def list_executions(
        caller: Caller,
        runbook_id: str | None = None,
        state: str | None = None,
        tenant: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Executions of the caller's tenants, newest first."""
        require(caller, auth.RUNBOOKS_READ)
        if state is not None and state not in EXECUTION_MACHINE.states:
            raise InvalidInput(f"state {state!r} is not an execution state; one of "
                               f"{', '.join(EXECUTION_MACHINE.states)}", state=state)
        if tenant is not None and not caller.sees_tenant(tenant):
            return {"items": [], "next_cursor": None}
        if tenant is None and auth.ALL_TENANTS not in caller.tenants:
            if len(caller.tenants) != 1:
                raise InvalidInput("you belong to several tenants: pass ?tenant=")
            tenant = next(iter(caller.tenants))
        offset = offset_of(cursor)
        if offset > MAX_EXECUTION_OFFSET:
            raise InvalidInput(f"pages end at {MAX_EXECUTION_OFFSET} executions: narrow the filter")
        views = svc.list_executions(runbook_id=runbook_id, state=state, tenant=tenant, limit=offset + limit + 1)
        return page(views, limit, cursor)

    @router.get("/api/v1/executions/{execution_id}", response_model=ExecutionOut)
    def get_execution(execution_id: str, caller: Caller) -> Any:
        """An execution and each step's state (an approval step names the action to approve)."""
        require(caller, auth.RUNBOOKS_READ)
        return _json(visible(caller, execution_id))

    # --- control ------------------------------------------------------------------------------------------
    @router.post("/api/v1/executions/{execution_id}/pause", response_model=ExecutionOut)
    def pause(request: Request, execution_id: str, caller: Caller, body: ReasonIn | None = None) -> JSONResponse:
        """No new step starts until resume; waits keep their deadlines. 409 unless running or waiting."""
        require(caller, auth.RUNBOOKS_OPERATE)
        reason = body or ReasonIn()
        visible(caller, execution_id)
        return api.idempotent(request, caller, reason, 200,
                              lambda: _json(svc.pause(execution_id, caller.id, reason.reason)))

    @router.post("/api/v1/executions/{execution_id}/resume", response_model=ExecutionOut)
    def resume(request: Request, execution_id: str, caller: Caller, body: CarryIn | None = None) -> JSONResponse:
        """Resume a paused execution (then carry it on unless ``run`` is false)."""
        require(caller, auth.RUNBOOKS_OPERATE)
        carry = body or CarryIn()
        visible(caller, execution_id)
        return api.idempotent(request, caller, carry, 200,
                              lambda: carried(svc.resume(execution_id, caller.id, carry.reason), carry.run))

    @router.post("/api/v1/executions/{execution_id}/cancel", response_model=ExecutionOut)
    def cancel(request: Request, execution_id: str, caller: Caller, body: ReasonIn | None = None) -> JSONResponse:
        """Cancel the execution and its open steps; pending approval requests are withdrawn."""
        require(caller, auth.RUNBOOKS_OPERATE)
        reason = body or ReasonIn()
        visible(caller, execution_id)
        return api.idempotent(request, caller, reason, 200,
                              lambda: _json(svc.cancel(execution_id, caller.id, reason.reason)))

    @router.post("/api/v1/executions/{execution_id}/steps/{step_id}/retry", response_model=ExecutionOut)
    def retry_step(request: Request, execution_id: str, step_id: str, caller: Caller,
                   body: CarryIn | None = None) -> JSONResponse:
        """Bring a failed step of a failed execution back (409 ``RUNBOOK_STEP_NOT_RETRYABLE`` otherwise) and
        carry the execution on; completed steps are not re-run."""
        require(caller, auth.RUNBOOKS_OPERATE)
        carry = body or CarryIn()
        visible(caller, execution_id)
        return api.idempotent(
            request, caller, carry, 200,
            lambda: carried(svc.retry_step(execution_id, step_id, caller.id, carry.reason), carry.run))

    @router.post("/api/v1/executions/{execution_id}/replay", status_code=201, response_model=ExecutionOut)
    def replay(request: Request, execution_id: str, caller: Caller, body: CarryIn | None = None) -> JSONResponse:
        """A new execution of the same template version with the same inputs and context (201, the new one)."""
        require(caller, auth.RUNBOOKS_OPERATE)
        carry = body or CarryIn()
        visible(caller, execution_id)
        return api.idempotent(request, caller, carry, 201,
                              lambda: carried(svc.replay(execution_id, caller.id, carry.reason), carry.run))

    @router.post("/api/v1/executions/{execution_id}/run", response_model=ExecutionOut)
    def run_execution(request: Request, execution_id: str, caller: Caller) -> JSONResponse:
        """Carry the execution forward in this process until it is final, paused or only waits are left."""
        require(caller, auth.RUNBOOKS_OPERATE)
        visible(caller, execution_id)
        return api.idempotent(request, caller, None, 200, lambda: _json(svc.run(execution_id)))

    @router.post("/api/v1/runbook-events", status_code=202, response_model=EventOut)
    def send_event(request: Request, body: EventIn, caller: Caller) -> JSONResponse:
        """Deliver an event to wait-for-event steps of the tenant's executions with this correlation id (matched
        on their next run)."""
        require(caller, auth.RUNBOOKS_OPERATE)
        tenant = api._tenant_for(caller, body.tenant)

        def run() -> dict[str, Any]:
            event_id = svc.send_event(body.correlation_id, body.payload, actor=caller.id, tenant=tenant)
            return {"event_id": event_id, "correlation_id": body.correlation_id, "tenant": tenant}

        return api.idempotent(request, caller, body, 202, run)

    # --- observability ------------------------------------------------------------------------------------
    @router.get("/api/v1/executions/{execution_id}/logs", response_model=Page)
    def logs(
        execution_id: str,
        caller: Caller,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """The execution's log lines, oldest first."""
        require(caller, auth.RUNBOOKS_READ)
        visible(caller, execution_id)
        return page(svc.logs(execution_id), limit, cursor)

    @router.get("/api/v1/executions/{execution_id}/evidence", response_model=Page)
    def evidence(
        execution_id: str,
        caller: Caller,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """The execution's evidence (approvals, service answers ...), oldest first, each with its digest."""
        require(caller, auth.RUNBOOKS_READ)
        visible(caller, execution_id)
        return page(svc.evidence(execution_id), limit, cursor)

    return router


__all__ = ["CarryIn", "DocumentIn", "EventIn", "ExecutionOut", "ReasonIn", "StartIn", "TemplateOut", "build_router"]
