"""One Prefect flow per runbook execution: run the ready steps, wait where the runbook waits, summarise.

A step waiting for a human goes through THE approval gate of actions (``flows.approval_gate``): the run pauses
in the Prefect UI with the step's prompt and the approver's form; the store validates every answer. A step
waiting for an event (delivered by the CLI / Python API, or by ``runbook_event_flow`` from a Prefect event), a
paused execution or a retry backoff is re-checked every ``poll_interval`` seconds. The run ends when the
execution is final; the store, not the run, is the record.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from flows.approval_gate import approval_gate
from saferails.actions.lifecycle import PENDING_APPROVAL
from tasks.actions import attach_flow_run, notify_approvers, write_request_artifact
from tasks.runbooks import (
    FLOW_ACTOR,
    deliver_event,
    is_final,
    run_steps,
    step_approval_request,
    steps_awaiting_approval,
    summary_artifact,
)


@flow(name="saferails-runbook", flow_run_name="runbook-{execution_id}", validate_parameters=True)
def runbook_flow(execution_id: str, poll_interval: int = 10) -> dict[str, Any]:
    """Carry one execution to a final state; returns its state and each step's state."""
    view = run_steps(execution_id)
    while not is_final(view):
        waiting = steps_awaiting_approval(view)
        for step in waiting:
            action, description = step_approval_request(view, step)
            if action.state == PENDING_APPROVAL:
                attach_flow_run(action.id, str(flow_run.get_id()))
                write_request_artifact(action.id, description)
                notify_approvers(action.id)
                approval_gate(action, description, poll_interval=poll_interval)
        if not waiting:
            time.sleep(poll_interval)  # an event, a backoff delay or an operator's resume: nothing to do now
        view = run_steps(execution_id)
    summary_artifact(execution_id)
    return {"execution_id": view.id, "state": view.state, "steps": {s.step_id: s.state for s in view.steps}}


@flow(name="saferails-runbook-event", flow_run_name="runbook-event-{correlation_id}")
def runbook_event_flow(correlation_id: str, payload: dict[str, Any] | None = None, actor: str = FLOW_ACTOR,
                       tenant: str = "default") -> dict[str, Any]:
    """Deliver an event to the executions waiting on ``correlation_id`` (a deployment trigger on a Prefect event
    runs this); the waiting runbook flows pick it up on their next check."""
    event_id = deliver_event(correlation_id, payload or {}, actor, tenant)
    return {"correlation_id": correlation_id, "tenant": tenant, "event_id": event_id}
