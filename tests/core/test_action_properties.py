"""Property: whatever the sequence of operations, nothing reaches `executing` without the decision the policy
required (an `allow`, a quorum of approvals bound to the current action, or a timeout action of `approve`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saferails import transitions
from saferails.actions.service import Proposal
from saferails.clock import ManualClock
from saferails.errors import SaferailsError
from saferails.policy import load_policy_text
from saferails.store.db import transaction
from tests.support import TIMING_CHECKS
from tests.support.approvals import coded_service

POLICY = """
version: "prop-1"
impact: {default: low, types: {reassign_manager: high, team_restructure: high}}
approval_defaults: {approvers: {groups: [approvers]}, min_approvals: 1, timeout: 2h, timeout_action: fail}
rules:
  - {id: high, kind: requires_approval, when: {field: impact, operator: eq, value: high}}
  - id: restructure-two
    kind: requires_approval
    action_types: [team_restructure]
    approval: {approvers: {groups: [approvers]}, min_approvals: 2, timeout: 1h, timeout_action: approve}
  - {id: no-pay, kind: blocked, action_types: [make_payment]}
  - {id: docs, kind: rate_limit, action_types: [create_document], limits: {per_hour: 3}}
"""

PROPOSALS = {
    "reassign_manager": {"new_manager_id": "m"},
    "team_restructure": {"new_team_id": "t"},
    "create_document": {"path": "a.md", "content": "x"},
    "make_payment": {"amount": "1", "currency": "EUR", "payee": "p"},
}
PEOPLE = ["agent", "ann", "ben", "cat", "mallory"]

operation = st.one_of(
    st.tuples(st.just("propose"), st.sampled_from(sorted(PROPOSALS)), st.sampled_from(PEOPLE)),
    st.tuples(st.just("approve"), st.integers(0, 20), st.sampled_from(PEOPLE)),
    st.tuples(st.just("reject"), st.integers(0, 20), st.sampled_from(PEOPLE)),
    st.tuples(st.just("advance"), st.integers(1, 180), st.just("")),
    st.tuples(st.just("expire"), st.just(0), st.just("")),
    st.tuples(st.just("execute"), st.integers(0, 20), st.just("")),
)


def _may_execute(view: Any) -> bool:
    decision = view.decision["outcome"]
    if decision == "allow":
        return True
    if decision != "needs_approval":
        return False
    timed_approve = (
        view.timeout_action == "approve"
        and view.approval_deadline is not None
        and view.updated_at >= view.approval_deadline
    )
    return len(set(view.valid_approvers)) >= view.min_approvals or timed_approve


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, *TIMING_CHECKS])
@given(ops=st.lists(operation, min_size=1, max_size=30))
def test_no_sequence_of_operations_executes_an_action_without_its_required_decision(
    sqlite_db: Any, ops: list[tuple[str, Any, str]]
) -> None:
    clock = ManualClock()
    svc = coded_service(sqlite_db.sessions, load_policy_text(POLICY), clock)
    for name in ("ann", "ben", "cat"):
        svc.upsert_principal(name, groups=["approvers"])
    ids: list[str] = []
    for kind, arg, who in ops:
        try:
            if kind == "propose":
                ids.append(svc.propose(Proposal(action_type=arg, target="t", params=PROPOSALS[arg], proposer=who)).id)
            elif kind in {"approve", "reject"} and ids:
                action_id = ids[arg % len(ids)]
                if kind == "approve":
                    svc.approve(action_id, who)
                else:
                    svc.reject(action_id, who, reason="no")
            elif kind == "advance":
                clock.advance(timedelta(minutes=arg))
            elif kind == "expire":
                svc.expire_due()
            elif kind == "execute" and ids:
                action_id = ids[arg % len(ids)]
                with transaction(sqlite_db.sessions) as session:
                    transitions.transition(
                        session,
                        "action",
                        action_id,
                        "executing",
                        actor="test",
                        event="execution_started",
                        now=clock.now(),
                    )
                assert _may_execute(svc.get(action_id))
        except SaferailsError:
            pass
    for action_id in ids:
        view = svc.get(action_id)
        if view.state == "executing":
            assert _may_execute(view)
