"""The sweep flows under the session's Prefect harness: expired approvals are resolved even when the flow that
paused is gone, and a run left Paused by a dead process is ended."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.states import Paused

from blocks.settings import Runtime
from flows.sweeps import expire_approvals, recover_actions
from saferails.actions.models import Proposal
from saferails.clock import ManualClock
from saferails.store.db import transaction
from saferails.store.tables import Action

pytestmark = pytest.mark.flow


@flow(name="sweep-test-paused-gate")
def paused_gate_stand_in() -> None:
    """Never runs: stands for an action flow whose process died while paused at the gate."""


def _pending(rt: Runtime, target: str) -> str:
    view = rt.actions.propose(Proposal(action_type="reassign_manager", target=target,
                                       params={"new_manager_id": "mgr_2"}, proposer="agent-1", reason="flow test"))
    assert view.state == "pending_approval"
    return view.id


def _attach(rt: Runtime, action_id: str, flow_run_id: str) -> None:
    with transaction(rt.sessions) as session:
        row = session.get(Action, action_id)
        assert row is not None
        row.flow_run_id = flow_run_id


def _orphaned_paused_run() -> str:
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(paused_gate_stand_in, state=Paused(timeout_seconds=86_400, pause_key="1"))
        return str(run.id)


def _state(flow_run_id: str) -> str:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(uuid.UUID(flow_run_id)).state
        assert state is not None
        return state.type.value


def test_expired_approvals_time_out_and_the_dead_paused_run_is_cancelled(runtime: Runtime, clock: ManualClock) -> None:
    vanished, dead_process = _pending(runtime, "emp_1"), _pending(runtime, "emp_2")
    _attach(runtime, vanished, str(uuid.uuid4()))  # a run Prefect has never heard of
    paused_run = _orphaned_paused_run()
    _attach(runtime, dead_process, paused_run)
    clock.advance(timedelta(hours=25))
    report = expire_approvals()
    assert runtime.actions.get(vanished).state == runtime.actions.get(dead_process).state == "timed_out"
    assert report["paused_runs_ended"] == [paused_run]
    assert _state(paused_run) == "CANCELLED"
    with get_client(sync_client=True) as client:
        key = ArtifactFilterKey(any_=["expire-progress"])
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=key))
    assert artifacts and artifacts[0].data == 100.0


def test_expiring_again_finds_nothing_to_do(runtime: Runtime, clock: ManualClock) -> None:
    _pending(runtime, "emp_3")
    clock.advance(timedelta(hours=25))
    assert expire_approvals()["resolved"] == 1
    again = expire_approvals()
    assert (again["resolved"], again["paused_runs_ended"]) == (0, [])


def test_recovery_notes_a_pending_action_whose_paused_run_is_gone(runtime: Runtime, clock: ManualClock) -> None:
    lost, waiting = _pending(runtime, "emp_4"), _pending(runtime, "emp_5")
    _attach(runtime, lost, str(uuid.uuid4()))
    _attach(runtime, waiting, _orphaned_paused_run())
    report = recover_actions()
    assert [(i["action_id"], i["outcome"]) for i in report["items"]] == [(lost, "noted")]
    assert runtime.actions.get(lost).state == "pending_approval"


def test_make_serve_serves_every_sweep_with_its_schedule() -> None:
    from deployments.serve import scheduled_deployments

    served = {d.name: d.schedules[0].schedule for d in scheduled_deployments()}
    assert served["expire-approvals"].cron == "0 * * * *"
    assert served["recover-actions"].interval == timedelta(minutes=10)
    assert served["sla-breach-sweep"].interval == timedelta(minutes=5)
    assert served["monitor-outcomes"].interval == timedelta(hours=1)
