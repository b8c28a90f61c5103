"""SLA tracking by the ManualClock: seed 004's defaults, breach and non-breach, idempotent sweeps."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from saferails.audit import verify_chain
from saferails.clock import ManualClock
from saferails.errors import InvalidInput
from saferails.store.db import transaction
from saferails.store.tables import AuditRecord, OutboxEvent
from saferails.workflow.alerts import Alert
from saferails.workflow.permissions import WorkflowActor
from saferails.workflow.service import WorkflowService
from saferails.workflow.sla import SlaMonitor

ADMIN = WorkflowActor("ada", frozenset({"admin"}))


def test_seed_004s_default_sla_targets_are_installed(svc: WorkflowService) -> None:
    targets = {c.task_type: c.target_minutes for c in svc.list_sla_configs(active_only=True)}
    assert targets == {"intake": 60, "assessment": 240, "review": 120, "general": 480}


def test_an_intake_task_open_past_an_hour_is_breached_alerted_and_escalated(
    db: Any, svc: WorkflowService, clock: ManualClock
) -> None:
    alerts: list[Alert] = []
    monitor = SlaMonitor(db.sessions, notifier=alerts.append)
    task = svc.create_task(ADMIN, title="intake 1", task_type="intake", priority="medium")
    clock.advance(timedelta(minutes=59))
    assert monitor.sweep_breaches(clock.now()) == []
    clock.advance(timedelta(minutes=2))
    [breach] = monitor.sweep_breaches(clock.now())
    assert breach.task_id == task.id and breach.target_minutes == 60 and breach.overdue_minutes == 1
    assert svc.get_task(task.id).priority == "critical"
    assert [a.alert_type for a in alerts] == ["sla_breached"]
    record = svc.sla_record(task.id)
    assert record is not None and record.breached and record.completed_at is None
    with db.sessions() as s:
        audit = s.execute(sa.select(AuditRecord.event).where(AuditRecord.entity_id == task.id)).scalars().all()
        events = s.execute(sa.select(OutboxEvent.event_type).where(OutboxEvent.aggregate_id == task.id)).scalars()
        assert "TaskSlaBreached" in list(events)
    assert "sla_breached" in audit


def test_a_breach_is_reported_once_however_often_the_sweep_runs(
    db: Any, svc: WorkflowService, clock: ManualClock
) -> None:
    monitor = SlaMonitor(db.sessions)
    svc.create_task(ADMIN, title="intake 1", task_type="intake")
    clock.advance(timedelta(hours=2))
    assert len(monitor.sweep_breaches(clock.now())) == 1
    clock.advance(timedelta(hours=2))
    assert monitor.sweep_breaches(clock.now()) == []


def test_a_task_completed_in_time_meets_its_sla_and_is_never_breached(
    db: Any, svc: WorkflowService, clock: ManualClock
) -> None:
    task = svc.create_task(ADMIN, title="review 1", task_type="review", assigned_to="ada")
    svc.transition_task(ADMIN, task.id, "in_progress")
    clock.advance(timedelta(minutes=90))
    svc.transition_task(ADMIN, task.id, "completed")
    clock.advance(timedelta(days=1))
    assert SlaMonitor(db.sessions).sweep_breaches(clock.now()) == []
    record = svc.sla_record(task.id)
    assert record is not None
    assert (record.breached, record.end_state, record.actual_minutes) == (False, "completed", 90)
    stats = svc.stats(ADMIN)
    assert stats["sla"]["met"] == 1 and stats["sla"]["breached"] == 0


def test_a_task_completed_late_counts_as_breached_without_a_sweep(svc: WorkflowService, clock: ManualClock) -> None:
    task = svc.create_task(ADMIN, title="intake", task_type="intake", assigned_to="ada")
    svc.transition_task(ADMIN, task.id, "in_progress")
    clock.advance(timedelta(minutes=75))
    svc.transition_task(ADMIN, task.id, "completed")
    record = svc.sla_record(task.id)
    assert record is not None and record.breached and record.actual_minutes == 75


def test_an_unknown_task_type_falls_back_to_the_general_sla(svc: WorkflowService) -> None:
    task = svc.create_task(ADMIN, title="misc", task_type="paperwork")
    record = svc.sla_record(task.id)
    assert record is not None and record.target_minutes == 480


def test_sla_configs_can_be_created_changed_and_deleted(svc: WorkflowService) -> None:
    config = svc.create_sla_config(ADMIN, service_area="housing", task_type="inspection", target_minutes=30)
    task = svc.create_task(ADMIN, title="inspect", task_type="inspection")
    assert (record := svc.sla_record(task.id)) is not None and record.target_minutes == 30
    assert svc.update_sla_config(ADMIN, config.id, active=False).active is False
    svc.delete_sla_config(ADMIN, config.id)
    assert config.id not in [c.id for c in svc.list_sla_configs()]


@pytest.mark.parametrize("minutes", [0, -5, 10**9], ids=["zero", "negative", "absurdly long"])
def test_an_sla_target_outside_one_minute_to_a_year_is_refused(svc: WorkflowService, minutes: int) -> None:
    with pytest.raises(InvalidInput, match="target_minutes"):
        svc.create_sla_config(ADMIN, service_area="a", task_type="b", target_minutes=minutes)


def test_a_second_config_for_the_same_area_and_type_is_refused(svc: WorkflowService) -> None:
    with pytest.raises(InvalidInput, match="already exists"):
        svc.create_sla_config(ADMIN, service_area="intake", task_type="intake", target_minutes=5)


def test_one_sweep_breaches_many_records_each_audited_alerted_and_escalated_once_in_an_intact_chain(
    db: Any, svc: WorkflowService, clock: ManualClock
) -> None:
    alerts: list[Alert] = []
    tasks = [svc.create_task(ADMIN, title=f"intake {i}", task_type="intake") for i in range(5)]
    clock.advance(timedelta(hours=2))
    breaches = SlaMonitor(db.sessions, notifier=alerts.append).sweep_breaches(clock.now(), limit=3)
    breaches += SlaMonitor(db.sessions, notifier=alerts.append).sweep_breaches(clock.now(), limit=3)
    assert sorted(b.task_id for b in breaches) == sorted(t.id for t in tasks)
    assert len(alerts) == 5 and {svc.get_task(t.id).priority for t in tasks} == {"critical"}
    with transaction(db.sessions) as session:
        for task in tasks:
            events = session.execute(sa.select(AuditRecord.event).where(AuditRecord.entity_id == task.id)).scalars()
            assert sorted(e for e in events if e in ("sla_breached", "alert_emitted")) == ["alert_emitted",
                                                                                           "sla_breached"]
        report = verify_chain(session)
    assert report.ok, report.problem
