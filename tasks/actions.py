"""Tasks of the action flow. Each calls the core through the process runtime (``blocks.settings``) and returns
plain values (``ActionView`` or dicts); none decides anything the store has not decided."""

from __future__ import annotations

import json
import threading
from typing import Any
from uuid import UUID

from prefect import get_client, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import State
from prefect.states import Cancelled, Completed, Failed

from blocks.settings import current_runtime
from saferails import transitions
from saferails.actions.lifecycle import (
    APPROVED,
    BLOCKED,
    CANCELLED,
    COMPLETED,
    FAILED,
    REJECTED,
    ROLLBACK_FAILED,
    ROLLED_BACK,
    TIMED_OUT,
)
from saferails.actions.models import ActionView, Proposal
from saferails.actions.service import ACTION_KIND
from saferails.actions.service import ENTITY as ACTION_ENTITY
from saferails.api import refusal_for
from saferails.approvals.codes import approval_requests
from saferails.errors import SaferailsError
from saferails.store.db import transaction

FLOW_ACTOR = "system:flow"


@task(name="decide-and-execute")
def decide_and_execute(action_id: str | None, proposal: dict[str, Any] | None, flow_run_id: str,
                       flow_run_name: str | None = None) -> ActionView:
    """The action flow's fast path as ONE task run (a task run costs Prefect as much as the store's work for a
    LOW action): the recorded action (loaded by id, or proposed now: the policy decides inside ``propose``), the
    flow run attached to it (audited; in the proposal's own transaction when it is proposed here), the run
    renamed to :func:`name_of` the action unless ``flow_run_name`` already is that (``flows.api`` creates runs
    with it), and the action executed at once when it is approved and due (allowed by the policy, or approved
    before this run). Anything else comes back as the store holds it: pending approval for the gate, final, or
    approved for later (the scheduled-execution sweep runs it)."""
    rt = current_runtime()
    renaming: list[threading.Thread] = []

    def rename(view: ActionView) -> None:
        if flow_run_name != name_of(view):
            renaming.append(_rename_flow_run(view, flow_run_id))

    try:
        if action_id is not None:
            # Attached in the transaction that claims the action when it is approved and due ("due" is judged
            # there: no second read, no copy of the rule); anything else comes back as stored, attached.
            view = rt.execution.attach_and_run(rt.actions, action_id, flow_run_id, FLOW_ACTOR, on_attached=rename)
        elif proposal is None:
            raise ValueError("the action flow needs an action_id or a proposal")
        else:
            # A new action the policy allows is proposed, attached and claimed in ONE transaction, then executed.
            view = rt.execution.propose_and_run(rt.actions, Proposal.model_validate(proposal),
                                                flow_run_id=flow_run_id, actor=FLOW_ACTOR, on_proposed=rename)
        _log_scheduled(view)
    finally:
        for thread in renaming:
            thread.join()
    return view


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
    """The approval request as markdown: shown above the pause form and saved as the artifact.

    A vertical list (a bold label line, the value below it), not a table: the Resume dialog is narrow, and a
    wide table cut off the pre-state and preview. After a one-line summary come the pre-state and the preview
    (what the approver most needs), then who asked and why, the policy's reasons, and the bookkeeping."""
    approval = view.decision.get("approval") or {}
    fired = [f"`{r['rule_id']}`: {r['message']}" for r in view.decision.get("reasons", []) if r.get("fired")]
    deadline = view.approval_deadline.isoformat() if view.approval_deadline else "-"
    if "pre_state" in preview:
        pre_state = _code_block(preview.get("pre_state"))
    elif "error" in preview:
        pre_state = f"unavailable: {preview['error']}"
    else:
        pre_state = "-"
    shown = preview.get("preview", preview.get("error")) if preview else None
    entries = [
        ("Pre-state (now)", pre_state),
        ("Preview (after approval)", _code_block(shown) if shown is not None else "-"),
        ("Parameters", _code_block(view.params)),
        ("Who asked", view.proposer),
        ("Why", view.reason or "(no reason given)"),
        ("Impact", view.impact.upper()),
        ("Rules fired", "\n".join(f"- {f}" for f in fired) or "-"),
        ("Approvals needed", f"{view.min_approvals} of users {approval.get('users') or '-'} "
                             f"/ groups {approval.get('groups') or '-'}"),
        ("Deadline", f"{deadline} (then: {view.timeout_action or 'fail'})"),
        ("Action", f"`{view.id}`"),
        ("Action hash", f"`{view.action_hash}`"),
    ]
    codes = "your one-time approval code (sent to you)" if approval.get("require_codes") else "not required"
    body = "\n\n".join(f"**{label}**\n\n{value}" for label, value in entries)
    return (f"### Approval requested: `{view.action_type}` on `{view.target}`\n\n"
            f"{view.proposer} asks to run `{view.action_type}` on `{view.target}` ({view.impact} impact).\n\n"
            f"{body}\n\n"
            f"Choose a decision, give your principal id, the code ({codes}) and a reason.")


def _code_block(value: Any) -> str:
    """``value`` for the narrow dialog: an object as one bullet per key (wraps with the dialog), anything else
    as indented JSON in a fenced block."""
    if isinstance(value, dict) and value:
        return "\n".join(f"- {key}: `{json.dumps(item, sort_keys=True, default=str)}`"
                         for key, item in sorted(value.items()))
    return f"```json\n{json.dumps(value, sort_keys=True, default=str, indent=2)}\n```"


@task(name="write-request-artifact")
def write_request_artifact(action_id: str, markdown: str) -> None:
    # The key names the action so the UI lists every request of one action together.
    create_markdown_artifact(markdown=markdown, key=f"approval-{action_id}", description="saferails approval request")


@task(name="write-decision-artifact")
def write_decision_artifact(view: ActionView) -> None:
    """When the gate closes: a new version of the request's artifact (same key) saying how it was decided, so
    the artifact no longer reads "Approval requested" once the answer is in."""
    verbs = {"approve": "approved", "reject": "rejected"}
    lines = [f"- **{a.approver}** {verbs.get(a.decision, a.decision)} via {a.channel} at "
             f"{a.created_at.isoformat()}: {a.reason or '-'}"
             + ("" if a.action_hash == view.action_hash else " (for an older version: does not count)")
             for a in view.approvals]
    decided = view.decided_at.isoformat() if view.decided_at else "-"
    markdown = (f"### Approval {view.state.replace('_', ' ')}: `{view.action_type}` on `{view.target}`\n\n"
                f"Decided at {decided}. {len(view.valid_approvers)} of {view.min_approvals} approvals counted.\n\n"
                + ("\n".join(lines) or "No decision was recorded (the deadline passed).")
                + f"\n\nAction `{view.id}`")
    create_markdown_artifact(markdown=markdown, key=f"approval-{view.id}",
                             description=f"saferails approval: {view.state}")


def audit_invalid_resume(action_id: str, why: str) -> None:
    """Audit a resume of the paused run whose input was not a valid decision (it never reaches
    ``ActionService``, which audits the refusals it makes itself). State unchanged; nobody is named, since the
    input named nobody valid."""
    rt = current_runtime()
    with transaction(rt.sessions) as session:
        row = transitions.lock_row(session, ACTION_KIND, action_id)
        transitions.record_event(session, ACTION_ENTITY, row, actor="prefect-ui:unknown",
                                 event="approval_input_invalid", now=rt.clock.now(),
                                 details={"channel": "prefect-ui", "reason": why})


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
    return _execute(action_id, actor)


def _execute(action_id: str, actor: str) -> ActionView:
    result: ActionView = current_runtime().execution.run(action_id, actor)
    _log_scheduled(result)
    return result


def _log_scheduled(view: ActionView) -> None:
    if view.state == APPROVED:
        get_run_logger().info("action %s is scheduled for %s: left to the sweep", view.id, view.scheduled_for)


@task(name="rollback-action")
def rollback_action(action_id: str, actor: str, reason: str) -> ActionView:
    rt = current_runtime()
    result: ActionView = rt.execution.rollback(action_id, actor, reason=reason)
    return result


def name_of(view: ActionView) -> str:
    """What a run carrying ``view`` is called: ``reassign_manager emp_21 · 5e2c550c``."""
    return f"{view.action_type} {view.target} · {view.id[:8]}"


def _rename_flow_run(view: ActionView, flow_run_id: str) -> threading.Thread:
    """Start naming the run after its action (a run started from a proposal, or created without the name) and
    return the thread doing it; the caller joins it before its task ends. The API call (20-40 ms on a loaded
    machine) thus overlaps the execution instead of delaying it, and a failure to rename is logged as a warning
    rather than failing a run whose action is carried out. Inside a run ``get_client`` hands back the run's own
    client (one API call, no new connection); it is taken here, where the run's context is, and nothing else
    uses it while the task body runs."""
    client = get_client(sync_client=True)
    logger = get_run_logger()

    def rename() -> None:
        try:
            with client:  # re-entrant: the run's client stays open; a client made here is opened and closed
                client.update_flow_run(UUID(flow_run_id), name=name_of(view))
        except Exception as exc:  # noqa: BLE001 - the name is a convenience; the action's outcome is not at stake
            logger.warning("could not name flow run %s after action %s: %s", flow_run_id, view.id, exc)

    thread = threading.Thread(target=rename, name=f"saferails-name-run-{view.id[:8]}", daemon=True)
    thread.start()
    return thread


def final_state(view: ActionView) -> State[dict[str, Any]]:
    """The flow run's final state, saying the action's outcome (the run's result is ``outcome(view)``).

    - ``completed`` -> Completed; ``failed``, ``rollback_failed`` -> Failed with the error as message;
      ``timed_out`` (the policy's timeout action ``fail``) -> Failed named "TimedOut".
    - ``rejected``, ``blocked`` (named "Blocked", or "RateLimited" when the policy's code is RATE_LIMITED),
      ``rolled_back`` -> Completed-typed states named "Rejected", "Blocked", "RateLimited", "RolledBack";
      ``approved`` (scheduled for later, left to the sweep) -> Completed named "Approved"; ``cancelled`` ->
      Cancelled.

    Why Completed-typed for refusals: the flow did its job (the rails held), so nothing about the run itself
    failed and no retry or failure automation should fire; the UI shows the state's name, so the outcome is
    still visible at a glance. Cancelled-typed is kept for a withdrawn action, which is what Cancelled means in
    Prefect. The reason is the state's message."""
    out = outcome(view)
    if view.state == COMPLETED:
        return Completed(data=out, message=f"{view.action_type} on {view.target} completed")
    if view.state in (FAILED, ROLLBACK_FAILED):
        return Failed(data=out, message=view.error or f"action {view.id} is {view.state}")
    if view.state == TIMED_OUT:
        return Failed(data=out, name="TimedOut",
                      message=f"nobody decided before {view.approval_deadline}: the policy fails it on timeout")
    if view.state == CANCELLED:
        return Cancelled(data=out, message=_last_reason(view) or f"action {view.id} was cancelled")
    if view.state == REJECTED:
        return Completed(data=out, name="Rejected", message=_last_reason(view) or "rejected")
    if view.state == BLOCKED:
        refusal = refusal_for(view)
        name = "RateLimited" if refusal is not None and refusal.code == "RATE_LIMITED" else "Blocked"
        why = refusal.message if refusal is not None else f"action {view.id} was blocked by policy"
        return Completed(data=out, name=name, message=f"{refusal.code if refusal else 'BLOCKED'}: {why}")
    if view.state == ROLLED_BACK:
        return Completed(data=out, name="RolledBack", message=view.error or "rolled back to the captured pre-state")
    if view.state == APPROVED:
        return Completed(data=out, name="Approved",
                         message=f"approved; the scheduled-execution sweep runs it at {view.scheduled_for}")
    return Completed(data=out, name=view.state.replace("_", " ").title().replace(" ", ""),
                     message=f"action {view.id} is {view.state}")


def _last_reason(view: ActionView) -> str:
    """The reason of the deciding rejection (who and why), for the state message."""
    for approval in reversed(view.approvals):
        if approval.decision == "reject":
            return f"rejected by {approval.approver}: {approval.reason or '(no reason given)'}"
    return ""


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
