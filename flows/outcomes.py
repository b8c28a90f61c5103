"""Outcome monitoring (hourly): find completed interventions to watch, decide the due ones, show each decision."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from tasks.outcomes import publish_outcome_artifacts, run_due_outcome_checks, schedule_outcome_checks


@flow(name="saferails-monitor-outcomes")
def monitor_outcomes(limit: int = 1000, worker_id: str | None = None) -> dict[str, Any]:
    """Capture baselines for newly completed monitored actions, then decide every due check: a negative outcome
    is audited and rolled back, an inconclusive one (the ``did`` judge) is recorded for a person to resolve
    (``OutcomeMonitor.resolve_inconclusive``), anything else is kept (``outcome_ok``). Each decision leaves an
    artifact.

    Safe to run from several workers at once: checks are claimed (SKIP LOCKED on PostgreSQL) and a claim that
    outlives a crashed run expires, so overlapping or repeated runs split the work instead of repeating it.
    """
    scheduled = schedule_outcome_checks(limit)
    report = run_due_outcome_checks(worker_id or f"flow-run-{flow_run.get_id() or 'local'}", limit)
    published = publish_outcome_artifacts(report)
    return {"scheduled": scheduled, "claimed": report["claimed"], "ok": report["ok"],
            "negative": report["negative"], "inconclusive": report["inconclusive"], "error": report["error"],
            "artifacts": published}
