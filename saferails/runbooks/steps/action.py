"""action: propose a saferails action, so a runbook's effects go through policy, audit and undo.

allowed -> executed through ``saferails.execution.ExecutionService`` when it is available (else the action is
left approved and the step records that); needs approval -> the step waits like human-approval and executes
once approved; blocked -> the step fails with the policy's refusal.
"""

from __future__ import annotations

from saferails.actions import lifecycle as alc
from saferails.actions.models import ActionView, Proposal
from saferails.errors import SaferailsError
from saferails.runbooks.definition import ActionConfig
from saferails.runbooks.lifecycle import AWAITING_APPROVAL, COMPLETED, FAILED
from saferails.runbooks.steps.base import StepResult, StepRun
from saferails.runbooks.templating import render


def start(run: StepRun) -> StepResult:
    config = run.step.config
    assert isinstance(config, ActionConfig)
    try:
        proposal = Proposal(
            action_type=config.action_type,
            target=str(render(config.target, run.context)),
            params=render(config.params, run.context),
            proposer=run.initiated_by,
            reason=str(render(config.reason, run.context)) or f"runbook {run.definition.id} step {run.step.id}",
            tenant=run.tenant,
            idempotency_key=f"runbook:{run.execution_id}:{run.step.id}:{run.attempt}",
        )
        view = run.services.actions.propose(proposal)
    except SaferailsError as exc:
        return StepResult(state=FAILED, error=f"{exc.code}: {exc.message}").log(exc.message, "error")
    return _after_decision(run, view)


def poll(run: StepRun, action_id: str) -> StepResult | None:
    view = run.services.actions.get(action_id)
    if view.state == alc.PENDING_APPROVAL:
        if view.approval_deadline is None or run.now() < view.approval_deadline:
            return None
        view = run.services.actions.resolve_timeout(action_id)
    return _after_decision(run, view)


def _after_decision(run: StepRun, view: ActionView) -> StepResult:
    if view.state == alc.PENDING_APPROVAL:
        return StepResult(state=AWAITING_APPROVAL, approval_action_id=view.id).log(
            f"action {view.id} ({view.action_type}) waits for {view.min_approvals} approval(s)"
        )
    if view.state == alc.APPROVED:
        return _execute(run, view)
    if view.state == alc.COMPLETED:
        return _done(view, "already executed")
    message = f"action {view.id} is {view.state}: {view.decision.get('code') or view.error or ''}".rstrip(": ")
    result = StepResult(state=FAILED, error=message, approval_action_id=view.id, rejected=view.state == alc.REJECTED)
    return result.log(message, "error")


def _execute(run: StepRun, view: ActionView) -> StepResult:
    executor = run.services.executor_factory()
    if executor is None:
        result = StepResult(
            state=COMPLETED,
            output={"action_id": view.id, "state": view.state, "executed": False},
            approval_action_id=view.id,
        )
        return result.log(f"action {view.id} approved; not executed: the execution service is unavailable", "warning")
    try:
        executed: ActionView = executor.execute(view.id, f"runbook:{run.execution_id}")
    except SaferailsError as exc:
        message = f"executing action {view.id} failed: {exc.code}: {exc.message}"
        return StepResult(state=FAILED, error=message, approval_action_id=view.id).log(message, "error")
    if executed.state != alc.COMPLETED:
        message = f"action {view.id} ended {executed.state}: {executed.error or ''}"
        return StepResult(state=FAILED, error=message, approval_action_id=view.id).log(message, "error")
    return _done(executed, "executed")


def _done(view: ActionView, how: str) -> StepResult:
    result = StepResult(
        state=COMPLETED,
        output={"action_id": view.id, "state": view.state, "executed": True, "result": view.result},
        approval_action_id=view.id,
    )
    result.evidence.append(("action", {"action_id": view.id, "action_type": view.action_type, "state": view.state}))
    return result.log(f"action {view.id} ({view.action_type}) {how}")
