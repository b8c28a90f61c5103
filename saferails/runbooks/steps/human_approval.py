"""human-approval: the same gate as actions. The step records a ``runbook_approval`` action through
``ActionService.request_approval`` with the step's requirement (approvers, groups, n-of-m, timeout and timeout
action, codes), proposed by the execution's initiator (so the initiator cannot approve it). Decisions go
through ``ActionService.approve``/``reject`` (API, CLI, the Prefect gate); on each poll the step reads the
action: approved -> completed, rejected -> failed with ``rejected`` set (the runbook short-circuits),
timed out -> resolved by ``resolve_timeout`` per the timeout action.

When the execution context lists ``authorized_users``, only listed approvers are kept: an approver outside the
execution's authorised users cannot decide on it.
"""

from __future__ import annotations

from saferails.actions import lifecycle as alc
from saferails.actions.models import ActionView, Proposal
from saferails.actions.types import ActionTypeSpec, Params, register_action_type
from saferails.errors import SaferailsError
from saferails.policy import ApprovalRequirement
from saferails.runbooks.definition import HumanApprovalConfig, parse_duration
from saferails.runbooks.lifecycle import AWAITING_APPROVAL, COMPLETED, FAILED
from saferails.runbooks.steps.base import StepResult, StepRun
from saferails.runbooks.templating import render

ACTION_TYPE = "runbook_approval"


class RunbookApprovalParams(Params):
    """Binds the approval (through the action hash) to one step of one execution. It has no effect."""

    execution_id: str
    step_id: str


register_action_type(
    ActionTypeSpec(ACTION_TYPE, RunbookApprovalParams, "A runbook step's human approval (no effect)", "runbook_step")
)


def start(run: StepRun) -> StepResult:
    config = run.step.config
    assert isinstance(config, HumanApprovalConfig)
    approvers = list(config.approvers)
    authorized = list(run.execution_context.get("authorized_users") or [])
    if authorized:
        approvers = [a for a in approvers if a in authorized]
    if not approvers and not config.groups:
        message = "no approver of this step is among the execution's authorised users"
        return StepResult(state=FAILED, error=message).log(message, "error")
    try:
        prompt = str(render(config.prompt, run.context))
    except SaferailsError as exc:
        return StepResult(state=FAILED, error=exc.message).log(exc.message, "error")
    source = f"runbook:{run.definition.id}:{run.step.id}"
    requirement = ApprovalRequirement(
        users=frozenset(approvers),
        groups=frozenset(config.groups),
        min_approvals=config.min_approvals,
        timeout=parse_duration(config.timeout),
        timeout_action=config.timeout_action,
        require_codes=config.require_codes,
        rule_ids=(source,),
    )
    proposal = Proposal(
        action_type=ACTION_TYPE,
        target=f"{run.execution_id}/{run.step.id}",
        params={"execution_id": run.execution_id, "step_id": run.step.id},
        proposer=run.initiated_by,
        reason=prompt,
        tenant=run.tenant,
        idempotency_key=f"runbook:{run.execution_id}:{run.step.id}:{run.attempt}",
    )
    view = run.services.actions.request_approval(proposal, requirement, source=source, prompt=prompt)
    return waiting_on(view, prompt)


def waiting_on(view: ActionView, prompt: str) -> StepResult:
    """The step's result while ``view`` (just proposed) decides it."""
    if view.state == alc.BLOCKED:
        message = f"approval request refused by policy: {view.decision.get('code') or view.decision.get('outcome')}"
        return StepResult(state=FAILED, error=message, approval_action_id=view.id).log(message, "error")
    result = StepResult(state=AWAITING_APPROVAL, approval_action_id=view.id)
    return result.log(f"waiting for {view.min_approvals} approval(s) on action {view.id}: {prompt}")


def poll(run: StepRun, action_id: str) -> StepResult | None:
    """Completed, failed or None (still waiting). Applies the timeout action once the deadline has passed."""
    actions = run.services.actions
    view = actions.get(action_id)
    if view.state == alc.PENDING_APPROVAL:
        if view.approval_deadline is None or run.now() < view.approval_deadline:
            return None
        view = actions.resolve_timeout(action_id)
    return decided(view)


def decided(view: ActionView) -> StepResult | None:
    approvers = sorted({a.approver for a in view.approvals if a.decision == "approve"})
    if view.state in (alc.APPROVED, alc.EXECUTING, alc.COMPLETED):
        result = StepResult(state=COMPLETED, output={"action_id": view.id, "approved_by": approvers})
        result.evidence.append(("approval", {"action_id": view.id, "approved_by": approvers, "state": view.state}))
        return result.log(f"approved by {', '.join(approvers) or 'timeout action'}")
    if view.state == alc.REJECTED:
        rejections = [a for a in view.approvals if a.decision == "reject"]
        who = ", ".join(f"{a.approver} ({a.reason})" for a in rejections) or "the timeout action"
        result = StepResult(state=FAILED, error=f"rejected by {who}", rejected=True)
        result.evidence.append(("approval", {"action_id": view.id, "rejected_by": [a.approver for a in rejections]}))
        return result.log(result.error or "", "error")
    if view.state == alc.TIMED_OUT:
        return StepResult(state=FAILED, error="approval timed out").log("approval timed out", "error")
    if view.state == alc.PENDING_APPROVAL:
        return None
    message = f"approval action ended in state {view.state}"
    return StepResult(state=FAILED, error=message).log(message, "error")
