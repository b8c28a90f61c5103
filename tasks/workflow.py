"""Tasks of the workflow flows. Each only calls the core (``saferails.workflow``) over the process runtime and
returns plain dicts; claiming, dedup and breach bookkeeping all live in the store."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import asdict
from typing import Any

from prefect import get_run_logger, task

from blocks.settings import current_runtime
from saferails.workflow.dispatcher import OutboxDispatcher
from saferails.workflow.permissions import SYSTEM_ACTOR
from saferails.workflow.service import WorkflowService
from saferails.workflow.sla import SlaMonitor


def _worker_id() -> str:
    # One id per dispatcher: two runs in one process (in-process test runs, a hand-over) must not share a lease.
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@task(name="dispatch-outbox-batch")
def dispatch_batch(batch_size: int, max_batches: int) -> dict[str, int]:
    """Run the dispatcher until nothing is due (or ``max_batches``); the summed report. Bulk work in one task:
    a task run costs 11-25 ms, far more than one event."""
    rt = current_runtime()
    dispatcher = OutboxDispatcher(
        rt.sessions, rt.clock, _worker_id(), webhook_secret=rt.settings.webhook_key, egress=rt.settings.egress
    )
    report = dispatcher.drain(batch_size=batch_size, max_batches=max_batches)
    if report.claimed:  # a looping run passes every few seconds: log the passes that did something
        get_run_logger().info("outbox: %s", report)
    return asdict(report)


@task(name="list-dead-letters")
def dead_letter_count() -> int:
    rt = current_runtime()
    return len(OutboxDispatcher(rt.sessions, rt.clock, _worker_id()).dead_letters(limit=1000))


@task(name="sweep-sla-breaches")
def sweep_breaches(limit: int) -> list[dict[str, Any]]:
    """Mark overdue SLA records breached (alert + escalate); the breaches found by this sweep."""
    rt = current_runtime()
    breaches = SlaMonitor(rt.sessions).sweep_breaches(rt.clock.now(), limit=limit)
    for breach in breaches:
        get_run_logger().warning("SLA breached: task %s (%s min target, %.1f min over)",
                                 breach.task_id, breach.target_minutes, breach.overdue_minutes)
    return [asdict(b) for b in breaches]


@task(name="workflow-stats")
def current_stats() -> dict[str, Any]:
    rt = current_runtime()
    return WorkflowService(rt.sessions, rt.clock).stats(SYSTEM_ACTOR)
