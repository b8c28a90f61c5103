"""The monitor with the ``did`` judge on SQLite and PostgreSQL: a clear isolation rolled back with the method,
controls, effect and interval recorded; a large effect on an erratic person recorded ``inconclusive`` (neither
rolled back nor kept) until a person resolves it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from saferails.errors import OutcomeCheckNotInconclusive
from saferails.outcomes import OutcomeMonitor
from saferails.outcomes.rules import RuleBook, TypeRules
from tests.support.outcome_world import TEAM_A, World

PRE_WEEKS = 8


def _did_monitor(world: World) -> OutcomeMonitor:
    rules = RuleBook({"reassign_manager": TypeRules(timedelta(days=7), judge="did", pre_weeks=PRE_WEEKS)})
    return OutcomeMonitor(world.db.sessions, world.clock, world.executor, rules, cache=world.cache)


def test_a_clear_isolation_is_rolled_back_with_the_method_controls_effect_and_interval_recorded(world: World) -> None:
    world.teams_as_usual(range(-7 * PRE_WEEKS, 0))
    monitor = _did_monitor(world)
    action_id = world.execute("reassign_manager", "t", {"new_manager_id": "mb"})
    world.teams_as_usual(range(0, 7), without="t")
    world.interact([("t", "mb")], range(0, 7))
    assert monitor.schedule() == 1
    world.clock.advance(timedelta(days=7))

    (outcome,) = monitor.run_due(worker_id="w1").outcomes

    assert outcome.state == "negative" and world.actions.get(action_id).state == "rolled_back"
    check = monitor.check_for(action_id)
    assert check is not None and check.result is not None and check.params is not None
    judgement = check.result["judgement"]
    assert judgement["method"] == "did" and judgement["verdict"] == "negative"
    assert set(judgement["controls"]) == set(TEAM_A) - {"t"}
    isolation = next(m for m in judgement["metrics"] if m["rule"] == "isolation")
    assert isolation["verdict"] == "negative"
    assert isolation["effect"] == pytest.approx(-0.8)  # 5 partners -> 1, teammates steady
    low, high = isolation["interval"]
    assert low <= isolation["effect"] <= high < 0
    assert (check.params["judge"], check.params["pre_weeks"], check.params["confidence"]) == ("did", 8, 0.975)
    assert check.snapshot_hash is not None and check.baseline["snapshot_hash"]
    assert world.events(action_id)[-4:] == [
        "outcome_check_scheduled", "negative_outcome_detected", "rollback_started", "rolled_back"]


def _erratic_target_then_a_drop(world: World) -> str:
    """``t`` meets all five teammates in even weeks and two in odd weeks, then two after the change."""
    for week in range(-PRE_WEEKS, 0):
        days = range(7 * week, 7 * week + 7)
        world.teams_as_usual(days, without="t")
        mates = TEAM_A[:1] + TEAM_A[2:] if week % 2 == 0 else ["ma", "a1"]
        world.interact([("t", m) for m in mates], days)
    action_id = world.execute("reassign_manager", "t", {"new_manager_id": "mb"})
    world.teams_as_usual(range(0, 7), without="t")
    world.interact([("t", "ma"), ("t", "a1")], range(0, 7))
    return action_id


def test_a_large_effect_on_an_erratic_person_waits_for_a_person_who_may_roll_it_back(world: World) -> None:
    monitor = _did_monitor(world)
    action_id = _erratic_target_then_a_drop(world)
    monitor.schedule()
    world.clock.advance(timedelta(days=7))

    report = monitor.run_due(worker_id="w1")

    assert [o.state for o in report.outcomes] == ["inconclusive"] and report.as_dict()["inconclusive"] == 1
    assert world.actions.get(action_id).state == "completed"  # not rolled back automatically
    check = monitor.check_for(action_id)
    assert check is not None and check.state == "inconclusive" and check.result is not None
    isolation = next(m for m in check.result["judgement"]["metrics"] if m["rule"] == "isolation")
    low, high = isolation["interval"]
    assert isolation["harm"] >= 0.15 and low < 0 < high
    assert world.events(action_id)[-1] == "outcome_inconclusive"
    assert monitor.run_due(worker_id="w1").claimed == 0  # decided: not taken again

    outcome = monitor.resolve_inconclusive(action_id, "alice", roll_back=True, reason="the team says t is cut off")

    assert outcome.state == "negative" and outcome.rollback_state == "rolled_back"
    assert world.actions.get(action_id).state == "rolled_back"
    assert world.events(action_id)[-4:] == [
        "outcome_inconclusive", "outcome_inconclusive_resolved", "rollback_started", "rolled_back"]
    resolved = monitor.check_for(action_id)
    assert resolved is not None and resolved.state == "negative" and resolved.result is not None
    assert (resolved.result["resolved_by"], resolved.result["resolution"]) == ("alice", "roll_back")
    with pytest.raises(OutcomeCheckNotInconclusive):
        monitor.resolve_inconclusive(action_id, "bob", roll_back=False, reason="again")


def test_a_person_may_keep_a_change_judged_inconclusive(world: World) -> None:
    monitor = _did_monitor(world)
    action_id = _erratic_target_then_a_drop(world)
    monitor.schedule()
    world.clock.advance(timedelta(days=7))
    monitor.run_due(worker_id="w1")

    outcome = monitor.resolve_inconclusive(action_id, "alice", roll_back=False, reason="t is on leave")

    assert outcome.state == "ok" and world.actions.get(action_id).state == "completed"
    check = monitor.check_for(action_id)
    assert check is not None and check.state == "ok"
    assert world.events(action_id)[-2:] == ["outcome_inconclusive", "outcome_inconclusive_resolved"]
