"""The Python API for triggering flows. Decisions go through the same path as the Prefect UI.

- ``submit_action`` proposes through the core (the policy decides at once), then starts the action flow:
  with ``deployment`` (e.g. ``"saferails-action/action"``) through ``run_deployment``, scheduled at the
  action's ``scheduled_for`` when that is later; otherwise in this process, on a daemon thread running a flow
  run created first (so its id is known at once). Either way the run is created with its name
  (``tasks.actions.name_of``), so it is listed by what it does from the start and costs no rename. The thread
  keeps running while the flow is paused: a paused run holds its process, so a process that exits ends its
  in-process runs (the store keeps the truth and the sweep resolves them).
  Priority becomes the tag ``priority:N`` (Prefect flow runs have no priority field).
- ``approve`` / ``reject`` resume the action's paused run with the form input when there is one; otherwise (no
  run, not paused, resume refused) they decide through ``ActionService`` directly. Either way the store
  validates and the returned view is what it holds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from prefect import Flow, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import FlowPauseTimeout, NotPausedError, ObjectNotFound
from prefect.flow_engine import run_flow
from prefect.flow_runs import resume_flow_run
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.states import Running

from blocks.settings import current_runtime
from flows.action_flow import action_flow
from saferails.actions.lifecycle import FINAL_STATES, PENDING_APPROVAL
from saferails.actions.models import ActionView, Proposal
from tasks.actions import name_of, rollback_action

API_CHANNEL = "api"


@dataclass(frozen=True)
class Submission:
    action: ActionView
    flow_run_id: UUID


_threads_lock = threading.Lock()
_threads: list[threading.Thread] = []


class OutcomeTimeout(TimeoutError):
    """``wait_for_outcome`` gave up before the action reached a final state."""


def submit_action(
    proposal: Proposal, *, wait: bool = False, deployment: str | None = None, poll_interval: float = 1.0,
    timeout: float = 3600,
) -> Submission:
    """Propose ``proposal`` and start its flow run. ``wait=True`` returns once the action is final (or after
    ``timeout`` seconds, raising ``OutcomeTimeout``)."""
    view = current_runtime().actions.propose(proposal)
    params = {"action_id": view.id, "poll_interval": poll_interval}
    tags = [f"priority:{view.priority}", f"action-type:{view.action_type}"]
    if deployment is not None:
        later = view.scheduled_for if view.scheduled_for and view.scheduled_for > current_runtime().clock.now() \
            else None
        # run_deployment is typed sync-or-async; called from sync code it returns the FlowRun.
        run = cast(FlowRun, run_deployment(deployment, parameters=params, scheduled_time=later, tags=tags, timeout=0,
                                           idempotency_key=view.id, flow_run_name=name_of(view)))
    else:
        with get_client(sync_client=True) as client:
            run = client.create_flow_run(action_flow, parameters=params, tags=tags, name=name_of(view))
        start_in_process(action_flow, run, params, name=f"saferails-action-{view.id}")
    if wait:
        view = wait_for_outcome(view.id, timeout)
    return Submission(view, run.id)


def start_in_process(flow: Flow[Any, Any], run: FlowRun, parameters: dict[str, Any], *, name: str) -> None:
    """Run the created ``run`` of ``flow`` on a daemon thread of this process; ``join_flow_threads`` waits for it."""
    # return_type="state": a run that ends Failed (a failed execution) is an outcome, not a crash of the thread.
    thread = threading.Thread(target=run_flow, kwargs={"flow": flow, "flow_run": run, "parameters": parameters,
                                                       "return_type": "state"},
                              name=name, daemon=True)
    with _threads_lock:
        _threads[:] = [t for t in _threads if t.is_alive()]
        _threads.append(thread)
    thread.start()


def flow_threads() -> list[str]:
    """Names of the in-process flow runs (threads) still going."""
    with _threads_lock:
        return [t.name for t in _threads if t.is_alive()]


def join_flow_threads(timeout: float = 60, *, ignore: Collection[str] = ()) -> list[str]:
    """Wait up to ``timeout`` seconds in all for the in-process flow runs started so far to end; returns the names
    of those still running. A paused run only ends once it is answered or its action is final (the gate re-checks
    the store every ``poll_interval``), so whoever started it decides first; tests call this before their store
    goes away, so no run outlives the store it was started on. Threads named in ``ignore`` (e.g. left by someone
    else) are neither waited for nor returned."""
    deadline = time.monotonic() + timeout
    with _threads_lock:
        started = [t for t in _threads if t.name not in ignore]
    for thread in started:
        thread.join(max(0.0, deadline - time.monotonic()))
    with _threads_lock:
        _threads[:] = [t for t in _threads if t.is_alive()]
        return [t.name for t in _threads if t.name not in ignore]


def approve(action_id: str, approver: str, code: str | None = None, reason: str = "") -> ActionView:
    return _decide(action_id, {"decision": "approve", "approver": approver, "code": code or "", "reason": reason})


def reject(action_id: str, approver: str, code: str | None = None, reason: str = "") -> ActionView:
    return _decide(action_id, {"decision": "reject", "approver": approver, "code": code or "", "reason": reason})


def rollback(action_id: str, actor: str, reason: str) -> ActionView:
    """Restore the action's captured pre-state through its handler (audited, also when it fails)."""
    result: ActionView = rollback_action.fn(action_id, actor, reason)
    return result


def wait_for_outcome(action_id: str, timeout: float, *, interval: float = 0.2) -> ActionView:
    """Poll the store until the action is final (or approved with nothing running it) or ``timeout`` passes."""
    actions = current_runtime().actions
    deadline = time.monotonic() + timeout
    while True:
        view = actions.get(action_id)
        if view.state in FINAL_STATES:
            return view
        if time.monotonic() >= deadline:
            raise OutcomeTimeout(f"action {action_id} is still {view.state} after {timeout} s")
        time.sleep(interval)


def wait_until_paused(action_id: str, timeout: float, *, interval: float = 0.2) -> ActionView:
    """Poll until the action's flow run is paused at the approval gate (the form is up), or the action has left
    ``pending_approval``; returns the action. Raises ``OutcomeTimeout`` after ``timeout`` seconds."""
    actions = current_runtime().actions
    deadline = time.monotonic() + timeout
    while True:
        view = actions.get(action_id)
        if view.state != PENDING_APPROVAL or _paused(view.flow_run_id):
            return view
        if time.monotonic() >= deadline:
            raise OutcomeTimeout(f"the flow run of action {action_id} did not pause within {timeout} s")
        time.sleep(interval)


@contextmanager
def heartbeats_off() -> Iterator[None]:
    """Flow runs started inside the block send no heartbeats (joining the heartbeat thread costs ~0.9 s a run);
    for demos, tests and benchmarks."""
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def _decide(action_id: str, answer: dict[str, Any]) -> ActionView:
    rt = current_runtime()
    view = rt.actions.get(action_id)
    pause = _pause_state_id(view.flow_run_id) if view.state == PENDING_APPROVAL else None
    if pause is not None:
        try:
            resume_flow_run(UUID(str(view.flow_run_id)), run_input=answer)
        except (RuntimeError, NotPausedError, FlowPauseTimeout, ObjectNotFound):
            pass  # resumed by someone else first, expired or refused: decide directly below
        else:
            return _settled(action_id, pause)
    code = answer["code"] or None
    try:
        if answer["decision"] == "approve":
            return rt.actions.approve(action_id, answer["approver"], reason=answer["reason"], code=code,
                                      channel=API_CHANNEL)
        return rt.actions.reject(action_id, answer["approver"], reason=answer["reason"], code=code,
                                 channel=API_CHANNEL)
    finally:
        _wake_gate(action_id)


def _wake_gate(action_id: str) -> None:
    """Once the store holds an outcome, a run still paused at the gate is set Running so the gate reads the store
    at once and ends, instead of holding its thread (and runner slot) until the pause times out. This happens when
    the action was decided without going through the run: directly here, by the sweep, or by a racing caller. The
    gate treats the wake-up like an empty resume: it fails validation, counts nothing, and the gate sees the
    action is no longer pending."""
    view = current_runtime().actions.get(action_id)
    if view.state == PENDING_APPROVAL or not _paused(view.flow_run_id):
        return
    try:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(UUID(str(view.flow_run_id)), Running(), force=True)
    except ObjectNotFound:
        pass  # the run is gone: nothing is waiting


def _paused(flow_run_id: str | None) -> bool:
    return _pause_state_id(flow_run_id) is not None


def _pause_state_id(flow_run_id: str | None) -> UUID | None:
    """The id of the run's current state when it is paused (each pause is a new state), else None."""
    if flow_run_id is None:
        return None
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(flow_run_id))
    except ObjectNotFound:
        return None
    return run.state.id if run.state is not None and run.state.is_paused() else None


def _settled(action_id: str, pause_before: UUID, timeout: float = 120) -> ActionView:
    """After a resume, wait until the flow has recorded (or refused) the answer: the action is no longer pending,
    or the run is paused again in a NEW pause (the gate pauses afresh after every answer it handled). A version
    change alone is not enough: the gate may write before it records the approval, and the count printed must
    include it. A refused answer is not an exception here; the view shows the state."""
    rt = current_runtime()
    deadline = time.monotonic() + timeout
    while True:
        view = rt.actions.get(action_id)
        if view.state != PENDING_APPROVAL:
            return view
        pause_now = _pause_state_id(view.flow_run_id)
        if (pause_now is not None and pause_now != pause_before) or time.monotonic() >= deadline:
            return view
        time.sleep(0.1)
