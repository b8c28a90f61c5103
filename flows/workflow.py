"""Workflow deployments: the outbox dispatcher (every few seconds) and the SLA breach sweep (every 5 minutes)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.workflow import current_stats, dead_letter_count, dispatch_batch, sweep_breaches


@flow(name="saferails-dispatch-outbox")
def dispatch_outbox(batch_size: int = 100, max_batches: int = 50) -> dict[str, Any]:
    """Run automation triggers for every due outbox event, then report what is left.

    Safe to run from several workers at once: events are claimed with SKIP LOCKED and each trigger effect is
    recorded once, so overlapping runs split the work instead of repeating it.
    """
    report = dispatch_batch(batch_size, max_batches)
    dead = dead_letter_count()
    return {"report": report, "dead_letters": dead}


@flow(name="saferails-sla-breach-sweep")
def sla_breach_sweep(limit: int = 500) -> dict[str, Any]:
    """Mark overdue SLA records breached (each once), alert and escalate, then report the SLA totals."""
    breaches = sweep_breaches(limit)
    stats = current_stats()
    return {"breached_now": len(breaches), "breaches": breaches, "sla": stats["sla"]}
