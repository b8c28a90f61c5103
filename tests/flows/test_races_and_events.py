"""Approve, reject and timeout racing on one paused action; audit records relayed as Prefect events."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from prefect.variables import Variable

from blocks.settings import Runtime, install_runtime
from flows import api
from flows.events import CURSOR_VARIABLE, relay_audit_events
from saferails.actions.models import Proposal
from saferails.actions.service import ActionService
from saferails.clock import ManualClock
from saferails.errors import SaferailsError
from tests.support.flowkit import Outbox, eventually, make_runtime

pytestmark = pytest.mark.flow


@pytest.fixture
def any_store_runtime(db: Any, clock: ManualClock, outbox: Outbox) -> Iterator[Runtime]:
    rt = make_runtime(db.sessions, clock, outbox)
    install_runtime(rt)
    yield rt
    install_runtime(None)


def test_approve_reject_and_timeout_racing_on_one_action_give_exactly_one_outcome(
    any_store_runtime: Runtime, flow_runs_finished: None, outbox: Outbox, clock: ManualClock
) -> None:
    """Whoever wins, the action ends with one outcome and its flow run ends too: a decision that did not go
    through the run (the sweep, or a direct decision) wakes the paused gate (``flow_runs_finished`` fails the
    test if the run is still paused at the gate)."""
    rt = any_store_runtime
    sub = api.submit_action(Proposal(action_type="role_change", target="emp_9", params={"new_role": "lead"},
                                     proposer="agent-1"), poll_interval=1)
    eventually(lambda: _paused(sub.flow_run_id))
    action_id = sub.action.id
    # The sweep runs elsewhere with its own clock, already past the deadline.
    late = ManualClock(clock.now() + timedelta(hours=25))
    sweep = ActionService(rt.sessions, rt.actions.policy, late)
    racers: list[Callable[[], Any]] = [
        lambda: api.approve(action_id, "alice", outbox.code_for(action_id, "alice"), "yes"),
        lambda: api.reject(action_id, "bob", outbox.code_for(action_id, "bob"), "no"),
        lambda: sweep.resolve_timeout(action_id),
    ]
    start = threading.Barrier(len(racers))
    errors: list[SaferailsError] = []

    def race(fn: Callable[[], Any]) -> None:
        start.wait()
        try:
            fn()
        except SaferailsError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(fn,)) for fn in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = eventually(lambda: (v := rt.actions.get(action_id)).state != "pending_approval" and v)
    left_pending = [e for e in rt.actions.list() if e.id == action_id and e.state == "pending_approval"]
    assert not left_pending
    assert final.state in {"approved", "rejected", "timed_out", "completed", "failed"}
    decisions = [a for a in final.approvals if a.decision == "approve"], [a for a in final.approvals
                                                                            if a.decision == "reject"]
    assert not (final.state == "rejected" and decisions[0] and not decisions[1])


def _paused(flow_run_id: Any) -> bool:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    return state is not None and state.is_paused()


def test_every_audit_record_is_relayed_once_as_a_prefect_event(runtime: Runtime) -> None:
    Variable.set(CURSOR_VARIABLE, 0, overwrite=True)
    runtime.actions.propose(Proposal(action_type="make_payment", target="acct",
                                     params={"amount": "10", "currency": "EUR", "payee": "p"}, proposer="agent-1"))
    first = relay_audit_events()
    assert first > 0
    assert Variable.get(CURSOR_VARIABLE) == first
    assert relay_audit_events() == 0


def test_a_run_paused_on_an_action_the_sweep_already_decided_ends_at_the_next_answer(
    any_store_runtime: Runtime, flow_runs_finished: None, outbox: Outbox, clock: ManualClock
) -> None:
    """The sweep decides in the store, not through the run, so the run stays paused at the gate; the next answer
    through the API is refused (the action is final) and wakes the gate, which then ends the run instead of
    holding its thread until the pause times out (``flow_runs_finished`` fails the test otherwise)."""
    rt = any_store_runtime
    sub = api.submit_action(Proposal(action_type="role_change", target="emp_9", params={"new_role": "lead"},
                                     proposer="agent-1"), poll_interval=1)
    eventually(lambda: _paused(sub.flow_run_id))
    action_id = sub.action.id
    late = ManualClock(clock.now() + timedelta(hours=25))
    swept = ActionService(rt.sessions, rt.actions.policy, late).resolve_timeout(action_id)
    assert swept.state != "pending_approval"
    with pytest.raises(SaferailsError):
        api.approve(action_id, "alice", outbox.code_for(action_id, "alice"), "too late")
    eventually(lambda: not _paused(sub.flow_run_id))
