"""``saferails runbook ...``: validate, register, start and control runbooks (an edge over ``saferails.runbooks``).

``start``, ``run``, ``resume``, ``retry-step`` and ``replay`` carry the execution forward in this process
(``RunbookService.run``: until it is final or every runnable step waits) unless ``--prefect`` is given; then the
runbook runner a CLI extension provides carries it (``saferails.cli.extensions``; the Prefect project's is
``flows.cli_extension:register``, enabled with ``SAFERAILS_CLI_EXTENSIONS``). Without one, ``--prefect`` fails
with ``EXTENSION_MISSING`` (exit 2). A step waiting for approval is decided with ``saferails approve ACTION`` (its
action id is shown by ``status``), then ``saferails runbook run EXEC`` continues in-process. ``start`` takes a
registered runbook id or a YAML file (registered first, same version and content or refused).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from saferails.api import Store
from saferails.cli import output as out
from saferails.cli.common import (
    Io,
    JsonFlag,
    acting_as,
    current_principal,
    json_object,
    key_values,
    resolve,
    run,
    state_of,
)
from saferails.errors import InvalidInput, RunbookWaitTimeout
from saferails.identity import Permission
from saferails.runbooks.definition import RunbookDefinition
from saferails.runbooks.lifecycle import EXECUTION_MACHINE
from saferails.runbooks.schema import runbook_json_schema
from saferails.runbooks.service import RunbookService
from saferails.runbooks.validation import load_runbook
from saferails.runbooks.views import Evidence, ExecutionContext, ExecutionView, LegalBasis, LogLine, TemplateView

__all__ = ["EVIDENCE_COLUMNS", "LOG_COLUMNS", "execution_rows", "register", "render_execution"]

CLI_ACTOR = "cli"
STEP_COLUMNS = ("step", "type", "state", "attempts", "result")
TEMPLATE_COLUMNS = ("id", "version", "name", "steps", "registered by", "registered")
LOG_COLUMNS = ("time", "step", "level", "message")
EVIDENCE_COLUMNS = ("time", "step", "kind", "data")
EXECUTION_COLUMNS = ("execution", "runbook", "state", "tenant", "started by", "started", "waiting on")

app = typer.Typer(help="validate, start and control runbooks", no_args_is_help=False)


def service(store: Store) -> RunbookService:
    return RunbookService(store.sessions, store.clock, store.actions, egress=store.settings.egress)


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
    out.render_fields(fields, stream)
    stream.write("\n")
    out.render_table(STEP_COLUMNS, execution_rows(view), stream)
    for step in view.steps:
        if step.state == "awaiting_approval":
            stream.write(f"\nnext: saferails approve {step.approval_action_id} [--code CODE] (as the approver), then "
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


# --- option values ----------------------------------------------------------------------------------------------


def _inputs(pairs: Sequence[str] | None, inputs_json: str | None) -> dict[str, Any]:
    """``--inputs-json`` first, then each ``--input k=v``; a value that parses as JSON (number, list, object,
    true/false) is taken as such, anything else is a string."""

    def value(_key: str, text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    loaded = {} if inputs_json is None else json_object(inputs_json, "--inputs-json")
    return loaded | key_values(pairs, "--input", value)


def _definition_or_id(svc: RunbookService, ref: str, actor: str) -> tuple[str, str | None]:
    """A runbook id as given, or, for an existing YAML file, the id and version it registers."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        view = svc.register(load_runbook(path), actor)
        return view.runbook_id, view.version
    return ref, None


@dataclass(frozen=True)
class Carry:
    """How ``start``/``run``/``resume``/``retry-step``/``replay`` carry the execution on (the ``--prefect`` flags)."""

    prefect: bool
    deployment: str | None
    wait: bool
    wait_timeout: float
    poll_interval: int


PrefectFlag = Annotated[bool, typer.Option(
    "--prefect", help="carry the execution in a Prefect flow run (needs the Prefect CLI extension: "
    "SAFERAILS_CLI_EXTENSIONS=flows.cli_extension:register; PREFECT_API_URL names the server); without "
    "--deployment the run is in this process and the command waits for the outcome")]
Deployment = Annotated[str | None, typer.Option(
    "--deployment", help="with --prefect: run this deployment (e.g. saferails-runbook/runbook)")]
Wait = Annotated[bool, typer.Option("--wait", help="with --deployment: also wait for the outcome")]
WaitTimeout = Annotated[float, typer.Option("--wait-timeout", metavar="SECONDS")]
PollInterval = Annotated[int, typer.Option("--poll-interval", metavar="SECONDS",
                                           help="how often the flow re-checks events and answers")]
Execution = Annotated[str, typer.Argument(metavar="EXEC", help="execution id, or its first 4+ characters")]
Actor = Annotated[str, typer.Option("--actor", help="must be the authenticated principal (the default)")]
Reason = Annotated[str, typer.Option("--reason")]


def _execution(svc: RunbookService, value: str) -> str:
    return resolve(svc.sessions, "runbook execution", value)


def _carry_on(ctx: typer.Context, as_json: bool, carry: Carry, change: Callable[[RunbookService], ExecutionView],
              ) -> None:
    """Apply ``change``, then continue the execution: in this process, or with ``--prefect`` through the
    registered runbook runner. A flow run in this process (no ``--deployment``) ends with the process, so the
    command then waits for a final state (a paused approval waits for its answer in the Prefect UI)."""
    # Asked before anything changes: without the extension, --prefect must not leave a started execution behind.
    runner = state_of(ctx).registry().runbook_runner() if carry.prefect else None

    def command(store: Store, io: Io) -> int:
        svc = service(store)
        view = change(svc)
        if runner is None:
            return _execution_result(svc.run(view.id), io)
        run_id = runner.run_execution(view.id, deployment=carry.deployment, poll_interval=carry.poll_interval)
        if carry.deployment is None or carry.wait:
            try:
                view = runner.wait_for_execution(view.id, carry.wait_timeout)
            except TimeoutError:
                raise RunbookWaitTimeout(f"execution {view.id} is not final after {carry.wait_timeout:g} s (flow "
                                         f"run {run_id}); the store keeps its state",
                                         execution_id=view.id, flow_run_id=str(run_id)) from None
        return _execution_result(view, io, flow_run_id=str(run_id))

    run(ctx, as_json, command, permission=Permission.OPERATE)


def _who(actor: str) -> str:
    """The authenticated principal; ``--actor`` only with its own id (the default ``cli`` means the principal)."""
    return acting_as(current_principal(), None if actor == CLI_ACTOR else actor, "--actor")


def _show(ctx: typer.Context, as_json: bool, view: Callable[[RunbookService], ExecutionView],
          permission: Permission = Permission.READ) -> None:
    run(ctx, as_json, lambda store, io: _execution_result(view(service(store)), io), permission=permission)


# --- commands ---------------------------------------------------------------------------------------------------


@app.command("validate")
def validate(ctx: typer.Context, file: Annotated[str, typer.Argument()], as_json: JsonFlag = False) -> None:
    """check a runbook YAML file (names the offending step)"""

    def command(store: Store, io: Io) -> int:
        d: RunbookDefinition = load_runbook(Path(file))
        data = {"valid": True, "id": d.id, "version": d.version, "steps": [s.id for s in d.steps]}
        io.result(data, lambda s: s.write(f"{file}: valid runbook {d.id} v{d.version} ({len(d.steps)} steps: "
                                          f"{', '.join(x.id for x in d.steps)})\n"))
        return 0

    run(ctx, as_json, command)


@app.command("register")
def register_template(ctx: typer.Context, file: Annotated[str, typer.Argument()], actor: Actor = CLI_ACTOR,
                      as_json: JsonFlag = False) -> None:
    """register a runbook YAML file as a template version"""

    def command(store: Store, io: Io) -> int:
        view = service(store).register(load_runbook(Path(file)), _who(actor))
        io.result(jsonable(view), _template_text(view))
        return 0

    # Registering a template decides what later executions do: an operator's act, as on the HTTP API.
    run(ctx, as_json, command, permission=Permission.OPERATE)


@app.command("list")
def list_templates(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """registered runbook templates"""

    def command(store: Store, io: Io) -> int:
        templates = service(store).templates()
        return io.table(jsonable(templates), TEMPLATE_COLUMNS, _template_rows(templates), empty="(no runbooks)")

    run(ctx, as_json, command)


@app.command("show")
def show(ctx: typer.Context, runbook_id: Annotated[str, typer.Argument(metavar="ID")],
         version: Annotated[str | None, typer.Option("--version", help="default: the latest registered")] = None,
         as_json: JsonFlag = False) -> None:
    """one runbook template and its steps"""

    def command(store: Store, io: Io) -> int:
        view = service(store).template(runbook_id, version)
        io.result(jsonable(view), _template_text(view))
        return 0

    run(ctx, as_json, command)


@app.command("start")
def start(
    ctx: typer.Context,
    runbook: Annotated[str, typer.Argument(metavar="ID|FILE")],
    input_: Annotated[list[str] | None, typer.Option("--input", metavar="KEY=VALUE",
                                                     help="one input; repeat (JSON values parsed)")] = None,
    inputs_json: Annotated[str | None, typer.Option("--inputs-json", metavar="JSON",
                                                    help="all inputs as one JSON object")] = None,
    version: Annotated[str | None, typer.Option("--version", help="template version (default: the latest)")] = None,
    tenant: Annotated[str, typer.Option("--tenant")] = "default",
    user: Annotated[str, typer.Option("--user", help="the initiating user: the authenticated principal")] = CLI_ACTOR,
    authority: Annotated[str | None, typer.Option(
        "--authority", help="legal basis: the authority (with --classification, --retention-days)")] = None,
    classification: Annotated[str | None, typer.Option("--classification",
                                                       help="legal basis: data classification")] = None,
    retention_days: Annotated[int | None, typer.Option("--retention-days",
                                                       help="legal basis: retention in days")] = None,
    authorized_user: Annotated[list[str] | None, typer.Option(
        "--authorized-user", help="a user authorised on this execution; repeat")] = None,
    prefect: PrefectFlag = False, deployment: Deployment = None, wait: Wait = False, wait_timeout: WaitTimeout = 3600.0,
    poll_interval: PollInterval = 10, as_json: JsonFlag = False,
) -> None:
    """start an execution of a registered runbook id or a YAML file"""
    basis_fields = (authority, classification, retention_days)
    if any(v is not None for v in basis_fields) and not all(v is not None for v in basis_fields):
        raise InvalidInput("a legal basis needs --authority, --classification and --retention-days together")
    try:
        basis = None if authority is None else LegalBasis(
            authority=authority, classification=classification, retention_days=retention_days)
        context = ExecutionContext(tenant=tenant, initiated_by=user, legal_basis=basis,
                                   authorized_users=list(authorized_user or []))
    except ValueError as exc:  # pydantic.ValidationError
        raise InvalidInput(f"invalid execution context: {exc}") from None
    inputs = _inputs(input_, inputs_json)

    def change(svc: RunbookService) -> ExecutionView:
        who = _who(user)
        runbook_id, registered = _definition_or_id(svc, runbook, who)
        return svc.start(runbook_id, inputs, context=context.model_copy(update={"initiated_by": who}),
                         version=registered or version)

    _carry_on(ctx, as_json, Carry(prefect, deployment, wait, wait_timeout, poll_interval), change)


def _waiting_on(view: ExecutionView) -> str:
    """What a not-final execution waits for: its steps awaiting an approval or an event ("-" when none)."""
    waiting = [s.step_id for s in view.steps if s.state in ("awaiting_approval", "awaiting_event")]
    return ", ".join(waiting) or "-"


@app.command("executions")
def executions(
    ctx: typer.Context,
    runbook: Annotated[str | None, typer.Option("--runbook", metavar="ID",
                                                help="only executions of this runbook id")] = None,
    state: Annotated[str | None, typer.Option("--state", metavar="S", help=(
        "only executions in this state (pending, running, paused, awaiting, completed, failed, ...)"))] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", metavar="T", help="only executions of this tenant")] = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N", help="at most N executions (default 100)")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """executions, newest first (filter by runbook, state, tenant)"""

    def command(store: Store, io: Io) -> int:
        if limit < 1:
            raise InvalidInput(f"--limit must be at least 1, got {limit}")
        if state is not None and state not in EXECUTION_MACHINE.states:
            # An unknown state would list nothing, which reads like "no such executions": say it is a typo instead.
            raise InvalidInput(f"--state {state!r} is not an execution state; one of "
                               f"{', '.join(EXECUTION_MACHINE.states)}", state=state)
        views = service(store).list_executions(runbook_id=runbook, state=state, tenant=tenant, limit=limit)
        rows = [[v.id, f"{v.runbook_id} v{v.runbook_version}", v.state, v.tenant, v.initiated_by, v.created_at,
                 _waiting_on(v)] for v in views]
        return io.table(jsonable(views), EXECUTION_COLUMNS, rows, empty="(no executions)")

    run(ctx, as_json, command)


@app.command("run")
def run_execution(ctx: typer.Context, execution: Execution, prefect: PrefectFlag = False,
                  deployment: Deployment = None, wait: Wait = False, wait_timeout: WaitTimeout = 3600.0,
                  poll_interval: PollInterval = 10, as_json: JsonFlag = False) -> None:
    """carry an execution forward until it is final or waits"""
    _carry_on(ctx, as_json, Carry(prefect, deployment, wait, wait_timeout, poll_interval),
              lambda svc: svc.status(_execution(svc, execution)))


@app.command("status")
def status(ctx: typer.Context, execution: Execution, as_json: JsonFlag = False) -> None:
    """an execution and each step's state"""
    _show(ctx, as_json, lambda svc: svc.status(_execution(svc, execution)))


def _control(name: str, help_text: str, change: Callable[[RunbookService, str, str, str], ExecutionView]) -> None:
    """``runbook NAME EXEC --reason R``: an operator's change, then the execution."""

    def command(ctx: typer.Context, execution: Execution, reason: Reason, actor: Actor = CLI_ACTOR,
                as_json: JsonFlag = False) -> None:
        _show(ctx, as_json, lambda svc: change(svc, _execution(svc, execution), _who(actor), reason),
              permission=Permission.OPERATE)

    app.command(name, help=help_text)(command)


def _carried_control(name: str, help_text: str,
                     change: Callable[[RunbookService, str, str, str], ExecutionView]) -> None:
    """``runbook NAME EXEC [--reason R] [--prefect ...]``: an operator's change, then the execution is
    carried on (in this process or through the runbook runner)."""

    def command(ctx: typer.Context, execution: Execution, actor: Actor = CLI_ACTOR, reason: Reason = "",
                prefect: PrefectFlag = False, deployment: Deployment = None, wait: Wait = False,
                wait_timeout: WaitTimeout = 3600.0, poll_interval: PollInterval = 10, as_json: JsonFlag = False,
                ) -> None:
        _carry_on(ctx, as_json, Carry(prefect, deployment, wait, wait_timeout, poll_interval),
                  lambda svc: change(svc, _execution(svc, execution), _who(actor), reason))

    app.command(name, help=help_text)(command)


_control("pause", "pause an execution (running steps finish, no new ones start)", RunbookService.pause)
_carried_control("resume", "resume a paused execution", RunbookService.resume)
_control("cancel", "cancel an execution", RunbookService.cancel)


@app.command("retry-step")
def retry_step(ctx: typer.Context, execution: Execution, step: Annotated[str, typer.Argument()],
               actor: Actor = CLI_ACTOR, reason: Reason = "", prefect: PrefectFlag = False,
               deployment: Deployment = None, wait: Wait = False, wait_timeout: WaitTimeout = 3600.0,
               poll_interval: PollInterval = 10, as_json: JsonFlag = False,
               ) -> None:
    """re-run one failed step and continue from there"""
    _carry_on(ctx, as_json, Carry(prefect, deployment, wait, wait_timeout, poll_interval),
              lambda svc: svc.retry_step(_execution(svc, execution), step, _who(actor), reason))


_carried_control("replay", "a new execution with the same inputs and template version", RunbookService.replay)


@app.command("logs")
def logs(ctx: typer.Context, execution: Execution, as_json: JsonFlag = False) -> None:
    """an execution's log lines"""

    def command(store: Store, io: Io) -> int:
        lines: list[LogLine] = service(store).logs(resolve(store.sessions, "runbook execution", execution))
        rows = [[ln.at, ln.step_id or "-", ln.level, ln.message] for ln in lines]
        return io.table(jsonable(lines), LOG_COLUMNS, rows, empty="(no log lines)")

    run(ctx, as_json, command)


@app.command("evidence")
def evidence(ctx: typer.Context, execution: Execution, as_json: JsonFlag = False) -> None:
    """an execution's evidence"""

    def command(store: Store, io: Io) -> int:
        items: list[Evidence] = service(store).evidence(resolve(store.sessions, "runbook execution", execution))
        rows = [[e.at, e.step_id, e.kind, _cell(e.content, 90)] for e in items]
        return io.table(jsonable(items), EVIDENCE_COLUMNS, rows, empty="(no evidence)")

    run(ctx, as_json, command)


@app.command("send-event")
def send_event(
    ctx: typer.Context,
    correlation_id: Annotated[str, typer.Argument(metavar="CORRELATION")],
    payload_json: Annotated[str | None, typer.Option("--payload-json", metavar="JSON",
                                                     help="the event payload (a JSON object)")] = None,
    actor: Actor = CLI_ACTOR,
    tenant: Annotated[str, typer.Option("--tenant", help="events match executions of this tenant only")] = "default",
    as_json: JsonFlag = False,
) -> None:
    """deliver an event to executions waiting on CORRELATION"""
    payload = json_object(payload_json, "--payload-json") if payload_json else {}

    def command(store: Store, io: Io) -> int:
        event_id = service(store).send_event(correlation_id, payload, actor=_who(actor), tenant=tenant)
        io.result({"correlation_id": correlation_id, "tenant": tenant, "event_id": event_id},
                  lambda s: s.write(f"event for {correlation_id!r} stored; waiting executions match it on their "
                                    "next run\n"))
        return 0

    run(ctx, as_json, command, permission=Permission.OPERATE)


@app.command("schema")
def schema(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """the JSON Schema of runbook files (for editors)"""

    def command(store: Store, io: Io) -> int:
        # Always JSON: the schema is for editors, there is no table form of it.
        out.print_json(runbook_json_schema(), io.stdout)
        return 0

    run(ctx, as_json, command)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="runbook")
