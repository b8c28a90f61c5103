"""The workflow layer (seed 004) under ``/api/v1/workflow``: an edge over ``saferails.workflow.WorkflowService``.

Tasks (create, list, get with its SLA record, transition), action plans (create, list, get, activate, archive,
transition), SLA configs (create, list, update, delete), SLA records and breaches (``GET /sla/breaches``,
``POST /sla/sweep``), automation triggers (create, list, update, delete), ``/stats`` and ``/metadata`` (the
state machines). Every path is also served under seed 004's ``/api/workflow/...`` (same handlers, not repeated
in the OpenAPI document), so its examples work unchanged.

Who acts: the authenticated principal, with the workflow roles its identity roles grant (``auth.WORKFLOW_ROLES``,
as ``saferails.cli.common.workflow_roles`` on the CLI): ``user`` for every role, ``agency`` for operators and
admins, ``admin`` for admins. The workflow service checks its own permissions against those roles (403
``PERMISSION_DENIED``: a ``user`` moves only tasks it created or is assigned to). Reading needs
``workflow:read``.

Tenants: workflow objects carry no tenant yet; they belong to the ``default`` tenant. A principal that does not
see it gets 404 for each object, empty lists, and 403 when creating.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from saferails.errors import InsufficientPermissions, InvalidInput, NotFound
from saferails.http import auth
from saferails.http.auth import Principal, require
from saferails.http.paging import jsonable, offset_of, page
from saferails.http.routes import MAX_LIST, Api
from saferails.workflow.machines import ACTION_PLAN, TASK
from saferails.workflow.ops import PlanInput, TaskInput
from saferails.workflow.permissions import Permission, WorkflowActor
from saferails.workflow.sla import SlaMonitor

WORKFLOW_TENANT = "default"
V1 = "/api/v1/workflow"
SEED = "/api/workflow"
MAX_TASKS = 1000  # the service's own ceiling for one list


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TransitionIn(_Body):
    """Seed 004's transition body: ``notes`` is recorded as the reason when ``reason`` is not given."""

    target_state: str = Field(min_length=1, max_length=50, examples=["in_progress"])
    context: dict[str, Any] = Field(default_factory=dict)
    notes: str = Field(default="", max_length=10_000)
    reason: str = Field(default="", max_length=10_000)


class PlanTransitionIn(_Body):
    target_state: str = Field(min_length=1, max_length=50, examples=["active"])
    reason: str = Field(default="", max_length=10_000)


class SlaConfigIn(_Body):
    service_area: str = Field(min_length=1, max_length=100, examples=["intake"])
    task_type: str = Field(min_length=1, max_length=100, examples=["intake"])
    target_minutes: int = Field(ge=1, le=525_600, examples=[60])
    active: bool = True


class SlaConfigPatch(_Body):
    target_minutes: int | None = Field(default=None, ge=1, le=525_600)
    active: bool | None = None


class TriggerIn(BaseModel):
    """A trigger document (``saferails.workflow.triggers``): id, event_type, predicate, actions ..."""

    model_config = ConfigDict(extra="allow")


class TriggerPatch(_Body):
    event_type: str | None = Field(default=None, min_length=1, max_length=100)
    predicate: dict[str, Any] | None = None
    actions: list[dict[str, Any]] | None = None
    description: str | None = Field(default=None, max_length=10_000)
    active: bool | None = None


class TaskOut(BaseModel):
    """A task (``saferails.workflow.views.TaskView``); ``GET /tasks/{id}`` adds its SLA record as ``sla``."""

    model_config = ConfigDict(extra="allow")

    id: str
    title: str
    task_type: str
    priority: str
    state: str
    assigned_to: str | None
    created_by: str
    action_plan_id: str | None
    version: int
    created_at: str
    updated_at: str


class PlanOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    title: str
    goals: list[str]
    state: str
    created_by: str
    version: int


class Page(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


def _empty() -> dict[str, Any]:
    return {"items": [], "next_cursor": None}


def build_router(api: Api) -> APIRouter:
    router = APIRouter(tags=["workflow"])
    store = api.store
    Caller = Annotated[Principal, Depends(api.principal)]

    def route(method: str, path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Serve a handler at ``/api/v1/workflow{path}`` and, outside the OpenAPI document, seed 004's
        ``/api/workflow{path}``."""

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            router.add_api_route(V1 + path, handler, methods=[method], **kwargs)
            router.add_api_route(SEED + path, handler, methods=[method], include_in_schema=False, **kwargs)
            return handler

        return register

    def reader(principal: Principal) -> bool:
        """``workflow:read``; False when the caller cannot see the workflow's tenant (it then sees nothing)."""
        require(principal, auth.WORKFLOW_READ)
        return principal.sees_tenant(WORKFLOW_TENANT)

    def actor(principal: Principal) -> WorkflowActor:
        """The workflow actor the principal acts as (403 outside the workflow's tenant)."""
        if not principal.sees_tenant(WORKFLOW_TENANT):
            raise InsufficientPermissions(principal.id, sorted(principal.roles), f"tenant:{WORKFLOW_TENANT}")
        roles = frozenset(role for permission, role in auth.WORKFLOW_ROLES.items() if principal.can(permission))
        return WorkflowActor(principal.id, roles)

    def existing(principal: Principal, kind: str, object_id: str) -> None:
        """A caller outside the workflow's tenant is told the object does not exist."""
        if not principal.sees_tenant(WORKFLOW_TENANT):
            raise NotFound(kind, object_id)

    def bounded(limit: int, cursor: str | None) -> int:
        """How many rows to ask the service for so the page and the next-page check fit."""
        wanted = offset_of(cursor) + limit + 1
        if wanted > MAX_TASKS + 1:
            raise InvalidInput(f"pages end at {MAX_TASKS} items: narrow the filter")
        return min(wanted, MAX_TASKS)

    # --- tasks --------------------------------------------------------------------------------------------
    @route("POST", "/tasks", status_code=201, response_model=TaskOut)
    def create_task(request: Request, body: TaskInput, caller: Caller) -> JSONResponse:
        """Create a task in ``new`` as the authenticated principal (opens its SLA record)."""
        who = actor(caller)
        return api.idempotent(request, caller, body, 201,
                              lambda: jsonable(store.workflow.create_task(who, **body.model_dump())))

    @route("GET", "/tasks", response_model=Page)
    def list_tasks(
        caller: Caller,
        state: str | None = None,
        task_type: str | None = None,
        assigned_to: str | None = None,
        action_plan_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Tasks, newest first."""
        if not reader(caller):
            return _empty()
        tasks = store.workflow.list_tasks(state=state, task_type=task_type, assigned_to=assigned_to,
                                          action_plan_id=action_plan_id, limit=bounded(limit, cursor))
        return page(tasks, limit, cursor)

    @route("GET", "/tasks/{task_id}", response_model=TaskOut)
    def get_task(task_id: str, caller: Caller) -> Any:
        """A task and its SLA record (``sla``: null when no SLA config covers its type)."""
        if not reader(caller):
            raise NotFound(TASK, task_id)
        task = store.workflow.get_task(task_id)
        return jsonable(task) | {"sla": jsonable(store.workflow.sla_record(task_id))}

    @route("POST", "/tasks/{task_id}/transition", response_model=TaskOut)
    def transition_task(request: Request, task_id: str, body: TransitionIn, caller: Caller) -> JSONResponse:
        """Move a task (409 ``INVALID_TRANSITION`` / ``TRANSITION_GUARD_FAILED`` when the machine refuses)."""
        existing(caller, TASK, task_id)
        who = actor(caller)
        return api.idempotent(request, caller, body, 200, lambda: jsonable(store.workflow.transition_task(
            who, task_id, body.target_state, reason=body.reason or body.notes, context=body.context or None)))

    # --- action plans -------------------------------------------------------------------------------------
    @route("POST", "/action-plans", status_code=201, response_model=PlanOut)
    def create_plan(request: Request, body: PlanInput, caller: Caller) -> JSONResponse:
        """Create an action plan in ``draft`` (needs the ``agency`` or ``admin`` workflow role)."""
        who = actor(caller)
        return api.idempotent(request, caller, body, 201,
                              lambda: jsonable(store.workflow.create_action_plan(who, **body.model_dump())))

    @route("GET", "/action-plans", response_model=Page)
    def list_plans(
        caller: Caller,
        state: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Action plans, newest first."""
        if not reader(caller):
            return _empty()
        return page(store.workflow.list_action_plans(state=state, limit=bounded(limit, cursor)), limit, cursor)

    @route("GET", "/action-plans/{plan_id}", response_model=PlanOut)
    def get_plan(plan_id: str, caller: Caller) -> Any:
        if not reader(caller):
            raise NotFound(ACTION_PLAN, plan_id)
        return jsonable(store.workflow.get_action_plan(plan_id))

    def plan_change(request: Request, caller: Principal, plan_id: str, target: str, reason: str,
                    body: BaseModel | None) -> JSONResponse:
        existing(caller, ACTION_PLAN, plan_id)
        who = actor(caller)
        return api.idempotent(request, caller, body, 200, lambda: jsonable(
            store.workflow.transition_action_plan(who, plan_id, target, reason=reason)))

    @route("POST", "/action-plans/{plan_id}/activate", response_model=PlanOut)
    def activate_plan(request: Request, plan_id: str, caller: Caller) -> JSONResponse:
        """``draft -> active`` (needs ACTIVATE_ACTION_PLAN)."""
        return plan_change(request, caller, plan_id, "active", "", None)

    @route("POST", "/action-plans/{plan_id}/archive", response_model=PlanOut)
    def archive_plan(request: Request, plan_id: str, caller: Caller) -> JSONResponse:
        return plan_change(request, caller, plan_id, "archived", "", None)

    @route("POST", "/action-plans/{plan_id}/transition", response_model=PlanOut)
    def transition_plan(request: Request, plan_id: str, body: PlanTransitionIn, caller: Caller) -> JSONResponse:
        return plan_change(request, caller, plan_id, body.target_state, body.reason, body)

    # --- SLA ----------------------------------------------------------------------------------------------
    @route("POST", "/sla-configs", status_code=201)
    def create_sla(request: Request, body: SlaConfigIn, caller: Caller) -> JSONResponse:
        """One config per (service_area, task_type): the same config again answers the stored one (200; seed
        004's example is one of the defaults), a different one is 400 ``INVALID_INPUT``. Needs MANAGE_SLA."""
        who = actor(caller)
        same = [c for c in store.workflow.list_sla_configs()
                if (c.service_area, c.task_type, c.target_minutes, c.active)
                == (body.service_area, body.task_type, body.target_minutes, body.active)]
        if same and who.can(Permission.MANAGE_SLA):
            return JSONResponse(jsonable(same[0]), status_code=200)
        return api.idempotent(request, caller, body, 201,
                              lambda: jsonable(store.workflow.create_sla_config(who, **body.model_dump())))

    @route("GET", "/sla-configs", response_model=Page)
    def list_sla(
        caller: Caller,
        active_only: bool = False,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        if not reader(caller):
            return _empty()
        return page(store.workflow.list_sla_configs(active_only=active_only), limit, cursor)

    @route("PATCH", "/sla-configs/{config_id}")
    def update_sla(config_id: str, body: SlaConfigPatch, caller: Caller) -> Any:
        """Change the target or switch the config off; records already started keep their target."""
        existing(caller, "sla_config", config_id)
        return jsonable(store.workflow.update_sla_config(actor(caller), config_id, **body.model_dump()))

    @route("DELETE", "/sla-configs/{config_id}", status_code=204)
    def delete_sla(config_id: str, caller: Caller) -> Response:
        existing(caller, "sla_config", config_id)
        store.workflow.delete_sla_config(actor(caller), config_id)
        return Response(status_code=204)

    @route("GET", "/sla/breaches", response_model=Page)
    def breaches(
        caller: Caller,
        open_only: bool = False,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Breached SLA records, most overdue first (``open_only``: tasks not finished yet)."""
        if not reader(caller):
            return _empty()
        return page(store.workflow.list_sla_records(breached=True, open_only=open_only,
                                                    limit=bounded(limit, cursor)), limit, cursor)

    @route("POST", "/sla/sweep")
    def sweep(request: Request, caller: Caller) -> JSONResponse:
        """Mark overdue SLA records breached now, alert and escalate their tasks (permission ``sweeps:run``)."""
        require(caller, auth.SWEEP)
        actor(caller)
        return api.idempotent(request, caller, None, 200, lambda: {"breaches": jsonable(
            SlaMonitor(store.sessions).sweep_breaches(store.clock.now()))})

    # --- triggers -----------------------------------------------------------------------------------------
    @route("POST", "/triggers", status_code=201)
    def create_trigger(request: Request, body: TriggerIn, caller: Caller) -> JSONResponse:
        """Store an automation trigger (needs MANAGE_TRIGGERS); an existing id is 400 ``INVALID_INPUT``."""
        who = actor(caller)
        return api.idempotent(request, caller, body, 201,
                              lambda: store.workflow.create_trigger(who, body.model_dump()).to_dict())

    @route("GET", "/triggers", response_model=Page)
    def list_triggers(
        caller: Caller,
        active_only: bool = False,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        if not reader(caller):
            return _empty()
        return page([t.to_dict() for t in store.workflow.list_triggers(active_only=active_only)], limit, cursor)

    @route("PATCH", "/triggers/{trigger_id}")
    def update_trigger(trigger_id: str, body: TriggerPatch, caller: Caller) -> Any:
        """Replace any of event_type, predicate, actions, description, active (re-validated)."""
        existing(caller, "automation_trigger", trigger_id)
        changes = body.model_dump(exclude_unset=True)
        return store.workflow.update_trigger(actor(caller), trigger_id, **changes).to_dict()

    @route("DELETE", "/triggers/{trigger_id}", status_code=204)
    def delete_trigger(trigger_id: str, caller: Caller) -> Response:
        existing(caller, "automation_trigger", trigger_id)
        store.workflow.delete_trigger(actor(caller), trigger_id)
        return Response(status_code=204)

    # --- introspection ------------------------------------------------------------------------------------
    @route("GET", "/stats")
    def stats(caller: Caller) -> Any:
        """Counts by state, SLA met / breached / open, outbox lag and dead letters (needs VIEW_STATS)."""
        return store.workflow.stats(actor(caller))

    @route("GET", "/metadata")
    def metadata(caller: Caller) -> Any:
        """The state machines, guard rules, priorities, permissions by role and the stored triggers."""
        if not reader(caller):
            raise NotFound("workflow", WORKFLOW_TENANT)
        return jsonable(store.workflow.metadata())

    return router


__all__ = ["WORKFLOW_TENANT", "build_router"]
