"""Tasks of the outcome-monitoring flow: thin wrappers over ``saferails.outcomes.OutcomeMonitor``."""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact

from blocks.settings import Runtime, current_runtime
from saferails.outcomes import CheckOutcome, OutcomeMonitor, load_rulebook
from saferails.outcomes.report import render_markdown


def monitor_for(rt: Runtime) -> OutcomeMonitor:
    if rt.execution is None:
        raise RuntimeError("the outcome monitor needs saferails.execution installed to roll actions back")
    # Per-type delays, judges and thresholds come from the policy in force (its ``outcomes`` section).
    # Inconclusive checks issue one-time codes to the people who may decide (as approvals do).
    return OutcomeMonitor(rt.sessions, rt.clock, rt.execution, load_rulebook(rt.policy.outcomes), codes=rt.codes,
                          notifier=rt.notifier)


@task(name="schedule-outcome-checks")
def schedule_outcome_checks(limit: int) -> int:
    """Create checks (with baselines) for completed, monitored actions that have none."""
    created = monitor_for(current_runtime()).schedule(limit=limit)
    get_run_logger().info("scheduled %d outcome checks", created)
    return created


@task(name="run-due-outcome-checks")
def run_due_outcome_checks(worker_id: str, limit: int) -> dict[str, Any]:
    """Claim and decide due checks; progress shows as a Prefect progress artifact."""
    logger = get_run_logger()
    # In a sync task the call returns the id (Prefect types it as "id or coroutine" for async callers).
    progress_id = cast(UUID, create_progress_artifact(progress=0.0, description="outcome checks decided (%)"))

    shown = [0]

    def progress(done: int, total: int) -> None:
        percent = 100 * done // total
        if percent >= shown[0] + 5 or done == total:  # one API call per 5%, not per check
            shown[0] = percent
            update_progress_artifact(artifact_id=progress_id, progress=float(percent))
            logger.info("outcome checks: %d / %d", done, total)

    report = monitor_for(current_runtime()).run_due(worker_id=worker_id, limit=limit, progress=progress)
    update_progress_artifact(artifact_id=progress_id, progress=100.0)
    return report.as_dict()


@task(name="publish-outcome-artifacts")
def publish_outcome_artifacts(report: dict[str, Any]) -> int:
    """One markdown artifact per decided check (table and chart), keyed by action so reruns line up."""
    for raw in report["outcomes"]:
        outcome = CheckOutcome(**raw)
        create_markdown_artifact(markdown=render_markdown(outcome), key=f"outcome-{outcome.action_id}",
                                 description=f"outcome check: {outcome.state}")
    return len(report["outcomes"])
