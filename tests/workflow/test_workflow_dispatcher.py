"""The outbox dispatcher: triggers fire (or not), effects happen once, failing events are dead-lettered,
and two dispatchers at once never process one event twice."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from saferails.clock import ManualClock
from saferails.errors import ConditionInvalid, NotFound
from saferails.store.tables import AuditRecord, OutboxEvent
from saferails.workflow.alerts import Alert
from saferails.workflow.dispatcher import OutboxDispatcher
from saferails.workflow.permissions import WorkflowActor
from saferails.workflow.service import WorkflowService
from saferails.workflow.tables import Task, TriggerEffect

ADMIN = WorkflowActor("ada", frozenset({"admin"}))


def _complete(svc: WorkflowService, task_type: str, title: str = "Application 17") -> str:
    task = svc.create_task(ADMIN, title=title, task_type=task_type, assigned_to="ada")
    svc.transition_task(ADMIN, task.id, "in_progress")
    svc.transition_task(ADMIN, task.id, "completed")
    return task.id


def test_a_completed_intake_task_creates_a_high_priority_assessment_task(
    db: Any, svc: WorkflowService, clock: ManualClock
) -> None:
    intake = _complete(svc, "intake")
    report = OutboxDispatcher(db.sessions, clock, "w1").run_once()
    assert report.failed == 0 and report.effects == 1
    [assessment] = svc.list_tasks(task_type="assessment")
    assert assessment.priority == "high"
    assert assessment.title == "Assessment: Application 17"
    assert assessment.state == "new"
    assert assessment.created_by == "trigger:intake_completed_followup"
    assert intake in assessment.description


def test_a_completed_review_task_triggers_nothing(db: Any, svc: WorkflowService, clock: ManualClock) -> None:
    _complete(svc, "review")
    report = OutboxDispatcher(db.sessions, clock, "w1").run_once()
    assert report.processed == report.claimed and report.effects == 0
    assert svc.list_tasks(task_type="assessment") == []


def test_an_activated_plan_notifies_through_the_notifier(db: Any, svc: WorkflowService, clock: ManualClock) -> None:
    received: list[Alert] = []
    plan = svc.create_action_plan(ADMIN, title="Q1 compliance", goals=["assess"])
    svc.activate_action_plan(ADMIN, plan.id)
    OutboxDispatcher(db.sessions, clock, "w1", notifier=received.append).run_once()
    assert [(a.alert_type, a.message) for a in received] == [
        ("action_plan_activated", "Action plan Q1 compliance was activated")
    ]


def test_without_a_notifier_an_alert_is_recorded_in_the_audit_trail(
    db: Any, svc: WorkflowService, clock: ManualClock
) -> None:
    plan = svc.create_action_plan(ADMIN, title="Q1", goals=["assess"])
    svc.activate_action_plan(ADMIN, plan.id)
    OutboxDispatcher(db.sessions, clock, "w1").run_once()
    with db.sessions() as s:
        events = s.execute(sa.select(AuditRecord.event).where(AuditRecord.entity_id == plan.id)).scalars().all()
    assert "alert_emitted" in events


def test_a_redelivered_event_does_not_repeat_its_effect(db: Any, svc: WorkflowService, clock: ManualClock) -> None:
    _complete(svc, "intake")
    dispatcher = OutboxDispatcher(db.sessions, clock, "w1")
    dispatcher.run_once()
    # Deliver every event again, as after a crash that lost the "processed" marks.
    with db.sessions.begin() as s:
        s.execute(sa.update(OutboxEvent).values(processed_at=None))
    again = dispatcher.run_once()
    assert again.effects == 0 and again.skipped_effects == 1
    assert len(svc.list_tasks(task_type="assessment")) == 1


def test_a_trigger_action_that_keeps_failing_is_dead_lettered_and_can_be_requeued(
    db: Any, svc: WorkflowService, clock: ManualClock
) -> None:
    svc.create_trigger(ADMIN, {
        "id": "broken", "event_type": "TaskCreated",
        "predicate": {"field": "payload.task_type", "operator": "eq", "value": "doomed"},
        "actions": [{"type": "create_task", "title": "${payload.no_such_field}"}],
    })
    svc.create_task(ADMIN, title="t", task_type="doomed")
    dispatcher = OutboxDispatcher(db.sessions, clock, "w1", max_attempts=3)
    for _ in range(3):
        dispatcher.run_once()
        clock.advance(timedelta(hours=1))
    [dead] = dispatcher.dead_letters()
    assert dead.event_type == "TaskCreated" and dead.attempts == 3
    assert "no_such_field" in (dead.last_error or "")
    assert dispatcher.run_once().claimed == 0
    dispatcher.requeue(dead.event_id)
    assert dispatcher.dead_letters() == []
    assert dispatcher.run_once().failed == 1
    with pytest.raises(NotFound):
        dispatcher.requeue("no-such-event")


def test_a_failed_event_waits_for_its_backoff_before_the_next_attempt(
    db: Any, svc: WorkflowService, clock: ManualClock
) -> None:
    svc.create_trigger(ADMIN, {"id": "broken", "event_type": "TaskCreated",
                               "actions": [{"type": "create_task", "title": "${payload.nope}"}]})
    svc.create_task(ADMIN, title="t")
    dispatcher = OutboxDispatcher(db.sessions, clock, "w1", retry_base=timedelta(seconds=30))
    assert dispatcher.run_once().failed == 1
    assert dispatcher.run_once().claimed == 0
    clock.advance(timedelta(seconds=30))
    assert dispatcher.run_once().failed == 1


def test_a_trigger_with_a_malformed_predicate_is_refused_and_not_stored(svc: WorkflowService) -> None:
    with pytest.raises(ConditionInvalid):
        svc.create_trigger(ADMIN, {"id": "bad", "event_type": "TaskCreated",
                                   "predicate": {"field": "x", "operator": "like", "value": "y"},
                                   "actions": [{"type": "emit_alert", "alert_type": "a", "message": "m"}]})
    assert "bad" not in [t.id for t in svc.list_triggers()]


def test_a_trigger_can_move_the_task_that_fired_it(db: Any, svc: WorkflowService, clock: ManualClock) -> None:
    svc.create_trigger(ADMIN, {
        "id": "block-critical", "event_type": "TaskCreated",
        "predicate": {"field": "payload.priority", "operator": "eq", "value": "critical"},
        "actions": [{"type": "transition", "entity_type": "task", "target": "blocked"}],
    })
    task = svc.create_task(ADMIN, title="t", priority="critical")
    OutboxDispatcher(db.sessions, clock, "w1").run_once()
    assert svc.get_task(task.id).state == "blocked"


@pytest.mark.timeout(120)
def test_two_dispatchers_at_once_run_each_events_effects_exactly_once(
    db: Any, svc: WorkflowService, clock: ManualClock
) -> None:
    svc.create_trigger(ADMIN, {
        "id": "bulk-followup", "event_type": "TaskCreated",
        "predicate": {"field": "payload.task_type", "operator": "eq", "value": "bulk"},
        "actions": [{"type": "create_task", "title": "follow ${payload.title}", "task_type": "followup"}],
    })
    count = 40
    for i in range(count):
        svc.create_task(ADMIN, title=f"bulk {i}", task_type="bulk")
    start = threading.Barrier(2)
    reports: dict[str, list[Any]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        dispatcher = OutboxDispatcher(db.sessions, clock, name)
        try:
            start.wait()
            while True:
                report = dispatcher.run_once(batch_size=3)
                reports[name].append(report)
                if report.claimed == 0:
                    return
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in reports]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.sessions() as s:
        followups = s.execute(sa.select(Task).where(Task.task_type == "followup")).scalars().all()
        effects = s.execute(sa.select(sa.func.count()).select_from(TriggerEffect)).scalar_one()
        unprocessed = s.execute(sa.select(sa.func.count()).select_from(OutboxEvent)
                                .where(OutboxEvent.processed_at.is_(None))).scalar_one()
        total_events = s.execute(sa.select(sa.func.count()).select_from(OutboxEvent)).scalar_one()
    assert len(followups) == count
    assert len({f.meta["source_event_id"] for f in followups}) == count
    assert effects == count
    assert unprocessed == 0
    processed = sum(r.processed for rs in reports.values() for r in rs)
    assert processed == total_events


def test_a_failing_event_in_a_batch_leaves_no_record_of_its_rolled_back_effects_and_the_others_commit(
    db: Any, svc: WorkflowService, clock: ManualClock
) -> None:
    # Each event first emits an alert (an audit record), then creates a task; the doomed one's task fails, so its
    # alert must vanish with it while the other events of the same batch keep theirs.
    svc.create_trigger(ADMIN, {
        "id": "alert-then-task", "event_type": "TaskCreated",
        "predicate": {"field": "payload.task_type", "operator": "in", "value": ["fine", "doomed"]},
        "actions": [{"type": "emit_alert", "alert_type": "seen", "message": "task ${aggregate_id}"},
                    {"type": "create_task", "title": "${payload.title}", "task_type": "${payload.task_type}-next"}],
    })
    svc.create_trigger(ADMIN, {
        "id": "doom", "event_type": "TaskCreated",
        "predicate": {"field": "payload.task_type", "operator": "eq", "value": "doomed"},
        "actions": [{"type": "create_task", "title": "${payload.no_such_field}"}],
    })
    fine = [svc.create_task(ADMIN, title=f"t{i}", task_type="fine").id for i in range(3)]
    doomed = svc.create_task(ADMIN, title="d", task_type="doomed").id

    report = OutboxDispatcher(db.sessions, clock, "w1").run_once()

    assert report.failed == 1
    with db.sessions() as s:
        alerted = set(s.execute(sa.select(AuditRecord.entity_id).where(AuditRecord.event == "alert_emitted"))
                      .scalars())
    assert alerted == set(fine)
    assert doomed not in alerted
    assert len(svc.list_tasks(task_type="fine-next")) == 3 and svc.list_tasks(task_type="doomed-next") == []
