"""The outcome monitor on SQLite and PostgreSQL: isolation detected and rolled back through the real executor,
a neutral action kept, the burnout rule alone, concurrent monitors, crash re-runs and shared snapshots."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest

from saferails.orggraph import MetricParams, Window
from saferails.outcomes import OutcomeMonitor
from saferails.outcomes.monitor import floor_hour
from saferails.outcomes.rules import INCREASED_BURNOUT, RuleBook, TypeRules
from tests.support.outcome_world import World


def test_an_intervention_that_isolates_its_target_is_rolled_back_and_a_neutral_one_is_kept(world: World) -> None:
    world.teams_as_usual(range(-7, 0))
    isolating = world.execute("reassign_manager", "t", {"new_manager_id": "mb"})
    neutral = world.execute("role_change", "n", {"new_role": "lead"})
    world.teams_as_usual(range(0, 7), without="t")
    world.interact([("t", "mb")], range(0, 7))

    assert world.monitor.schedule() == 2
    assert world.monitor.run_due(worker_id="w1").claimed == 0  # not due before the 7-day delay
    world.clock.advance(timedelta(days=7))
    report = world.monitor.run_due(worker_id="w1")

    assert {o.action_id: o.state for o in report.outcomes} == {isolating: "negative", neutral: "ok"}
    assert world.actions.get(isolating).state == "rolled_back"
    assert world.manager_of("t") == "ma"
    assert world.actions.get(neutral).state == "completed"
    assert world.events(isolating)[-4:] == [
        "outcome_check_scheduled", "negative_outcome_detected", "rollback_started", "rolled_back"]
    assert world.events(neutral)[-2:] == ["outcome_check_scheduled", "outcome_ok"]
    check = world.monitor.check_for(isolating)
    assert check is not None and check.state == "negative"
    assert check.result is not None and check.result["rollback_state"] == "rolled_back"
    isolation = next(f for f in check.result["findings"] if f["rule"] == "isolation")
    assert isolation["negative"] and isolation["before"] == pytest.approx(5 / 11)
    assert isolation["after"] == pytest.approx(1 / 11)
    assert check.algorithm is not None and "brandes-exact" in check.algorithm
    assert check.library_versions is not None and "networkx" in check.library_versions
    assert check.snapshot_hash is not None and check.snapshot_hash != check.baseline["snapshot_hash"]
    assert set(check.baseline["neighbours"]) == {"ma", "a1", "a2", "a3", "a4"}


def test_a_rise_in_burnout_alone_is_a_negative_outcome(world: World) -> None:
    world.teams_as_usual(range(-7, 7))
    action_id = world.execute("role_change", "n", {"new_role": "lead"})
    world.burnout("n", 0.5, range(-7, 0))
    world.burnout("n", 0.65, range(0, 7))
    world.monitor.schedule()
    world.clock.advance(timedelta(days=7))
    (outcome,) = world.monitor.run_due(worker_id="w1").outcomes

    assert outcome.state == "negative" and world.actions.get(action_id).state == "rolled_back"
    assert [f["rule"] for f in outcome.findings if f["negative"]] == ["increased_burnout"]
    assert outcome.before["burnout"] == pytest.approx(0.5) and outcome.after["burnout"] == pytest.approx(0.65)


def test_a_burnout_rise_below_the_threshold_keeps_the_action(world: World) -> None:
    world.teams_as_usual(range(-7, 7))
    action_id = world.execute("role_change", "n", {"new_role": "lead"})
    world.burnout("n", 0.5, range(-7, 0))
    world.burnout("n", 0.59, range(0, 7))
    world.monitor.schedule()
    world.clock.advance(timedelta(days=7))
    assert [o.state for o in world.monitor.run_due(worker_id="w1").outcomes] == ["ok"]
    assert world.actions.get(action_id).state == "completed"


def test_the_monitoring_delay_and_rules_are_configurable_per_action_type(world: World) -> None:
    world.teams_as_usual(range(-7, 7))
    world.burnout("n", 0.5, range(-7, 0))
    world.burnout("n", 0.65, range(0, 7))
    rules = RuleBook({"role_change": TypeRules(timedelta(days=2), timedelta(days=2), (INCREASED_BURNOUT,),
                                               judge="thresholds")})
    monitor = OutcomeMonitor(world.db.sessions, world.clock, world.executor, rules, cache=world.cache)
    role = world.execute("role_change", "n", {"new_role": "lead"})
    world.execute("reassign_manager", "b1", {"new_manager_id": "ma"})  # not monitored under these rules

    assert monitor.schedule() == 1
    check = monitor.check_for(role)
    assert check is not None and check.due_at == world.clock.now() + timedelta(days=2)
    world.clock.advance(timedelta(days=2))
    assert [o.state for o in monitor.run_due(worker_id="w1").outcomes] == ["negative"]


def test_two_monitors_running_at_once_handle_each_check_exactly_once(world: World) -> None:
    world.teams_as_usual(range(-7, 7))
    ids = [world.execute("role_change", p, {"new_role": "lead"}) for p in ("a1", "a2", "a3", "a4", "b1", "b2",
                                                                          "b3", "b4", "n", "t")]
    world.monitor.schedule()
    world.clock.advance(timedelta(days=7))
    reports = []
    barrier = threading.Barrier(2)

    def sweep(worker: str) -> None:
        monitor = world.new_monitor()
        barrier.wait()
        while True:
            report = monitor.run_due(worker_id=worker, limit=3)
            reports.append(report)
            if report.claimed == 0:
                return

    threads = [threading.Thread(target=sweep, args=(w,)) for w in ("w1", "w2")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    handled = Counter(o.action_id for r in reports for o in r.outcomes)
    assert handled == Counter(dict.fromkeys(ids, 1))
    assert all(world.events(i).count("outcome_ok") == 1 for i in ids)


@pytest.mark.parametrize("batch, left", [(1, 2), (100, 0)])
def test_a_rerun_after_a_crashed_sweep_finishes_the_work_without_repeating_it(world: World, batch: int,
                                                                              left: int) -> None:
    """The worker dies after its first reported check: one decision per transaction leaves the other two to the
    rerun; a batch was committed whole before its checks were reported, so nothing is left (nor repeated)."""
    world.teams_as_usual(range(-7, 7))
    ids = [world.execute("role_change", p, {"new_role": "lead"}) for p in ("a1", "a2", "a3")]
    world.monitor.schedule()
    world.clock.advance(timedelta(days=7))
    monitor = OutcomeMonitor(world.db.sessions, world.clock, world.executor, cache=world.cache, decide_batch=batch)

    def crash(done: int, total: int) -> None:
        raise RuntimeError("worker died")

    with pytest.raises(RuntimeError):
        monitor.run_due(worker_id="w1", progress=crash)
    assert monitor.run_due(worker_id="w2").claimed == 0  # w1's claims still hold
    world.clock.advance(timedelta(hours=1))
    seen: list[tuple[int, int]] = []
    report = monitor.run_due(worker_id="w2", progress=lambda d, t: seen.append((d, t)))
    assert report.claimed == left and seen == [(d, left) for d in range(1, left + 1)]
    assert all(world.events(i).count("outcome_ok") == 1 for i in ids)


def test_snapshot_metrics_are_computed_once_for_many_due_checks(world: World) -> None:
    world.teams_as_usual(range(-7, 7))
    for p in ("a1", "a2", "a3", "a4", "b1", "b2"):
        world.execute("role_change", p, {"new_role": "lead"})
    assert world.monitor.schedule() == 6
    assert world.cache.computations == 1  # one baseline snapshot for six actions executed the same day
    world.clock.advance(timedelta(days=7))
    assert len(world.monitor.run_due(worker_id="w1").outcomes) == 6
    assert world.cache.computations == 2

    elsewhere = world.new_monitor(cache=type(world.cache)())  # another process: loads, does not recompute
    snapshot = elsewhere.cache.get(world.db.sessions, *_current_window(world), world.clock.now())
    assert elsewhere.cache.computations == 0 and elsewhere.cache.loads == 1
    assert snapshot.metrics("a1")["degree"] == 5


def _current_window(world: World) -> tuple[Window, MetricParams]:

    return Window.ending(floor_hour(world.clock.now()), timedelta(days=7)), MetricParams()
