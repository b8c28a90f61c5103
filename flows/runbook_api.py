"""The Python API for runbooks on Prefect: start an execution as a flow run, deliver events, control it.

- ``start_runbook`` starts the execution in the store (inputs and context validated there), then one
  ``runbook_flow`` run for it: through ``run_deployment`` when ``deployment`` is given (e.g.
  ``"saferails-runbook/runbook"``), otherwise in this process on a daemon thread (``flows.api.start_in_process``,
  as ``submit_action``: the run's id is known at once, a paused run keeps its thread, ``join_flow_threads``
  waits for it). Flow runs carry the tag
  ``runbook-execution:<id>`` so the API finds an execution's live run.
- ``approve_step`` / ``reject_step`` decide a step's approval through ``flows.api`` (resuming the paused run
  with the form input when there is one), so the store validates them like the Prefect UI's answers.
- ``resume`` / ``retry_step`` / ``replay`` change the store, then make sure a flow run carries the execution
  (a failed execution's run has ended; a paused one's is still polling). ``pause`` / ``cancel`` / ``send_event``
  only change the store; the live run notices on its next check.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment

from flows import api as action_api
from flows.runbook_flow import runbook_flow
from saferails.actions.models import ActionView
from saferails.errors import InvalidInput
from saferails.runbooks.lifecycle import EXECUTION_FINAL
from saferails.runbooks.views import ExecutionContext, ExecutionView
from tasks.runbooks import runbook_service

LIVE_STATES = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]


class ExecutionTimeout(TimeoutError):
    """``wait_for_execution`` gave up before the execution reached a final state."""


def execution_tag(execution_id: str) -> str:
    return f"runbook-execution:{execution_id}"


def start_runbook(
    runbook_id: str, inputs: dict[str, Any], context: ExecutionContext, *, wait: bool = False,
    version: str | None = None, deployment: str | None = None, poll_interval: int = 10, timeout: float = 3600,
) -> tuple[ExecutionView, UUID]:
    """Start an execution of ``runbook_id`` and the flow run that carries it. ``wait=True`` returns once the
    execution is final (or raises ``ExecutionTimeout`` after ``timeout`` seconds)."""
    view = runbook_service().start(runbook_id, inputs, context=context, version=version)
    run_id = run_execution(view.id, deployment=deployment, poll_interval=poll_interval)
    if wait:
        view = wait_for_execution(view.id, timeout)
    return view, run_id


def run_execution(execution_id: str, *, deployment: str | None = None, poll_interval: int = 10) -> UUID:
    """Start a flow run for an existing execution unless one is live; returns the live (or new) run's id."""
    live = live_flow_run(execution_id)
    if live is not None:
        return live
    params = {"execution_id": execution_id, "poll_interval": poll_interval}
    tags = [execution_tag(execution_id)]
    if deployment is not None:
        run: FlowRun = run_deployment(deployment, parameters=params, tags=tags, timeout=0)  # type: ignore[assignment]
        return run.id
    with get_client(sync_client=True) as client:
        created = client.create_flow_run(runbook_flow, parameters=params, tags=tags)
    action_api.start_in_process(runbook_flow, created, params, name=f"saferails-runbook-{execution_id}")
    return created.id


def live_flow_run(execution_id: str) -> UUID | None:
    """The id of a not-yet-final flow run carrying ``execution_id``, if any."""
    flt = FlowRunFilter(tags=FlowRunFilterTags(all_=[execution_tag(execution_id)]),
                        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=LIVE_STATES)))
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=flt, limit=1)
    return runs[0].id if runs else None


def wait_for_execution(execution_id: str, timeout: float, *, interval: float = 0.2) -> ExecutionView:
    """Poll the store until the execution is final or ``timeout`` seconds pass."""
    svc = runbook_service()
    deadline = time.monotonic() + timeout
    while True:
        view = svc.status(execution_id)
        if view.state in EXECUTION_FINAL:
            return view
        if time.monotonic() >= deadline:
            raise ExecutionTimeout(f"execution {execution_id} is still {view.state} after {timeout} s")
        time.sleep(interval)


def approve_step(execution_id: str, step_id: str, approver: str, code: str | None = None,
                 reason: str = "") -> ActionView:
    return action_api.approve(_approval_action(execution_id, step_id), approver, code, reason)


def reject_step(execution_id: str, step_id: str, approver: str, code: str | None = None,
                reason: str = "") -> ActionView:
    return action_api.reject(_approval_action(execution_id, step_id), approver, code, reason)


def _approval_action(execution_id: str, step_id: str) -> str:
    view = runbook_service().status(execution_id)
    step = next((s for s in view.steps if s.step_id == step_id), None)
    if step is None or not step.approval_action_id:
        raise InvalidInput(f"step {step_id!r} of execution {execution_id} is not waiting for an approval",
                           execution_id=execution_id, step_id=step_id)
    return str(step.approval_action_id)


def send_event(correlation_id: str, payload: dict[str, Any], *, actor: str, tenant: str = "default") -> str:
    """Store an event; the tenant's executions waiting on ``correlation_id`` match it on their flow's next
    check. Returns the event id."""
    return runbook_service().send_event(correlation_id, payload, actor=actor, tenant=tenant)


def pause(execution_id: str, actor: str, reason: str) -> ExecutionView:
    return runbook_service().pause(execution_id, actor, reason)


def cancel(execution_id: str, actor: str, reason: str) -> ExecutionView:
    return runbook_service().cancel(execution_id, actor, reason)


def resume(execution_id: str, actor: str, reason: str = "", *, deployment: str | None = None,
           poll_interval: int = 10) -> tuple[ExecutionView, UUID]:
    view = runbook_service().resume(execution_id, actor, reason)
    return view, run_execution(execution_id, deployment=deployment, poll_interval=poll_interval)


def retry_step(execution_id: str, step_id: str, actor: str, reason: str = "", *, deployment: str | None = None,
               poll_interval: int = 10) -> tuple[ExecutionView, UUID]:
    view = runbook_service().retry_step(execution_id, step_id, actor, reason)
    return view, run_execution(execution_id, deployment=deployment, poll_interval=poll_interval)


def replay(execution_id: str, actor: str, reason: str = "", *, deployment: str | None = None,
           poll_interval: int = 10) -> tuple[ExecutionView, UUID]:
    view = runbook_service().replay(execution_id, actor, reason)
    return view, run_execution(view.id, deployment=deployment, poll_interval=poll_interval)


def status(execution_id: str) -> ExecutionView:
    return runbook_service().status(execution_id)
