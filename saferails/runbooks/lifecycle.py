"""Runbook execution and step lifecycles, registered with ``saferails.transitions``.

Execution::

    pending ─► running ◄─► awaiting          (awaiting: every runnable step waits on an approval or event)
                 │  ▲          │
                 ▼  │          ▼
               paused ──► cancelled | timed_out
    running ─► completed | failed | cancelled | timed_out;  failed ─► running (retry_step)

Step::

    pending ─► running ─► completed | failed | awaiting_approval | awaiting_event
    awaiting_* ─► completed | failed | cancelled;  pending ─► skipped | cancelled
    failed | skipped | cancelled ─► pending   (retry_step: only steps halted by the failure are brought back)

The guard on ``-> pending`` from skipped/cancelled is why a branch not taken is never re-run by a retry.
"""

from __future__ import annotations

from typing import Any

from saferails import transitions
from saferails.lifecycle import StateMachine, Transition
from saferails.runbooks.tables import RunbookExecution, RunbookStep
from saferails.transitions import AuditSubject, EntityKind

EXECUTION = "runbook_execution"
STEP = "runbook_step"

PENDING = "pending"
RUNNING = "running"
PAUSED = "paused"
AWAITING = "awaiting"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TIMED_OUT = "timed_out"

AWAITING_APPROVAL = "awaiting_approval"
AWAITING_EVENT = "awaiting_event"
SKIPPED = "skipped"

EXECUTION_FINAL = frozenset({COMPLETED, FAILED, CANCELLED, TIMED_OUT})
STEP_FINAL = frozenset({COMPLETED, FAILED, SKIPPED, CANCELLED})
STEP_WAITING = frozenset({AWAITING_APPROVAL, AWAITING_EVENT})


def _halted_by_failure(row: Any) -> str | None:
    return None if getattr(row, "halted_by", None) else "only steps halted by a failed step can be retried"


def _t(source: str, target: str, name: str, *guards: Any) -> Transition:
    return Transition(source, target, name, tuple(guards))


EXECUTION_MACHINE = StateMachine.define(
    EXECUTION,
    initial=PENDING,
    final=EXECUTION_FINAL,
    transitions=[
        _t(PENDING, RUNNING, "start"),
        _t(PENDING, CANCELLED, "cancel"),
        _t(PENDING, PAUSED, "pause"),
        _t(PENDING, TIMED_OUT, "time_out"),
        _t(RUNNING, AWAITING, "wait"),
        _t(RUNNING, PAUSED, "pause"),
        _t(RUNNING, COMPLETED, "complete"),
        _t(RUNNING, FAILED, "fail"),
        _t(RUNNING, CANCELLED, "cancel"),
        _t(RUNNING, TIMED_OUT, "time_out"),
        _t(AWAITING, RUNNING, "continue"),
        _t(AWAITING, PAUSED, "pause"),
        _t(AWAITING, CANCELLED, "cancel"),
        _t(AWAITING, TIMED_OUT, "time_out"),
        _t(PAUSED, RUNNING, "resume"),
        _t(PAUSED, CANCELLED, "cancel"),
        _t(PAUSED, TIMED_OUT, "time_out"),
        _t(FAILED, RUNNING, "retry_step"),
    ],
    descriptions={
        PENDING: "started, no step has run yet",
        RUNNING: "steps are being run",
        AWAITING: "every runnable step waits for an approval or an event",
        PAUSED: "an operator paused it; no new step starts",
        COMPLETED: "every step completed or was skipped",
        FAILED: "a step failed; retry_step can continue from it",
        CANCELLED: "an operator cancelled it",
        TIMED_OUT: "the global timeout passed",
    },
)

STEP_MACHINE = StateMachine.define(
    STEP,
    initial=PENDING,
    final=STEP_FINAL,
    transitions=[
        _t(PENDING, RUNNING, "start"),
        _t(PENDING, SKIPPED, "skip"),
        _t(PENDING, CANCELLED, "cancel"),
        _t(RUNNING, COMPLETED, "complete"),
        _t(RUNNING, FAILED, "fail"),
        _t(RUNNING, AWAITING_APPROVAL, "await_approval"),
        _t(RUNNING, AWAITING_EVENT, "await_event"),
        _t(RUNNING, CANCELLED, "cancel"),
        _t(AWAITING_APPROVAL, COMPLETED, "approved"),
        _t(AWAITING_APPROVAL, FAILED, "fail"),
        _t(AWAITING_APPROVAL, CANCELLED, "cancel"),
        _t(AWAITING_EVENT, COMPLETED, "event_received"),
        _t(AWAITING_EVENT, FAILED, "fail"),
        _t(AWAITING_EVENT, CANCELLED, "cancel"),
        _t(FAILED, PENDING, "retry"),
        _t(SKIPPED, PENDING, "retry", _halted_by_failure),
        _t(CANCELLED, PENDING, "retry", _halted_by_failure),
    ],
)


def _execution_payload(row: RunbookExecution) -> dict[str, Any]:
    return {"execution_id": row.id, "runbook_id": row.runbook_id, "runbook_version": row.runbook_version}


def _step_payload(row: RunbookStep) -> dict[str, Any]:
    return {"execution_id": row.execution_id, "step_id": row.step_id, "step_type": row.step_type}


EXECUTION_KIND = transitions.register_entity(
    EntityKind(
        entity_type=EXECUTION,
        model=RunbookExecution,
        machine=EXECUTION_MACHINE,
        event_prefix="RunbookExecution",
        audit_subject=lambda r: AuditSubject(f"runbook:{r.runbook_id}", r.id, r.tenant),
        payload=_execution_payload,
    )
)

STEP_KIND = transitions.register_entity(
    EntityKind(
        entity_type=STEP,
        model=RunbookStep,
        machine=STEP_MACHINE,
        event_prefix="RunbookStep",
        audit_subject=lambda r: AuditSubject(f"runbook_step:{r.step_type}", f"{r.execution_id}/{r.step_id}"),
        payload=_step_payload,
    )
)
