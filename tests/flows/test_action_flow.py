"""The action flow under Prefect: the approval gate through resume_flow_run, refusals, timeouts, re-runs."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogWorker
from prefect.states import Running

from blocks.settings import Runtime, build_runtime, install_runtime
from flows import api
from flows.action_flow import action_flow
from saferails.actions.models import ActionView, Proposal
from saferails.policy import default_policy, load_policy_text, policy_to_yaml
from saferails.store.db import transaction
from saferails.store.tables import AuditRecord
from tests.support.flowkit import Outbox, eventually, store_settings

pytestmark = pytest.mark.flow

HIGH = {"action_type": "reassign_manager", "target": "emp_1", "params": {"new_manager_id": "mgr_2"}}


def propose(proposer: str = "agent-1", **overrides: Any) -> Proposal:
    return Proposal(**(HIGH | {"proposer": proposer, "reason": "reorg"} | overrides))


def run_state(flow_run_id: UUID | str) -> str:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(str(flow_run_id))).state
    return "" if state is None else state.type.value


def final_state(flow_run_id: UUID | str) -> tuple[str, str, str]:
    """(type, name, message) of the run's state once it is final."""
    def check() -> tuple[str, str, str] | None:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(str(flow_run_id))).state
        if state is None or not state.is_final():
            return None
        return state.type.value, state.name or "", state.message or ""

    result: tuple[str, str, str] = eventually(check)
    return result


def run_name(flow_run_id: UUID | str) -> str:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(str(flow_run_id))).name


def audit_events(rt: Runtime, action_id: str) -> list[tuple[str, str]]:
    with transaction(rt.sessions) as session:
        stmt = sa.select(AuditRecord.event, AuditRecord.actor).where(AuditRecord.entity_id == action_id) \
            .order_by(AuditRecord.sequence)
        return [(e, a) for e, a in session.execute(stmt)]


def paused(flow_run_id: UUID | str) -> bool:
    return run_state(flow_run_id) == "PAUSED"


def submit(proposal: Proposal) -> api.Submission:
    sub = api.submit_action(proposal, poll_interval=1)
    eventually(lambda: paused(sub.flow_run_id))
    return sub


def decided(rt: Runtime, action_id: str) -> ActionView:
    def check() -> ActionView | None:
        view = rt.actions.get(action_id)
        return None if view.state == "pending_approval" else view

    result: ActionView = eventually(check)
    return result


def with_policy(rt: Runtime, outbox: Outbox, **approval: Any) -> Runtime:
    text = policy_to_yaml(default_policy())
    for key, value in approval.items():
        text = text.replace(f"  {key}: {_default(key)}\n", f"  {key}: {value}\n", 1)
    new = build_runtime(rt.sessions, policy=load_policy_text(text), clock=rt.clock, notifier=outbox,
                        settings=store_settings())
    install_runtime(new)
    return new


def _default(key: str) -> str:
    return {"min_approvals": "1", "timeout_action": "fail"}[key]


def test_an_approver_resuming_the_paused_run_with_the_form_approves_the_action(runtime: Runtime,
                                                                                outbox: Outbox) -> None:
    sub = submit(propose())
    assert sub.action.state == "pending_approval"
    api.approve(sub.action.id, "alice", outbox.code_for(sub.action.id, "alice"), "looks right")
    final_state(sub.flow_run_id)
    view = runtime.actions.get(sub.action.id)
    assert view.valid_approvers == ("alice",)
    assert view.state in ({"approved"} if runtime.execution is None else {"completed", "failed"})
    assert [a.channel for a in view.approvals] == ["prefect-ui"]
    kind, _name, message = final_state(sub.flow_run_id)
    assert kind == {"completed": "COMPLETED", "failed": "FAILED"}[view.state]
    assert message == (view.error if view.state == "failed" else "reassign_manager on emp_1 completed")


def test_the_run_is_named_by_what_it_does_and_the_short_action_id(runtime: Runtime, outbox: Outbox) -> None:
    sub = submit(propose())
    assert run_name(sub.flow_run_id) == f"reassign_manager emp_1 · {sub.action.id[:8]}"
    api.reject(sub.action.id, "bob", outbox.code_for(sub.action.id, "bob"), "no")
    final_state(sub.flow_run_id)


def test_two_of_three_needs_two_distinct_approvers_and_a_repeat_counts_once(runtime: Runtime,
                                                                             outbox: Outbox) -> None:
    rt = with_policy(runtime, outbox, min_approvals=2)
    sub = submit(propose())
    code = outbox.code_for(sub.action.id, "alice")
    api.approve(sub.action.id, "alice", code, "one")
    eventually(lambda: paused(sub.flow_run_id))
    again = api.approve(sub.action.id, "alice", code, "one again")
    eventually(lambda: paused(sub.flow_run_id))
    assert again.state == "pending_approval"
    assert rt.actions.get(sub.action.id).valid_approvers == ("alice",)
    api.approve(sub.action.id, "bob", outbox.code_for(sub.action.id, "bob"), "two")
    view = decided(rt, sub.action.id)
    assert sorted(view.valid_approvers) == ["alice", "bob"]


def test_the_proposer_cannot_approve_and_an_empty_resume_approves_nothing(runtime: Runtime,
                                                                           outbox: Outbox) -> None:
    sub = submit(propose(proposer="alice"))
    api.approve(sub.action.id, "alice", "000000", "my own")
    eventually(lambda: paused(sub.flow_run_id))
    with pytest.raises(RuntimeError):
        from prefect.flow_runs import resume_flow_run

        resume_flow_run(sub.flow_run_id, run_input={})
    with get_client(sync_client=True) as client:  # a bare state change to Running, as a UI "resume" without input
        client.set_flow_run_state(sub.flow_run_id, Running(), force=True)
    eventually(lambda: paused(sub.flow_run_id))
    view = runtime.actions.get(sub.action.id)
    assert view.state == "pending_approval"
    assert view.approvals == ()
    assert ("approval_input_invalid", "prefect-ui:unknown") in audit_events(runtime, sub.action.id)
    # End the run before this test's store goes: a run left paused would wake on the next test's store.
    api.reject(sub.action.id, "bob", outbox.code_for(sub.action.id, "bob"), "done")
    final_state(sub.flow_run_id)


def test_a_refused_answer_in_the_form_is_an_error_in_the_runs_logs_and_the_run_pauses_again(runtime: Runtime,
                                                                                          outbox: Outbox) -> None:
    sub = submit(propose())
    with get_client(sync_client=True) as client:
        client.resume_flow_run(sub.flow_run_id, run_input={"decision": "approve", "approver": "alice",
                                                           "code": "WRONG-CODE-0000", "reason": "ok"})
    eventually(lambda: paused(sub.flow_run_id))

    def refusal_logged() -> list[str]:
        APILogWorker.drain_all()
        with get_client(sync_client=True) as client:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[sub.flow_run_id])))
        return [log.message for log in logs if log.level >= logging.ERROR and "refused" in log.message]

    [message] = eventually(refusal_logged)
    assert message.startswith("approve by alice refused (APPROVAL_CODE_INVALID)")
    assert runtime.actions.get(sub.action.id).approvals == ()
    assert ("approval_refused", "alice") in audit_events(runtime, sub.action.id)  # and in the audit trail
    api.reject(sub.action.id, "bob", outbox.code_for(sub.action.id, "bob"), "no")
    final_state(sub.flow_run_id)


def test_one_rejection_ends_the_approval_even_when_two_approvals_are_needed(runtime: Runtime,
                                                                            outbox: Outbox) -> None:
    rt = with_policy(runtime, outbox, min_approvals=2)
    sub = submit(propose())
    api.reject(sub.action.id, "bob", outbox.code_for(sub.action.id, "bob"), "wrong manager")
    assert decided(rt, sub.action.id).state == "rejected"
    assert final_state(sub.flow_run_id) == ("COMPLETED", "Rejected", "rejected by bob: wrong manager")


def test_once_decided_the_request_artifact_gets_a_new_version_saying_the_outcome(runtime: Runtime,
                                                                                 outbox: Outbox) -> None:
    sub = submit(propose())
    api.reject(sub.action.id, "carol", outbox.code_for(sub.action.id, "carol"), "not now")
    final_state(sub.flow_run_id)
    with get_client(sync_client=True) as client:
        latest = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[f"approval-{sub.action.id}"]))
        )
    [artifact] = latest
    assert str(artifact.data).startswith("### Approval rejected: `reassign_manager` on `emp_1`")
    assert "**carol** rejected via prefect-ui" in str(artifact.data) and "not now" in str(artifact.data)


@pytest.mark.parametrize(("timeout_action", "final"),
                         [("fail", "timed_out"), ("reject", "rejected"), ("approve", "approved")])
def test_a_request_nobody_answers_ends_by_the_policys_timeout_action(runtime: Runtime, outbox: Outbox,
                                                                     timeout_action: str, final: str) -> None:
    rt = with_policy(runtime, outbox, timeout_action=timeout_action)
    proposal = propose(idempotency_key=f"timeout-{timeout_action}")
    rt.actions.propose(proposal)
    runtime.clock.advance(timedelta(hours=24) - timedelta(seconds=1))  # type: ignore[attr-defined]
    sub = api.submit_action(proposal, poll_interval=1)  # same key: the recorded action, one second left
    eventually(lambda: paused(sub.flow_run_id))
    runtime.clock.advance(timedelta(seconds=2))  # type: ignore[attr-defined]
    kind, name, _message = final_state(sub.flow_run_id)
    view = rt.actions.get(sub.action.id)
    expected = {final} if final != "approved" or rt.execution is None else {"completed", "failed"}
    assert view.state in expected
    assert (kind, name) == {"timed_out": ("FAILED", "TimedOut"), "rejected": ("COMPLETED", "Rejected"),
                            "completed": ("COMPLETED", "Completed"), "failed": ("FAILED", "Failed"),
                            "approved": ("COMPLETED", "Approved")}[view.state]


def test_a_blocked_payment_runs_nothing_and_the_run_ends_in_a_state_named_blocked(runtime: Runtime) -> None:
    state = action_flow(proposal={"action_type": "make_payment", "target": "acct",
                                  "params": {"amount": "10", "currency": "EUR", "payee": "p"},
                                  "proposer": "agent-1"}, return_state=True)
    assert (state.type.value, state.name) == ("COMPLETED", "Blocked")
    assert run_name(str(state.state_details.flow_run_id)) == f"make_payment acct · {state.result()['action_id'][:8]}"
    assert (state.message or "").startswith("ACTION_BLOCKED: action ")
    assert "refused by policy" in (state.message or "") and "rule payments-blocked" in (state.message or "")
    result = state.result()
    assert result["state"] == "blocked"
    assert result["refusal"] == "ACTION_BLOCKED"


def test_rerunning_the_flow_of_a_finished_action_applies_nothing(runtime: Runtime, outbox: Outbox) -> None:
    sub = submit(propose())
    api.reject(sub.action.id, "bob", outbox.code_for(sub.action.id, "bob"), "no")
    first = decided(runtime, sub.action.id)
    result = action_flow(action_id=sub.action.id, poll_interval=1)
    again = runtime.actions.get(sub.action.id)
    assert result["state"] == first.state == again.state
    assert (again.result, again.approvals) == (first.result, first.approvals)
