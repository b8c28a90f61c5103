"""Metadata, statistics and the Prometheus endpoint served over real HTTP."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from saferails.clock import ManualClock
from saferails.workflow.dispatcher import OutboxDispatcher
from saferails.workflow.metrics import WorkflowMetrics
from saferails.workflow.permissions import WorkflowActor
from saferails.workflow.server import serve_metrics
from saferails.workflow.service import WorkflowService
from saferails.workflow.sla import SlaMonitor
from saferails.workflow.stats import workflow_metadata

ADMIN = WorkflowActor("ada", frozenset({"admin"}))
SEED_METRICS = (
    "workflow_transition_total",
    "automation_trigger_evaluations_total",
    "sla_records_breached_total",
    "outbox_events_processed_total",
    "active_tasks_total",
    "saferails_actions_total",
    "saferails_pending_approvals",
)


def test_metadata_describes_both_machines_the_permissions_and_the_built_in_triggers(svc: WorkflowService) -> None:
    meta = svc.metadata()
    assert set(meta["state_machines"]) == {"task", "action_plan"}
    assert "ACTIVATE_ACTION_PLAN" in meta["permissions"]
    assert {t["id"] for t in meta["triggers"]} == {"intake_completed_followup", "action_plan_activated_alert"}
    assert workflow_metadata()["state_machines"] == meta["state_machines"]


def test_stats_count_tasks_by_state_and_report_outbox_lag(
    db: Any, svc: WorkflowService, clock: ManualClock
) -> None:
    svc.create_task(ADMIN, title="a")
    svc.create_task(ADMIN, title="b", assigned_to="ada")
    clock.advance(timedelta(seconds=90))
    stats = svc.stats(ADMIN)
    assert stats["tasks"]["new"] == 2
    assert stats["outbox"]["pending"] == 2 and stats["outbox"]["lag_seconds"] == 90
    OutboxDispatcher(db.sessions, clock, "w1").run_once()
    stats = svc.stats(ADMIN)
    assert stats["outbox"] == {"pending": 0, "lag_seconds": 0.0, "dead_letters": 0}
    assert stats["sla"]["open"] == 2


def test_the_metrics_endpoint_serves_seed_004s_metric_names(
    db: Any, svc: WorkflowService, clock: ManualClock, metrics: WorkflowMetrics
) -> None:
    task = svc.create_task(ADMIN, title="intake", task_type="intake", assigned_to="ada")
    svc.transition_task(ADMIN, task.id, "in_progress")
    svc.transition_task(ADMIN, task.id, "completed")
    OutboxDispatcher(db.sessions, clock, "w1", metrics=metrics).run_once()
    svc.create_task(ADMIN, title="late", task_type="intake")
    clock.advance(timedelta(hours=2))
    SlaMonitor(db.sessions, metrics=metrics).sweep_breaches(clock.now())
    server = serve_metrics("127.0.0.1", 0, db.sessions, metrics=metrics)
    try:
        with httpx.Client(base_url=server.url) as client:
            text = client.get("/metrics").text
            live = client.get("/health/live")
            ready = client.get("/health/ready")
    finally:
        server.close()
    for name in SEED_METRICS:
        assert name in text, name
    assert 'workflow_transition_total{entity_type="task",result="success"} 2.0' in text
    assert 'automation_trigger_evaluations_total{outcome="matched",trigger_id="intake_completed_followup"} 1.0' in text
    assert "sla_records_breached_total 1.0" in text
    assert 'active_tasks_total{state="completed"} 1.0' in text
    assert live.status_code == 200 and ready.status_code == 200


def test_readiness_fails_when_the_store_is_unreachable(tmp_path: Any) -> None:
    from saferails.store.db import create_engine, session_factory

    engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 1})
    server = serve_metrics("127.0.0.1", 0, session_factory(engine), metrics=WorkflowMetrics())
    try:
        assert httpx.get(f"{server.url}/health/ready").status_code == 503
        assert httpx.get(f"{server.url}/health/live").status_code == 200
    finally:
        server.close()
        engine.dispose()
