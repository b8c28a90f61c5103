"""The recover sweep on SQLite and PostgreSQL: actions whose flow died under them are resolved by the rules,
and nothing is ever executed twice."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from saferails.actions.service import ActionService, Proposal
from saferails.actions.types import Params
from saferails.clock import ManualClock
from saferails.execution import ExecutionService, effect_key
from saferails.handlers import ExecutionOutcome, HandlerContext, HandlerSettings, handler
from saferails.org import Effect
from saferails.store.db import transaction
from saferails.store.tables import Action
from saferails.sweeps import RecoverSweep
from saferails.sweeps.claims import due_query, explain
from saferails.sweeps.recover import INTERRUPTED, LOST, ORDER, lost_conditions
from tests.support.sweepkit import events, propose_pending, service, set_flow_run


class ProcessDied(BaseException):
    """Stands for the worker process being killed mid-effect: nothing after it runs, nothing is recorded."""


class PingParams(Params):
    n: int = 1


@handler(params_model=PingParams, description="Count calls (sweep test handler)")
class Ping:
    action_type = "sweep_ping"
    external = True
    calls: ClassVar[int] = 0
    die: ClassVar[bool] = False

    def validate(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> None:
        return None

    def capture(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    def preview(self, ctx: HandlerContext, target: str, params: dict[str, Any],
                pre_state: dict[str, Any]) -> dict[str, Any]:
        return {}

    def execute(self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any],
                key: str) -> ExecutionOutcome:
        type(self).calls += 1
        if self.die:
            raise ProcessDied()
        return ExecutionOutcome({"pinged": target}, {"undo": target})

    def rollback(self, ctx: HandlerContext, target: str, rollback_data: dict[str, Any]) -> dict[str, Any]:
        return {}


@pytest.fixture(autouse=True)
def _reset() -> None:
    Ping.calls, Ping.die = 0, False


class Env:
    def __init__(self, db: Any, clock: ManualClock) -> None:
        self.db, self.clock = db, clock
        self.actions: ActionService = service(db, clock)
        self.executor = ExecutionService(db.sessions, clock, HandlerSettings(), sleeper=lambda _s: None)
        self.runs: dict[str, str] = {}  # what Prefect would say about each flow run id

    def sweep(self, **options: Any) -> RecoverSweep:
        return RecoverSweep(self.actions, self.executor, probe=self.runs.get, **options)

    def approved(self, target: str = "t") -> str:
        view = self.actions.propose(Proposal(action_type="sweep_ping", target=target, params={}, proposer="agent-1"))
        assert view.state == "approved"
        return view.id

    def stuck(self, target: str = "t") -> str:
        """An action whose process died while its handler ran: left in ``executing``."""
        action_id = self.approved(target)
        Ping.die = True
        with pytest.raises(ProcessDied):
            self.executor.execute(action_id)
        Ping.die = False
        return action_id


@pytest.fixture
def env(db: Any, clock: ManualClock) -> Env:
    return Env(db, clock)


def test_an_interrupted_execution_fails_with_the_recovery_reason_and_is_not_run_again(env: Env) -> None:
    action_id = env.stuck()
    env.clock.advance(timedelta(minutes=16))
    report = env.sweep().run()
    view = env.actions.get(action_id)
    assert view.state == "failed"
    # This handler cannot reconcile: the error says the effect is unknown, and an alert is raised.
    assert view.error is not None and view.error.startswith(INTERRUPTED) and "effect unknown" in view.error
    assert [i.action_id for i in report.items] == [action_id]
    assert Ping.calls == 1
    assert events(env.db, action_id)[-2:] == ["execution_interrupted", "alert_emitted"]


def test_an_interrupted_execution_whose_effect_was_recorded_completes_with_that_result(env: Env) -> None:
    action_id = env.stuck()
    with transaction(env.db.sessions) as session:
        row = session.get(Action, action_id)
        assert row is not None
        session.add(Effect(idempotency_key=effect_key(row), action_id=action_id, action_type="sweep_ping",
                           result={"result": {"pinged": "t"}, "rollback_data": {"undo": "t"}},
                           created_at=env.clock.now()))
    env.clock.advance(timedelta(minutes=16))
    env.sweep().run()
    view = env.actions.get(action_id)
    assert (view.state, view.result) == ("completed", {"pinged": "t"})
    assert Ping.calls == 1
    assert env.executor.rollback(action_id, "ops", reason="check undo data survived").state == "rolled_back"


def test_an_execution_younger_than_the_lease_is_left_running(env: Env) -> None:
    action_id = env.stuck()
    env.clock.advance(timedelta(minutes=14))
    assert env.sweep().run().items == []
    assert env.actions.get(action_id).state == "executing"


def test_an_approved_action_whose_flow_run_is_gone_is_executed_once(env: Env) -> None:
    crashed, orphan, alive = env.approved("a"), env.approved("b"), env.approved("c")
    set_flow_run(env.db, crashed, "run-crashed")
    set_flow_run(env.db, alive, "run-alive")
    env.runs.update({"run-crashed": "CRASHED", "run-alive": "RUNNING"})
    env.clock.advance(timedelta(minutes=16))
    report = env.sweep().run()
    assert sorted(i.action_id for i in report.items) == sorted([crashed, orphan])
    assert [env.actions.get(i).state for i in (crashed, orphan, alive)] == ["completed", "completed", "approved"]
    assert env.sweep().run().items == []
    assert Ping.calls == 2


def test_a_pending_action_whose_paused_run_is_gone_is_noted_once_and_still_times_out(env: Env) -> None:
    gone, paused = propose_pending(env.actions, 2)
    set_flow_run(env.db, gone, "run-gone")
    set_flow_run(env.db, paused, "run-paused")
    env.runs["run-paused"] = "PAUSED"
    report = env.sweep().run()
    assert [(i.action_id, i.outcome) for i in report.items] == [(gone, "noted")]
    env.clock.advance(timedelta(minutes=61))  # past the recheck interval and the approval deadline
    env.sweep().run()
    assert events(env.db, gone).count("paused_run_lost") == 1
    from saferails.sweeps import ExpireSweep

    ExpireSweep(env.actions).run()
    assert env.actions.get(gone).state == env.actions.get(paused).state == "timed_out"


def test_two_recover_sweeps_at_once_never_execute_an_action_twice(env: Env) -> None:
    ids = [env.approved(f"t{i}") for i in range(12)]
    env.clock.advance(timedelta(minutes=16))
    sweeps = [env.sweep(batch_size=2, worker_id=f"w{n}") for n in range(2)]
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
    assert sorted(i.action_id for r in reports for i in r.items) == sorted(ids)
    assert Ping.calls == 12
    assert all(env.actions.get(i).state == "completed" for i in ids)


def test_the_lost_approvals_query_reads_the_partial_index_on_pending_actions_with_a_run(
    db: Any, clock: ManualClock
) -> None:
    """Part 3's due query (pending approvals with a flow run, oldest change first) is read off
    ``ix_actions_pending_run`` in its order on PostgreSQL; on SQLite the index exists and the planner may prefer
    the state index (it has no statistics on a test table)."""
    with transaction(db.sessions) as session:
        if db.backend == "postgresql":
            # An empty test table is cheapest to scan whole: make the planner show the index it would use.
            session.execute(sa.text("SET LOCAL enable_seqscan = off"))
            session.execute(sa.text("SET LOCAL enable_bitmapscan = off"))
            stmt = due_query(Action, lost_conditions(), ORDER, 200, clock.now(), sweep=LOST, dialect=db.backend)
            plan = "\n".join(explain(session, stmt))
            assert "ix_actions_pending_run" in plan, plan
            assert "Sort" not in plan, plan  # the index gives the sweep's order
        names = {ix["name"] for ix in sa.inspect(session.connection()).get_indexes("actions")}
        assert "ix_actions_pending_run" in names
