"""Refused approval attempts are audited and, after five, lock that approver out of that action for a while."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from saferails.actions.models import Proposal
from saferails.approvals.lockout import Lockout
from saferails.clock import ManualClock
from saferails.errors import ApprovalCodeInvalid, ApprovalLockedOut
from saferails.policy import default_policy
from saferails.store.tables import AuditRecord
from tests.support.approvals import CodedActionService, coded_service


def make(db: Any, clock: ManualClock, **kwargs: Any) -> CodedActionService:
    svc = coded_service(db.sessions, default_policy(), clock, **kwargs)
    for name in ("alice", "bob"):
        svc.upsert_principal(name, groups=["approvers"])
    return svc


def propose(svc: CodedActionService, target: str = "emp_1") -> str:
    return svc.propose(Proposal(action_type="reassign_manager", target=target, params={"new_manager_id": "m"},
                                proposer="agent-1")).id


def fail(svc: CodedActionService, action_id: str, approver: str, times: int) -> None:
    for _ in range(times):
        with pytest.raises(ApprovalCodeInvalid):
            svc.approve(action_id, approver, code="ZZZZ-ZZZZ-ZZZZ")


def test_a_lockout_holds_one_approver_on_one_action_only(db: Any, clock: ManualClock) -> None:
    svc = make(db, clock)
    first, second = propose(svc), propose(svc, "emp_2")
    fail(svc, first, "alice", 5)
    with pytest.raises(ApprovalLockedOut) as err:
        svc.approve(first, "alice")
    assert err.value.http_status == 429 and "locked_until" in err.value.details
    assert svc.approve(second, "alice").state == "approved"  # another action
    assert svc.approve(first, "bob").state == "approved"  # another approver


def test_four_failures_do_not_lock_and_failures_older_than_the_window_do_not_count(
    db: Any, clock: ManualClock
) -> None:
    svc = make(db, clock)
    action = propose(svc)
    fail(svc, action, "alice", 4)
    clock.advance(timedelta(minutes=16))
    fail(svc, action, "alice", 4)
    assert svc.approve(action, "alice").state == "approved"


def test_attempts_during_a_lockout_are_audited_but_do_not_extend_it(db: Any, clock: ManualClock) -> None:
    svc = make(db, clock, lockout=Lockout(threshold=2, window=timedelta(minutes=10)))
    action = propose(svc)
    fail(svc, action, "alice", 2)
    for _ in range(3):
        clock.advance(timedelta(minutes=3))
        with pytest.raises(ApprovalLockedOut):
            svc.approve(action, "alice")
    clock.advance(timedelta(minutes=1))  # 10 minutes after the two failures
    assert svc.approve(action, "alice").state == "approved"
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(AuditRecord.event, AuditRecord.details)
                            .where(AuditRecord.entity_id == action, AuditRecord.actor == "alice")
                            .order_by(AuditRecord.sequence)).all()
    events = [e for e, _ in rows]
    assert events == ["approval_refused"] * 2 + ["approval_locked_out"] * 3 + ["approved"]
    assert json.loads(rows[0][1])["internal_reason"] == "mismatch"
    assert json.loads(rows[0][1])["channel"] == "api"


def test_a_lockout_needs_a_positive_threshold_and_window() -> None:
    with pytest.raises(ValueError):
        Lockout(threshold=0)
    with pytest.raises(ValueError):
        Lockout(window=timedelta(0))
