"""``saferails task|plan|trigger|sla|outbox|workflow|metrics``: the workflow layer (seed 004).

Tasks, action plans, triggers, SLA, the outbox, metadata/statistics and the metrics endpoint. Errors as every
other command: 2 bad input, 4 not found, 5 invalid transition, 7 permission denied.

Who acts: the authenticated principal (``saferails.cli.common.run``); ``--actor ID`` is accepted only with its own
id. ``--role ROLE`` (repeatable; default ``user``, which may only create tasks and move the tasks it created or is
assigned to) picks workflow roles the principal HOLDS: ``admin`` needs the identity role admin, ``agency`` the
role operator (or admin), ``user`` any role; a claimed role the principal lacks is refused (exit 7).
The operational commands (``outbox ...``, ``sla sweep``, ``metrics serve``, ``workflow metadata``) act
as the automation itself and take no actor.

The CLI reads time from the system clock; tests that need time to move use the Python API with a ManualClock.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO

import typer
import yaml

from saferails.api import Store
from saferails.cli import output as out
from saferails.cli.common import (
    Io,
    JsonFlag,
    acting_as,
    current_principal,
    iso_time,
    key_values,
    resolve,
    run,
    workflow_roles,
)
from saferails.errors import ConfigurationError, InvalidInput, PermissionDenied
from saferails.identity import Permission
from saferails.workflow.dispatcher import DispatchReport, OutboxDispatcher
from saferails.workflow.machines import ACTION_PLAN_MACHINE, TASK_MACHINE
from saferails.workflow.metrics import METRICS
from saferails.workflow.permissions import WorkflowActor
from saferails.workflow.server import serve_metrics
from saferails.workflow.service import WorkflowService
from saferails.workflow.sla import SlaMonitor
from saferails.workflow.triggers import validate_trigger
from saferails.workflow.views import ActionPlanView, SlaRecordView, TaskView, TriggerView

__all__ = ["DEFAULT_ACTOR", "DEFAULT_METRICS_PORT", "DEFAULT_ROLE", "TASK_COLUMNS", "register", "render_stats",
           "render_task"]

DEFAULT_ACTOR = "cli"
DEFAULT_ROLE = "user"
DEFAULT_METRICS_PORT = 9464

TASK_COLUMNS = ("id", "title", "type", "priority", "state", "assignee", "plan", "created")
PLAN_COLUMNS = ("id", "title", "state", "goals", "created_by", "created")
TRIGGER_COLUMNS = ("id", "event_type", "active", "actions", "description")
SLA_COLUMNS = ("service_area", "task_type", "target_minutes", "active", "id")

# The same values as saferails.workflow.machines.PRIORITIES, spelled as a type so the option offers them.
Priority = Literal["low", "medium", "high", "critical"]
ActorOpt = Annotated[str, typer.Option("--actor", help=f"who acts (recorded in audit; default {DEFAULT_ACTOR})")]
RoleOpt = Annotated[list[str] | None, typer.Option(
    "--role", metavar="ROLE", help=f"a role of the actor, repeatable: admin, agency, user (default {DEFAULT_ROLE})")]
Id = Annotated[str, typer.Argument(metavar="ID", help="the id, or its first 4+ characters")]
Limit = Annotated[int, typer.Option("--limit")]
ActiveOnly = Annotated[bool, typer.Option("--active-only")]
Meta = Annotated[list[str] | None, typer.Option("--meta", metavar="KEY=VALUE",
                                                help="metadata, repeatable (service_area=...)")]

groups = {name: typer.Typer(help=text, no_args_is_help=False) for name, text in (
    ("task", "workflow tasks (seed 004)"), ("plan", "action plans (seed 004)"),
    ("trigger", "automation triggers run by the outbox dispatcher"), ("sla", "SLA configurations and the breach sweep"),
    ("outbox", "the outbox dispatcher"), ("workflow", "introspection and statistics"),
    ("metrics", "Prometheus metrics and health endpoints"))}
task_app, plan_app, trigger_app, sla_app = groups["task"], groups["plan"], groups["trigger"], groups["sla"]
outbox_app, workflow_app, metrics_app = groups["outbox"], groups["workflow"], groups["metrics"]


# --- helpers ----------------------------------------------------------------------------------------------------


def _actor(actor: str, roles: list[str] | None) -> WorkflowActor:
    principal = current_principal()
    claimed = frozenset(roles or (DEFAULT_ROLE,))
    # "--actor cli" is the option's default: the principal acts.
    who = acting_as(principal, None if actor == DEFAULT_ACTOR else actor, "--actor")
    held = workflow_roles(principal)
    if not claimed <= held:
        raise PermissionDenied(f"{who!r} does not hold workflow role(s) {', '.join(sorted(claimed - held))} "
                               f"(holds {', '.join(sorted(held))})", actor=who, claimed=sorted(claimed))
    return WorkflowActor(who, claimed)


def _document(text: str, what: str) -> Any:
    """A YAML or JSON value given on the command line or in a file (JSON is YAML)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{what} is neither valid YAML nor JSON: {exc}") from None


def _mapping(text: str, what: str) -> dict[str, Any]:
    value = _document(text, what)
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a mapping (YAML or a JSON object)")
    return value


def _with_service(ctx: typer.Context, as_json: bool, command: Callable[[WorkflowService, Io], int]) -> None:
    run(ctx, as_json, lambda store, io: command(store.workflow, io))


def _task_rows(tasks: Sequence[TaskView]) -> list[list[Any]]:
    return [[out.short_id(t.id), t.title, t.task_type, t.priority, t.state, t.assigned_to,
             out.short_id(t.action_plan_id), t.created_at] for t in tasks]


def render_task(task: TaskView, record: SlaRecordView | None, stream: TextIO) -> None:
    """A task as a key/value block, then its SLA record (or that it has none)."""
    out.render_fields([("id", task.id), ("title", task.title), ("type", task.task_type), ("priority", task.priority),
            ("state", task.state), ("assignee", task.assigned_to), ("created_by", task.created_by),
            ("due", task.due_date), ("plan", task.action_plan_id),
            ("metadata", out.to_jsonable(task.metadata) or None), ("version", task.version),
            ("created", task.created_at), ("updated", task.updated_at)], stream)
    if record is None:
        stream.write("sla           none (no active SLA config for this task type)\n")
        return
    status = "BREACHED" if record.breached else ("met" if record.completed_at else "open")
    stream.write(f"sla           {record.target_minutes} min, due {out.format_time(record.due_at)}, {status}")
    if record.actual_minutes is not None:
        stream.write(f", took {record.actual_minutes:g} min")
    stream.write("\n")


def _task_data(task: TaskView, record: SlaRecordView | None) -> dict[str, Any]:
    return asdict(task) | {"sla": None if record is None else asdict(record)}


def _show_task(svc: WorkflowService, task: TaskView, io: Io) -> int:
    record = svc.sla_record(task.id)
    io.result(_task_data(task, record), lambda s: render_task(task, record, s))
    return 0


def _show_plan(plan: ActionPlanView, io: Io) -> int:
    io.result(asdict(plan), lambda s: out.render_fields(
        [("id", plan.id), ("title", plan.title), ("description", plan.description), ("state", plan.state),
         ("goals", "; ".join(plan.goals)), ("created_by", plan.created_by), ("version", plan.version),
         ("created", plan.created_at), ("updated", plan.updated_at)], s))
    return 0


def _trigger_rows(triggers: Sequence[TriggerView]) -> list[list[Any]]:
    return [[t.id, t.event_type, "yes" if t.active else "no", ", ".join(a.get("type", "?") for a in t.actions),
             t.description] for t in triggers]


# --- tasks ------------------------------------------------------------------------------------------------------


@task_app.command("create")
def task_create(
    ctx: typer.Context,
    title: Annotated[str, typer.Option("--title")],
    description: Annotated[str, typer.Option("--description")] = "",
    task_type: Annotated[str, typer.Option(
        "--type", help="task type, e.g. intake, assessment, review (default general)")] = "general",
    priority: Annotated[Priority, typer.Option("--priority")] = "medium",
    assign: Annotated[str | None, typer.Option("--assign", "--assignee", metavar="USER", help="assignee")] = None,
    due: Annotated[datetime | None, typer.Option("--due", parser=iso_time, metavar="ISO",
                                                 help="due date (with timezone)")] = None,
    plan: Annotated[str | None, typer.Option("--plan", metavar="ID",
                                             help="action plan the task belongs to")] = None,
    meta: Meta = None, actor: ActorOpt = DEFAULT_ACTOR, role: RoleOpt = None, as_json: JsonFlag = False,
) -> None:
    """create a task (state new; opens its SLA record)"""
    metadata = key_values(meta, "--meta")

    def command(svc: WorkflowService, io: Io) -> int:
        task = svc.create_task(_actor(actor, role), title=title, description=description, task_type=task_type,
                               priority=priority, assigned_to=assign, due_date=due,
                               action_plan_id=None if plan is None else resolve(svc.sessions, "action plan", plan),
                               metadata=metadata)
        return _show_task(svc, task, io)

    _with_service(ctx, as_json, command)


@task_app.command("show")
def task_show(ctx: typer.Context, task_id: Id, as_json: JsonFlag = False) -> None:
    """a task and its SLA record"""
    _with_service(ctx, as_json, lambda svc, io: _show_task(svc, svc.get_task(resolve(svc.sessions, "task", task_id)),
                                                           io))


@task_app.command("list")
def task_list(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option("--state")] = None,
    task_type: Annotated[str | None, typer.Option("--type")] = None,
    assignee: Annotated[str | None, typer.Option("--assignee")] = None,
    plan: Annotated[str | None, typer.Option("--plan", metavar="ID")] = None,
    limit: Annotated[int, typer.Option("--limit", help="1..1000")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """tasks, newest first"""
    if state is not None and state not in TASK_MACHINE.states:
        raise InvalidInput(f"unknown task state {state!r}; known: {', '.join(sorted(TASK_MACHINE.states))}")

    def command(svc: WorkflowService, io: Io) -> int:
        plan_id = None if plan is None else resolve(svc.sessions, "action plan", plan)
        tasks = svc.list_tasks(state=state, task_type=task_type, assigned_to=assignee, action_plan_id=plan_id,
                               limit=limit)
        return io.table([asdict(t) for t in tasks], TASK_COLUMNS, _task_rows(tasks), empty="(no tasks)")

    _with_service(ctx, as_json, command)


@task_app.command("transition")
def task_transition(
    ctx: typer.Context, task_id: Id,
    target: Annotated[str, typer.Argument(help="in_progress, blocked, completed or cancelled")],
    reason: Annotated[str, typer.Option("--reason")] = "",
    actor: ActorOpt = DEFAULT_ACTOR, role: RoleOpt = None, as_json: JsonFlag = False,
) -> None:
    """move a task to another state"""

    def command(svc: WorkflowService, io: Io) -> int:
        task = svc.transition_task(_actor(actor, role), resolve(svc.sessions, "task", task_id), target,
                                   reason=reason)
        return _show_task(svc, task, io)

    _with_service(ctx, as_json, command)


# --- action plans -----------------------------------------------------------------------------------------------


@plan_app.command("create")
def plan_create(
    ctx: typer.Context,
    title: Annotated[str, typer.Option("--title")],
    description: Annotated[str, typer.Option("--description")] = "",
    goal: Annotated[list[str] | None, typer.Option("--goal",
                                                   help="repeatable; activation needs at least one")] = None,
    meta: Meta = None, actor: ActorOpt = DEFAULT_ACTOR, role: RoleOpt = None, as_json: JsonFlag = False,
) -> None:
    """create an action plan (state draft)"""
    metadata = key_values(meta, "--meta")
    _with_service(ctx, as_json, lambda svc, io: _show_plan(svc.create_action_plan(
        _actor(actor, role), title=title, description=description, goals=list(goal or ()), metadata=metadata), io))


@plan_app.command("show")
def plan_show(ctx: typer.Context, plan_id: Id, as_json: JsonFlag = False) -> None:
    """one action plan"""
    _with_service(ctx, as_json, lambda svc, io: _show_plan(
        svc.get_action_plan(resolve(svc.sessions, "action plan", plan_id)), io))


@plan_app.command("list")
def plan_list(ctx: typer.Context, state: Annotated[str | None, typer.Option("--state")] = None, limit: Limit = 50,
              as_json: JsonFlag = False) -> None:
    """action plans, newest first"""
    if state is not None and state not in ACTION_PLAN_MACHINE.states:
        known = ", ".join(sorted(ACTION_PLAN_MACHINE.states))
        raise InvalidInput(f"unknown action plan state {state!r}; known: {known}")

    def command(svc: WorkflowService, io: Io) -> int:
        plans = svc.list_action_plans(state=state, limit=limit)
        rows = [[out.short_id(p.id), p.title, p.state, len(p.goals), p.created_by, p.created_at] for p in plans]
        return io.table([asdict(p) for p in plans], PLAN_COLUMNS, rows, empty="(no action plans)")

    _with_service(ctx, as_json, command)


@plan_app.command("activate")
def plan_activate(ctx: typer.Context, plan_id: Id, actor: ActorOpt = DEFAULT_ACTOR, role: RoleOpt = None,
                  as_json: JsonFlag = False) -> None:
    """activate a draft plan (needs a goal)"""
    _with_service(ctx, as_json, lambda svc, io: _show_plan(
        svc.activate_action_plan(_actor(actor, role), resolve(svc.sessions, "action plan", plan_id)), io))


@plan_app.command("archive")
def plan_archive(ctx: typer.Context, plan_id: Id, actor: ActorOpt = DEFAULT_ACTOR, role: RoleOpt = None,
                 as_json: JsonFlag = False) -> None:
    """archive a plan"""
    _with_service(ctx, as_json, lambda svc, io: _show_plan(
        svc.archive_action_plan(_actor(actor, role), resolve(svc.sessions, "action plan", plan_id)), io))


# --- triggers ---------------------------------------------------------------------------------------------------


def _trigger_file(file: str) -> list[dict[str, Any]]:
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read {file}: {exc.strerror or exc}") from None
    loaded = _document(text, file)
    docs = loaded if isinstance(loaded, list) else [loaded]
    if not docs or not all(isinstance(d, dict) for d in docs):
        raise InvalidInput(f"{file} must hold one trigger mapping or a list of them")
    return docs


@trigger_app.command("add")
def trigger_add(
    ctx: typer.Context,
    file: Annotated[str | None, typer.Option("--file", metavar="PATH")] = None,
    trigger_id: Annotated[str | None, typer.Option("--id")] = None,
    event_type: Annotated[str | None, typer.Option("--event-type",
                                                   help="outbox event type, e.g. TaskStateChanged")] = None,
    predicate: Annotated[str | None, typer.Option("--predicate", metavar="YAML|JSON", help=(
        "a condition, e.g. '{field: payload.to_state, operator: eq, value: completed}'"))] = None,
    action: Annotated[list[str] | None, typer.Option("--action", metavar="YAML|JSON",
                                                     help="an action mapping, repeatable")] = None,
    description: Annotated[str, typer.Option("--description")] = "",
    inactive: Annotated[bool, typer.Option("--inactive", help="store it disabled")] = False,
    actor: ActorOpt = DEFAULT_ACTOR, role: RoleOpt = None, as_json: JsonFlag = False,
) -> None:
    """store trigger(s) from --file (YAML/JSON, one or a list) or from flags"""
    flags = (trigger_id, event_type, predicate, action)
    if file is not None and any(f is not None for f in flags):
        raise InvalidInput("give either --file or --id/--event-type/--predicate/--action, not both")
    if file is None and (trigger_id is None or event_type is None or not action):
        raise InvalidInput("trigger add needs --file, or --id, --event-type and at least one --action")

    def documents() -> list[dict[str, Any]]:
        if file is not None:
            return _trigger_file(file)
        doc: dict[str, Any] = {"id": trigger_id, "event_type": event_type, "description": description,
                               "active": not inactive, "actions": [_mapping(a, "--action") for a in action or ()]}
        if predicate is not None:
            doc["predicate"] = _mapping(predicate, "--predicate")
        return [doc]

    def command(svc: WorkflowService, io: Io) -> int:
        docs = documents()
        # Check every document (and id clashes) before storing any, so a bad file writes nothing.
        specs = [validate_trigger(d) for d in docs]
        ids = [s.id for s in specs]
        taken = sorted({i for i in ids if ids.count(i) > 1} | ({t.id for t in svc.list_triggers()} & set(ids)))
        if taken:
            raise InvalidInput(f"trigger id(s) already exist or repeat: {', '.join(taken)}", trigger_ids=taken)
        who = _actor(actor, role)
        added = [svc.create_trigger(who, d) for d in docs]
        return io.table([t.to_dict() for t in added], TRIGGER_COLUMNS, _trigger_rows(added))

    _with_service(ctx, as_json, command)


@trigger_app.command("list")
def trigger_list(ctx: typer.Context, active_only: ActiveOnly = False, as_json: JsonFlag = False) -> None:
    """stored triggers"""

    def command(svc: WorkflowService, io: Io) -> int:
        triggers = svc.list_triggers(active_only=active_only)
        return io.table([t.to_dict() for t in triggers], TRIGGER_COLUMNS, _trigger_rows(triggers),
                        empty="(no triggers)")

    _with_service(ctx, as_json, command)


def _set_active(ctx: typer.Context, as_json: bool, trigger_id: str, actor: str, role: list[str] | None,
                active: bool) -> None:
    def command(svc: WorkflowService, io: Io) -> int:
        trigger = svc.update_trigger(_actor(actor, role), trigger_id, active=active)
        return io.table(trigger.to_dict(), TRIGGER_COLUMNS, _trigger_rows([trigger]))

    _with_service(ctx, as_json, command)


@trigger_app.command("disable")
def trigger_disable(ctx: typer.Context, trigger_id: Id, actor: ActorOpt = DEFAULT_ACTOR, role: RoleOpt = None,
                    as_json: JsonFlag = False) -> None:
    """stop a trigger from firing"""
    _set_active(ctx, as_json, trigger_id, actor, role, False)


@trigger_app.command("enable")
def trigger_enable(ctx: typer.Context, trigger_id: Id, actor: ActorOpt = DEFAULT_ACTOR, role: RoleOpt = None,
                   as_json: JsonFlag = False) -> None:
    """let a disabled trigger fire again"""
    _set_active(ctx, as_json, trigger_id, actor, role, True)


@trigger_app.command("remove")
def trigger_remove(ctx: typer.Context, trigger_id: Id, actor: ActorOpt = DEFAULT_ACTOR, role: RoleOpt = None,
                   as_json: JsonFlag = False) -> None:
    """delete a trigger"""

    def command(svc: WorkflowService, io: Io) -> int:
        svc.delete_trigger(_actor(actor, role), trigger_id)
        io.result({"removed": trigger_id}, lambda s: s.write(f"trigger {trigger_id} removed\n"))
        return 0

    _with_service(ctx, as_json, command)


# --- SLA --------------------------------------------------------------------------------------------------------


@sla_app.command("list")
def sla_list(ctx: typer.Context, active_only: ActiveOnly = False, as_json: JsonFlag = False) -> None:
    """SLA configs by service area and task type"""

    def command(svc: WorkflowService, io: Io) -> int:
        configs = svc.list_sla_configs(active_only=active_only)
        rows = [[c.service_area, c.task_type, c.target_minutes, "yes" if c.active else "no", c.id] for c in configs]
        return io.table([asdict(c) for c in configs], SLA_COLUMNS, rows, empty="(no SLA configs)")

    _with_service(ctx, as_json, command)


@sla_app.command("set")
def sla_set(
    ctx: typer.Context,
    task_type: Annotated[str, typer.Option("--task-type")],
    service_area: Annotated[str | None, typer.Option(
        "--service-area", help="default: the task type (as seed 004's defaults)")] = None,
    target_minutes: Annotated[int | None, typer.Option("--target-minutes")] = None,
    active: Annotated[bool | None, typer.Option("--active/--inactive")] = None,
    actor: ActorOpt = DEFAULT_ACTOR, role: RoleOpt = None, as_json: JsonFlag = False,
) -> None:
    """create or update the SLA config of a task type"""
    area = service_area or task_type

    def command(svc: WorkflowService, io: Io) -> int:
        """Create the config for (service area, task type), or update its target / active flag if it exists."""
        existing = next((c for c in svc.list_sla_configs() if (c.service_area, c.task_type) == (area, task_type)),
                        None)
        if existing is None:
            if target_minutes is None:
                raise InvalidInput("a new SLA config needs --target-minutes")
            config = svc.create_sla_config(_actor(actor, role), service_area=area, task_type=task_type,
                                           target_minutes=target_minutes, active=active is not False)
        else:
            config = svc.update_sla_config(_actor(actor, role), existing.id, target_minutes=target_minutes,
                                           active=active)
        row = [config.service_area, config.task_type, config.target_minutes, "yes" if config.active else "no",
               config.id]
        return io.table(asdict(config), SLA_COLUMNS, [row])

    _with_service(ctx, as_json, command)


@sla_app.command("sweep")
def sla_sweep(ctx: typer.Context, limit: Limit = 500, as_json: JsonFlag = False) -> None:
    """mark overdue SLA records breached, alert and escalate (now)"""

    def command(store: Store, io: Io) -> int:
        breaches = SlaMonitor(store.sessions).sweep_breaches(store.clock.now(), limit=limit)
        rows = [[b.task_id, b.target_minutes, b.overdue_minutes] for b in breaches]
        return io.table([asdict(b) for b in breaches], ("task", "target_minutes", "overdue_minutes"), rows,
                        empty="(no SLA breaches)")

    run(ctx, as_json, command, permission=Permission.OPERATE)


# --- outbox -----------------------------------------------------------------------------------------------------


def _dispatcher(store: Store, worker: str | None = None) -> OutboxDispatcher:
    worker = worker or f"cli:{socket.gethostname()}:{os.getpid()}"
    # Same setting as the dispatch flow (tasks/workflow.py): webhooks are signed with it; unset, they fail.
    secret = store.settings.webhook_key
    return OutboxDispatcher(store.sessions, store.clock, worker, webhook_secret=secret, egress=store.settings.egress)


@outbox_app.command("dispatch")
def outbox_dispatch(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="one batch only")] = False,
    batch: Annotated[int, typer.Option("--batch", help="events per batch")] = 100,
    worker: Annotated[str | None, typer.Option(
        "--worker", help="worker id recorded on claims (default cli:<host>:<pid>)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """process due events (until none is due, or --once)"""
    if batch < 1:
        raise InvalidInput("--batch must be at least 1", batch=batch)

    def command(store: Store, io: Io) -> int:
        dispatcher = _dispatcher(store, worker)
        report: DispatchReport = dispatcher.run_once(batch) if once else dispatcher.drain(batch)
        data = asdict(report)
        io.result(data, lambda s: s.write(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in data.items()) + "\n"))
        return 0

    run(ctx, as_json, command, permission=Permission.OPERATE)


@outbox_app.command("dead-letters")
def outbox_dead_letters(ctx: typer.Context, limit: Limit = 100, as_json: JsonFlag = False) -> None:
    """events that kept failing"""

    def command(store: Store, io: Io) -> int:
        letters = _dispatcher(store).dead_letters(limit=limit)
        rows = [[d.event_id, d.event_type, f"{d.aggregate_type}:{out.short_id(d.aggregate_id)}", d.attempts,
                 d.dead_lettered_at, (d.last_error or "-")[:60]] for d in letters]
        return io.table([asdict(d) for d in letters],
                        ("event", "type", "aggregate", "attempts", "dead_lettered", "last_error"), rows,
                        empty="(no dead letters)")

    run(ctx, as_json, command)


@outbox_app.command("requeue")
def outbox_requeue(ctx: typer.Context, event_id: Id, as_json: JsonFlag = False) -> None:
    """give a dead-lettered event a fresh start"""

    def command(store: Store, io: Io) -> int:
        _dispatcher(store).requeue(event_id)
        io.result({"requeued": event_id}, lambda s: s.write(f"event {event_id} requeued\n"))
        return 0

    run(ctx, as_json, command, permission=Permission.OPERATE)


# --- introspection and serving ----------------------------------------------------------------------------------


@workflow_app.command("metadata")
def workflow_metadata(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """state machines, rules, permissions and triggers"""

    def command(svc: WorkflowService, io: Io) -> int:
        data = svc.metadata()

        def text(stream: TextIO) -> None:
            for name, machine in data["state_machines"].items():
                stream.write(f"{name} (initial {machine['initial']}; final {', '.join(machine['final'])}):\n")
                rows = [[t["from"], t["to"], t["name"], "yes" if t["guarded"] else "no", t["description"]]
                        for t in machine["transitions"]]
                out.render_table(("from", "to", "transition", "guarded", "description"), rows, stream)
            stream.write("rules:\n" + "".join(f"  - {r}\n" for r in data["rules"]))
            stream.write("roles:\n" + "".join(f"  {r}: {', '.join(p)}\n" for r, p in data["roles"].items()))
            stream.write("triggers:\n")
            out.render_table(TRIGGER_COLUMNS, [[t["id"], t["event_type"], "yes" if t["active"] else "no",
                                                ", ".join(a.get("type", "?") for a in t["actions"]),
                                                t["description"]] for t in data["triggers"]], stream,
                             empty="(no triggers)")

        io.result(data, text)
        return 0

    _with_service(ctx, as_json, command)


@workflow_app.command("stats")
def workflow_stats(ctx: typer.Context, actor: ActorOpt = DEFAULT_ACTOR, role: RoleOpt = None,
                   as_json: JsonFlag = False) -> None:
    """counts by state, SLA, outbox lag (needs admin/agency)"""

    def command(svc: WorkflowService, io: Io) -> int:
        data = svc.stats(_actor(actor, role))
        io.result(data, lambda s: render_stats(data, s))
        return 0

    _with_service(ctx, as_json, command)


def render_stats(data: dict[str, Any], stream: TextIO) -> None:
    """``workflow_stats`` as a few readable lines (the demo prints the same)."""
    for key in ("tasks", "action_plans"):
        stream.write(f"{key.replace('_', ' ')}: " + ", ".join(f"{s} {n}" for s, n in data[key].items()) + "\n")
    sla = data["sla"]
    stream.write(f"sla: open {sla['open']}, met {sla['met']}, breached {sla['breached']} "
                 f"(still open {sla['open_breached']})\n")
    box = data["outbox"]
    stream.write(f"outbox: pending {box['pending']}, lag {box['lag_seconds']:.0f} s, "
                 f"dead letters {box['dead_letters']}\n")


@metrics_app.command("serve")
def metrics_serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help=f"default {DEFAULT_METRICS_PORT}; 0 picks a free one")
                    ] = DEFAULT_METRICS_PORT,
    as_json: JsonFlag = False,
) -> None:
    """serve /metrics /health/live /health/ready (blocks)"""

    def command(store: Store, io: Io) -> int:
        """Serve until interrupted (Ctrl-C, SIGINT); the address is printed (and flushed) first."""
        try:
            server = serve_metrics(host, port, store.sessions, METRICS)
        except OSError as exc:
            raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", host=host,
                                     port=port) from None
        paths = ["/metrics", "/health/live", "/health/ready"]
        data = {"url": server.url, "paths": paths}
        io.result(data, lambda s: s.write(f"serving {', '.join(server.url + p for p in paths)} (Ctrl-C stops)\n"))
        io.stdout.flush()  # whoever started us (a test, a supervisor) waits for this line
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
        return 0

    run(ctx, as_json, command)


def register(root: typer.Typer) -> None:
    for name, group in groups.items():
        root.add_typer(group, name=name)
