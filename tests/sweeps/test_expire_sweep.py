"""The expire sweep on SQLite and PostgreSQL: due approvals get their timeout action, once, whoever runs."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from saferails.actions.service import ActionService, TimeoutOutcome
from saferails.audit import verify_chain
from saferails.clock import ManualClock
from saferails.errors import InvalidInput, StoreUnavailable
from saferails.store.db import transaction
from saferails.store.tables import Action
from saferails.sweeps import ExpireSweep, SweepProgress, claim_due
from saferails.sweeps.claims import due_query, explain
from saferails.sweeps.expire import ORDER, SWEEP, due_conditions
from tests.support.sweepkit import events, propose_pending, service, set_flow_run


def test_each_due_approval_gets_its_policys_timeout_action(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock)
    fail, reject, approve = (propose_pending(svc, 1, t)[0] for t in
                             ("reassign_manager", "team_restructure", "role_change"))
    clock.advance(timedelta(hours=1))
    report = ExpireSweep(svc).run()
    assert {i.action_id: i.state for i in report.items} == {fail: "timed_out", reject: "rejected",
                                                           approve: "approved"}
    assert events(db, fail)[-1] == "approval_timed_out"


def test_approvals_not_yet_due_and_decided_ones_are_left_alone(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock)
    early, decided = propose_pending(svc, 2)
    svc.approve(decided, "alice", reason="fine")
    clock.advance(timedelta(minutes=30))
    late = propose_pending(svc, 1)[0]
    clock.advance(timedelta(minutes=30))
    report = ExpireSweep(svc).run()
    assert [i.action_id for i in report.items] == [early]
    assert (svc.get(late).state, svc.get(decided).state) == ("pending_approval", "approved")


def test_an_approval_whose_flow_run_is_gone_still_times_out(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock)
    crashed, never_existed = propose_pending(svc, 2)
    set_flow_run(db, crashed, "0f6a1f64-5717-4562-b3fc-2c963f66afa6")
    set_flow_run(db, never_existed, "not-a-run")
    clock.advance(timedelta(hours=2))
    ExpireSweep(svc).run()
    assert svc.get(crashed).state == svc.get(never_existed).state == "timed_out"


def test_two_sweeps_at_once_each_resolve_a_share_and_no_action_twice(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock)
    ids = propose_pending(svc, 40)
    clock.advance(timedelta(hours=1))
    sweeps = [ExpireSweep(svc, batch_size=3, worker_id=f"w{n}") for n in range(2)]
    reports: list[Any] = [None, None]
    start = threading.Barrier(2)

    def work(n: int) -> None:
        start.wait()
        reports[n] = sweeps[n].run()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    handled = [i.action_id for r in reports for i in r.items]
    assert sorted(handled) == sorted(ids)  # every action once, by exactly one of the two sweeps
    assert all(i.outcome == "resolved" for r in reports for i in r.items)
    assert all(events(db, i).count("approval_timed_out") == 1 for i in ids)
    with transaction(db.sessions) as session:
        report = verify_chain(session)
    assert report.ok, report.problem


def test_a_rerun_after_a_crashed_sweep_picks_up_its_items_once_the_lease_lapses(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock)
    ids = propose_pending(svc, 6)
    clock.advance(timedelta(hours=1))
    with transaction(db.sessions) as session:  # a worker claims three and dies before resolving them
        held = claim_due(session, Action, due_conditions(clock.now()), ORDER, 3, "dead-worker",
                         timedelta(minutes=10), clock.now(), sweep=SWEEP)
    first = ExpireSweep(svc).run()
    assert sorted(i.action_id for i in first.items) == sorted(set(ids) - set(held))
    clock.advance(timedelta(minutes=10))
    second = ExpireSweep(svc).run()
    assert sorted(i.action_id for i in second.items) == sorted(held)
    assert ExpireSweep(svc).run().items == []
    assert all(events(db, i).count("approval_timed_out") == 1 for i in ids)


def test_a_long_sweep_reports_progress_every_n_items(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock)
    propose_pending(svc, 7)
    clock.advance(timedelta(hours=1))
    seen: list[SweepProgress] = []
    ExpireSweep(svc, batch_size=4, progress_every=3).run(on_progress=seen.append)
    assert [(p.done, p.total) for p in seen] == [(3, 7), (6, 7), (7, 7)]


def test_max_items_bounds_one_run(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock)
    propose_pending(svc, 5)
    clock.advance(timedelta(hours=1))
    assert len(ExpireSweep(svc, batch_size=2).run(max_items=3).items) == 3
    assert ExpireSweep(svc).count_due() == 2


def test_a_claim_with_no_room_or_no_lease_is_refused(db: Any, clock: ManualClock) -> None:
    with transaction(db.sessions) as session, pytest.raises(InvalidInput):
        claim_due(session, Action, due_conditions(clock.now()), ORDER, 0, "w", timedelta(minutes=1), clock.now(),
                  sweep=SWEEP)


def test_the_due_query_and_count_read_the_partial_index_on_pending_approvals(db: Any, clock: ManualClock) -> None:
    with transaction(db.sessions) as session:
        if db.backend == "postgresql":
            # An empty test table is cheapest to scan whole; the benchmark shows the plan at 1M+ rows.
            session.execute(sa.text("SET LOCAL enable_seqscan = off"))
            session.execute(sa.text("SET LOCAL enable_bitmapscan = off"))
        for rows in (False, True):
            stmt = due_query(Action, due_conditions(clock.now()), ORDER, 500, clock.now(), sweep=SWEEP,
                             dialect=db.backend, rows=rows)
            plan = "\n".join(explain(session, stmt))
            assert "ix_actions_pending_deadline" in plan, plan
            assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan  # the index gives the sweep's order
        count = sa.select(sa.func.count()).select_from(Action).where(*due_conditions(clock.now()))
        plan = "\n".join(explain(session, count))
        assert "ix_actions_pending_deadline" in plan, plan


class _Refusing(ActionService):
    """Fault injection: one chosen action fails with a typed error every time the sweep resolves it."""

    refused: str = ""

    def resolve_locked_timeouts(self, session: Any, rows: Any, action_ids: Any, *, actor: str, now: Any) -> Any:
        outcomes = super().resolve_locked_timeouts(session, rows, [i for i in action_ids if i != self.refused],
                                                   actor=actor, now=now)
        refused = [TimeoutOutcome(self.refused, error=StoreUnavailable("refused for the test"))]
        return outcomes + (refused if self.refused in action_ids else [])


def test_an_item_that_fails_is_held_for_the_lease_instead_of_being_taken_again_and_again(
    db: Any, clock: ManualClock
) -> None:
    base = service(db, clock)
    svc = _Refusing(db.sessions, base.policy, clock)
    ids = propose_pending(svc, 5)
    svc.refused = ids[2]
    clock.advance(timedelta(hours=1))
    report = ExpireSweep(svc, batch_size=2).run()
    assert [i.outcome for i in report.items if i.action_id == ids[2]] == ["failed"]
    assert sorted(i.action_id for i in report.items if i.outcome == "resolved") == sorted(set(ids) - {ids[2]})
    assert ExpireSweep(svc).run().items == []  # held by the failed run's claim
    clock.advance(timedelta(minutes=10))
    svc.refused = ""
    assert [(i.action_id, i.state) for i in ExpireSweep(svc).run().items] == [(ids[2], "timed_out")]
