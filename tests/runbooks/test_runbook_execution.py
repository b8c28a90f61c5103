"""Runbook executions against a real local HTTP service, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from saferails.errors import SelfApprovalRefused
from saferails.runbooks import load_runbook, load_runbook_text

if TYPE_CHECKING:
    from saferails.runbooks.views import ExecutionView, StepView
    from tests.runbooks.conftest import Kit, Service

EXAMPLE = Path(__file__).parents[2] / "examples" / "runbooks" / "investigate-threat.yaml"


def start_example(kit: Kit, service: Service, risk: int) -> ExecutionView:
    service.answers["/enrich"] = {"riskScore": risk}
    kit.runbooks.register(load_runbook(EXAMPLE), "admin")
    inputs = {"indicator": "1.2.3.4", "enrichment_url": service.url, "containment_url": service.url}
    return kit.runbooks.start("investigate-threat", inputs, context=kit.ctx)


def _gate(step: StepView) -> str:
    """The id of the approval action an approval step is waiting on."""
    assert step.approval_action_id is not None, f"step {step.step_id} has no approval action"
    return step.approval_action_id


def one_call(extra: str = "", retry: str = "{max_attempts: 3, initial_delay: 1s, max_delay: 10s}") -> str:
    return (
        "id: one\nname: One\nversion: '1'\ninputs: {url: {type: string}}\nsteps:\n"
        f"  - id: call\n    type: call-service\n    retry_policy: {retry}\n    config: {{url: '{{inputs.url}}/x'}}\n"
        + extra
    )


def test_a_high_risk_score_waits_for_approval_then_contains(db: Any, kit: Kit, service: Service) -> None:
    exe = kit.runbooks.run(start_example(kit, service, 9).id)
    assert exe.state == "awaiting"
    assert exe.step("auto-respond").skip_reason == "branch not taken: condition of 'assess-risk' was true"
    approval = exe.step("require-approval")
    assert approval.state == "awaiting_approval"
    kit.actions.approve(_gate(approval), "soc-manager-1", reason="contain it")
    exe = kit.runbooks.run(exe.id)
    assert exe.state == "completed"
    assert service.calls["/isolate"] == 1 and service.calls["/monitor"] == 0
    assert any(e.kind == "approval" for e in kit.runbooks.evidence(exe.id))
    assert kit.runbooks.logs(exe.id)


def test_a_low_risk_score_takes_the_automatic_branch(db: Any, kit: Kit, service: Service) -> None:
    exe = kit.runbooks.run(start_example(kit, service, 2).id)
    assert exe.state == "completed"
    assert exe.step_states["require-approval"] == "skipped"
    assert exe.step_states["execute-containment"] == "skipped"
    assert exe.step("execute-containment").skip_reason == "dependency 'require-approval' was skipped"
    assert service.calls["/monitor"] == 1


def test_a_rejection_short_circuits_the_runbook(db: Any, kit: Kit, service: Service) -> None:
    exe = kit.runbooks.run(start_example(kit, service, 9).id)
    kit.actions.reject(_gate(exe.step("require-approval")), "soc-manager-2", reason="false positive")
    exe = kit.runbooks.run(exe.id)
    assert exe.state == "failed" and "rejected" in (exe.error or "")
    assert exe.step_states["execute-containment"] == "skipped"
    assert service.calls["/isolate"] == 0


def test_two_of_three_approvals_are_needed_and_the_initiator_cannot_approve(
    db: Any, kit: Kit, service: Service
) -> None:
    text = (
        "id: two\nname: Two\nversion: '1'\nsteps:\n  - id: gate\n    type: human-approval\n    config:\n"
        "      approvers: [soc-manager-1, soc-manager-2, soc-manager-3, analyst-1]\n      min_approvals: 2\n"
        "      timeout: 1h\n      prompt: go?\n"
    )
    kit.runbooks.register(load_runbook_text(text), "admin")
    exe = kit.runbooks.run(kit.runbooks.start("two", {}, context=kit.ctx).id)
    action_id = _gate(exe.step("gate"))
    with pytest.raises(SelfApprovalRefused):
        kit.actions.approve(action_id, "analyst-1")
    kit.actions.approve(action_id, "soc-manager-1")
    assert kit.runbooks.run(exe.id).state == "awaiting"
    kit.actions.approve(action_id, "soc-manager-3")
    assert kit.runbooks.run(exe.id).state == "completed"


def test_service_errors_are_retried_with_backoff_and_the_same_idempotency_key(
    db: Any, kit: Kit, service: Service
) -> None:
    kit.runbooks.register(load_runbook_text(one_call()), "admin")
    service.failures["/x"] = 2
    exe = kit.runbooks.run(kit.runbooks.start("one", {"url": service.url}, context=kit.ctx).id)
    assert exe.state == "completed"
    assert kit.delays == [1.0, 2.0]
    assert service.calls["/x"] == 3 and len(set(service.keys)) == 1
    assert service.keys[0] == f"{exe.id}-call"
    assert any("retrying in 2s" in line.message for line in kit.runbooks.logs(exe.id))


def test_a_retry_after_success_gets_the_first_answer_from_an_idempotent_service(
    db: Any, kit: Kit, service: Service
) -> None:
    kit.runbooks.register(load_runbook_text(one_call()), "admin")
    exe = kit.runbooks.run(kit.runbooks.start("one", {"url": service.url}, context=kit.ctx).id)
    first = exe.step("call").output
    import httpx

    again = httpx.post(f"{service.url}/x", json=None, headers={"Idempotency-Key": f"{exe.id}-call"}).json()
    assert again == first and service.executed["/x"] == 1


def test_a_failed_step_is_retried_alone_and_the_execution_continues(db: Any, kit: Kit, service: Service) -> None:
    text = one_call(
        "  - id: after\n    type: call-service\n    depends_on: [call2]\n    config: {url: '{inputs.url}/z'}\n"
        "  - id: call2\n    type: call-service\n    depends_on: [call]\n    retry_policy: {max_attempts: 1}\n"
        "    config: {url: '{inputs.url}/y'}\n"
    )
    kit.runbooks.register(load_runbook_text(text), "admin")
    service.failures["/y"] = 1
    exe = kit.runbooks.run(kit.runbooks.start("one", {"url": service.url}, context=kit.ctx).id)
    assert exe.state == "failed" and exe.step_states["after"] == "skipped"
    exe = kit.runbooks.retry_step(exe.id, "call2", "operator-1", reason="service is back")
    exe = kit.runbooks.run(exe.id)
    assert exe.state == "completed"
    assert (service.calls["/x"], service.calls["/y"], service.calls["/z"]) == (1, 2, 1)


def test_an_event_with_the_correlation_id_completes_the_wait_and_a_missing_one_times_out(
    db: Any, kit: Kit, service: Service
) -> None:
    text = (
        "id: ev\nname: Ev\nversion: '1'\ninputs: {case: {type: string}}\nsteps:\n  - id: wait\n"
        "    type: wait-for-event\n    config: {correlation_id: 'case-{inputs.case}', timeout: 10m,"
        " match: {field: event.payload.ok, operator: eq, value: true}}\n"
    )
    kit.runbooks.register(load_runbook_text(text), "admin")
    first = kit.runbooks.run(kit.runbooks.start("ev", {"case": "1"}, context=kit.ctx).id)
    second = kit.runbooks.run(kit.runbooks.start("ev", {"case": "2"}, context=kit.ctx).id)
    assert first.state == second.state == "awaiting"
    kit.runbooks.send_event("case-1", {"ok": False}, actor="sensor", tenant="acme")
    assert kit.runbooks.run(first.id).state == "awaiting"
    kit.runbooks.send_event("case-1", {"ok": True}, actor="sensor", tenant="acme")
    assert kit.runbooks.run(first.id).step("wait").output == {"ok": True}
    kit.clock.advance(timedelta(minutes=11))
    timed_out = kit.runbooks.run(second.id)
    assert timed_out.state == "failed" and "timed out" in (timed_out.step("wait").error or "")


def test_a_loop_that_never_ends_stops_at_max_iterations_with_a_clear_failure(
    db: Any, kit: Kit, service: Service
) -> None:
    service.answers["/poll"] = {"more": True}
    text = (
        "id: lp\nname: Lp\nversion: '1'\ninputs: {url: {type: string}}\nsteps:\n  - id: poll\n    type: loop\n"
        "    config:\n      continue_while: {field: loop.last.more, operator: eq, value: true}\n"
        "      max_iterations: 4\n      step: {id: p, type: call-service, config: {url: '{inputs.url}/poll'}}\n"
    )
    kit.runbooks.register(load_runbook_text(text), "admin")
    exe = kit.runbooks.run(kit.runbooks.start("lp", {"url": service.url}, context=kit.ctx).id)
    assert exe.state == "failed"
    assert "reached max_iterations (4)" in (exe.step("poll").error or "")
    assert service.calls["/poll"] == 4


def test_cancel_in_the_middle_withdraws_the_approval_and_starts_nothing_more(
    db: Any, kit: Kit, service: Service
) -> None:
    exe = kit.runbooks.run(start_example(kit, service, 9).id)
    action_id = _gate(exe.step("require-approval"))
    exe = kit.runbooks.cancel(exe.id, "operator-1", "incident closed")
    assert exe.state == "cancelled"
    assert exe.step_states["execute-containment"] == "cancelled"
    assert kit.actions.get(action_id).state == "cancelled"
    assert kit.runbooks.run(exe.id).state == "cancelled" and service.calls["/isolate"] == 0


def test_pause_stops_new_steps_until_resume(db: Any, kit: Kit, service: Service) -> None:
    exe = start_example(kit, service, 2)
    kit.runbooks.pause(exe.id, "operator-1", "checking something")
    assert kit.runbooks.run(exe.id).state == "paused" and service.calls["/enrich"] == 0
    kit.runbooks.resume(exe.id, "operator-1", "done checking")
    assert kit.runbooks.run(exe.id).state == "completed"


def test_replay_runs_a_new_execution_with_the_same_inputs(db: Any, kit: Kit, service: Service) -> None:
    exe = kit.runbooks.run(start_example(kit, service, 2).id)
    again = kit.runbooks.run(kit.runbooks.replay(exe.id, "operator-1").id)
    assert again.id != exe.id and again.replay_of == exe.id
    assert again.inputs == exe.inputs and again.state == "completed"
    assert service.calls["/monitor"] == 2


def test_the_global_timeout_ends_a_waiting_execution_cleanly(db: Any, kit: Kit, service: Service) -> None:
    exe = kit.runbooks.run(start_example(kit, service, 9).id)
    kit.clock.advance(timedelta(hours=1, minutes=1))
    exe = kit.runbooks.run(exe.id)
    assert exe.state == "timed_out"
    assert exe.step_states["require-approval"] == "cancelled"
    assert exe.step_states["execute-containment"] == "cancelled"
