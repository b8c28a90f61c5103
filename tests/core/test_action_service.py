"""The action service on both backends: proposals, policy outcomes, approvals, refusals that write nothing."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from saferails.actions.repository import ActionFilter
from saferails.actions.service import Proposal
from saferails.clock import ManualClock
from saferails.errors import (
    ActionChanged,
    ApprovalExpired,
    IdempotencyConflict,
    InvalidInput,
    InvalidParams,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    SelfApprovalRefused,
    UnknownActionType,
)
from saferails.policy import default_policy, load_policy_text
from saferails.store.tables import Action, Approval, AuditRecord, OutboxEvent
from tests.support.approvals import CodedActionService, coded_service, reissue

TWO_OF_THREE = """
version: "test-2of3"
impact: {default: low, types: {team_restructure: high}}
approval_defaults: {approvers: {users: [ann, ben, cat]}, min_approvals: 2, timeout: 24h, timeout_action: fail}
rules:
  - id: high-needs-two
    kind: requires_approval
    when: {field: impact, operator: eq, value: high}
  - id: purchases-approve-on-timeout
    kind: requires_approval
    action_types: [make_purchase]
    approval: {approvers: {users: [ann]}, min_approvals: 1, timeout: 1h, timeout_action: approve}
"""


def service(db: Any, clock: ManualClock, policy_text: str | None = None) -> CodedActionService:
    policy = load_policy_text(policy_text) if policy_text else default_policy()
    svc = coded_service(db.sessions, policy, clock)
    for name in ("alice", "bob", "carol"):
        svc.upsert_principal(name, groups=["approvers"])
    svc.upsert_principal("buyer", kyc_verified=True)
    return svc


def counts(db: Any) -> tuple[int, int, int, int]:
    with db.engine.connect() as conn:
        return tuple(
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (Action, Approval, AuditRecord, OutboxEvent)
        )


def refusal_written_alone(db: Any, before: tuple[int, int, int, int], action_id: str) -> tuple[str, str]:
    """Asserts that a refused attempt wrote only its audit record (and the outbox event announcing it): no
    action, no approval. Returns who the refused record names and the refusal's error code."""
    actions, approvals, records, events = counts(db)
    assert (actions, approvals, records, events) == (before[0], before[1], before[2] + 1, before[3] + 1)
    with db.engine.connect() as conn:
        last = conn.execute(sa.select(AuditRecord).order_by(AuditRecord.sequence.desc()).limit(1)).one()
    assert (last.event, last.entity_id) == ("approval_refused", action_id)
    return last.actor, json.loads(last.details)["error_code"]


def reassign(proposer: str = "agent-7", **extra: Any) -> Proposal:
    return Proposal(
        action_type="reassign_manager",
        target="emp_1",
        params={"new_manager_id": "mgr_2"},
        proposer=proposer,
        reason="improve team dynamics",
        **extra,
    )


def email(n: int = 0) -> Proposal:
    return Proposal(
        action_type="send_email",
        target="agent-mailbox",
        proposer="agent-7",
        params={"to": ["x@example.com"], "subject": f"follow-up {n}", "body": "thanks"},
    )


@pytest.mark.parametrize(
    ("action_type", "params", "impact", "state"),
    [
        ("reassign_manager", {"new_manager_id": "m"}, "high", "pending_approval"),
        ("team_restructure", {"new_team_id": "t"}, "high", "pending_approval"),
        ("role_change", {"new_role": "lead"}, "high", "pending_approval"),
        ("reduce_meetings", {"max_weekly_meeting_hours": 10}, "medium", "approved"),
        ("redistribute_tasks", {"to_employee_ids": ["e2"]}, "medium", "approved"),
        ("schedule_focus_time", {"start": "2026-11-23T09:00:00Z", "end": "2026-11-23T11:00:00Z"}, "medium", "approved"),
        ("create_document", {"path": "notes/a.md", "content": "hi"}, "low", "approved"),
        ("move_file", {"source": "a.txt", "destination": "b.txt"}, "low", "pending_approval"),
        ("make_payment", {"amount": "10", "currency": "EUR", "payee": "acme"}, "low", "blocked"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_seed_action_type_gets_its_seed_impact_and_outcome(
    db: Any, clock: ManualClock, action_type: str, params: dict[str, Any], impact: str, state: str
) -> None:
    svc = service(db, clock)
    action = svc.propose(Proposal(action_type=action_type, target="emp_1", params=params, proposer="agent-7"))
    assert (action.impact, action.state) == (impact, state)
    assert action.decision["policy_version"] == default_policy().version


def test_an_unknown_action_type_is_refused_and_nothing_is_written(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock)
    before = counts(db)
    with pytest.raises(UnknownActionType) as err:
        svc.propose(Proposal(action_type="launch_rocket", target="moon", proposer="agent-7"))
    assert err.value.code == "UNKNOWN_ACTION_TYPE" and "launch_rocket" in err.value.message
    assert counts(db) == before


def test_invalid_params_are_refused_naming_each_field_and_nothing_is_written(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock)
    before = counts(db)
    with pytest.raises(InvalidParams) as err:
        svc.propose(
            Proposal(
                action_type="send_email",
                target="m",
                proposer="agent-7",
                params={"to": ["not-an-address"], "subject": "", "bogus": 1},
            )
        )
    assert {"to.0", "subject", "bogus"} <= {p.split(":")[0] for p in err.value.details["problems"]}
    assert counts(db) == before


def test_a_high_impact_action_waits_for_approval_then_is_approved_with_the_trail(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock)
    action = svc.propose(reassign())
    assert action.state == "pending_approval" and action.min_approvals == 1
    assert action.approval_deadline == clock.now() + timedelta(hours=24)
    approved = svc.approve(action.id, "alice", reason="looks right")
    assert approved.state == "approved" and approved.valid_approvers == ("alice",)
    with db.engine.connect() as conn:
        events = (
            conn.execute(
                sa.select(AuditRecord.event).where(AuditRecord.entity_id == action.id).order_by(AuditRecord.sequence)
            )
            .scalars()
            .all()
        )
    assert events == ["action_proposed", "approval_requested", "approval_codes_issued", "approved"]


def test_two_of_three_counts_a_repeated_approver_once(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock, TWO_OF_THREE)
    action = svc.propose(
        Proposal(action_type="team_restructure", target="emp_1", params={"new_team_id": "t2"}, proposer="agent-7")
    )
    assert action.min_approvals == 2
    assert svc.approve(action.id, "ann").state == "pending_approval"
    # A code is single use: approving again takes a fresh one (a re-sent code); it still counts once.
    again = svc.approve(action.id, "ann", code=reissue(svc, action.id, "ann"))
    assert again.state == "pending_approval" and again.valid_approvers == ("ann",)
    assert svc.approve(action.id, "ben").state == "approved"


def test_the_proposer_may_not_approve_their_own_action(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock)
    svc.upsert_principal("agent-7", groups=["approvers"])
    action = svc.propose(reassign())
    before = counts(db)
    with pytest.raises(SelfApprovalRefused):
        svc.approve(action.id, "agent-7")
    assert svc.get(action.id).state == "pending_approval"
    assert refusal_written_alone(db, before, action.id) == ("agent-7", "SELF_APPROVAL_REFUSED")


def test_an_unauthorised_approver_is_refused_and_nothing_is_written(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock)
    action = svc.propose(reassign())
    before = counts(db)
    with pytest.raises(PermissionDenied) as err:
        svc.approve(action.id, "mallory")
    assert err.value.code == "PERMISSION_DENIED" and "mallory" in err.value.message
    assert refusal_written_alone(db, before, action.id) == ("mallory", "PERMISSION_DENIED")


def test_one_rejection_ends_the_approval(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock, TWO_OF_THREE)
    action = svc.propose(
        Proposal(action_type="team_restructure", target="e", params={"new_team_id": "t"}, proposer="agent-7")
    )
    svc.approve(action.id, "ann")
    rejected = svc.reject(action.id, "ben", reason="not now")
    assert rejected.state == "rejected"
    with pytest.raises(InvalidTransition):
        svc.approve(action.id, "cat")


def test_an_approval_for_a_different_version_of_the_action_is_refused(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock)
    action = svc.propose(reassign())
    with pytest.raises(ActionChanged):
        svc.approve(action.id, "alice", action_hash="0" * 64)
    assert svc.approve(action.id, "alice", action_hash=action.action_hash).state == "approved"


def test_an_approval_after_the_deadline_is_refused_and_the_timeout_applies(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock)
    action = svc.propose(reassign())
    clock.advance(timedelta(hours=24, seconds=1))
    with pytest.raises(ApprovalExpired):
        svc.approve(action.id, "alice")
    assert [a.state for a in svc.expire_due()] == ["timed_out"]
    assert svc.get(action.id).state == "timed_out"


def test_a_timeout_action_of_approve_approves_when_nobody_answers(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock, TWO_OF_THREE)
    svc.upsert_principal("agent-7", kyc_verified=True)
    action = svc.propose(
        Proposal(
            action_type="make_purchase",
            target="acct",
            proposer="agent-7",
            params={"item": "laptop", "quantity": 1, "max_total": "1500", "currency": "EUR", "vendor": "acme"},
        )
    )
    assert action.state == "pending_approval"
    clock.advance(timedelta(hours=1))
    assert svc.resolve_timeout(action.id).state == "approved"


def test_the_51st_email_in_an_hour_is_refused_and_the_refusal_is_recorded(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock)
    results = svc.propose_many([email(i) for i in range(50)])
    assert {a.state for a in results} == {"approved"}
    refused = svc.propose(email(51))
    assert refused.state == "blocked" and refused.decision["code"] == "RATE_LIMITED"
    assert refused.decision["retry_after"] is not None
    clock.advance(timedelta(hours=1, seconds=1))
    assert svc.propose(email(52)).state == "approved"


def test_the_same_idempotency_key_returns_the_same_action_and_a_different_action_conflicts(
    db: Any, clock: ManualClock
) -> None:
    svc = service(db, clock)
    first = svc.propose(reassign(idempotency_key="k-1"))
    assert svc.propose(reassign(idempotency_key="k-1")).id == first.id
    with pytest.raises(IdempotencyConflict):
        svc.propose(
            Proposal(
                action_type="role_change",
                target="emp_1",
                params={"new_role": "x"},
                proposer="agent-7",
                idempotency_key="k-1",
            )
        )


def test_a_purchase_is_denied_without_kyc_and_allowed_with_it(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock)
    params = {"item": "desk", "quantity": 1, "max_total": "300", "currency": "EUR", "vendor": "acme"}
    denied = svc.propose(Proposal(action_type="make_purchase", target="acct", params=params, proposer="agent-7"))
    assert denied.state == "blocked" and denied.decision["code"] == "KYC_REQUIRED"
    allowed = svc.propose(Proposal(action_type="make_purchase", target="acct", params=params, proposer="buyer"))
    assert allowed.state == "approved"


def test_racing_approvers_and_a_timeout_sweep_give_exactly_one_outcome(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock)
    actions = [svc.propose(reassign(proposer=f"agent-{i}")) for i in range(6)]
    clock.advance(timedelta(hours=24))  # deadline reached: the sweep may time them out, approvals are refused
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            result = fn(*args, **kwargs)
            with lock:
                outcomes.append(result.state)
        except Exception as exc:  # noqa: BLE001 - the losers must fail with a typed error
            with lock:
                outcomes.append(type(exc).__name__)

    threads = []
    for a in actions:
        threads += [
            threading.Thread(target=attempt, args=(svc.approve, a.id, "alice")),
            threading.Thread(target=attempt, args=(svc.reject, a.id, "bob"), kwargs={"reason": "no"}),
            threading.Thread(target=attempt, args=(svc.resolve_timeout, a.id)),
        ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = [svc.get(a.id).state for a in actions]
    assert final == ["timed_out"] * 6
    assert outcomes.count("timed_out") == 6


def test_racing_approve_and_reject_before_the_deadline_give_exactly_one_outcome(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock)
    actions = [svc.propose(reassign(proposer=f"agent-{i}")) for i in range(8)]
    barrier = threading.Barrier(2)
    errors: list[str] = []

    def run(fn: Any, *args: Any, **kwargs: Any) -> None:
        barrier.wait()
        try:
            fn(*args, **kwargs)
        except InvalidTransition as exc:
            errors.append(exc.code)

    for a in actions:
        t1 = threading.Thread(target=run, args=(svc.approve, a.id, "alice"))
        t2 = threading.Thread(target=run, args=(svc.reject, a.id, "bob"), kwargs={"reason": "no"})
        t1.start()
        t2.start()
        t1.join()
        t2.join()
    states = [svc.get(a.id).state for a in actions]
    assert set(states) <= {"approved", "rejected"}
    assert len(errors) == len(actions)  # each loser was told the action had already been decided
    with db.engine.connect() as conn:
        decided = conn.execute(
            sa.select(sa.func.count()).select_from(AuditRecord).where(AuditRecord.event.in_(["approved", "rejected"]))
        ).scalar_one()
    assert decided == len(actions)


def test_a_caller_supplied_approval_requirement_gates_the_action_like_a_policy_rule(
    db: Any, clock: ManualClock
) -> None:
    from saferails.policy import ApprovalRequirement

    svc = service(db, clock)
    requirement = ApprovalRequirement(users=frozenset({"soc-1", "soc-2"}), groups=frozenset(), min_approvals=2,
                                      timeout=timedelta(minutes=30), timeout_action="reject", require_codes=False,
                                      rule_ids=("runbook:investigate-threat:require-approval",))
    view = svc.request_approval(Proposal(action_type="create_document", target="case-1",
                                         params={"path": "c.md", "content": "x"}, proposer="runbook"),
                                requirement, source="runbook:investigate-threat:require-approval",
                                prompt="High-risk threat detected. Approve containment?")
    assert (view.state, view.min_approvals, view.timeout_action) == ("pending_approval", 2, "reject")
    assert view.approval_deadline == clock.now() + timedelta(minutes=30)
    with pytest.raises(PermissionDenied):
        svc.approve(view.id, "alice")
    svc.approve(view.id, "soc-1")
    assert svc.approve(view.id, "soc-2").state == "approved"
    payment = svc.request_approval(Proposal(action_type="make_payment", target="a", proposer="runbook",
                                            params={"amount": "1", "currency": "EUR", "payee": "p"}),
                                   requirement, source="runbook:x:y")
    assert payment.state == "blocked"


def test_attaching_a_flow_run_is_audited_once_and_a_new_run_records_the_previous_one(
    db: Any, clock: ManualClock
) -> None:
    svc = service(db, clock)
    action = svc.propose(reassign())
    svc.attach_flow_run(action.id, "run-1", actor="system:flow")
    svc.attach_flow_run(action.id, "run-1", actor="system:flow")  # a task retry: nothing new to record
    svc.attach_flow_run(action.id, "run-2", actor="system:flow")
    assert svc.get(action.id).flow_run_id == "run-2"
    with db.engine.connect() as conn:
        details = conn.execute(
            sa.select(AuditRecord.details).where(AuditRecord.entity_id == action.id,
                                                 AuditRecord.event == "flow_run_attached")
            .order_by(AuditRecord.sequence)
        ).scalars().all()
    assert [(d["flow_run_id"], d["previous"]) for d in map(json.loads, details)] == [("run-1", None),
                                                                                     ("run-2", "run-1")]



def test_a_flow_run_attached_at_proposal_is_in_the_same_transaction_and_audited_after_the_decision(
    db: Any, clock: ManualClock
) -> None:
    svc = service(db, clock)
    action = svc.propose(reassign(idempotency_key="k-1"), flow_run_id="run-1", actor="system:flow")
    assert action.flow_run_id == "run-1" and svc.get(action.id).flow_run_id == "run-1"
    again = svc.propose(reassign(idempotency_key="k-1"), flow_run_id="run-2", actor="system:flow")  # a re-run
    assert again.id == action.id and svc.get(action.id).flow_run_id == "run-2"
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.select(AuditRecord.event, AuditRecord.actor, AuditRecord.details)
            .where(AuditRecord.entity_id == action.id).order_by(AuditRecord.sequence)
        ).all()
    events = [event for event, _, _ in rows]
    # The first attachment is part of the proposal (right after its decision); the re-run's comes last.
    assert events[:3] == ["action_proposed", "approval_requested", "flow_run_attached"]
    assert events[-1] == "flow_run_attached" and events.count("flow_run_attached") == 2
    attached = [(actor, json.loads(d)["flow_run_id"], json.loads(d)["previous"]) for e, actor, d in rows
                if e == "flow_run_attached"]
    assert attached == [("system:flow", "run-1", None), ("system:flow", "run-2", "run-1")]
    with pytest.raises(InvalidInput):  # the run id is an identifier like every *_id argument
        svc.propose(reassign(), flow_run_id="bad id\n")
    assert counts(db)[0] == 1

def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


OUT_OF_BOUNDS: dict[str, dict[str, Any]] = {
    "params-over-64KiB": {"params": {"new_manager_id": "m" * 70_000}},
    "params-nested-40-deep": {"params": {"new_manager_id": "mgr", "x": _nested(40)}},
    "nul-in-a-param": {"params": {"new_manager_id": "mgr\x00"}},
    "lone-surrogate": {"params": {"new_manager_id": "mgr\ud800"}},
    "huge-integer": {"params": {"new_manager_id": "mgr", "n": 10**40}},
    "infinite-float": {"params": {"new_manager_id": "mgr", "f": float("inf")}},
    "nul-in-target": {"target": "emp\x00"},
    "newline-in-target": {"target": "emp\nBcc: x"},
    "proposer-with-spaces": {"proposer": "agent 7"},
    "tenant-too-long": {"tenant": "t" * 101},
    "idempotency-key-with-nul": {"idempotency_key": "k\x00"},
    "action-type-with-dashes": {"action_type": "reassign-manager"},
    "priority-huge": {"priority": 10**30},
    "far-future": {"scheduled_for": "9999-12-31T23:59:59-12:00"},
    "naive-date": {"scheduled_for": "2026-12-01T10:00:00"},
}


@pytest.mark.parametrize("case", sorted(OUT_OF_BOUNDS))
def test_a_proposal_out_of_bounds_is_refused_with_a_typed_error_and_nothing_is_written(
    db: Any, clock: ManualClock, case: str
) -> None:
    svc = service(db, clock)
    before = counts(db)
    fields: dict[str, Any] = {"action_type": "reassign_manager", "target": "emp_1", "proposer": "agent-7",
                              "params": {"new_manager_id": "mgr"}} | OUT_OF_BOUNDS[case]
    with pytest.raises(InvalidInput) as refused:
        svc.propose(Proposal(**fields))
    assert refused.value.code in ("INVALID_INPUT", "INVALID_PARAMS") and refused.value.exit_code == 2
    assert counts(db) == before


def test_reading_with_ids_the_store_cannot_hold_raises_typed_errors(db: Any, clock: ManualClock) -> None:
    svc = service(db, clock)
    for bad in ("a\x00b", "x" * 1000, "\ud800"):
        with pytest.raises((NotFound, InvalidInput)):
            svc.get(bad)
        with pytest.raises(InvalidInput):
            svc.cancel(bad, "ops", reason="r")
    assert svc.list(ActionFilter(offset=2**70, limit=-5)) == []
