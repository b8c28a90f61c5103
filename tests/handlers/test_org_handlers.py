"""Seed 000's interventions and the store-local agent actions: real effects on the org tables, and undo."""

from __future__ import annotations

from typing import Any

import pytest

from saferails.errors import InvalidParams
from saferails.org import Employee, MeetingAttendee, TaskAssignment
from saferails.store.db import transaction
from tests.support.handlerkit import World

CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "reassign_manager": ("reassign_manager", "ann", {"new_manager_id": "mgr2"}),
    "team_restructure": ("team_restructure", "ann", {"new_team_id": "data"}),
    "role_change": ("role_change", "ann", {"new_role": "lead"}),
    "reduce_meetings": ("reduce_meetings", "ann", {"max_weekly_meeting_hours": 4.5}),
    "redistribute_tasks": ("redistribute_tasks", "ann", {"to_employee_ids": ["ben", "cy"]}),
    "schedule_focus_time": (
        "schedule_focus_time",
        "ann",
        {"start": "2026-11-24T13:00:00Z", "end": "2026-11-24T15:00:00Z"},
    ),
    "create_calendar_event": (
        "create_calendar_event",
        "ann",
        {
            "title": "1:1",
            "start_time": "2026-11-25T10:00:00Z",
            "end_time": "2026-11-25T10:30:00Z",
            "attendees": ["ann@example.com", "mo@example.com"],
        },
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_executing_then_rolling_back_an_org_action_restores_every_org_table(world: World, case: str) -> None:
    action_type, target, params = CASES[case]
    before = world.snapshot()
    action = world.propose(action_type, target, params)

    done = world.executor.execute(action.id)
    assert done.state == "completed", done.error
    assert world.snapshot() != before
    assert done.pre_state is not None and done.rollback_data is not None

    undone = world.executor.rollback(action.id, "ops-1", reason="test undo")
    assert undone.state == "rolled_back", undone.error
    assert world.snapshot() == before


def employee(world: World, employee_id: str) -> Employee:
    with transaction(world.db.sessions) as session:
        row = session.get(Employee, employee_id)
        assert row is not None
        return row


def test_reassigning_a_manager_changes_who_the_employee_reports_to(world: World) -> None:
    action = world.propose("reassign_manager", "ann", {"new_manager_id": "mgr2"})
    done = world.executor.execute(action.id)
    assert employee(world, "ann").manager_id == "mgr2"
    assert done.pre_state == {"employee_id": "ann", "manager_id": "mgr"}


def test_a_manager_reassignment_that_would_create_a_reporting_cycle_fails_without_changing_anyone(
    world: World,
) -> None:
    before = world.snapshot()
    action = world.propose("reassign_manager", "mgr", {"new_manager_id": "ann"})
    failed = world.executor.execute(action.id)
    assert failed.state == "failed"
    assert failed.error is not None and InvalidParams.code in failed.error
    assert world.snapshot() == before


def test_reducing_meetings_declines_the_meetings_above_the_weekly_cap_in_start_order(world: World) -> None:
    action = world.propose("reduce_meetings", "ann", {"max_weekly_meeting_hours": 4.5})
    done = world.executor.execute(action.id)
    assert done.result is not None
    with transaction(world.db.sessions) as session:
        responses = {a.meeting_id: a.response for a in session.query(MeetingAttendee).filter_by(employee_id="ann")}
    # Six 90-minute meetings in one week: the first three (by start) fit under 4.5 hours.
    assert sorted(m for m, r in responses.items() if r == "declined") == sorted(done.result["declined"])
    assert len(done.result["declined"]) == 3
    assert employee(world, "ann").weekly_meeting_hours_cap == 4.5


def test_redistributing_tasks_moves_only_open_tasks_round_robin(world: World) -> None:
    action = world.propose("redistribute_tasks", "ann", {"to_employee_ids": ["ben", "cy"]})
    world.executor.execute(action.id)
    with transaction(world.db.sessions) as session:
        owners = {t.id: t.assignee_id for t in session.query(TaskAssignment)}
    assert owners == {"t0": "ben", "t1": "cy", "t2": "ben", "t3": "cy", "t4": "ann", "t5": "ben"}


def test_rolling_back_a_change_someone_has_since_overwritten_fails_and_keeps_their_change(world: World) -> None:
    action = world.propose("role_change", "ann", {"new_role": "lead"})
    world.executor.execute(action.id)
    with transaction(world.db.sessions) as session:
        row = session.get(Employee, "ann")
        assert row is not None
        row.role = "director"
    result = world.executor.rollback(action.id, "ops-1", reason="undo")
    assert result.state == "rollback_failed"
    assert result.error is not None and "ROLLBACK_CONFLICT" in result.error
    assert employee(world, "ann").role == "director"


@pytest.mark.parametrize(
    ("action_type", "params"),
    [
        ("make_payment", {"amount": "120.50", "currency": "EUR", "payee": "ACME"}),
        ("make_purchase", {"item": "laptop", "quantity": 2, "max_total": "2400", "currency": "EUR", "vendor": "ACME"}),
    ],
)
def test_a_ledger_booking_rolled_back_leaves_the_balance_as_it_was(
    world: World, action_type: str, params: dict[str, Any]
) -> None:
    before = world.balance("operating", "EUR")
    action = world.propose(action_type, "operating", params)
    done = world.executor.execute(action.id)
    assert done.state == "completed"
    assert world.balance("operating", "EUR") != before
    assert world.executor.rollback(action.id, "ops-1", reason="refund").state == "rolled_back"
    assert world.balance("operating", "EUR") == before


def test_a_payment_with_fractions_of_a_cent_fails_without_booking_anything(world: World) -> None:
    action = world.propose("make_payment", "operating", {"amount": "1.005", "currency": "EUR", "payee": "x"})
    assert world.executor.execute(action.id).state == "failed"
    assert world.balance("operating", "EUR") == 0
