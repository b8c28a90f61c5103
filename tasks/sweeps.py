"""Tasks of the sweep flows. Each runs the whole sweep inside one task (a task run costs 11-25 ms, far more than
one item) over the process runtime, logs a progress line every N items and keeps a progress artifact; the
store decides everything. ``end_paused_runs`` and ``prefect_run_probe`` are the only places Prefect state is
read or changed."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta
from typing import Any, cast

from prefect import get_client, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled

from blocks.settings import current_runtime
from saferails.sweeps import ExpireSweep, RecoverSweep, SweepProgress
from saferails.sweeps.agents import AutoResumeSweep
from saferails.sweeps.report import ProgressCallback


def _worker_id(sweep: str) -> str:
    return f"{sweep}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _progress(sweep: str, total: int) -> ProgressCallback:
    """A progress callback: one logger line per call and the flow's progress artifact moved along."""
    logger = get_run_logger()
    # In a sync task this returns the id (the coroutine branch of its type is for async callers).
    artifact = cast(uuid.UUID, create_progress_artifact(0.0 if total else 100.0, key=f"{sweep}-progress",
                                        description=f"saferails {sweep} sweep: {total} item(s) due at start"))

    def report(p: SweepProgress) -> None:
        logger.info("%s sweep: %d of %d handled", p.sweep, p.done, p.total)
        update_progress_artifact(artifact, 100.0 * p.done / max(p.total, 1))

    return report


@task(name="expire-due-approvals")
def expire_due_approvals(batch_size: int = 500, progress_every: int = 100,
                         max_items: int | None = None) -> dict[str, Any]:
    """Give every due pending approval its timeout action; the sweep report as a dict."""
    rt = current_runtime()
    sweep = ExpireSweep(rt.actions, batch_size=batch_size, progress_every=progress_every,
                        worker_id=_worker_id("expire"))
    report = sweep.run(max_items=max_items, on_progress=_progress("expire", sweep.count_due()))
    get_run_logger().info("expire sweep: %d resolved, %d skipped, %d failed", report.count("resolved"),
                          report.count("skipped"), report.count("failed"))
    return report.to_dict()


def prefect_run_probe(flow_run_id: str) -> str | None:
    """The state type of a flow run (``"PAUSED"``, ``"CRASHED"``, ...), or None when Prefect has no such run."""
    try:
        run_uuid = uuid.UUID(flow_run_id)
    except ValueError:
        return None
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(run_uuid)
        except ObjectNotFound:
            return None
    return None if run.state is None else run.state.type.value


@task(name="recover-actions")
def recover_actions_task(lease_minutes: float = 15, batch_size: int = 200,
                         progress_every: int = 100) -> dict[str, Any]:
    """Resolve actions stuck in ``executing``, re-run approved ones nobody runs, note lost paused runs."""
    rt = current_runtime()
    sweep = RecoverSweep(rt.actions, rt.execution, probe=prefect_run_probe, lease=timedelta(minutes=lease_minutes),
                         batch_size=batch_size, progress_every=progress_every, worker_id=_worker_id("recover"))
    report = sweep.run(on_progress=_progress("recover", 0))
    get_run_logger().info("recover sweep: %d resolved, %d noted, %d failed", report.count("resolved"),
                          report.count("noted"), report.count("failed"))
    return report.to_dict()


@task(name="end-paused-runs")
def end_paused_runs(flow_run_ids: list[str]) -> list[str]:
    """Set each still-Paused run to Cancelled (the store has already decided its action); returns those ended.

    Cancelled, not resumed: a run whose process died would, once resumed, stay Running with nothing behind it.
    If the process is alive, its gate's pause times out at the same deadline, sees the decided action in the
    store and finishes the run itself.
    """
    logger = get_run_logger()
    ended: list[str] = []
    with get_client(sync_client=True) as client:
        for run_id in dict.fromkeys(flow_run_ids):
            if prefect_run_probe(run_id) != "PAUSED":
                continue
            client.set_flow_run_state(uuid.UUID(run_id), Cancelled(message="saferails: the approval was resolved "
                                                                            "by the expire sweep"), force=True)
            logger.info("ended paused flow run %s", run_id)
            ended.append(run_id)
    return ended


@task(name="publish-audit-checkpoint")
def publish_audit_checkpoint() -> int | None:
    """Publish the newest signed audit checkpoint outside the database (``Store.publish_audit_checkpoint``) and
    return its sequence (None: the file already had it). Every sweep ends with it, so the published file never
    lags the chain by more than one sweep interval."""
    checkpoint = current_runtime().publish_audit_checkpoint()
    if checkpoint is not None:
        get_run_logger().info("audit checkpoint #%d published", checkpoint.sequence)
    return None if checkpoint is None else checkpoint.sequence


@task(name="resume-due-agents")
def resume_due_agents() -> int:
    """Paused agents whose pause has run out go back to work (``AutoResumeSweep``, audited); returns how many."""
    rt = current_runtime()
    report = AutoResumeSweep(rt.sessions, rt.clock).run()
    resumed = report.count("resolved")
    if resumed:
        get_run_logger().info("%d paused agent(s) resumed: their pause ran out", resumed)
    return resumed
