"""Scheduled sweeps: expire approvals (hourly, minute 0) and recover interrupted actions (every 10 minutes).

Both are safe to run from several workers at once and to re-run after a crash: the store hands each item to
one sweep (``saferails.sweeps.claims``) and every change goes through the state machine.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.sweeps import (
    end_paused_runs,
    expire_due_approvals,
    publish_audit_checkpoint,
    recover_actions_task,
    resume_due_agents,
)


@flow(name="saferails-expire-approvals")
def expire_approvals(batch_size: int = 500, progress_every: int = 100, max_items: int | None = None) -> dict[str, Any]:
    """Give each pending approval past its deadline its timeout action, then cancel the runs still paused for
    them (even when the flow that paused is gone, the store resolves the action)."""
    report = expire_due_approvals(batch_size, progress_every, max_items)
    paused = [i["flow_run_id"] for i in report["items"] if i["outcome"] == "resolved" and i["flow_run_id"]]
    report["paused_runs_ended"] = end_paused_runs(paused)
    report["audit_checkpoint_published"] = publish_audit_checkpoint()
    return report


@flow(name="saferails-recover-actions")
def recover_actions(lease_minutes: float = 15, batch_size: int = 200) -> dict[str, Any]:
    """Resolve actions stuck in ``executing`` past the lease (recorded effect -> completed, else failed), re-run
    approved actions whose flow run is gone, note pending ones whose paused run is gone, and let paused agents
    whose pause ran out go back to work."""
    report = recover_actions_task(lease_minutes, batch_size)
    report["agents_resumed"] = resume_due_agents()
    report["audit_checkpoint_published"] = publish_audit_checkpoint()
    return report
