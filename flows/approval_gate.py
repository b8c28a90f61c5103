"""The approval gate: pause the flow run with a form until the store says approved or rejected.

Each answer is checked by ``ActionService.approve`` / ``reject`` (authorised, not the proposer, counted once,
bound to the action hash shown in the request, one-time code); the service audits what it refuses. A refused
answer is logged as an error in the run's logs and the run pauses again without counting; so does an answer
that fails validation (an empty resume has no ``decision``), which never reaches the service and is audited
here (``approval_input_invalid``). Prefect's UI only says "resumed", so the next pause's form starts with the
refusal. Each pause gets a fresh key (Prefect numbers them), so n-of-m approvals are n resumes of the same run.

Time: the pause lasts until the action's ``approval_deadline`` by the runtime clock. When Prefect's pause
times out the run is forced back to Running (a real server's pause-expiry service may already have failed
it) and the store decides: past the deadline, ``resolve_timeout`` applies the policy's timeout action;
otherwise the gate pauses again for the time left. The flow's final state then says the outcome.

Decisions that do not go through the run (the CLI, the HTTP API and the Python API decide in the store; the
sweeps too) reach the gate as well: it reads the store before every pause, and while paused it checks the store
each ``poll_interval`` beside Prefect's state. Once the store holds an outcome the gate takes its run back to
Running itself and ends, so a run never sits paused on an action that is already decided, whichever edge decided
it and whenever (before the pause, between the check and the pause, or during it). That is why the gate waits in
:func:`_pause` rather than in ``pause_flow_run``, whose loop can only see Prefect's state.
"""

from __future__ import annotations

import math
import time
from typing import Literal, cast
from uuid import UUID

import sqlalchemy as sa
from prefect import get_client, get_run_logger
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext
from prefect.input import RunInput, keyset_from_paused_state
from prefect.states import Paused, Running
from prefect.utilities.engine import propose_state_sync
from pydantic import Field, ValidationError

from blocks.settings import current_runtime
from saferails.actions.lifecycle import PENDING_APPROVAL
from saferails.actions.models import ActionView
from saferails.errors import ApprovalError, InvalidInput, InvalidTransition
from saferails.store.db import read_transaction
from saferails.store.tables import Action
from tasks.actions import audit_invalid_resume

CHANNEL = "prefect-ui"
MAX_PAUSE_SECONDS = 3600  # a pause with no deadline is renewed every hour (Prefect's default pause timeout)


class ApprovalInput(RunInput):
    """The form an approver fills in. ``decision`` has no default: an empty resume cannot approve."""

    decision: Literal["approve", "reject"] = Field(description="Approve or reject this exact action")
    approver: str = Field(min_length=1, description="Your principal id")
    code: str = Field(min_length=1, description="The one-time approval code sent to you")
    reason: str = Field(description="Why you decide so (recorded in the audit trail)")


class ApprovalInputCodeWaived(ApprovalInput):
    """The form when the deciding rule waives approval codes."""

    code: str = Field(default="", description="Not required for this action")


def approval_gate(view: ActionView, description: str, *, poll_interval: float = 1.0) -> ActionView:
    """Pause until ``view``'s action leaves ``pending_approval``; returns the action as the store holds it.
    ``poll_interval`` (seconds) is how often the paused run looks at Prefect's state and at the store: the time
    from an answer to the gate acting on it is at most that."""
    rt = current_runtime()
    logger = get_run_logger()
    requirement = view.decision.get("approval") or {}
    form = ApprovalInput if requirement.get("require_codes", True) else ApprovalInputCodeWaived
    shown_hash = view.action_hash
    refusal = ""
    poll = max(0.05, float(poll_interval))
    # The store, not the caller's copy: a decision may have landed since the flow loaded the action.
    view = rt.actions.get(view.id)
    while view.state == PENDING_APPROVAL:
        left = 0.0 if view.approval_deadline is None else (view.approval_deadline - rt.clock.now()).total_seconds()
        if view.approval_deadline is not None and left <= 0:
            view = _resolve_timeout(view.id)
            break
        timeout = max(1, math.ceil(left)) if view.approval_deadline is not None else MAX_PAUSE_SECONDS
        try:
            answer = _pause(form.with_initial_data(description=refusal + description), view.id,
                            timeout=timeout, poll_interval=min(poll, timeout))
        except ValidationError as exc:
            why = f"the input was not a valid decision: {exc.errors()[0]['msg']}"
            logger.error("resume refused, %s", why)
            audit_invalid_resume(view.id, why)
            refusal = _refusal_banner("An answer", why)
        else:
            if answer is not None:
                refusal = _decide(view.id, answer, shown_hash)
        view = rt.actions.get(view.id)
    logger.info("approval gate closed: action %s is %s", view.id, view.state)
    return view


def _pause(form: type[ApprovalInput], action_id: str, *, timeout: int, poll_interval: float) -> ApprovalInput | None:
    """Pause this flow run with ``form`` (as ``pause_flow_run`` does: a Paused state with a fresh pause key and the
    form's schema saved under it) and wait until one of:

    - the run is resumed: returns the answer (``ValidationError`` when it is not a valid decision);
    - the store says the action is no longer pending (decided elsewhere): returns None;
    - ``timeout`` seconds pass: returns None.

    The run is Running again whenever this returns: a decided action or a timeout takes it back from Paused
    itself, forced, so a real server's pause-expiry service (which fails expired pauses) cannot have the last
    word on a run whose outcome is ours."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("the approval gate runs inside a flow run")
    run_id = context.flow_run.id
    # Prefect numbers the pauses of one run (never a constant key: a repeated key returns the first answer).
    counter = context.observed_flow_pauses["counter"] = context.observed_flow_pauses.get("counter", 0) + 1
    proposed: State[None] = Paused(timeout_seconds=timeout, reschedule=False, pause_key=str(counter))
    keyset = keyset_from_paused_state(proposed)
    proposed.state_details.run_input_keyset = {str(k): v for k, v in keyset.items()}
    with get_client(sync_client=True) as client:
        state = propose_state_sync(client=client, state=proposed, flow_run_id=run_id)
        if not state.is_paused():
            raise RuntimeError(f"the flow run could not be paused; the server answered {state.type.value}")
        form.save(keyset)
        ends = time.monotonic() + timeout
        while True:
            if not _pending(action_id):
                _back_to_running(client, run_id)
                return None
            current = client.read_flow_run(run_id).state
            if current is not None and current.is_running():
                # Resumed: by an answer, or woken by ``flows.api`` once the store decided (no input then).
                if not _pending(action_id):
                    return None
                # RunInput.load is typed sync-or-async; called from sync code it returns the instance.
                return cast(ApprovalInput, form.load(keyset, flow_run_id=run_id))
            if time.monotonic() >= ends:
                _back_to_running(client, run_id)
                return None
            time.sleep(min(poll_interval, max(0.0, ends - time.monotonic())))


def _pending(action_id: str) -> bool:
    """True while the store holds the action as pending approval (one indexed read of its state)."""
    with read_transaction(current_runtime().sessions) as session:
        state = session.scalar(sa.select(Action.state).where(Action.id == action_id))
    return state == PENDING_APPROVAL


def _back_to_running(client: SyncPrefectClient, run_id: UUID) -> None:
    """Force the run back to Running (from Paused, or from Failed if the pause-expiry service got there first)."""
    current = client.read_flow_run(run_id).state
    if current is None or not current.is_running():
        client.set_flow_run_state(run_id, Running(), force=True)


def _decide(action_id: str, answer: ApprovalInput, shown_hash: str) -> str:
    """Record ``answer`` through the service; returns a banner for the next form if it was refused, else ""."""
    rt = current_runtime()
    code = answer.code or None
    try:
        if answer.decision == "approve":
            rt.actions.approve(action_id, answer.approver, reason=answer.reason, code=code, action_hash=shown_hash,
                               channel=CHANNEL)
        else:
            rt.actions.reject(action_id, answer.approver, reason=answer.reason, code=code, action_hash=shown_hash,
                              channel=CHANNEL)
    except (ApprovalError, InvalidInput, InvalidTransition) as exc:
        get_run_logger().error("%s by %s refused (%s): %s", answer.decision, answer.approver, exc.code, exc.message)
        return _refusal_banner(f"{answer.approver}'s {answer.decision}", f"{exc.code}: {exc.message}")
    get_run_logger().info("%s by %s recorded", answer.decision, answer.approver)
    return ""


def _refusal_banner(who: str, why: str) -> str:
    return f"> **Refused, nothing was recorded.** {who} was refused ({why}). Try again below.\n\n"


def _resolve_timeout(action_id: str) -> ActionView:
    rt = current_runtime()
    try:
        return rt.actions.resolve_timeout(action_id)
    except InvalidTransition:  # a decision or the sweep got there first: the store has the outcome
        return rt.actions.get(action_id)
