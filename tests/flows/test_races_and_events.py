"""Approve, reject and timeout racing on one paused action; audit records relayed as Prefect events."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from prefect import flow
from prefect.runtime import flow_run
from prefect.variables import Variable

from blocks.settings import Runtime, install_runtime
from flows import api
from flows.approval_gate import approval_gate
from flows.events import CURSOR_VARIABLE, relay_audit_events
from saferails.actions.models import Proposal
from saferails.actions.service import ActionService
from saferails.clock import ManualClock
from saferails.errors import SaferailsError
from saferails.store.db import transaction
from saferails.store.tables import AuditRecord
from tests.support.flowkit import Outbox, eventually, finish_flow_runs, make_runtime

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
    """Whoever wins, the action ends with one outcome and its flow run ends too, in the final state that says that
    outcome: a decision that did not go through the run (the sweep, or a direct decision) is read by the gate from
    the store, so the run does not sit paused until its deadline (``flow_runs_finished`` fails the test if the
    run's thread is still going)."""
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
    finish_flow_runs()
    final = rt.actions.get(action_id)
    assert final.state in {"rejected", "timed_out", "completed", "failed"}
    assert _final_run_state(sub.flow_run_id) == _expected_run_state(final.state)
    approvals = [a for a in final.approvals if a.decision == "approve"]
    rejections = [a for a in final.approvals if a.decision == "reject"]
    assert not (final.state == "rejected" and approvals and not rejections)


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_decision_made_in_the_store_while_the_run_is_paused_ends_the_run(
    any_store_runtime: Runtime, flow_runs_finished: None, outbox: Outbox, decision: str
) -> None:
    """The library side (CLI, HTTP API) decides in the store and cannot reach Prefect: the paused gate sees the
    decision on its own and the run ends with the outcome, without an answer through Prefect."""
    rt = any_store_runtime
    sub = api.submit_action(Proposal(action_type="role_change", target="emp_9", params={"new_role": "lead"},
                                     proposer="agent-1"), poll_interval=1)
    eventually(lambda: _paused(sub.flow_run_id))
    action_id = sub.action.id
    decide = rt.actions.approve if decision == "approve" else rt.actions.reject
    decide(action_id, "alice", reason="from the CLI", code=outbox.code_for(action_id, "alice"), channel="cli")
    finish_flow_runs()
    final = rt.actions.get(action_id)
    # emp_9 is no employee of the empty org: an approved role change runs and fails; either way it is final.
    assert final.state == ("failed" if decision == "approve" else "rejected")
    assert _final_run_state(sub.flow_run_id) == _expected_run_state(final.state)
    assert "approval_input_invalid" not in [e.event for e in _audit(rt, action_id)]


def test_a_decision_made_before_the_gate_pauses_is_read_at_once(
    any_store_runtime: Runtime, outbox: Outbox
) -> None:
    """The flow loaded the action while it was pending; it was decided before the gate paused. The gate reads the
    store before pausing, so the run never pauses."""
    rt = any_store_runtime
    view = rt.actions.propose(Proposal(action_type="role_change", target="emp_9", params={"new_role": "lead"},
                                       proposer="agent-1"))
    assert view.state == "pending_approval"
    rt.actions.reject(view.id, "alice", reason="no", code=outbox.code_for(view.id, "alice"), channel="cli")

    @flow
    def gate_with_a_stale_view() -> tuple[str, int]:
        closed = approval_gate(view, "request", poll_interval=1)
        return closed.state, len(_pauses(str(flow_run.get_id())))

    assert gate_with_a_stale_view() == ("rejected", 0)


def _final_run_state(flow_run_id: Any) -> tuple[str, str]:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    assert state is not None and state.is_final(), state
    return state.type.value, state.name or ""


def _expected_run_state(action_state: str) -> tuple[str, str]:
    return {"completed": ("COMPLETED", "Completed"), "failed": ("FAILED", "Failed"),
            "rejected": ("COMPLETED", "Rejected"), "timed_out": ("FAILED", "TimedOut")}[action_state]


def _pauses(flow_run_id: str) -> list[Any]:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return [s for s in client.read_flow_run_states(UUID(flow_run_id)) if s.is_paused()]


def _audit(rt: Runtime, action_id: str) -> list[Any]:
    with transaction(rt.sessions) as session:
        return list(session.scalars(sa.select(AuditRecord).where(AuditRecord.entity_id == action_id)))


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
