"""The workflow commands of the ``saferails`` CLI (seed 004): tasks, action plans, triggers, SLA, the outbox,
metadata/statistics and the metrics endpoint. ``saferails.cli`` hooks them in with ``add_workflow_commands``.

Contract (the same as every other command): tables by default, one JSON document with ``--json``, errors as
``error[CODE]: message`` with the error class's exit code (2 bad input, 4 not found, 5 invalid transition,
7 permission denied).

Who acts: ``--actor ID`` (default ``cli``) with ``--role ROLE`` (repeatable; default ``user``, which may only
create tasks and move the tasks it created or is assigned to). Roles are asserted by whoever runs the command:
the CLI is an operator's edge, as trusted as the database URL it is given. The operational commands (``outbox
...``, ``sla sweep``, ``metrics serve``, ``workflow metadata``) act as the automation itself and take no actor.

The CLI reads time from the system clock; tests that need time to move use the Python API with a ManualClock.
"""

from __future__ import annotations

import argparse
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

import yaml

from saferails import cli_output as out
from saferails.api import Store
from saferails.errors import ConfigurationError, InvalidInput
from saferails.workflow.dispatcher import DispatchReport, OutboxDispatcher
from saferails.workflow.machines import ACTION_PLAN_MACHINE, PRIORITIES, TASK_MACHINE
from saferails.workflow.metrics import METRICS
from saferails.workflow.permissions import WorkflowActor
from saferails.workflow.server import serve_metrics
from saferails.workflow.service import WorkflowService
from saferails.workflow.sla import SlaMonitor
from saferails.workflow.triggers import validate_trigger
from saferails.workflow.views import ActionPlanView, SlaRecordView, TaskView, TriggerView

__all__ = ["DEFAULT_ACTOR", "DEFAULT_METRICS_PORT", "DEFAULT_ROLE", "add_workflow_commands"]

DEFAULT_ACTOR = "cli"
DEFAULT_ROLE = "user"
DEFAULT_METRICS_PORT = 9464

TASK_COLUMNS = ("id", "title", "type", "priority", "state", "assignee", "plan", "created")
PLAN_COLUMNS = ("id", "title", "state", "goals", "created_by", "created")
TRIGGER_COLUMNS = ("id", "event_type", "active", "actions", "description")
SLA_COLUMNS = ("service_area", "task_type", "target_minutes", "active", "id")


class Output(Protocol):
    """What a command writes through (``saferails.cli._Io``): a result as JSON or as text."""

    json: bool
    stdout: TextIO

    def result(self, data: Any, text: Callable[[TextIO], object]) -> None: ...


Command = Callable[[Store, argparse.Namespace, Output], int]


# --- helpers ----------------------------------------------------------------------------------------------------


def _service(store: Store) -> WorkflowService:
    return store.workflow


def _actor(args: argparse.Namespace) -> WorkflowActor:
    return WorkflowActor(args.actor, frozenset(args.role or (DEFAULT_ROLE,)))


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


def _metadata(pairs: Sequence[str] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--meta expects key=value, got {pair!r}")
        meta[key] = value
    return meta


def _iso(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no timezone (e.g. 2026-11-22T10:00:00Z)")
    return parsed


def _task_rows(tasks: Sequence[TaskView]) -> list[list[Any]]:
    return [[out.short_id(t.id), t.title, t.task_type, t.priority, t.state, t.assigned_to,
             out.short_id(t.action_plan_id), t.created_at] for t in tasks]


def _block(fields: Sequence[tuple[str, Any]], stream: TextIO) -> None:
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        shown = out.format_time(value) if isinstance(value, datetime) else ("-" if value in (None, "") else value)
        stream.write(f"{key.ljust(width)}  {shown}\n")


def render_task(task: TaskView, record: SlaRecordView | None, stream: TextIO) -> None:
    """A task as a key/value block, then its SLA record (or that it has none)."""
    _block([("id", task.id), ("title", task.title), ("type", task.task_type), ("priority", task.priority),
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


def _show_task(svc: WorkflowService, task: TaskView, io: Output) -> int:
    record = svc.sla_record(task.id)
    io.result(_task_data(task, record), lambda s: render_task(task, record, s))
    return 0


def _show_plan(plan: ActionPlanView, io: Output) -> int:
    io.result(asdict(plan), lambda s: _block(
        [("id", plan.id), ("title", plan.title), ("description", plan.description), ("state", plan.state),
         ("goals", "; ".join(plan.goals)), ("created_by", plan.created_by), ("version", plan.version),
         ("created", plan.created_at), ("updated", plan.updated_at)], s))
    return 0


def _trigger_rows(triggers: Sequence[TriggerView]) -> list[list[Any]]:
    return [[t.id, t.event_type, "yes" if t.active else "no", ", ".join(a.get("type", "?") for a in t.actions),
             t.description] for t in triggers]


# --- tasks ------------------------------------------------------------------------------------------------------


def cmd_task_create(store: Store, args: argparse.Namespace, io: Output) -> int:
    svc = _service(store)
    task = svc.create_task(
        _actor(args), title=args.title, description=args.description, task_type=args.type, priority=args.priority,
        assigned_to=args.assign, due_date=args.due, action_plan_id=args.plan, metadata=_metadata(args.meta),
    )
    return _show_task(svc, task, io)


def cmd_task_show(store: Store, args: argparse.Namespace, io: Output) -> int:
    svc = _service(store)
    return _show_task(svc, svc.get_task(args.id), io)


def cmd_task_list(store: Store, args: argparse.Namespace, io: Output) -> int:
    if args.state is not None and args.state not in TASK_MACHINE.states:
        raise InvalidInput(f"unknown task state {args.state!r}; known: {', '.join(sorted(TASK_MACHINE.states))}")
    tasks = _service(store).list_tasks(state=args.state, task_type=args.type, assigned_to=args.assignee,
                                       action_plan_id=args.plan, limit=args.limit)
    io.result([asdict(t) for t in tasks],
              lambda s: out.render_table(TASK_COLUMNS, _task_rows(tasks), s, empty="(no tasks)"))
    return 0


def cmd_task_transition(store: Store, args: argparse.Namespace, io: Output) -> int:
    svc = _service(store)
    task = svc.transition_task(_actor(args), args.id, args.target, reason=args.reason)
    return _show_task(svc, task, io)


# --- action plans -----------------------------------------------------------------------------------------------


def cmd_plan_create(store: Store, args: argparse.Namespace, io: Output) -> int:
    plan = _service(store).create_action_plan(_actor(args), title=args.title, description=args.description,
                                              goals=list(args.goal or ()), metadata=_metadata(args.meta))
    return _show_plan(plan, io)


def cmd_plan_show(store: Store, args: argparse.Namespace, io: Output) -> int:
    return _show_plan(_service(store).get_action_plan(args.id), io)


def cmd_plan_list(store: Store, args: argparse.Namespace, io: Output) -> int:
    if args.state is not None and args.state not in ACTION_PLAN_MACHINE.states:
        known = ", ".join(sorted(ACTION_PLAN_MACHINE.states))
        raise InvalidInput(f"unknown action plan state {args.state!r}; known: {known}")
    plans = _service(store).list_action_plans(state=args.state, limit=args.limit)
    rows = [[out.short_id(p.id), p.title, p.state, len(p.goals), p.created_by, p.created_at] for p in plans]
    io.result([asdict(p) for p in plans],
              lambda s: out.render_table(PLAN_COLUMNS, rows, s, empty="(no action plans)"))
    return 0


def cmd_plan_activate(store: Store, args: argparse.Namespace, io: Output) -> int:
    return _show_plan(_service(store).activate_action_plan(_actor(args), args.id), io)


def cmd_plan_archive(store: Store, args: argparse.Namespace, io: Output) -> int:
    return _show_plan(_service(store).archive_action_plan(_actor(args), args.id), io)


# --- triggers ---------------------------------------------------------------------------------------------------


def _trigger_documents(args: argparse.Namespace) -> list[dict[str, Any]]:
    flags = (args.id, args.event_type, args.predicate, args.action)
    if args.file is not None:
        if any(f is not None for f in flags):
            raise InvalidInput("give either --file or --id/--event-type/--predicate/--action, not both")
        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot read {args.file}: {exc.strerror or exc}") from None
        loaded = _document(text, args.file)
        docs = loaded if isinstance(loaded, list) else [loaded]
        if not docs or not all(isinstance(d, dict) for d in docs):
            raise InvalidInput(f"{args.file} must hold one trigger mapping or a list of them")
        return docs
    if args.id is None or args.event_type is None or not args.action:
        raise InvalidInput("trigger add needs --file, or --id, --event-type and at least one --action")
    doc: dict[str, Any] = {"id": args.id, "event_type": args.event_type, "description": args.description,
                           "active": not args.inactive,
                           "actions": [_mapping(a, "--action") for a in args.action]}
    if args.predicate is not None:
        doc["predicate"] = _mapping(args.predicate, "--predicate")
    return [doc]


def cmd_trigger_add(store: Store, args: argparse.Namespace, io: Output) -> int:
    svc = _service(store)
    docs = _trigger_documents(args)
    # Check every document (and id clashes) before storing any, so a bad file writes nothing.
    specs = [validate_trigger(d) for d in docs]
    ids = [s.id for s in specs]
    taken = sorted({i for i in ids if ids.count(i) > 1} | ({t.id for t in svc.list_triggers()} & set(ids)))
    if taken:
        raise InvalidInput(f"trigger id(s) already exist or repeat: {', '.join(taken)}", trigger_ids=taken)
    actor = _actor(args)
    added = [svc.create_trigger(actor, d) for d in docs]
    io.result([t.to_dict() for t in added], lambda s: out.render_table(TRIGGER_COLUMNS, _trigger_rows(added), s))
    return 0


def cmd_trigger_list(store: Store, args: argparse.Namespace, io: Output) -> int:
    triggers = _service(store).list_triggers(active_only=args.active_only)
    io.result([t.to_dict() for t in triggers],
              lambda s: out.render_table(TRIGGER_COLUMNS, _trigger_rows(triggers), s, empty="(no triggers)"))
    return 0


def _set_active(store: Store, args: argparse.Namespace, io: Output, active: bool) -> int:
    trigger = _service(store).update_trigger(_actor(args), args.id, active=active)
    io.result(trigger.to_dict(), lambda s: out.render_table(TRIGGER_COLUMNS, _trigger_rows([trigger]), s))
    return 0


def cmd_trigger_disable(store: Store, args: argparse.Namespace, io: Output) -> int:
    return _set_active(store, args, io, False)


def cmd_trigger_enable(store: Store, args: argparse.Namespace, io: Output) -> int:
    return _set_active(store, args, io, True)


def cmd_trigger_remove(store: Store, args: argparse.Namespace, io: Output) -> int:
    _service(store).delete_trigger(_actor(args), args.id)
    io.result({"removed": args.id}, lambda s: s.write(f"trigger {args.id} removed\n"))
    return 0


# --- SLA --------------------------------------------------------------------------------------------------------


def cmd_sla_list(store: Store, args: argparse.Namespace, io: Output) -> int:
    configs = _service(store).list_sla_configs(active_only=args.active_only)
    rows = [[c.service_area, c.task_type, c.target_minutes, "yes" if c.active else "no", c.id] for c in configs]
    io.result([asdict(c) for c in configs],
              lambda s: out.render_table(SLA_COLUMNS, rows, s, empty="(no SLA configs)"))
    return 0


def cmd_sla_set(store: Store, args: argparse.Namespace, io: Output) -> int:
    """Create the config for (service area, task type), or update its target / active flag if it exists."""
    svc = _service(store)
    area = args.service_area or args.task_type
    existing = next((c for c in svc.list_sla_configs() if (c.service_area, c.task_type) == (area, args.task_type)),
                    None)
    if existing is None:
        if args.target_minutes is None:
            raise InvalidInput("a new SLA config needs --target-minutes")
        config = svc.create_sla_config(_actor(args), service_area=area, task_type=args.task_type,
                                       target_minutes=args.target_minutes, active=args.active is not False)
    else:
        config = svc.update_sla_config(_actor(args), existing.id, target_minutes=args.target_minutes,
                                       active=args.active)
    row = [config.service_area, config.task_type, config.target_minutes, "yes" if config.active else "no", config.id]
    io.result(asdict(config), lambda s: out.render_table(SLA_COLUMNS, [row], s))
    return 0


def cmd_sla_sweep(store: Store, args: argparse.Namespace, io: Output) -> int:
    breaches = SlaMonitor(store.sessions).sweep_breaches(store.clock.now(), limit=args.limit)
    rows = [[b.task_id, b.target_minutes, b.overdue_minutes] for b in breaches]
    io.result([asdict(b) for b in breaches], lambda s: out.render_table(
        ("task", "target_minutes", "overdue_minutes"), rows, s, empty="(no SLA breaches)"))
    return 0


# --- outbox -----------------------------------------------------------------------------------------------------


def _dispatcher(store: Store, args: argparse.Namespace) -> OutboxDispatcher:
    worker = getattr(args, "worker", None) or f"cli:{socket.gethostname()}:{os.getpid()}"
    # Same variable as the dispatch flow (tasks/workflow.py): webhooks are signed with it; unset, they fail.
    secret = os.environ.get("SAFERAILS_WEBHOOK_SECRET") or None
    return OutboxDispatcher(store.sessions, store.clock, worker, webhook_secret=secret)


def cmd_outbox_dispatch(store: Store, args: argparse.Namespace, io: Output) -> int:
    if args.batch < 1:
        raise InvalidInput("--batch must be at least 1", batch=args.batch)
    dispatcher = _dispatcher(store, args)
    report: DispatchReport = dispatcher.run_once(args.batch) if args.once else dispatcher.drain(args.batch)
    data = asdict(report)
    io.result(data, lambda s: s.write(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in data.items()) + "\n"))
    return 0


def cmd_outbox_dead_letters(store: Store, args: argparse.Namespace, io: Output) -> int:
    letters = _dispatcher(store, args).dead_letters(limit=args.limit)
    rows = [[d.event_id, d.event_type, f"{d.aggregate_type}:{out.short_id(d.aggregate_id)}", d.attempts,
             d.dead_lettered_at, (d.last_error or "-")[:60]] for d in letters]
    io.result([asdict(d) for d in letters], lambda s: out.render_table(
        ("event", "type", "aggregate", "attempts", "dead_lettered", "last_error"), rows, s,
        empty="(no dead letters)"))
    return 0


def cmd_outbox_requeue(store: Store, args: argparse.Namespace, io: Output) -> int:
    _dispatcher(store, args).requeue(args.id)
    io.result({"requeued": args.id}, lambda s: s.write(f"event {args.id} requeued\n"))
    return 0


# --- introspection and serving ----------------------------------------------------------------------------------


def cmd_workflow_metadata(store: Store, args: argparse.Namespace, io: Output) -> int:
    data = _service(store).metadata()

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
                                            ", ".join(a.get("type", "?") for a in t["actions"]), t["description"]]
                                           for t in data["triggers"]], stream, empty="(no triggers)")

    io.result(data, text)
    return 0


def cmd_workflow_stats(store: Store, args: argparse.Namespace, io: Output) -> int:
    data = _service(store).stats(_actor(args))
    io.result(data, lambda s: render_stats(data, s))
    return 0


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


def cmd_metrics_serve(store: Store, args: argparse.Namespace, io: Output) -> int:
    """Serve until interrupted (Ctrl-C, SIGINT); the address is printed (and flushed) first."""
    try:
        server = serve_metrics(args.host, args.port, store.sessions, METRICS)
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
                                 host=args.host, port=args.port) from None
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


# --- parser -----------------------------------------------------------------------------------------------------


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _actor_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--actor", default=DEFAULT_ACTOR, help=f"who acts (recorded in audit; default {DEFAULT_ACTOR})")
    p.add_argument("--role", action="append", metavar="ROLE",
                   help=f"a role of the actor, repeatable: admin, agency, user (default {DEFAULT_ROLE})")


def add_workflow_commands(sub: Any) -> None:
    """Add ``task``, ``plan``, ``trigger``, ``sla``, ``outbox``, ``workflow`` and ``metrics`` to the CLI's
    subparsers (``sub`` is the object ``add_subparsers`` returned). Each leaf sets ``handler``."""

    def group(name: str, help_text: str) -> Any:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
        return p.add_subparsers(dest=f"{name}_command", required=True)

    def command(into: Any, name: str, handler: Command, help_text: str, *, actor: bool = False,
                ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = into.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        if actor:
            _actor_flags(p)
        _json_flag(p)
        return p

    task = group("task", "workflow tasks (seed 004)")
    p = command(task, "create", cmd_task_create, "create a task (state new; opens its SLA record)", actor=True)
    p.add_argument("--title", required=True)
    p.add_argument("--description", default="")
    p.add_argument("--type", default="general", help="task type, e.g. intake, assessment, review (default general)")
    p.add_argument("--priority", default="medium", choices=PRIORITIES)
    p.add_argument("--assign", metavar="USER", help="assignee")
    p.add_argument("--due", type=_iso, metavar="ISO", help="due date (with timezone)")
    p.add_argument("--plan", metavar="ID", help="action plan the task belongs to")
    p.add_argument("--meta", action="append", metavar="KEY=VALUE", help="metadata, repeatable (service_area=...)")
    p = command(task, "show", cmd_task_show, "a task and its SLA record")
    p.add_argument("id")
    p = command(task, "list", cmd_task_list, "tasks, newest first")
    p.add_argument("--state")
    p.add_argument("--type")
    p.add_argument("--assignee")
    p.add_argument("--plan", metavar="ID")
    p.add_argument("--limit", type=int, default=50, help="1..1000")
    p = command(task, "transition", cmd_task_transition, "move a task to another state", actor=True)
    p.add_argument("id")
    p.add_argument("target", help="in_progress, blocked, completed or cancelled")
    p.add_argument("--reason", default="")

    plan = group("plan", "action plans (seed 004)")
    p = command(plan, "create", cmd_plan_create, "create an action plan (state draft)", actor=True)
    p.add_argument("--title", required=True)
    p.add_argument("--description", default="")
    p.add_argument("--goal", action="append", help="repeatable; activation needs at least one")
    p.add_argument("--meta", action="append", metavar="KEY=VALUE")
    p = command(plan, "show", cmd_plan_show, "one action plan")
    p.add_argument("id")
    p = command(plan, "list", cmd_plan_list, "action plans, newest first")
    p.add_argument("--state")
    p.add_argument("--limit", type=int, default=50)
    for name, handler, text in (("activate", cmd_plan_activate, "activate a draft plan (needs a goal)"),
                                ("archive", cmd_plan_archive, "archive a plan")):
        command(plan, name, handler, text, actor=True).add_argument("id")

    trigger = group("trigger", "automation triggers run by the outbox dispatcher")
    p = command(trigger, "list", cmd_trigger_list, "stored triggers")
    p.add_argument("--active-only", action="store_true")
    p = command(trigger, "add", cmd_trigger_add,
                "store trigger(s) from --file (YAML/JSON, one or a list) or from flags", actor=True)
    p.add_argument("--file", metavar="PATH")
    p.add_argument("--id")
    p.add_argument("--event-type", help="outbox event type, e.g. TaskStateChanged")
    p.add_argument("--predicate", metavar="YAML|JSON", help="a condition, e.g. '{field: payload.to_state, "
                   "operator: eq, value: completed}'")
    p.add_argument("--action", action="append", metavar="YAML|JSON", help="an action mapping, repeatable")
    p.add_argument("--description", default="")
    p.add_argument("--inactive", action="store_true", help="store it disabled")
    for name, handler, text in (("disable", cmd_trigger_disable, "stop a trigger from firing"),
                                ("enable", cmd_trigger_enable, "let a disabled trigger fire again"),
                                ("remove", cmd_trigger_remove, "delete a trigger")):
        command(trigger, name, handler, text, actor=True).add_argument("id")

    sla = group("sla", "SLA configurations and the breach sweep")
    p = command(sla, "list", cmd_sla_list, "SLA configs by service area and task type")
    p.add_argument("--active-only", action="store_true")
    p = command(sla, "set", cmd_sla_set, "create or update the SLA config of a task type", actor=True)
    p.add_argument("--task-type", required=True)
    p.add_argument("--service-area", help="default: the task type (as seed 004's defaults)")
    p.add_argument("--target-minutes", type=int)
    active = p.add_mutually_exclusive_group()
    active.add_argument("--active", dest="active", action="store_const", const=True, default=None)
    active.add_argument("--inactive", dest="active", action="store_const", const=False)
    p = command(sla, "sweep", cmd_sla_sweep, "mark overdue SLA records breached, alert and escalate (now)")
    p.add_argument("--limit", type=int, default=500)

    outbox = group("outbox", "the outbox dispatcher")
    p = command(outbox, "dispatch", cmd_outbox_dispatch, "process due events (until none is due, or --once)")
    p.add_argument("--once", action="store_true", help="one batch only")
    p.add_argument("--batch", type=int, default=100, help="events per batch")
    p.add_argument("--worker", help="worker id recorded on claims (default cli:<host>:<pid>)")
    p = command(outbox, "dead-letters", cmd_outbox_dead_letters, "events that kept failing")
    p.add_argument("--limit", type=int, default=100)
    p = command(outbox, "requeue", cmd_outbox_requeue, "give a dead-lettered event a fresh start")
    p.add_argument("id")

    workflow = group("workflow", "introspection and statistics")
    command(workflow, "metadata", cmd_workflow_metadata, "state machines, rules, permissions and triggers")
    command(workflow, "stats", cmd_workflow_stats, "counts by state, SLA, outbox lag (needs admin/agency)",
            actor=True)

    metrics = group("metrics", "Prometheus metrics and health endpoints")
    p = command(metrics, "serve", cmd_metrics_serve, "serve /metrics /health/live /health/ready (blocks)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_METRICS_PORT,
                   help=f"default {DEFAULT_METRICS_PORT}; 0 picks a free one")
