"""``saferails runbook ...``: the runbook subcommands of the CLI (an edge over ``saferails.runbooks``).

Same contract as ``saferails.cli``: tables by default, one JSON document with ``--json``, errors as
``error[CODE]`` with the error's exit code. ``start``, ``run``, ``resume``, ``retry-step`` and ``replay`` carry
the execution forward in this process (``RunbookService.run``: until it is final or every runnable step waits)
unless ``--prefect`` is given; then the Prefect flow carries it (``flows.runbook_api``, imported only then:
the core never imports Prefect). A step waiting for approval is decided with ``saferails approve ACTION`` (its
action id is shown by ``status``), then ``saferails runbook run EXEC`` continues in-process.
``start`` takes a registered runbook id or a YAML file (registered first, same version and content or refused).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

from saferails import cli_output as out
from saferails.api import Store
from saferails.errors import InvalidInput, SaferailsError
from saferails.runbooks.definition import RunbookDefinition
from saferails.runbooks.lifecycle import EXECUTION_MACHINE
from saferails.runbooks.schema import runbook_json_schema
from saferails.runbooks.service import RunbookService
from saferails.runbooks.validation import load_runbook
from saferails.runbooks.views import Evidence, ExecutionContext, ExecutionView, LegalBasis, LogLine, TemplateView

__all__ = ["RunbookWaitTimeout", "add_runbook_commands", "execution_rows", "render_execution", "run_runbook_command"]

CLI_ACTOR = "cli"
STEP_COLUMNS = ("step", "type", "state", "attempts", "result")
TEMPLATE_COLUMNS = ("id", "version", "name", "steps", "registered by", "registered")
LOG_COLUMNS = ("time", "step", "level", "message")
EVIDENCE_COLUMNS = ("time", "step", "kind", "data")
EXECUTION_COLUMNS = ("execution", "runbook", "state", "tenant", "started by", "started", "waiting on")


class Io(Protocol):
    """What the CLI's output object offers (``saferails.cli._Io``)."""

    stdout: TextIO
    json: bool

    def result(self, data: Any, text: Callable[[TextIO], object]) -> None: ...


Handler = Callable[[Store, argparse.Namespace, Io], int]


class RunbookWaitTimeout(SaferailsError):
    """``--prefect`` waited ``--wait-timeout`` seconds and the execution is still not final."""

    code = "RUNBOOK_WAIT_TIMEOUT"
    exit_code = 11
    http_status = 504


def service(store: Store) -> RunbookService:
    return RunbookService(store.sessions, store.clock, store.actions)


# --- rendering --------------------------------------------------------------------------------------------------


def _cell(value: Any, width: int = 70) -> str:
    text = value if isinstance(value, str) else json.dumps(out.to_jsonable(value), sort_keys=True)
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def jsonable(view: Any) -> Any:
    """JSON data of a view dataclass (or a list of them)."""
    if isinstance(view, list | tuple):
        return [jsonable(v) for v in view]
    if dataclasses.is_dataclass(view) and not isinstance(view, type):
        return out.to_jsonable(dataclasses.asdict(view))
    return out.to_jsonable(view)


def execution_rows(view: ExecutionView) -> list[list[Any]]:
    """One row per step: what it is, its state, attempts and its output, skip reason, error or awaited action."""
    rows = []
    for s in view.steps:
        if s.state == "skipped":
            result = f"skipped: {s.skip_reason}"
        elif s.state == "awaiting_approval":
            result = f"approve action {s.approval_action_id}"
        elif s.error:
            result = f"error: {s.error}"
        else:
            result = "-" if s.output is None else s.output
        rows.append([s.step_id, s.step_type, s.state, s.attempts, _cell(result)])
    return rows


def render_execution(view: ExecutionView, stream: TextIO) -> None:
    basis = view.context.get("legal_basis") or None
    fields: list[tuple[str, Any]] = [
        ("execution", view.id),
        ("runbook", f"{view.runbook_id} v{view.runbook_version}"),
        ("state", view.state),
        ("tenant", view.tenant),
        ("started by", view.initiated_by),
        ("legal basis", legal_basis_text(basis)),
        ("inputs", _cell(view.inputs, 100)),
        ("started", view.created_at),
        ("deadline", view.deadline),
        ("error", view.error or "-"),
    ]
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        stream.write(f"{key.ljust(width)}  {out.format_time(value) if key in ('started', 'deadline') else value}\n")
    stream.write("\n")
    out.render_table(STEP_COLUMNS, execution_rows(view), stream)
    for step in view.steps:
        if step.state == "awaiting_approval":
            stream.write(f"\nnext: saferails approve {step.approval_action_id} --approver ID [--code CODE], then "
                         f"saferails runbook run {view.id}\n")
        elif step.state == "awaiting_event":
            stream.write(f"\nnext: saferails runbook send-event {step.correlation_id} --tenant {view.tenant} "
                         f"--payload-json '{{...}}', then saferails runbook run {view.id}\n")


def legal_basis_text(basis: dict[str, Any] | None) -> str:
    if not basis:
        return "-"
    return f"{basis['authority']} / {basis['classification']} / {basis['retention_days']} days"


def _template_rows(templates: Sequence[TemplateView]) -> list[list[Any]]:
    return [[t.runbook_id, t.version, t.name, len(t.definition.get("steps", [])), t.registered_by, t.created_at]
            for t in templates]


def _template_text(t: TemplateView) -> Callable[[TextIO], None]:
    def text(stream: TextIO) -> None:
        d = RunbookDefinition.model_validate(t.definition)
        stream.write(f"{d.id} v{d.version}: {d.name}\n{d.description}\n")
        stream.write(f"global timeout {d.global_timeout}, max concurrency {d.max_concurrency}, registered by "
                     f"{t.registered_by} at {out.format_time(t.created_at)}\n\n")
        rows = [[s.id, s.type, ", ".join(s.depends_on) or "-", d.retry_for(s).max_attempts, s.name or "-"]
                for s in d.steps]
        out.render_table(("step", "type", "depends on", "attempts", "name"), rows, stream)

    return text


def _execution_result(view: ExecutionView, io: Io, **extra: Any) -> int:
    io.result(jsonable(view) | extra, lambda s: render_execution(view, s))
    return 0


# --- argument helpers -------------------------------------------------------------------------------------------


def _inputs(pairs: Sequence[str] | None, inputs_json: str | None) -> dict[str, Any]:
    """``--inputs-json`` first, then each ``--input k=v``; a value that parses as JSON (number, list, object,
    true/false) is taken as such, anything else is a string."""
    inputs: dict[str, Any] = {}
    if inputs_json is not None:
        loaded = _json_object(inputs_json, "--inputs-json")
        inputs.update(loaded)
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--input expects key=value, got {pair!r}")
        try:
            inputs[key] = json.loads(value)
        except json.JSONDecodeError:
            inputs[key] = value
    return inputs


def _json_object(text: str, flag: str) -> dict[str, Any]:
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{flag} is not valid JSON: {exc}") from None
    if not isinstance(loaded, dict):
        raise InvalidInput(f"{flag} must be a JSON object")
    return loaded


def _context(args: argparse.Namespace) -> ExecutionContext:
    basis_fields = (args.authority, args.classification, args.retention_days)
    if any(v is not None for v in basis_fields) and not all(v is not None for v in basis_fields):
        raise InvalidInput("a legal basis needs --authority, --classification and --retention-days together")
    try:
        basis = None if args.authority is None else LegalBasis(
            authority=args.authority, classification=args.classification, retention_days=args.retention_days)
        return ExecutionContext(tenant=args.tenant, initiated_by=args.user, legal_basis=basis,
                                authorized_users=list(args.authorized_user or []))
    except ValueError as exc:  # pydantic.ValidationError
        raise InvalidInput(f"invalid execution context: {exc}") from None


def _definition_or_id(svc: RunbookService, ref: str, actor: str) -> tuple[str, str | None]:
    """A runbook id as given, or, for an existing YAML file, the id and version it registers."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        view = svc.register(load_runbook(path), actor)
        return view.runbook_id, view.version
    return ref, None


def _prefect_api() -> Any:
    return importlib.import_module("flows.runbook_api")


# --- commands ---------------------------------------------------------------------------------------------------


def cmd_validate(store: Store, args: argparse.Namespace, io: Io) -> int:
    d: RunbookDefinition = load_runbook(Path(args.file))
    data = {"valid": True, "id": d.id, "version": d.version, "steps": [s.id for s in d.steps]}
    io.result(data, lambda s: s.write(f"{args.file}: valid runbook {d.id} v{d.version} ({len(d.steps)} steps: "
                                      f"{', '.join(x.id for x in d.steps)})\n"))
    return 0


def cmd_register(store: Store, args: argparse.Namespace, io: Io) -> int:
    view = service(store).register(load_runbook(Path(args.file)), args.actor)
    io.result(jsonable(view), _template_text(view))
    return 0


def cmd_list(store: Store, args: argparse.Namespace, io: Io) -> int:
    templates = service(store).templates()
    io.result(jsonable(templates),
              lambda s: out.render_table(TEMPLATE_COLUMNS, _template_rows(templates), s, empty="(no runbooks)"))
    return 0


def cmd_show(store: Store, args: argparse.Namespace, io: Io) -> int:
    view = service(store).template(args.id, args.version)
    io.result(jsonable(view), _template_text(view))
    return 0


def cmd_start(store: Store, args: argparse.Namespace, io: Io) -> int:
    svc = service(store)
    runbook_id, version = _definition_or_id(svc, args.runbook, args.user)
    inputs = _inputs(args.input, args.inputs_json)
    context = _context(args)
    view = svc.start(runbook_id, inputs, context=context, version=version or args.version)
    return _carry_on(store, view, args, io)


def cmd_run(store: Store, args: argparse.Namespace, io: Io) -> int:
    return _carry_on(store, service(store).status(args.execution), args, io)


def _waiting_on(view: ExecutionView) -> str:
    """What a not-final execution waits for: its steps awaiting an approval or an event ("-" when none)."""
    waiting = [s.step_id for s in view.steps if s.state in ("awaiting_approval", "awaiting_event")]
    return ", ".join(waiting) or "-"


def cmd_executions(store: Store, args: argparse.Namespace, io: Io) -> int:
    if args.limit < 1:
        raise InvalidInput(f"--limit must be at least 1, got {args.limit}")
    if args.state is not None and args.state not in EXECUTION_MACHINE.states:
        # An unknown state would list nothing, which reads like "no such executions": say it is a typo instead.
        raise InvalidInput(f"--state {args.state!r} is not an execution state; one of "
                           f"{', '.join(EXECUTION_MACHINE.states)}", state=args.state)
    views = service(store).list_executions(runbook_id=args.runbook, state=args.state, tenant=args.tenant,
                                           limit=args.limit)
    rows = [[v.id, f"{v.runbook_id} v{v.runbook_version}", v.state, v.tenant, v.initiated_by, v.created_at,
             _waiting_on(v)] for v in views]
    io.result(jsonable(views),
              lambda s: out.render_table(EXECUTION_COLUMNS, rows, s, empty="(no executions)"))
    return 0


def cmd_status(store: Store, args: argparse.Namespace, io: Io) -> int:
    return _execution_result(service(store).status(args.execution), io)


def cmd_pause(store: Store, args: argparse.Namespace, io: Io) -> int:
    return _execution_result(service(store).pause(args.execution, args.actor, args.reason), io)


def cmd_cancel(store: Store, args: argparse.Namespace, io: Io) -> int:
    return _execution_result(service(store).cancel(args.execution, args.actor, args.reason), io)


def _carry_on(store: Store, view: ExecutionView, args: argparse.Namespace, io: Io) -> int:
    """Continue ``view``'s execution: in this process, or with ``--prefect`` through a flow run. A flow run in
    this process (no ``--deployment``) ends with the process, so the command then waits for a final state
    (a paused approval waits for its answer in the Prefect UI)."""
    if not args.prefect:
        return _execution_result(service(store).run(view.id), io)
    api = _prefect_api()
    run_id = api.run_execution(view.id, deployment=args.deployment, poll_interval=args.poll_interval)
    if args.deployment is None or args.wait:
        try:
            view = api.wait_for_execution(view.id, args.wait_timeout)
        except TimeoutError:
            raise RunbookWaitTimeout(f"execution {view.id} is not final after {args.wait_timeout:g} s (flow run "
                                     f"{run_id}); the store keeps its state",
                                     execution_id=view.id, flow_run_id=str(run_id)) from None
    return _execution_result(view, io, flow_run_id=str(run_id))


def cmd_resume(store: Store, args: argparse.Namespace, io: Io) -> int:
    return _carry_on(store, service(store).resume(args.execution, args.actor, args.reason), args, io)


def cmd_retry_step(store: Store, args: argparse.Namespace, io: Io) -> int:
    return _carry_on(store, service(store).retry_step(args.execution, args.step, args.actor, args.reason), args, io)


def cmd_replay(store: Store, args: argparse.Namespace, io: Io) -> int:
    return _carry_on(store, service(store).replay(args.execution, args.actor, args.reason), args, io)


def cmd_logs(store: Store, args: argparse.Namespace, io: Io) -> int:
    lines: list[LogLine] = service(store).logs(args.execution)
    rows = [[ln.at, ln.step_id or "-", ln.level, ln.message] for ln in lines]
    io.result(jsonable(lines),
              lambda s: out.render_table(LOG_COLUMNS, rows, s, empty="(no log lines)"))
    return 0


def cmd_evidence(store: Store, args: argparse.Namespace, io: Io) -> int:
    items: list[Evidence] = service(store).evidence(args.execution)
    rows = [[e.at, e.step_id, e.kind, _cell(e.content, 90)] for e in items]
    io.result(jsonable(items),
              lambda s: out.render_table(EVIDENCE_COLUMNS, rows, s, empty="(no evidence)"))
    return 0


def cmd_send_event(store: Store, args: argparse.Namespace, io: Io) -> int:
    payload = _json_object(args.payload_json, "--payload-json") if args.payload_json else {}
    event_id = service(store).send_event(args.correlation_id, payload, actor=args.actor, tenant=args.tenant)
    io.result({"correlation_id": args.correlation_id, "tenant": args.tenant, "event_id": event_id},
              lambda s: s.write(f"event for {args.correlation_id!r} stored; waiting executions match it on their "
                                "next run\n"))
    return 0


def cmd_schema(store: Store, args: argparse.Namespace, io: Io) -> int:
    # Always JSON: the schema is for editors, there is no table form of it.
    out.print_json(runbook_json_schema(), io.stdout)
    return 0


# --- parser -----------------------------------------------------------------------------------------------------


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _prefect_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prefect", action="store_true",
                   help="carry the execution in a Prefect flow run (PREFECT_API_URL names the server); without "
                        "--deployment the run is in this process and the command waits for the outcome")
    p.add_argument("--deployment", help="with --prefect: run this deployment (e.g. saferails-runbook/runbook)")
    p.add_argument("--wait", action="store_true", help="with --deployment: also wait for the outcome")
    p.add_argument("--wait-timeout", type=float, default=3600.0, metavar="SECONDS")
    p.add_argument("--poll-interval", type=int, default=10, metavar="SECONDS",
                   help="how often the flow re-checks events and answers")


def add_runbook_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``runbook`` and its subcommands to the CLI's subparsers; each sets ``handler`` (store, args, io)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "runbook", help="validate, start and control runbooks", description="validate, start and control runbooks")
    sub = parser.add_subparsers(dest="runbook_command", required=True, parser_class=type(parser))

    def command(name: str, handler: Handler, help_text: str, *, execution: bool = False) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        if execution:
            p.add_argument("execution", metavar="EXEC", help="execution id")
        _json_flag(p)
        return p

    command("validate", cmd_validate, "check a runbook YAML file (names the offending step)").add_argument("file")
    p = command("register", cmd_register, "register a runbook YAML file as a template version")
    p.add_argument("file")
    p.add_argument("--actor", default=CLI_ACTOR)
    command("list", cmd_list, "registered runbook templates")
    p = command("show", cmd_show, "one runbook template and its steps")
    p.add_argument("id")
    p.add_argument("--version", help="default: the latest registered")

    p = command("start", cmd_start, "start an execution of a registered runbook id or a YAML file")
    p.add_argument("runbook", metavar="ID|FILE")
    p.add_argument("--input", action="append", metavar="KEY=VALUE", help="one input; repeat (JSON values parsed)")
    p.add_argument("--inputs-json", metavar="JSON", help="all inputs as one JSON object")
    p.add_argument("--version", help="template version (default: the latest)")
    p.add_argument("--tenant", default="default")
    p.add_argument("--user", default=CLI_ACTOR, help="the initiating user")
    p.add_argument("--authority", help="legal basis: the authority (with --classification, --retention-days)")
    p.add_argument("--classification", help="legal basis: data classification")
    p.add_argument("--retention-days", type=int, help="legal basis: retention in days")
    p.add_argument("--authorized-user", action="append", help="a user authorised on this execution; repeat")
    _prefect_flags(p)

    p = command("executions", cmd_executions, "executions, newest first (filter by runbook, state, tenant)")
    p.add_argument("--runbook", metavar="ID", help="only executions of this runbook id")
    p.add_argument("--state", metavar="S",
                   help="only executions in this state (pending, running, paused, awaiting, completed, failed, ...)")
    p.add_argument("--tenant", metavar="T", help="only executions of this tenant")
    p.add_argument("--limit", type=int, default=100, metavar="N", help="at most N executions (default 100)")
    _prefect_flags(command("run", cmd_run, "carry an execution forward until it is final or waits", execution=True))
    command("status", cmd_status, "an execution and each step's state", execution=True)
    p = command("pause", cmd_pause, "pause an execution (running steps finish, no new ones start)", execution=True)
    p.add_argument("--actor", required=True)
    p.add_argument("--reason", required=True)
    p = command("resume", cmd_resume, "resume a paused execution", execution=True)
    p.add_argument("--actor", required=True)
    p.add_argument("--reason", default="")
    _prefect_flags(p)
    p = command("cancel", cmd_cancel, "cancel an execution", execution=True)
    p.add_argument("--actor", required=True)
    p.add_argument("--reason", required=True)
    p = command("retry-step", cmd_retry_step, "re-run one failed step and continue from there", execution=True)
    p.add_argument("step")
    p.add_argument("--actor", required=True)
    p.add_argument("--reason", default="")
    _prefect_flags(p)
    p = command("replay", cmd_replay, "a new execution with the same inputs and template version", execution=True)
    p.add_argument("--actor", required=True)
    p.add_argument("--reason", default="")
    _prefect_flags(p)
    command("logs", cmd_logs, "an execution's log lines", execution=True)
    command("evidence", cmd_evidence, "an execution's evidence", execution=True)
    p = command("send-event", cmd_send_event, "deliver an event to executions waiting on CORRELATION")
    p.add_argument("correlation_id", metavar="CORRELATION")
    p.add_argument("--payload-json", metavar="JSON", help="the event payload (a JSON object)")
    p.add_argument("--actor", default=CLI_ACTOR)
    p.add_argument("--tenant", default="default", help="events match executions of this tenant only")
    command("schema", cmd_schema, "the JSON Schema of runbook files (for editors)")
    return parser


def run_runbook_command(store: Store, args: argparse.Namespace, io: Io) -> int:
    """Dispatch a parsed ``runbook`` command (the handler set by ``add_runbook_commands``)."""
    handler: Handler = args.handler
    return handler(store, args, io)
