"""THE action flow, one for every action type: the policy's answer, then the gate, then execution."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from pydantic import validate_call

from flows.approval_gate import approval_gate
from saferails.actions.lifecycle import APPROVED, PENDING_APPROVAL
from tasks.actions import (
    capture_and_preview,
    decide_and_execute,
    execute_action,
    final_state,
    notify_approvers,
    request_markdown,
    write_decision_artifact,
    write_request_artifact,
)


# No ``flow_run_name``: Prefect would name every run with an extra API call (and result-store look-up) before the
# body starts. ``flows.api`` creates runs with their name; ``decide-and-execute`` renames any other run once.
# Parameters are validated (and coerced) by pydantic's ``validate_call``, whose validator is built once, rather
# than by Prefect's ``validate_parameters``, which builds a pydantic model of the signature on every run (~3 ms of
# CPU, a tenth of what the action flow adds to a bare one). A bad parameter still fails the run before any step.
@flow(name="saferails-action", validate_parameters=False)
@validate_call
def action_flow(
    action_id: str | None = None, proposal: dict[str, Any] | None = None, poll_interval: float = 1.0
) -> dict[str, Any]:
    """Carry one action to its outcome. The run's final state says that outcome (``tasks.actions.final_state``:
    Completed, Failed with the error, or a named state such as "Rejected", "Blocked", "RateLimited",
    "RolledBack"); its result is the outcome dict (``state``, and for a refusal ``refusal``/``retry_after``).
    Called directly it returns that dict (a Failed run raises; pass ``return_state=True`` to get the state).
    Typed as that dict because Prefect turns the returned state into its result for callers.

    The fast path is ONE task run (``decide-and-execute``: load or propose, attach this run, execute when the
    policy allowed it): a task run costs Prefect 10-25 ms, as much as the store's work for a LOW action. Only an
    action that waits for approval pays for more (preview, request artifact, notification, gate, execution,
    then the decision artifact). ``poll_interval`` (seconds) is how often a paused run looks for an answer.

    A blocked or rate-limited action runs nothing. An action already past the gate (re-run, recovery) is not
    decided again; execution is idempotent in the core, so a completed action's re-run applies nothing.
    """
    view = decide_and_execute(action_id, proposal, str(flow_run.get_id()), flow_run.get_name())
    if view.state == PENDING_APPROVAL:
        preview = capture_and_preview(view.id)
        description = request_markdown(view, preview)
        write_request_artifact(view.id, description)
        notify_approvers(view.id)
        decided = view = approval_gate(view, description, poll_interval=poll_interval)
        try:
            if decided.state == APPROVED:
                view = execute_action(decided.id)
        finally:
            # After the execution, not before: the approver's answer reaches the handler one task run sooner.
            # Written also when the execution raises; it says how the approval was decided, as before.
            write_decision_artifact(decided)
    # Prefect resolves a returned state into the run's final state, and into its result (the dict) for callers.
    return final_state(view)  # type: ignore[return-value]
