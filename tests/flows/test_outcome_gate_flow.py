"""The monitor flow asks a person about an inconclusive outcome check: the run pauses with the evidence as the
form's description, a wrong code is refused (logged, audited, paused again) and the decider's own code rolls the
change back; a pause nobody answers times out and leaves the check for ``saferails outcomes resolve``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from prefect import get_client

from blocks.settings import Runtime, install_runtime
from flows.api import start_in_process
from flows.outcomes import monitor_outcomes
from saferails.clock import ManualClock
from saferails.policy import load_policy_text
from saferails.store.db import transaction
from saferails.store.tables import AuditRecord, Principal
from tasks.outcomes import monitor_for
from tests.outcomes.test_did_monitor import _erratic_target_then_a_drop
from tests.support.flowkit import Outbox, eventually, make_runtime
from tests.support.outcome_world import World

pytestmark = pytest.mark.flow

POLICY = """version: "outcome-gate"
impact: {default: low}
rules: []
outcomes:
  reassign_manager: {judge: did, pre_weeks: 8, delay_days: 7}
"""


@pytest.fixture
def did_runtime(sqlite_db: Any, clock: ManualClock, outbox: Outbox, flow_runs_finished: None) -> Runtime:
    rt = make_runtime(sqlite_db.sessions, clock, outbox, policy=load_policy_text(POLICY))
    with transaction(rt.sessions) as session:
        session.execute(sa.update(Principal).where(Principal.id.in_(["alice", "bob"])).values(roles=["approver"]))
    install_runtime(rt)
    return rt


def _state(run_id: UUID) -> str:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    return "" if state is None else state.type.value


def _start(**params: Any) -> UUID:
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(monitor_outcomes, parameters=params)
    start_in_process(monitor_outcomes, run, params, name=f"outcome-gate-{run.id}")
    return run.id


def _inconclusive_world(rt: Runtime, sqlite_db: Any, clock: ManualClock) -> str:
    world = World(sqlite_db, clock)
    action_id = _erratic_target_then_a_drop(world)
    assert monitor_for(rt).schedule() == 1
    clock.advance(timedelta(days=7))
    return action_id


def test_the_flow_pauses_with_the_evidence_refuses_a_wrong_code_and_rolls_back_on_the_deciders_code(
        did_runtime: Runtime, sqlite_db: Any, clock: ManualClock, outbox: Outbox) -> None:
    action_id = _inconclusive_world(did_runtime, sqlite_db, clock)
    run_id = _start(poll_interval=1, decision_timeout=600)
    eventually(lambda: _state(run_id) == "PAUSED", timeout=120)
    code = outbox.code_for(action_id, "alice")
    assert code is not None

    with get_client(sync_client=True) as client:
        client.resume_flow_run(run_id, run_input={"decision": "roll_back", "approver": "alice",
                                                  "code": "AAAA-BBBB-CCCC", "reason": "guess"})
    eventually(lambda: _state(run_id) == "PAUSED" and "outcome_resolution_refused" in _events(did_runtime, action_id),
               timeout=120)
    assert did_runtime.actions.get(action_id).state == "completed"
    with get_client(sync_client=True) as client:
        client.resume_flow_run(run_id, run_input={"decision": "roll_back", "approver": "alice", "code": code,
                                                  "reason": "t is cut off"})
    eventually(lambda: _state(run_id) == "COMPLETED", timeout=120)

    assert did_runtime.actions.get(action_id).state == "rolled_back"
    check = monitor_for(did_runtime).check_for(action_id)
    assert check is not None and check.state == "negative" and check.result is not None
    assert (check.result["resolved_by"], check.result["resolution"]) == ("alice", "roll_back")


def _events(rt: Runtime, action_id: str) -> list[str]:
    with transaction(rt.sessions) as session:
        return list(session.execute(sa.select(AuditRecord.event).where(AuditRecord.entity_id == action_id)
                                    .order_by(AuditRecord.sequence)).scalars())
