"""RunbookService: templates, executions, operator control and reading. The core API every edge (CLI, the
Prefect flow, the Python API) uses.

Each public method is one or more short transactions; state changes go through ``saferails.transitions`` with
the actor and reason in the audit record. Control operations only change state: after ``start``, ``resume``,
``retry_step`` or ``replay`` the caller drives the execution with ``run`` (or ``advance`` wave by wave).
Bad input raises a typed error having written nothing.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import time
import uuid
from collections.abc import Mapping
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from saferails import audit, transitions
from saferails.actions.service import ActionService
from saferails.audit.chain import canonical_json
from saferails.clock import Clock
from saferails.errors import InvalidInput, NotFound, SaferailsError
from saferails.net.egress import EgressPolicy
from saferails.runbooks import lifecycle as lc
from saferails.runbooks.definition import RunbookDefinition, parse_duration
from saferails.runbooks.engine import Engine, execution_view, load_definition, step_rows, stop_open_steps
from saferails.runbooks.steps.base import Services, Sleeper
from saferails.runbooks.tables import (
    RunbookEvent,
    RunbookEvidence,
    RunbookExecution,
    RunbookLog,
    RunbookStep,
    RunbookTemplate,
)
from saferails.runbooks.validation import check_definition
from saferails.runbooks.views import Evidence, ExecutionContext, ExecutionView, LogLine, TemplateView
from saferails.store.db import transaction

MAX_RUN_WAVES = 10_000


class RunbookVersionConflict(InvalidInput):
    """The same (id, version) was registered before with different content: bump the version."""

    code = "RUNBOOK_VERSION_CONFLICT"
    http_status = 409


class RunbookInputInvalid(InvalidInput):
    code = "RUNBOOK_INPUT_INVALID"


class StepNotRetryable(InvalidInput):
    code = "RUNBOOK_STEP_NOT_RETRYABLE"
    http_status = 409


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _default_executor() -> Any:
    try:
        from saferails.execution import ExecutionService
    except ImportError:  # the execution layer is optional here: the action step records that it did not run
        return None
    return ExecutionService


def check_inputs(defn: RunbookDefinition, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Declared inputs only, types checked, defaults filled. Raises ``RunbookInputInvalid`` naming the input."""
    unknown = sorted(set(inputs) - set(defn.inputs))
    if unknown:
        raise RunbookInputInvalid(f"unknown input(s) {', '.join(unknown)} for runbook {defn.id!r}", unknown=unknown)
    resolved: dict[str, Any] = {}
    for name, spec in defn.inputs.items():
        if name not in inputs:
            if spec.required and spec.default is None:
                raise RunbookInputInvalid(f"input {name!r} is required by runbook {defn.id!r}", input=name)
            resolved[name] = spec.default
            continue
        value = inputs[name]
        kinds = _TYPES[spec.type]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise RunbookInputInvalid(f"input {name!r} must be {spec.type}, got {type(value).__name__}", input=name)
        resolved[name] = value
    return resolved


class RunbookService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        actions: ActionService,
        *,
        http: httpx.Client | None = None,
        sleeper: Sleeper = time.sleep,
        max_concurrency_default: int = 5,
        executor: Any = None,
        egress: EgressPolicy | None = None,
    ) -> None:
        """``executor``: an object with ``execute(action_id, actor)`` for action steps; by default a
        ``saferails.execution.ExecutionService`` on the same store, when that module is importable.
        ``egress``: where call-service steps may send requests; None refuses every non-public address."""
        self.sessions = sessions
        self.clock = clock
        self.actions = actions
        self.http = http or httpx.Client(timeout=30.0)
        self.max_concurrency_default = max_concurrency_default
        self._executor = executor
        self.engine = Engine(sessions, clock, Services(clock, actions, self.http, sleeper, self._executor_instance,
                                                             egress or EgressPolicy()))

    def _executor_instance(self) -> Any:
        if self._executor is None:
            factory = _default_executor()
            if factory is None:
                return None
            self._executor = factory(self.sessions, self.clock, None)
        return self._executor

    # --- templates ----------------------------------------------------------------------------------------
    def register(self, defn: RunbookDefinition, actor: str) -> TemplateView:
        """Store a template version. The same content again returns it; different content under the same
        (id, version) raises ``RunbookVersionConflict``."""
        check_definition(defn)
        data = defn.model_dump(mode="json")
        digest = hashlib.sha256(canonical_json(data).encode()).hexdigest()
        now = self.clock.now()
        with transaction(self.sessions) as session:
            existing = session.get(RunbookTemplate, (defn.id, defn.version))
            if existing is not None:
                if existing.content_hash != digest:
                    raise RunbookVersionConflict(
                        f"runbook {defn.id!r} version {defn.version!r} is already registered with different "
                        "content; register it under a new version",
                        runbook_id=defn.id,
                        version=defn.version,
                    )
                return TemplateView.from_row(existing)
            row = RunbookTemplate(
                runbook_id=defn.id,
                runbook_version=defn.version,
                name=defn.name,
                definition=data,
                content_hash=digest,
                registered_by=actor,
                created_at=now,
            )
            session.add(row)
            session.flush()
            audit.append(
                session,
                audit.AuditEntry(
                    actor=actor,
                    event="runbook_registered",
                    entity_type="runbook_template",
                    entity_id=f"{defn.id}@{defn.version}",
                    details={"content_hash": digest},
                ),
                now=now,
            )
            return TemplateView.from_row(row)

    def templates(self) -> builtins.list[TemplateView]:
        with transaction(self.sessions) as session:
            rows = session.execute(
                sa.select(RunbookTemplate).order_by(RunbookTemplate.runbook_id, RunbookTemplate.created_at)
            ).scalars()
            return [TemplateView.from_row(r) for r in rows]

    def template(self, runbook_id: str, version: str | None = None) -> TemplateView:
        """One version, or the most recently registered one. Raises ``NotFound``."""
        with transaction(self.sessions) as session:
            return TemplateView.from_row(self._template_row(session, runbook_id, version))

    def _template_row(self, session: Session, runbook_id: str, version: str | None) -> RunbookTemplate:
        stmt = sa.select(RunbookTemplate).where(RunbookTemplate.runbook_id == runbook_id)
        if version is not None:
            stmt = stmt.where(RunbookTemplate.runbook_version == version)
        row = session.execute(stmt.order_by(RunbookTemplate.created_at.desc()).limit(1)).scalar_one_or_none()
        if row is None:
            raise NotFound("runbook", runbook_id if version is None else f"{runbook_id}@{version}")
        return row

    # --- executions ---------------------------------------------------------------------------------------
    def start(
        self,
        runbook_id: str,
        inputs: Mapping[str, Any],
        *,
        context: ExecutionContext,
        version: str | None = None,
        replay_of: str | None = None,
    ) -> ExecutionView:
        """Create an execution (state ``pending``, every step ``pending``); ``run`` drives it."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            template = self._template_row(session, runbook_id, version)
            defn = RunbookDefinition.model_validate(template.definition)
            resolved = check_inputs(defn, inputs)
            exe = RunbookExecution(
                id=str(uuid.uuid4()),
                runbook_id=defn.id,
                runbook_version=defn.version,
                tenant=context.tenant,
                initiated_by=context.initiated_by,
                inputs=resolved,
                context=context.model_dump(mode="json"),
                replay_of=replay_of,
                deadline=now + parse_duration(defn.global_timeout),
            )
            transitions.create(
                session,
                lc.EXECUTION,
                exe,
                actor=context.initiated_by,
                event="runbook_started",
                now=now,
                details={
                    "inputs": resolved,
                    "context": exe.context,
                    "runbook_version": defn.version,
                    "replay_of": replay_of,
                },
            )
            for position, step in enumerate(defn.steps):
                row = RunbookStep(
                    id=str(uuid.uuid4()),
                    execution_id=exe.id,
                    step_id=step.id,
                    step_type=step.type,
                    position=position,
                    attempts=0,
                )
                transitions.create(session, lc.STEP, row, actor=context.initiated_by, event="step_created", now=now)
            return execution_view(session, exe)

    def advance(self, execution_id: str, *, worker_id: str = "local") -> ExecutionView:
        """Run one wave: start every ready step, poll every waiting one, persist, settle the execution."""
        view, _progressed, cancel = self.engine.advance(execution_id, worker_id)
        self._cancel_actions(cancel, f"runbook-worker:{worker_id}", f"runbook execution {execution_id} stopped")
        return view

    def run(self, execution_id: str, *, until_blocked: bool = True, worker_id: str = "local") -> ExecutionView:
        """Advance until the execution is final, paused, or (``until_blocked``) only waits are left."""
        view = self.status(execution_id)
        for _ in range(MAX_RUN_WAVES):
            view, progressed, cancel = self.engine.advance(execution_id, worker_id)
            self._cancel_actions(cancel, f"runbook-worker:{worker_id}", f"runbook execution {execution_id} stopped")
            if view.state in lc.EXECUTION_FINAL or view.state == lc.PAUSED:
                break
            if until_blocked and not progressed:
                break
        return view

    def _cancel_actions(self, action_ids: builtins.list[str], actor: str, reason: str) -> None:
        for action_id in action_ids:
            # An action already decided has nothing left to withdraw.
            with contextlib.suppress(SaferailsError):
                self.actions.cancel(action_id, actor, reason=reason)

    # --- control ------------------------------------------------------------------------------------------
    def _control(self, execution_id: str, target: str, actor: str, event: str, reason: str) -> ExecutionView:
        with transaction(self.sessions) as session:
            exe = transitions.transition(
                session,
                lc.EXECUTION,
                execution_id,
                target,
                actor=actor,
                event=event,
                now=self.clock.now(),
                details={"reason": reason},
            )
            return execution_view(session, exe)

    def pause(self, execution_id: str, actor: str, reason: str) -> ExecutionView:
        """No new step starts until ``resume``; waits keep their deadlines."""
        return self._control(execution_id, lc.PAUSED, actor, "paused", reason)

    def resume(self, execution_id: str, actor: str, reason: str = "") -> ExecutionView:
        return self._control(execution_id, lc.RUNNING, actor, "resumed", reason)

    def cancel(self, execution_id: str, actor: str, reason: str) -> ExecutionView:
        """Cancel the execution and every open step; pending approval requests are withdrawn."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            exe = transitions.transition(
                session,
                lc.EXECUTION,
                execution_id,
                lc.CANCELLED,
                actor=actor,
                event="cancelled",
                now=now,
                details={"reason": reason},
                changes={"error": f"cancelled by {actor}: {reason}", "finished_at": now},
            )
            cancel = stop_open_steps(
                session, exe, step_rows(session, exe.id), actor=actor, reason=f"cancelled by {actor}: {reason}", now=now
            )
            view = execution_view(session, exe)
        self._cancel_actions(cancel, actor, reason)
        return view

    def retry_step(self, execution_id: str, step_id: str, actor: str, reason: str = "") -> ExecutionView:
        """Bring a failed step (and the steps its failure halted) back to pending and the execution back to
        running; completed steps keep their outputs and are not re-run. Raises ``StepNotRetryable``."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            exe = transitions.lock_row(session, lc.EXECUTION_KIND, execution_id)
            steps = step_rows(session, exe.id)
            row = steps.get(step_id)
            if row is None:
                raise NotFound("runbook_step", f"{execution_id}/{step_id}")
            if row.state != lc.FAILED or exe.state != lc.FAILED:
                raise StepNotRetryable(
                    f"step {step_id!r} is {row.state} in a {exe.state} execution; only a failed step of a failed "
                    "execution can be retried",
                    step=step_id,
                    state=row.state,
                )
            reset = {
                "error": None,
                "output": None,
                "finished_at": None,
                "approval_action_id": None,
                "correlation_id": None,
                "wait_deadline": None,
                "skip_reason": None,
                "halted_by": None,
            }
            details = {"step": step_id, "reason": reason}
            transitions.transition(
                session,
                lc.STEP,
                row.id,
                lc.PENDING,
                actor=actor,
                event="step_retried",
                now=now,
                details=details,
                changes=reset,
            )
            for other in steps.values():
                if other.halted_by == step_id and other.state in (lc.SKIPPED, lc.CANCELLED):
                    transitions.transition(
                        session,
                        lc.STEP,
                        other.id,
                        lc.PENDING,
                        actor=actor,
                        event="step_reset",
                        now=now,
                        details=details,
                        changes=reset,
                    )
            exe = transitions.transition(
                session,
                lc.EXECUTION,
                exe.id,
                lc.RUNNING,
                actor=actor,
                event="step_retried",
                now=now,
                details=details,
                changes={"error": None, "finished_at": None},
            )
            return execution_view(session, exe)

    def replay(self, execution_id: str, actor: str, reason: str = "") -> ExecutionView:
        """A new execution of the same template version with the same inputs and context."""
        original = self.status(execution_id)
        context = ExecutionContext.model_validate(original.context)
        view = self.start(
            original.runbook_id,
            original.inputs,
            context=context,
            version=original.runbook_version,
            replay_of=original.id,
        )
        with transaction(self.sessions) as session:
            exe = transitions.lock_row(session, lc.EXECUTION_KIND, execution_id)
            transitions.record_event(
                session,
                lc.EXECUTION,
                exe,
                actor=actor,
                event="replayed",
                now=self.clock.now(),
                details={"replay": view.id, "reason": reason},
            )
        return view

    def send_event(
        self, correlation_id: str, payload: Mapping[str, Any], *, actor: str, tenant: str = "default"
    ) -> str:
        """Deliver an event to wait-for-event steps with this correlation id (matched on their next advance)."""
        if not correlation_id:
            raise InvalidInput("an event needs a correlation id")
        now = self.clock.now()
        event_id = str(uuid.uuid4())
        with transaction(self.sessions) as session:
            session.add(
                RunbookEvent(
                    id=event_id,
                    correlation_id=correlation_id,
                    tenant=tenant,
                    payload=dict(payload),
                    actor=actor,
                    received_at=now,
                )
            )
            audit.append(
                session,
                audit.AuditEntry(
                    actor=actor,
                    event="runbook_event_received",
                    entity_type="runbook_event",
                    entity_id=event_id,
                    tenant=tenant,
                    details={"correlation_id": correlation_id},
                ),
                now=now,
            )
        return event_id

    # --- reading ------------------------------------------------------------------------------------------
    def status(self, execution_id: str) -> ExecutionView:
        with transaction(self.sessions) as session:
            exe = session.get(RunbookExecution, execution_id)
            if exe is None:
                raise NotFound(lc.EXECUTION, execution_id)
            return execution_view(session, exe)

    def definition(self, execution_id: str) -> RunbookDefinition:
        """The exact template version an execution runs."""
        view = self.status(execution_id)
        with transaction(self.sessions) as session:
            return load_definition(session, view.runbook_id, view.runbook_version)

    def list_executions(
        self, *, runbook_id: str | None = None, state: str | None = None, tenant: str | None = None, limit: int = 100
    ) -> builtins.list[ExecutionView]:
        stmt = sa.select(RunbookExecution)
        if runbook_id is not None:
            stmt = stmt.where(RunbookExecution.runbook_id == runbook_id)
        if state is not None:
            stmt = stmt.where(RunbookExecution.state == state)
        if tenant is not None:
            stmt = stmt.where(RunbookExecution.tenant == tenant)
        with transaction(self.sessions) as session:
            rows = session.execute(stmt.order_by(RunbookExecution.created_at.desc()).limit(limit)).scalars()
            return [execution_view(session, r) for r in rows]

    def logs(self, execution_id: str) -> builtins.list[LogLine]:
        self.status(execution_id)
        with transaction(self.sessions) as session:
            rows = session.execute(
                sa.select(RunbookLog).where(RunbookLog.execution_id == execution_id).order_by(RunbookLog.id)
            ).scalars()
            return [LogLine.from_row(r) for r in rows]

    def evidence(self, execution_id: str) -> builtins.list[Evidence]:
        self.status(execution_id)
        with transaction(self.sessions) as session:
            rows = session.execute(
                sa.select(RunbookEvidence)
                .where(RunbookEvidence.execution_id == execution_id)
                .order_by(RunbookEvidence.id)
            ).scalars()
            return [Evidence.from_row(r) for r in rows]
