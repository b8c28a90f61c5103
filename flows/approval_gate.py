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
"""

from __future__ import annotations

import math
from typing import Literal

from prefect import get_client, get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import Running
from pydantic import Field, ValidationError

from blocks.settings import current_runtime
from saferails.actions.lifecycle import PENDING_APPROVAL
from saferails.actions.models import ActionView
from saferails.errors import ApprovalError, InvalidInput, InvalidTransition
from tasks.actions import audit_invalid_resume

CHANNEL = "prefect-ui"


class ApprovalInput(RunInput):
    """The form an approver fills in. ``decision`` has no default: an empty resume cannot approve."""

    decision: Literal["approve", "reject"] = Field(description="Approve or reject this exact action")
    approver: str = Field(min_length=1, description="Your principal id")
    code: str = Field(min_length=1, description="The one-time approval code sent to you")
    reason: str = Field(description="Why you decide so (recorded in the audit trail)")


class ApprovalInputCodeWaived(ApprovalInput):
    """The form when the deciding rule waives approval codes."""

    code: str = Field(default="", description="Not required for this action")


def approval_gate(view: ActionView, description: str, *, poll_interval: int = 10) -> ActionView:
    """Pause until ``view``'s action leaves ``pending_approval``; returns the action as the store holds it."""
    rt = current_runtime()
    logger = get_run_logger()
    requirement = view.decision.get("approval") or {}
    form = ApprovalInput if requirement.get("require_codes", True) else ApprovalInputCodeWaived
    shown_hash = view.action_hash
    refusal = ""
    while view.state == PENDING_APPROVAL:
        left = 0.0 if view.approval_deadline is None else (view.approval_deadline - rt.clock.now()).total_seconds()
        if view.approval_deadline is not None and left <= 0:
            view = _resolve_timeout(view.id)
            break
        timeout = max(1, math.ceil(left)) if view.approval_deadline is not None else 3600
        try:
            answer = pause_flow_run(wait_for_input=form.with_initial_data(description=refusal + description),
                                    timeout=timeout, poll_interval=max(1, min(poll_interval, timeout)))
        except FlowPauseTimeout:
            _reclaim_run()
        except ValidationError as exc:
            why = f"the input was not a valid decision: {exc.errors()[0]['msg']}"
            logger.error("resume refused, %s", why)
            audit_invalid_resume(view.id, why)
            refusal = _refusal_banner("An answer", why)
        else:
            refusal = _decide(view.id, answer, shown_hash)
        view = rt.actions.get(view.id)
    logger.info("approval gate closed: action %s is %s", view.id, view.state)
    return view


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


def _reclaim_run() -> None:
    """Force the run back to Running after a pause timeout, so its final state is ours, not the expiry
    service's."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(str(flow_run.get_id()), Running(), force=True)
