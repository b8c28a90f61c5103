"""Outcome monitoring (hourly): find completed interventions to watch, decide the due ones, show each decision,
and ask a person about each inconclusive one.

The person's gate works as the approval gate (``flows.approval_gate``), with its pieces: the run pauses with a
form (``OutcomeDecisionInput``: roll back or keep, who, their one-time code, why) whose description is the
evidence (the judge's effect and interval per metric, and the target against its controls week by week); each
answer goes through ``OutcomeMonitor.resolve_inconclusive``, which checks the person may decide and spends their
code (codes issued when the check became inconclusive); a refused or invalid answer is logged and the run pauses
again with the refusal on top of the form. When the pause times out (``decision_timeout``), the run is forced back
to Running and moves on: the check stays inconclusive, and the same code still works through
``saferails outcomes resolve`` until it expires.
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from prefect import flow, get_client, get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field, ValidationError

from blocks.settings import current_runtime
from flows.approval_gate import _back_to_running, _refusal_banner
from saferails.errors import ApprovalError, InvalidInput, OutcomeCheckNotInconclusive
from saferails.outcomes.report import render_evidence
from tasks.outcomes import monitor_for, publish_outcome_artifacts, run_due_outcome_checks, schedule_outcome_checks

CHANNEL = "prefect-ui"


class OutcomeDecisionInput(RunInput):
    """The form a decider fills in. ``decision`` has no default: an empty resume decides nothing."""

    decision: Literal["roll_back", "keep"] = Field(description="Roll the change back, or keep it")
    approver: str = Field(min_length=1, description="Your principal id")
    code: str = Field(min_length=1, description="The one-time code sent to you for this decision")
    reason: str = Field(description="Why you decide so (recorded in the audit trail)")


def _reclaim_run() -> None:
    """Force the run back to Running after a pause timeout, so its final state is ours, not the expiry
    service's."""
    with get_client(sync_client=True) as client:
        _back_to_running(client, UUID(str(flow_run.get_id())))


def outcome_gate(action_id: str, *, timeout: int, poll_interval: int = 10) -> str:
    """Pause until a person resolves ``action_id``'s inconclusive check or ``timeout`` seconds pass; returns the
    check's state then (``ok`` kept, ``negative`` rolled back, or still ``inconclusive``)."""
    rt = current_runtime()
    logger = get_run_logger()
    monitor = monitor_for(rt)
    refusal = ""
    check = monitor.check_for(action_id)
    while check is not None and check.state == "inconclusive":
        evidence = render_evidence(check)
        try:
            answer = pause_flow_run(wait_for_input=OutcomeDecisionInput.with_initial_data(
                description=refusal + evidence), timeout=timeout, poll_interval=max(1, min(poll_interval, timeout)))
        except FlowPauseTimeout:
            _reclaim_run()
            logger.warning("nobody decided on action %s's inconclusive outcome in time; it stays inconclusive "
                           "(saferails outcomes resolve)", action_id)
            break
        except ValidationError as exc:
            why = f"the input was not a valid decision: {exc.errors()[0]['msg']}"
            logger.error("resume refused, %s", why)
            refusal = _refusal_banner("An answer", why)
        else:
            try:
                monitor.resolve_inconclusive(action_id, answer.approver, roll_back=answer.decision == "roll_back",
                                             reason=answer.reason, code=answer.code, channel=CHANNEL)
                refusal = ""
                logger.info("%s by %s recorded", answer.decision, answer.approver)
            except (ApprovalError, InvalidInput, OutcomeCheckNotInconclusive) as exc:
                logger.error("%s by %s refused (%s): %s", answer.decision, answer.approver, exc.code, exc.message)
                refusal = _refusal_banner(f"{answer.approver}'s {answer.decision}", f"{exc.code}: {exc.message}")
        check = monitor.check_for(action_id)
    return "missing" if check is None else check.state


@flow(name="saferails-monitor-outcomes")
def monitor_outcomes(limit: int = 1000, worker_id: str | None = None, ask_people: bool = True,
                     decision_timeout: int = 3600, poll_interval: int = 10) -> dict[str, Any]:
    """Capture baselines for newly completed monitored actions, then decide every due check: a negative outcome
    is audited and rolled back, an inconclusive one (the ``did`` judge) goes to a person through
    :func:`outcome_gate` (unless ``ask_people`` is off: then only ``saferails outcomes resolve`` decides it),
    anything else is kept (``outcome_ok``). Each decision leaves an artifact.

    Safe to run from several workers at once: checks are claimed (SKIP LOCKED on PostgreSQL) and a claim that
    outlives a crashed run expires, so overlapping or repeated runs split the work instead of repeating it.
    """
    scheduled = schedule_outcome_checks(limit)
    report = run_due_outcome_checks(worker_id or f"flow-run-{flow_run.get_id() or 'local'}", limit)
    published = publish_outcome_artifacts(report)
    resolved: dict[str, str] = {}
    if ask_people:
        for outcome in report["outcomes"]:
            if outcome["state"] == "inconclusive":
                resolved[outcome["action_id"]] = outcome_gate(outcome["action_id"], timeout=decision_timeout,
                                                              poll_interval=poll_interval)
    return {"scheduled": scheduled, "claimed": report["claimed"], "ok": report["ok"],
            "negative": report["negative"], "inconclusive": report["inconclusive"], "error": report["error"],
            "artifacts": published, "resolved": resolved}
