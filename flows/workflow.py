"""Workflow deployments: the outbox dispatcher (one run an hour, a pass every few seconds) and the SLA breach sweep
(every 5 minutes)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.housekeeping import INTERVAL_SECONDS, repeat_in_runtime
from tasks.workflow import current_stats, dead_letter_count, dispatch_batch, sweep_breaches


@flow(name="saferails-dispatch-outbox")
def dispatch_outbox(batch_size: int = 100, max_batches: int = 50, period_seconds: float = 0,
                    interval_seconds: float = INTERVAL_SECONDS) -> dict[str, Any]:
    """Run automation triggers for every due outbox event, pass after pass for ``period_seconds`` (0: one pass;
    the served deployment loops for an hour, see ``flows.housekeeping``), then report the summed work and the
    dead letters left.

    Safe to run from several workers at once: events are claimed with SKIP LOCKED and each trigger effect is
    recorded once, so overlapping runs split the work instead of repeating it.
    """
    # The task's function, not a task run per pass: a pass every few seconds would add hundreds of task runs.
    passes = repeat_in_runtime(lambda: dispatch_batch.fn(batch_size, max_batches), period=period_seconds,
                               interval=interval_seconds)
    report = {key: sum(p[key] for p in passes) for key in passes[0]}
    dead = dead_letter_count()
    return {"report": report, "passes": len(passes), "dead_letters": dead}


@flow(name="saferails-sla-breach-sweep")
def sla_breach_sweep(limit: int = 500) -> dict[str, Any]:
    """Mark overdue SLA records breached (each once), alert and escalate, then report the SLA totals."""
    breaches = sweep_breaches(limit)
    stats = current_stats()
    return {"breached_now": len(breaches), "breaches": breaches, "sla": stats["sla"]}
