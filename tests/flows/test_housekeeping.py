"""The continuously running consumers (outbox dispatcher, audit relay) as long-lived runs: one run loops for its
period, handles what arrives meanwhile, ends; `make serve` starts one such run per consumer an hour."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from prefect.variables import Variable

from blocks.settings import Runtime, build_runtime, install_runtime
from flows.events import CURSOR_VARIABLE, relay_audit_events
from flows.housekeeping import PERIOD_SECONDS, repeat
from flows.workflow import dispatch_outbox
from saferails.actions.models import Proposal
from saferails.clock import ManualClock
from saferails.store.tables import AuditRecord
from saferails.workflow.permissions import WorkflowActor
from saferails.workflow.tables import Task
from tests.support.flowkit import store_settings

pytestmark = pytest.mark.flow

ADMIN = WorkflowActor("ada", frozenset({"admin"}))


class Waits:
    """A sleeper that moves the manual clock instead of waiting, and runs ``during[n]`` at the n-th wait (what
    arrives while the run is going)."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.count = 0
        self.during: dict[int, Callable[[], Any]] = {}

    def __call__(self, seconds: float) -> None:
        self.count += 1
        self.clock.advance(timedelta(seconds=seconds))
        if self.count in self.during:
            self.during[self.count]()


@pytest.fixture
def waits(clock: ManualClock) -> Waits:
    return Waits(clock)


@pytest.fixture
def looping_runtime(sqlite_db: Any, clock: ManualClock, waits: Waits) -> Iterator[Runtime]:
    rt = build_runtime(sqlite_db.sessions, clock=clock, settings=store_settings(), sleeper=waits)
    install_runtime(rt)
    yield rt
    install_runtime(None)


def test_repeat_passes_every_interval_until_the_period_is_over(clock: ManualClock, waits: Waits) -> None:
    start = clock.now()
    seen = repeat(clock.now, period=60, interval=10, clock=clock, sleep=waits)
    assert seen == [start + timedelta(seconds=s) for s in range(0, 60, 10)]
    assert clock.now() - start == timedelta(seconds=50)  # no wait after the last pass: the run ends there


def test_repeat_with_a_clock_that_does_not_move_still_ends(clock: ManualClock) -> None:
    assert len(repeat(lambda: None, period=60, interval=10, clock=clock, sleep=lambda _s: None)) == 7


def test_repeat_without_a_period_is_one_pass(clock: ManualClock, waits: Waits) -> None:
    assert repeat(lambda: "once", period=0, interval=10, clock=clock, sleep=waits) == ["once"]
    assert waits.count == 0


def test_one_dispatcher_run_handles_the_events_that_arrive_while_it_runs(
    looping_runtime: Runtime, waits: Waits, clock: ManualClock
) -> None:
    svc = looping_runtime.workflow
    svc.create_trigger(ADMIN, {
        "id": "followup", "event_type": "TaskCreated",
        "predicate": {"field": "payload.task_type", "operator": "eq", "value": "intake"},
        "actions": [{"type": "create_task", "title": "follow ${payload.title}", "task_type": "followup"}],
    })
    svc.create_task(ADMIN, title="before the run", task_type="intake")
    waits.during[2] = lambda: svc.create_task(ADMIN, title="twenty seconds in", task_type="intake")
    waits.during[30] = lambda: svc.create_task(ADMIN, title="five minutes in", task_type="intake")
    start = clock.now()

    result = dispatch_outbox(period_seconds=600, interval_seconds=10)

    assert result["passes"] == 60
    assert clock.now() - start == timedelta(seconds=590)
    with looping_runtime.sessions() as s:
        followups = s.execute(sa.select(Task.title).where(Task.task_type == "followup")).scalars().all()
    assert sorted(followups) == ["follow before the run", "follow five minutes in", "follow twenty seconds in"]
    # Arriving after the run ended: left for the next run.
    svc.create_task(ADMIN, title="after the run", task_type="intake")
    assert dispatch_outbox()["passes"] == 1
    with looping_runtime.sessions() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Task)
                         .where(Task.task_type == "followup")).scalar_one() == 4


def test_one_relay_run_relays_the_records_appended_while_it_runs(looping_runtime: Runtime, waits: Waits) -> None:
    Variable.set(CURSOR_VARIABLE, 0, overwrite=True)

    def propose(target: str) -> None:
        looping_runtime.actions.propose(Proposal(action_type="make_payment", target=target, params={
            "amount": "10", "currency": "EUR", "payee": "p"}, proposer="agent-1"))

    propose("acct-1")
    waits.during[3] = lambda: propose("acct-2")
    relayed = relay_audit_events(period_seconds=60, interval_seconds=10)
    with looping_runtime.sessions() as s:
        last = s.execute(sa.select(sa.func.max(AuditRecord.sequence))).scalar_one()
    assert relayed == last
    assert Variable.get(CURSOR_VARIABLE) == last
    assert waits.count == 5


def test_make_serve_starts_one_run_an_hour_per_consumer_tagged_housekeeping() -> None:
    from deployments.serve import consumer_deployments, scheduled_deployments

    consumers = {d.name: d for d in consumer_deployments()}
    assert set(consumers) == {"relay", "dispatch-outbox"}
    day = timedelta(days=1)
    for deployment in consumers.values():
        (schedule,) = [s.schedule for s in deployment.schedules]
        assert day / schedule.interval == 24  # one run an hour (the first started by start_consumers)
        assert timedelta(minutes=59) < schedule.anchor_date - datetime.now(UTC) <= timedelta(hours=1)
        # ... that loops for the whole hour, alone.
        assert deployment.parameters["period_seconds"] == schedule.interval.total_seconds() == PERIOD_SECONDS
        assert deployment.concurrency_limit == 1
        assert "housekeeping" in deployment.tags
    sweeps = {d.name for d in scheduled_deployments()}
    assert not sweeps & set(consumers)
