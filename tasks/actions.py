"""Tasks of the action flow. Each calls the core through the process runtime (``blocks.settings``) and returns
plain values (``ActionView`` or dicts); none decides anything the store has not decided."""

from __future__ import annotations

import json
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from blocks.settings import current_runtime
from saferails.actions.lifecycle import APPROVED, COMPLETED, FAILED, ROLLED_BACK
from saferails.actions.models import ActionView, Proposal
from saferails.approvals.codes import approval_requests
from saferails.errors import SaferailsError

FLOW_ACTOR = "system:flow"


@task(name="propose-or-load")
def propose_or_load(action_id: str | None, proposal: dict[str, Any] | None) -> ActionView:
    """The recorded action: loaded by id, or proposed now (the policy decides inside ``propose``)."""
    rt = current_runtime()
    if action_id is not None:
        return rt.actions.get(action_id)
    if proposal is None:
        raise ValueError("the action flow needs an action_id or a proposal")
    return rt.actions.propose(Proposal.model_validate(proposal))


@task(name="attach-flow-run")
def attach_flow_run(action_id: str, flow_run_id: str) -> None:
    """Record which flow run carries the action (the API resumes that run); audited, state unchanged."""
    current_runtime().actions.attach_flow_run(action_id, flow_run_id, actor=FLOW_ACTOR)


@task(name="capture-and-preview")
def capture_and_preview(action_id: str) -> dict[str, Any]:
    """Pre-state and preview for the approver (``{"error": ...}`` when the handler cannot preview it)."""
    try:
        return current_runtime().execution.preview(action_id)
    except SaferailsError as exc:
        get_run_logger().warning("preview unavailable: %s", exc)
        return {"error": exc.message}


def request_markdown(view: ActionView, preview: dict[str, Any]) -> str:
    """The approval request as markdown: shown above the pause form and saved as the artifact."""
    approval = view.decision.get("approval") or {}
    fired = [f"`{r['rule_id']}`: {r['message']}" for r in view.decision.get("reasons", []) if r.get("fired")]
    deadline = view.approval_deadline.isoformat() if view.approval_deadline else "-"
    rows = [
        ("What", f"`{view.action_type}`"),
        ("On whom", f"`{view.target}`"),
        ("Parameters", f"`{_json(view.params)}`"),
        ("Who asked", view.proposer),
        ("Why", view.reason or "(no reason given)"),
        ("Impact", view.impact.upper()),
        ("Rules fired", "<br>".join(fired) or "-"),
        ("Approvals needed", f"{view.min_approvals} of users {approval.get('users') or '-'} "
                             f"/ groups {approval.get('groups') or '-'}"),
        ("Deadline", f"{deadline} (then: {view.timeout_action or 'fail'})"),
        ("Pre-state", f"`{_json(preview.get('pre_state'))}`" if "pre_state" in preview else "-"),
        ("Preview", f"`{_json(preview.get('preview', preview.get('error')))}`" if preview else "-"),
        ("Action hash", f"`{view.action_hash}`"),
    ]
    codes = "your one-time approval code (sent to you)" if approval.get("require_codes") else "not required"
    table = "\n".join(f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows)
    return (f"### Approval requested: `{view.action_type}` on `{view.target}`\n\n| | |\n|---|---|\n{table}\n\n"
            f"Action `{view.id}`. Choose a decision, give your principal id, the code ({codes}) and a reason.")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@task(name="write-request-artifact")
def write_request_artifact(action_id: str, markdown: str) -> None:
    # The key names the action so the UI lists every request of one action together.
    create_markdown_artifact(markdown=markdown, key=f"approval-{action_id}", description="saferails approval request")


@task(name="notify-approvers")
def notify_approvers(action_id: str) -> list[str]:
    """Make sure the authorised approvers hear of the request; returns the approvers this task notified.

    With an approval secret the core already did it: ``ActionService`` issues each approver a one-time code
    when the action starts waiting and sends it after commit (the ``on_approval_requested`` hook), so this task
    sends nothing and issues nothing (a second issue would replace the codes already sent). Without one, codes
    are not checked and this task sends the request, with no code, through the runtime's notifier."""
    rt = current_runtime()
    logger = get_run_logger()
    if rt.actions.on_approval_requested is not None:
        logger.info("approvers of action %s were sent their one-time codes at proposal", action_id)
        return []
    if rt.notifier is None:
        logger.warning("no notifier configured: the approvers of action %s were not notified", action_id)
        return []
    notes = approval_requests(rt.sessions, action_id)
    for note in notes:
        rt.notifier.send(note)
    approvers = [r.principal_id for n in notes for r in n.recipients]
    logger.info("approval requested from %s", ", ".join(approvers) or "nobody")
    return approvers


@task(name="execute-action")
def execute_action(action_id: str, actor: str = FLOW_ACTOR) -> ActionView:
    """Execute an approved action through ExecutionService (retries, circuit breaker and idempotency live
    there). A not-yet-due scheduled action is left approved for the scheduled-execution sweep."""
    rt = current_runtime()
    result: ActionView = rt.execution.run(action_id, actor)
    if result.state == APPROVED:
        get_run_logger().info("action %s is scheduled for %s: left to the sweep", action_id, result.scheduled_for)
    return result


@task(name="rollback-action")
def rollback_action(action_id: str, actor: str, reason: str) -> ActionView:
    rt = current_runtime()
    result: ActionView = rt.execution.rollback(action_id, actor, reason=reason)
    return result


def outcome(view: ActionView) -> dict[str, Any]:
    """The flow's result: the action's state and, for a refusal, its code and when to retry."""
    out: dict[str, Any] = {"action_id": view.id, "state": view.state, "impact": view.impact,
                           "approvers": list(view.valid_approvers)}
    if view.decision.get("code"):
        out["refusal"] = view.decision["code"]
        out["retry_after"] = view.decision.get("retry_after")
    if view.state in (COMPLETED, FAILED, ROLLED_BACK):
        out["result"] = view.result
        out["error"] = view.error
    return out
