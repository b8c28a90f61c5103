"""The agent is the adversary: every way it might approve its own action through a DEFAULT store (no secret
configured, no SMTP) is refused, audited, and leaves the action waiting.

Setting: agent-1 proposes a high-impact action; alice and bob are approvers. The agent may read any file
that is not private to another principal, may type anything into approve, and may run the identity service
with its own credential.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from saferails.actions.models import ActionView, Proposal, action_hash
from saferails.actions.service import ActionService
from saferails.api import Store, open_store
from saferails.clock import ManualClock
from saferails.errors import (
    ApprovalCodeInvalid,
    ApprovalCodesNotConfigured,
    ApprovalError,
    ApprovalExpired,
    ApprovalLockedOut,
    PermissionDenied,
    PolicyInvalid,
    SelfApprovalRefused,
)
from saferails.identity import IdentityService
from saferails.notify import InboxNotifier
from saferails.policy import load_policy_text
from saferails.settings import Settings
from saferails.store.db import transaction
from saferails.store.tables import Action, Approval, AuditRecord

TWO_OF_TWO = """
version: "attack-2of2"
impact: {default: low, types: {reassign_manager: high}}
rules:
  - id: two-approvers
    kind: requires_approval
    action_types: [reassign_manager]
    approval: {approvers: {groups: [approvers]}, min_approvals: 2, timeout: 1h}
"""

WAIVED = """
version: "attack-waived"
impact: {default: low, types: {reassign_manager: high}}
rules:
  - id: in-person
    kind: requires_approval
    action_types: [reassign_manager]
    approval: {approvers: {groups: [approvers]}, require_codes: false,
               codes_waiver_reason: "approved in the weekly meeting, minutes kept"}
"""


@pytest.fixture
def store(db: Any, clock: ManualClock, tmp_path: Path) -> Iterator[Store]:
    settings = Settings(database_url=db.url, policy_path=None, approval_secret=None, data_dir=tmp_path / "data")
    with open_store(settings, clock=clock, upgrade=False) as opened:
        for name in ("alice", "bob"):
            opened.actions.upsert_principal(name, groups=["approvers"])
        yield opened


def propose(store: Store) -> ActionView:
    return store.actions.propose(
        Proposal(action_type="reassign_manager", target="emp_1", params={"new_manager_id": "mgr_2"},
                 proposer="agent-1", reason="reorg")
    )


def code_of(store: Store, approver: str, action_id: str) -> str:
    """The code in ``approver``'s own inbox (what the real approver would type)."""
    notes = InboxNotifier(store.settings.data_dir / "inbox").read(approver)
    codes = [n["data"]["code"] for n in notes if n["entity_id"] == action_id]  # type: ignore[index]
    return str(codes[-1])


def refusals(db: Any, action_id: str) -> list[tuple[str, str, str]]:
    """(actor, error code, internal reason) of every refused attempt audited on the action."""
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.select(AuditRecord)
            .where(AuditRecord.entity_id == action_id, AuditRecord.event.in_(["approval_refused",
                                                                                "approval_locked_out"]))
            .order_by(AuditRecord.sequence)
        ).all()
    return [(r.actor, json.loads(r.details)["error_code"], json.loads(r.details)["internal_reason"]) for r in rows]


def approvals(db: Any, action_id: str) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(Approval)
                                .where(Approval.action_id == action_id)).scalar_one())


def assert_refused_unchanged(store: Store, db: Any, action: ActionView, attempt: Any, error: type[ApprovalError],
                             reason: str, actor: str = "alice") -> None:
    before = approvals(db, action.id)
    with pytest.raises(error) as err:
        attempt()
    assert store.actions.get(action.id).state == "pending_approval"
    assert approvals(db, action.id) == before
    assert refusals(db, action.id)[-1] == (actor, err.value.code, reason)


def test_a_default_store_refuses_an_approval_without_a_code(store: Store, db: Any) -> None:
    action = propose(store)
    assert_refused_unchanged(store, db, action, lambda: store.actions.approve(action.id, "alice"),
                             ApprovalCodeInvalid, "missing")


def test_a_forged_code_is_refused(store: Store, db: Any) -> None:
    action = propose(store)
    assert_refused_unchanged(store, db, action,
                             lambda: store.actions.approve(action.id, "alice", code="0000-0000-0000"),
                             ApprovalCodeInvalid, "mismatch")


def test_another_approvers_code_is_refused(store: Store, db: Any) -> None:
    action = propose(store)
    bobs = code_of(store, "bob", action.id)
    assert_refused_unchanged(store, db, action, lambda: store.actions.approve(action.id, "alice", code=bobs),
                             ApprovalCodeInvalid, "mismatch")


def test_a_code_is_spent_by_its_first_use(db: Any, clock: ManualClock, tmp_path: Path) -> None:
    settings = Settings(database_url=db.url, policy_path=None, approval_secret=None, data_dir=tmp_path / "d")
    with open_store(settings, clock=clock, upgrade=False, policy=load_policy_text(TWO_OF_TWO)) as store:
        for name in ("alice", "bob"):
            store.actions.upsert_principal(name, groups=["approvers"])
        action = propose(store)
        code = code_of(store, "alice", action.id)
        assert store.actions.approve(action.id, "alice", code=code).state == "pending_approval"
        assert_refused_unchanged(store, db, action, lambda: store.actions.reject(action.id, "alice", reason="x",
                                                                                 code=code),
                                 ApprovalCodeInvalid, "already_used")


def test_an_approval_after_the_deadline_is_refused_even_with_the_right_code(
    store: Store, db: Any, clock: ManualClock
) -> None:
    action = propose(store)
    code = code_of(store, "alice", action.id)
    clock.advance(timedelta(hours=24))
    assert_refused_unchanged(store, db, action, lambda: store.actions.approve(action.id, "alice", code=code),
                             ApprovalExpired, "approval_expired")


def test_a_code_for_an_action_changed_behind_the_approvers_back_is_refused(store: Store, db: Any) -> None:
    action = propose(store)
    code = code_of(store, "alice", action.id)
    # Someone with database access swaps the parameters (and recomputes the hash) after the codes went out.
    params = {"new_manager_id": "mallory"}
    with transaction(db.sessions) as session:
        row = session.get(Action, action.id)
        assert row is not None
        row.params, row.action_hash = params, action_hash("reassign_manager", "emp_1", params)
    assert_refused_unchanged(store, db, action, lambda: store.actions.approve(action.id, "alice", code=code),
                             ApprovalCodeInvalid, "action_changed")


def test_five_refused_attempts_lock_the_approver_out_for_a_while(store: Store, db: Any, clock: ManualClock) -> None:
    action = propose(store)
    for guess in range(5):
        with pytest.raises(ApprovalCodeInvalid):
            store.actions.approve(action.id, "alice", code=f"0000-0000-000{guess}")
    right = code_of(store, "alice", action.id)
    assert_refused_unchanged(store, db, action, lambda: store.actions.approve(action.id, "alice", code=right),
                             ApprovalLockedOut, "locked_out")
    # bob is not locked out of this action, and alice's lockout ends with the window.
    clock.advance(timedelta(minutes=15))
    assert store.actions.approve(action.id, "alice", code=right).state == "approved"
    assert [r[1] for r in refusals(db, action.id)].count("APPROVAL_CODE_INVALID") == 5


def test_the_proposer_cannot_approve_its_own_action_even_as_an_approver(store: Store, db: Any) -> None:
    store.actions.upsert_principal("agent-1", groups=["approvers"])
    action = propose(store)
    assert_refused_unchanged(store, db, action, lambda: store.actions.approve(action.id, "agent-1", code="x"),
                             SelfApprovalRefused, "self_approval_refused", actor="agent-1")


def test_the_agent_cannot_create_a_second_identity_to_approve_with(store: Store, db: Any) -> None:
    ids = IdentityService(store.sessions, store.clock)
    admin = ids.authenticate(ids.bootstrap_admin("root").token)
    ids.add_principal(admin, "agent-1", roles=["agent"])
    agent = ids.authenticate(ids.issue_credential(admin, "agent-1").token)
    with pytest.raises(PermissionDenied):
        ids.add_principal(agent, "agent-1-twin", roles=["approver"], groups=["approvers"])
    with pytest.raises(PermissionDenied):
        ids.bootstrap_admin("agent-1-admin")
    action = propose(store)
    assert_refused_unchanged(store, db, action, lambda: store.actions.approve(action.id, "agent-1-twin", code="x"),
                             PermissionDenied, "permission_denied", actor="agent-1-twin")


def test_codes_are_kept_in_private_per_approver_inboxes_and_never_in_a_shared_file(store: Store) -> None:
    action = propose(store)
    inbox = store.settings.data_dir / "inbox"
    assert not (store.settings.data_dir / "notifications.jsonl").exists()
    assert stat.S_IMODE(inbox.stat().st_mode) == 0o700
    files = sorted(p.name for p in inbox.iterdir())
    assert files == ["alice.jsonl", "bob.jsonl"]  # none for the proposer
    for name in files:
        assert stat.S_IMODE((inbox / name).stat().st_mode) == 0o600
    assert code_of(store, "alice", action.id) != code_of(store, "bob", action.id)
    secret = store.settings.data_dir / "keys" / "approval-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_a_service_without_a_code_verifier_refuses_instead_of_approving_unchecked(
    db: Any, clock: ManualClock, store: Store
) -> None:
    action = propose(store)
    bare = ActionService(db.sessions, store.policy, clock)
    assert_refused_unchanged(store, db, action, lambda: bare.approve(action.id, "alice"),
                             ApprovalCodesNotConfigured, "no_code_verifier")


def test_a_policy_waiver_is_explicit_shown_in_the_decision_and_audited(
    db: Any, clock: ManualClock, tmp_path: Path
) -> None:
    with pytest.raises(PolicyInvalid, match="codes_waiver_reason"):
        load_policy_text(WAIVED.replace('codes_waiver_reason: "approved in the weekly meeting, minutes kept"', ""))
    settings = Settings(database_url=db.url, policy_path=None, approval_secret=None, data_dir=tmp_path / "w")
    with open_store(settings, clock=clock, upgrade=False, policy=load_policy_text(WAIVED)) as store:
        store.actions.upsert_principal("alice", groups=["approvers"])
        action = propose(store)
        reason = "approved in the weekly meeting, minutes kept"
        assert action.decision["approval"]["codes_waiver"] == reason
        assert store.actions.approve(action.id, "alice").state == "approved"
    with db.engine.connect() as conn:
        details = conn.execute(sa.select(AuditRecord.details).where(
            AuditRecord.entity_id == action.id, AuditRecord.event == "approved")).scalar_one()
    assert json.loads(details)["codes"] == "waived" and json.loads(details)["codes_waiver"] == reason
