"""The execution engine: one ``advance`` runs one wave of a runbook execution.

A wave: (1) in one transaction, lock the execution; past its global deadline it is timed out; otherwise steps
whose dependencies all completed move to ``running`` and the waiting steps are collected; (2) outside any
transaction, the started steps run and the waiting ones are polled, concurrently up to ``max_concurrency``
threads (HTTP calls and approval look-ups never hold the database); (3) in one transaction, each result is
written through ``saferails.transitions`` with its logs and evidence, then the execution's state follows:
a failed step halts the rest (pending steps skipped, waits cancelled, execution ``failed``), all steps final
-> ``completed``, only waits left -> ``awaiting``. A step whose row was changed meanwhile (cancelled by an
operator) keeps its new state; the late result is logged, not applied.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from saferails import transitions
from saferails.audit.chain import canonical_json
from saferails.clock import Clock, as_utc
from saferails.errors import SaferailsError
from saferails.runbooks import lifecycle as lc
from saferails.runbooks.definition import RunbookDefinition, StepDefinition
from saferails.runbooks.steps import action, call_service, conditional, human_approval, loop, wait_for_event
from saferails.runbooks.steps.base import Services, StepResult, StepRun
from saferails.runbooks.tables import (
    RunbookEvent,
    RunbookEvidence,
    RunbookExecution,
    RunbookLog,
    RunbookStep,
    RunbookTemplate,
)
from saferails.runbooks.views import ExecutionView
from saferails.store.db import transaction

STARTERS: dict[str, Callable[[StepRun], StepResult]] = {
    "call-service": call_service.start,
    "conditional": conditional.start,
    "loop": loop.start,
    "wait-for-event": wait_for_event.start,
    "human-approval": human_approval.start,
    "action": action.start,
}
_EVENTS = {
    lc.COMPLETED: "step_completed",
    lc.FAILED: "step_failed",
    lc.AWAITING_APPROVAL: "step_awaiting_approval",
    lc.AWAITING_EVENT: "step_awaiting_event",
}


def load_definition(session: Session, runbook_id: str, version: str) -> RunbookDefinition:
    row = session.get(RunbookTemplate, (runbook_id, version))
    if row is None:
        raise SaferailsError(f"template {runbook_id} {version} is missing")
    return RunbookDefinition.model_validate(row.definition)


def step_rows(session: Session, execution_id: str) -> dict[str, RunbookStep]:
    rows = session.execute(
        sa.select(RunbookStep).where(RunbookStep.execution_id == execution_id).order_by(RunbookStep.position)
    ).scalars()
    return {r.step_id: r for r in rows}


def execution_view(session: Session, row: RunbookExecution) -> ExecutionView:
    return ExecutionView.from_row(row, list(step_rows(session, row.id).values()))


def add_log(
    session: Session,
    execution_id: str,
    step_id: str | None,
    level: str,
    message: str,
    data: dict[str, Any],
    now: datetime,
) -> None:
    session.add(
        RunbookLog(execution_id=execution_id, step_id=step_id, level=level, message=message, data=data, created_at=now)
    )


def move_step(
    session: Session,
    row: RunbookStep,
    target: str,
    *,
    actor: str,
    event: str,
    now: datetime,
    details: dict[str, Any] | None = None,
    changes: dict[str, Any] | None = None,
) -> None:
    transitions.transition(
        session, lc.STEP, row.id, target, actor=actor, event=event, now=now, details=details, changes=changes
    )


def skip_step(
    session: Session, row: RunbookStep, reason: str, *, actor: str, now: datetime, halted_by: str | None = None
) -> None:
    """Mark a pending step skipped with its reason (and the failed step that halted the run, if any)."""
    move_step(
        session,
        row,
        lc.SKIPPED,
        actor=actor,
        event="step_skipped",
        now=now,
        details={"reason": reason},
        changes={"skip_reason": reason, "halted_by": halted_by},
    )


def stop_open_steps(
    session: Session,
    exe: RunbookExecution,
    steps: dict[str, RunbookStep],
    *,
    actor: str,
    reason: str,
    now: datetime,
    halted_by: str | None = None,
) -> list[str]:
    """Skip pending steps (halted by a failure) or cancel them, and cancel waiting and running steps.
    Returns the approval action ids the caller cancels once the transaction has committed."""
    to_cancel: list[str] = []
    for row in steps.values():
        if row.state == lc.PENDING and halted_by is not None:
            skip_step(session, row, reason, actor=actor, now=now, halted_by=halted_by)
        elif row.state in (lc.PENDING, lc.RUNNING, *lc.STEP_WAITING):
            if row.state in lc.STEP_WAITING and row.approval_action_id:
                to_cancel.append(row.approval_action_id)
            move_step(
                session,
                row,
                lc.CANCELLED,
                actor=actor,
                event="step_cancelled",
                now=now,
                details={"reason": reason},
                changes={"error": reason, "halted_by": halted_by, "finished_at": now},
            )
        else:
            continue
        add_log(session, exe.id, row.step_id, "warning", reason, {}, now)
    return to_cancel


class Engine:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock, services: Services) -> None:
        self.sessions = sessions
        self.clock = clock
        self.services = services

    def advance(self, execution_id: str, worker_id: str = "local") -> tuple[ExecutionView, bool, list[str]]:
        """One wave (see the module docstring). Returns the view, whether anything changed, and approval
        action ids to cancel after commit."""
        actor = f"runbook-worker:{worker_id}"
        now = self.clock.now()
        with transaction(self.sessions) as session:
            exe = transitions.lock_row(session, lc.EXECUTION_KIND, execution_id)
            if exe.state in lc.EXECUTION_FINAL or exe.state == lc.PAUSED:
                return execution_view(session, exe), False, []
            steps = step_rows(session, exe.id)
            if now >= as_utc(exe.deadline):
                cancel = self.time_out(session, exe, steps, actor, now)
                return execution_view(session, exe), True, cancel
            defn = load_definition(session, exe.runbook_id, exe.runbook_version)
            if exe.state != lc.RUNNING:
                transitions.transition(
                    session,
                    lc.EXECUTION,
                    exe.id,
                    lc.RUNNING,
                    actor=actor,
                    event="execution_running",
                    now=now,
                    changes={"started_at": exe.started_at or now},
                )
            self._propagate_skips(session, defn, steps, actor, now)
            ready = [r for r in steps.values() if r.state == lc.PENDING and self._deps_done(defn, steps, r.step_id)]
            for row in ready:
                move_step(
                    session,
                    row,
                    lc.RUNNING,
                    actor=actor,
                    event="step_started",
                    now=now,
                    changes={"attempts": row.attempts + 1, "started_at": now, "error": None},
                )
            waiting = [r for r in steps.values() if r.state in lc.STEP_WAITING]
            runs = {r.step_id: self._step_run(defn, exe, steps, r) for r in ready + waiting}
            polls = {r.step_id: (r.state, r.approval_action_id, r.correlation_id, r.wait_deadline) for r in waiting}
            events = self._events(session, exe.tenant, [r.correlation_id for r in waiting if r.correlation_id])
            limit = defn.max_concurrency
        results = self._run_all(runs, polls, events, limit)
        with transaction(self.sessions) as session:
            exe = transitions.lock_row(session, lc.EXECUTION_KIND, execution_id)
            steps = step_rows(session, exe.id)
            for step_id, result in results.items():
                self._persist(session, exe, steps, step_id, result, actor)
            cancel = self._settle(session, defn, exe, steps, actor)
            progressed = bool(ready) or bool(results)
            return execution_view(session, exe), progressed, cancel

    # --- helpers ------------------------------------------------------------------------------------------
    def _deps_done(self, defn: RunbookDefinition, steps: dict[str, RunbookStep], step_id: str) -> bool:
        return all(steps[d].state == lc.COMPLETED for d in defn.step(step_id).depends_on)

    def _propagate_skips(
        self, session: Session, defn: RunbookDefinition, steps: dict[str, RunbookStep], actor: str, now: datetime
    ) -> None:
        changed = True
        while changed:
            changed = False
            for row in steps.values():
                if row.state != lc.PENDING:
                    continue
                skipped = [d for d in defn.step(row.step_id).depends_on if steps[d].state == lc.SKIPPED]
                if skipped:
                    reason = f"dependency {skipped[0]!r} was skipped"
                    skip_step(session, row, reason, actor=actor, now=now)
                    add_log(session, row.execution_id, row.step_id, "info", f"skipped: {reason}", {}, now)
                    changed = True

    def _step_run(
        self, defn: RunbookDefinition, exe: RunbookExecution, steps: dict[str, RunbookStep], row: RunbookStep
    ) -> StepRun:
        step: StepDefinition = defn.step(row.step_id)
        context = {
            "inputs": dict(exe.inputs),
            "steps": {sid: {"output": r.output, "state": r.state} for sid, r in steps.items()},
            "execution": {
                "id": exe.id,
                "tenant": exe.tenant,
                "initiated_by": exe.initiated_by,
                "runbook_id": exe.runbook_id,
                "runbook_version": exe.runbook_version,
            },
            "context": dict(exe.context),
            "step": {"id": row.step_id},
        }
        return StepRun(
            defn, step, exe.id, exe.tenant, exe.initiated_by, dict(exe.context), context, row.attempts, self.services
        )

    def _events(self, session: Session, tenant: str, correlation_ids: list[str]) -> list[wait_for_event.Event]:
        if not correlation_ids:
            return []
        rows = session.execute(
            sa.select(RunbookEvent)
            .where(RunbookEvent.correlation_id.in_(correlation_ids), RunbookEvent.tenant == tenant)
            .order_by(RunbookEvent.received_at, RunbookEvent.id)
        ).scalars()
        return [(r.correlation_id, dict(r.payload), r.actor, as_utc(r.received_at)) for r in rows]

    def _run_all(
        self,
        runs: dict[str, StepRun],
        polls: dict[str, tuple[str, str | None, str | None, Any]],
        events: list[wait_for_event.Event],
        limit: int,
    ) -> dict[str, StepResult]:
        def one(step_id: str) -> StepResult | None:
            run = runs[step_id]
            try:
                if step_id not in polls:
                    return STARTERS[run.step.type](run)
                _state, action_id, correlation_id, deadline = polls[step_id]
                if run.step.type == "wait-for-event" and correlation_id and deadline is not None:
                    return wait_for_event.poll(run, correlation_id, as_utc(deadline), events)
                if run.step.type == "action" and action_id:
                    return action.poll(run, action_id)
                if action_id:
                    return human_approval.poll(run, action_id)
                return None
            except Exception as exc:  # noqa: BLE001 - a broken step fails itself, never the engine
                code = exc.code if isinstance(exc, SaferailsError) else type(exc).__name__
                return StepResult(state=lc.FAILED, error=f"{code}: {exc}").log(f"step crashed: {exc}", "error")

        if not runs:
            return {}
        with ThreadPoolExecutor(max_workers=min(limit, len(runs)), thread_name_prefix="runbook-step") as pool:
            futures = {sid: pool.submit(one, sid) for sid in runs}
            outcomes = {sid: f.result() for sid, f in futures.items()}
        return {sid: r for sid, r in outcomes.items() if r is not None}

    def _persist(
        self,
        session: Session,
        exe: RunbookExecution,
        steps: dict[str, RunbookStep],
        step_id: str,
        result: StepResult,
        actor: str,
    ) -> None:
        now = self.clock.now()
        row = steps[step_id]
        for level, message, data in result.logs:
            add_log(session, exe.id, step_id, level, message, data, now)
        if row.state not in (lc.RUNNING, *lc.STEP_WAITING) or row.state == result.state:
            add_log(
                session,
                exe.id,
                step_id,
                "warning",
                f"result ({result.state}) not applied: step is {row.state}",
                {},
                now,
            )
            return
        changes: dict[str, Any] = {"output": result.output, "error": result.error}
        if result.approval_action_id is not None:
            changes["approval_action_id"] = result.approval_action_id
        if result.correlation_id is not None:
            changes["correlation_id"] = result.correlation_id
        if result.wait_deadline is not None:
            changes["wait_deadline"] = result.wait_deadline
        if result.state in lc.STEP_FINAL:
            changes["finished_at"] = now
        details: dict[str, Any] = {"attempt": row.attempts}
        if result.error:
            details["error"] = result.error
        move_step(
            session,
            row,
            result.state,
            actor=actor,
            event=_EVENTS[result.state],
            now=now,
            details=details,
            changes=changes,
        )
        for kind, content in result.evidence:
            digest = hashlib.sha256(canonical_json(content).encode()).hexdigest()
            session.add(
                RunbookEvidence(
                    execution_id=exe.id, step_id=step_id, kind=kind, content=content, digest=digest, created_at=now
                )
            )
        for target, reason in result.skip.items():
            branch = steps[target]
            if branch.state == lc.PENDING:
                skip_step(session, branch, reason, actor=actor, now=now)
                add_log(session, exe.id, target, "info", f"skipped: {reason}", {}, now)
        if result.rejected:
            exe.error = f"rejected at step {step_id!r}: {result.error}"

    def _settle(
        self,
        session: Session,
        defn: RunbookDefinition,
        exe: RunbookExecution,
        steps: dict[str, RunbookStep],
        actor: str,
    ) -> list[str]:
        now = self.clock.now()
        if exe.state != lc.RUNNING:
            return []
        if now >= as_utc(exe.deadline):
            return self.time_out(session, exe, steps, actor, now)
        self._propagate_skips(session, defn, steps, actor, now)
        failed = [r for r in steps.values() if r.state == lc.FAILED]
        if failed:
            first = failed[0]
            reason = f"not run: step {first.step_id!r} failed"
            cancel = stop_open_steps(session, exe, steps, actor=actor, reason=reason, now=now, halted_by=first.step_id)
            error = (
                exe.error
                if exe.error and first.step_id in exe.error
                else f"step {first.step_id!r} failed: {first.error}"
            )
            transitions.transition(
                session,
                lc.EXECUTION,
                exe.id,
                lc.FAILED,
                actor=actor,
                event="execution_failed",
                now=now,
                details={"step": first.step_id, "error": error},
                changes={"error": error, "finished_at": now},
            )
            return cancel
        if all(r.state in lc.STEP_FINAL for r in steps.values()):
            transitions.transition(
                session,
                lc.EXECUTION,
                exe.id,
                lc.COMPLETED,
                actor=actor,
                event="execution_completed",
                now=now,
                changes={"finished_at": now},
            )
            return []
        ready = any(r.state == lc.PENDING and self._deps_done(defn, steps, r.step_id) for r in steps.values())
        if not ready and any(r.state in lc.STEP_WAITING for r in steps.values()):
            transitions.transition(
                session, lc.EXECUTION, exe.id, lc.AWAITING, actor=actor, event="execution_awaiting", now=now
            )
        return []

    def time_out(
        self, session: Session, exe: RunbookExecution, steps: dict[str, RunbookStep], actor: str, now: datetime
    ) -> list[str]:
        """End the execution at its global deadline: open steps cancelled, state ``timed_out``."""
        reason = f"global timeout reached at {as_utc(exe.deadline).isoformat()}"
        cancel = stop_open_steps(session, exe, steps, actor=actor, reason=reason, now=now)
        transitions.transition(
            session,
            lc.EXECUTION,
            exe.id,
            lc.TIMED_OUT,
            actor=actor,
            event="execution_timed_out",
            now=now,
            details={"reason": reason},
            changes={"error": reason, "finished_at": now},
        )
        add_log(session, exe.id, None, "error", reason, {}, now)
        return cancel
