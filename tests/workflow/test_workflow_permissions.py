"""Seed 004's permissions: admin and agency do everything; a plain user creates tasks and moves only the tasks
they created or are assigned to."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from saferails.errors import InvalidInput, PermissionDenied
from saferails.store.tables import AuditRecord
from saferails.workflow.permissions import Permission, WorkflowActor
from saferails.workflow.service import WorkflowService

ADMIN = WorkflowActor("ada", frozenset({"admin"}))
AGENCY = WorkflowActor("agnes", frozenset({"agency"}))
USER = WorkflowActor("uma", frozenset({"user"}))
OTHER = WorkflowActor("otto", frozenset({"user"}))
NOBODY = WorkflowActor("nemo", frozenset({"visitor"}))


def test_admin_and_agency_hold_every_workflow_permission() -> None:
    for actor in (ADMIN, AGENCY):
        assert all(actor.can(p) for p in Permission)


def test_a_user_creates_and_works_on_their_own_task(svc: WorkflowService) -> None:
    task = svc.create_task(USER, title="mine", assigned_to="uma")
    assert task.created_by == "uma"
    assert svc.transition_task(USER, task.id, "in_progress").state == "in_progress"


def test_an_assignee_may_move_a_task_someone_else_created(svc: WorkflowService) -> None:
    task = svc.create_task(ADMIN, title="for uma", assigned_to="uma")
    assert svc.transition_task(USER, task.id, "in_progress").state == "in_progress"


def test_a_user_cannot_move_a_task_they_neither_created_nor_hold(svc: WorkflowService) -> None:
    task = svc.create_task(USER, title="mine", assigned_to="uma")
    with pytest.raises(PermissionDenied) as caught:
        svc.transition_task(OTHER, task.id, "cancelled")
    assert caught.value.code == "PERMISSION_DENIED"
    assert svc.get_task(task.id).state == "new"


def test_agency_may_move_anyones_task(svc: WorkflowService) -> None:
    task = svc.create_task(USER, title="mine")
    assert svc.transition_task(AGENCY, task.id, "blocked").state == "blocked"


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda s: s.create_action_plan(USER, title="p", goals=["g"]), id="creating a plan"),
        pytest.param(lambda s: s.create_sla_config(USER, service_area="x", task_type="x", target_minutes=5),
                     id="creating an SLA config"),
        pytest.param(lambda s: s.create_trigger(USER, {"id": "t", "event_type": "E",
                                                       "actions": [{"type": "emit_alert", "alert_type": "a",
                                                                    "message": "m"}]}), id="creating a trigger"),
        pytest.param(lambda s: s.stats(USER), id="reading statistics"),
        pytest.param(lambda s: s.create_task(NOBODY, title="t"), id="an unknown role creating a task"),
    ],
)
def test_a_plain_user_is_refused_admin_work(svc: WorkflowService, call: Any) -> None:
    with pytest.raises(PermissionDenied) as caught:
        call(svc)
    assert caught.value.code == "PERMISSION_DENIED"


def test_activating_a_plan_needs_activate_action_plan(svc: WorkflowService) -> None:
    plan = svc.create_action_plan(ADMIN, title="p", goals=["g"])
    with pytest.raises(PermissionDenied, match="ACTIVATE_ACTION_PLAN"):
        svc.activate_action_plan(USER, plan.id)
    assert svc.activate_action_plan(AGENCY, plan.id).state == "active"


def test_a_refused_call_writes_nothing(db: Any, svc: WorkflowService) -> None:
    task = svc.create_task(USER, title="mine")
    with db.sessions() as s:
        before = s.execute(sa.select(sa.func.count()).select_from(AuditRecord)).scalar_one()
    with pytest.raises(PermissionDenied):
        svc.transition_task(OTHER, task.id, "cancelled")
    with db.sessions() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(AuditRecord)).scalar_one() == before


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        pytest.param({"title": ""}, "title", id="an empty title"),
        pytest.param({"title": "t", "priority": "urgent"}, "priority", id="an unknown priority"),
        pytest.param({"title": "t", "colour": "red"}, "colour", id="an unknown field"),
    ],
)
def test_a_malformed_task_is_refused_with_invalid_input(
    svc: WorkflowService, fields: dict[str, Any], problem: str
) -> None:
    with pytest.raises(InvalidInput, match=problem) as caught:
        svc.create_task(ADMIN, **fields)
    assert caught.value.code == "INVALID_INPUT"
    assert svc.list_tasks() == []
