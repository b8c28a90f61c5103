"""The task and action-plan transition matrices: every (from, to) pair, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from saferails.errors import GuardRejected, InvalidTransition, LifecycleDefinitionError
from saferails.lifecycle import StateMachine, Transition
from saferails.workflow.machines import ACTION_PLAN_MACHINE, TASK_MACHINE
from saferails.workflow.permissions import WorkflowActor
from saferails.workflow.service import WorkflowService

ADMIN = WorkflowActor("ada", frozenset({"admin"}))

# How to bring a fresh task / plan into each state through allowed transitions.
TASK_PATHS = {
    "new": [],
    "in_progress": ["in_progress"],
    "blocked": ["blocked"],
    "completed": ["in_progress", "completed"],
    "cancelled": ["cancelled"],
}
PLAN_PATHS = {"draft": [], "active": ["active"], "archived": ["archived"]}


def _pairs(machine: StateMachine) -> list[Any]:
    return [
        pytest.param(a, b, machine.transition_for(a, b) is not None,
                     id=f"{a} to {b} is {'allowed' if machine.transition_for(a, b) else 'refused'}")
        for a, b in itertools.product(machine.states, repeat=2)
    ]


@pytest.mark.parametrize(("source", "target", "allowed"), _pairs(TASK_MACHINE))
def test_a_task_moves_only_along_seed_004s_diagram(
    svc: WorkflowService, source: str, target: str, allowed: bool
) -> None:
    task = svc.create_task(ADMIN, title="t", assigned_to="ada")
    for step in TASK_PATHS[source]:
        svc.transition_task(ADMIN, task.id, step)
    if allowed:
        assert svc.transition_task(ADMIN, task.id, target).state == target
    else:
        with pytest.raises(InvalidTransition) as caught:
            svc.transition_task(ADMIN, task.id, target)
        assert caught.value.code == "INVALID_TRANSITION"
        assert caught.value.details | {"entity_id": None} == {
            "entity_type": "task", "current_state": source, "target_state": target, "entity_id": None,
        }
        assert svc.get_task(task.id).state == source


@pytest.mark.parametrize(("source", "target", "allowed"), _pairs(ACTION_PLAN_MACHINE))
def test_an_action_plan_moves_only_along_seed_004s_diagram(
    svc: WorkflowService, source: str, target: str, allowed: bool
) -> None:
    plan = svc.create_action_plan(ADMIN, title="Q1 compliance", goals=["assess"])
    for step in PLAN_PATHS[source]:
        svc.transition_action_plan(ADMIN, plan.id, step)
    if allowed:
        assert svc.transition_action_plan(ADMIN, plan.id, target).state == target
    else:
        with pytest.raises(InvalidTransition) as caught:
            svc.transition_action_plan(ADMIN, plan.id, target)
        assert caught.value.code == "INVALID_TRANSITION"
        assert caught.value.details["current_state"] == source
        assert caught.value.details["target_state"] == target
        assert caught.value.details["entity_type"] == "action_plan"


def test_a_task_without_an_assignee_cannot_start(svc: WorkflowService) -> None:
    task = svc.create_task(ADMIN, title="unowned")
    with pytest.raises(GuardRejected, match="no assignee") as caught:
        svc.transition_task(ADMIN, task.id, "in_progress")
    assert caught.value.code == "TRANSITION_GUARD_FAILED"
    assert svc.get_task(task.id).state == "new"


def test_a_task_cannot_complete_while_its_action_plan_is_archived(svc: WorkflowService) -> None:
    plan = svc.create_action_plan(ADMIN, title="plan", goals=["g"])
    svc.activate_action_plan(ADMIN, plan.id)
    task = svc.create_task(ADMIN, title="t", assigned_to="ada", action_plan_id=plan.id)
    svc.transition_task(ADMIN, task.id, "in_progress")
    svc.archive_action_plan(ADMIN, plan.id)
    with pytest.raises(GuardRejected, match="archived"):
        svc.transition_task(ADMIN, task.id, "completed")
    assert svc.transition_task(ADMIN, task.id, "cancelled").state == "cancelled"


def test_an_action_plan_without_goals_cannot_be_activated(svc: WorkflowService) -> None:
    plan = svc.create_action_plan(ADMIN, title="empty")
    with pytest.raises(GuardRejected, match="no goals"):
        svc.activate_action_plan(ADMIN, plan.id)


def test_every_transition_leaves_an_audit_record_and_an_outbox_event(db: Any, svc: WorkflowService) -> None:
    import sqlalchemy as sa

    from saferails.store.tables import AuditRecord, OutboxEvent

    task = svc.create_task(ADMIN, title="t", assigned_to="ada")
    svc.transition_task(ADMIN, task.id, "in_progress", reason="starting")
    with db.sessions() as s:
        audit = s.execute(sa.select(AuditRecord.event).where(AuditRecord.entity_id == task.id)
                          .order_by(AuditRecord.sequence)).scalars().all()
        events = s.execute(sa.select(OutboxEvent.event_type).where(OutboxEvent.aggregate_id == task.id)
                           .order_by(OutboxEvent.position)).scalars().all()
    assert audit == ["task_created", "task_started"]
    assert events == ["TaskCreated", "TaskStateChanged"]


def test_the_machines_describe_themselves_for_a_ui() -> None:
    described = TASK_MACHINE.describe()
    assert described["initial"] == "new"
    assert described["final"] == ["cancelled", "completed"]
    assert {(t["from"], t["to"]) for t in described["transitions"]} == {
        ("new", "in_progress"), ("new", "blocked"), ("new", "cancelled"), ("in_progress", "completed"),
        ("in_progress", "blocked"), ("in_progress", "cancelled"), ("blocked", "in_progress"),
        ("blocked", "cancelled"),
    }


def test_an_unsound_machine_is_refused_when_defined() -> None:
    with pytest.raises(LifecycleDefinitionError, match="dead ends"):
        StateMachine.define("broken", initial="a", final=["c"],
                            transitions=[Transition("a", "b", "x"), Transition("a", "c", "y")])
