"""One-time approval codes through the real ActionService on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from saferails.actions.service import ActionService, Proposal
from saferails.approvals import (
    ApprovalCode,
    ApprovalCodes,
    approval_notifications,
    authorised_approvers,
    normalise_code,
)
from saferails.approvals.codes import PUBLIC_REASON, ApprovalCodesUnavailable
from saferails.clock import ManualClock
from saferails.errors import (
    ApprovalCodeInvalid,
    ApprovalExpired,
    ConfigurationError,
    PermissionDenied,
    SelfApprovalRefused,
)
from saferails.policy import Policy, default_policy, load_policy_text
from saferails.store.db import transaction
from saferails.store.tables import Action, Approval

SECRET = b"s" * 32 + b"-test-approval-secret"

TWO_OF_THREE = """
version: "test-2of3"
impact: {default: low, types: {reassign_manager: high}}
rules:
  - id: two-approvers
    kind: requires_approval
    action_types: [reassign_manager]
    approval: {approvers: {groups: [approvers]}, min_approvals: 2, timeout: 1h}
"""

WAIVED = """
version: "test-waived"
impact: {default: low, types: {reassign_manager: high}}
rules:
  - id: demo-no-codes
    kind: requires_approval
    action_types: [reassign_manager]
    approval: {approvers: {groups: [approvers]}, require_codes: false,
               codes_waiver_reason: "demo data only"}
"""


class World:
    def __init__(self, db: Any, clock: ManualClock, policy: Policy) -> None:
        self.db = db
        self.clock = clock
        self.codes = ApprovalCodes(SECRET, clock)
        self.service = ActionService(db.sessions, policy, clock, code_verifier=self.codes.verify)
        for name in ("alice", "bob", "carol"):
            self.service.upsert_principal(name, email=f"{name}@example.com", groups=["approvers"])
        self.service.upsert_principal("agent-1", groups=["approvers", "agents"])
        self.service.upsert_principal("mallory", email="mallory@example.com", groups=["interns"])

    def propose(self) -> str:
        view = self.service.propose(Proposal(action_type="reassign_manager", target="emp_1",
                                             params={"new_manager_id": "mgr_2"}, proposer="agent-1",
                                             reason="team lead left"))
        assert view.state == "pending_approval"
        return view.id

    def issue(self, action_id: str, approvers: list[str] | None = None) -> dict[str, str]:
        with transaction(self.db.sessions) as session:
            return self.codes.issue_for(session, action_id, approvers)

    def approvals(self, action_id: str) -> list[tuple[str, str]]:
        with transaction(self.db.sessions) as session:
            rows = session.scalars(sa.select(Approval).where(Approval.action_id == action_id)).all()
            return sorted((a.approver, a.decision) for a in rows)

    def verify(self, action_id: str, approver: str, code: str | None) -> None:
        with transaction(self.db.sessions) as session:
            row = session.get(Action, action_id)
            assert row is not None
            self.codes.verify(session, row, approver, code, self.clock.now())


@pytest.fixture
def world(db: Any, clock: ManualClock) -> World:
    return World(db, clock, default_policy())


def refusal_reason(excinfo: pytest.ExceptionInfo[ApprovalCodeInvalid]) -> str:
    assert excinfo.value.message == PUBLIC_REASON
    return str(excinfo.value.details["internal_reason"])


def test_a_valid_code_approves_the_action(world: World) -> None:
    action_id = world.propose()
    codes = world.issue(action_id)
    view = world.service.approve(action_id, "alice", code=codes["alice"], reason="ok")
    assert view.state == "approved"
    assert world.approvals(action_id) == [("alice", "approve")]


def test_every_authorised_approver_gets_a_distinct_code_and_the_proposer_none(world: World) -> None:
    action_id = world.propose()
    codes = world.issue(action_id)
    assert sorted(codes) == ["alice", "bob", "carol"]  # agent-1 is in the group but proposed the action
    assert len(set(codes.values())) == 3
    assert all(len(normalise_code(c)) == 12 for c in codes.values())


def test_codes_can_be_issued_to_named_members_and_groups_but_not_to_outsiders(world: World) -> None:
    action_id = world.propose()
    assert sorted(world.issue(action_id, ["group:approvers"])) == ["alice", "bob", "carol"]
    assert sorted(world.issue(action_id, ["bob", "agent-1"])) == ["bob"]
    with pytest.raises(PermissionDenied):
        world.issue(action_id, ["alice", "mallory"])


def test_a_forged_code_is_refused_and_writes_nothing(world: World) -> None:
    action_id = world.propose()
    codes = world.issue(action_id)
    with pytest.raises(ApprovalCodeInvalid) as excinfo:
        world.service.approve(action_id, "alice", code="AAAA-BBBB-CCCC")
    assert refusal_reason(excinfo) == "mismatch"
    assert world.approvals(action_id) == []
    assert world.service.approve(action_id, "alice", code=codes["alice"]).state == "approved"


def test_an_approval_without_a_code_is_refused_when_codes_are_required(world: World) -> None:
    action_id = world.propose()
    world.issue(action_id)
    with pytest.raises(ApprovalCodeInvalid) as excinfo:
        world.service.approve(action_id, "alice")
    assert refusal_reason(excinfo) == "missing"
    assert world.approvals(action_id) == []


def test_the_code_of_another_approver_is_refused(world: World) -> None:
    action_id = world.propose()
    codes = world.issue(action_id)
    with pytest.raises(ApprovalCodeInvalid) as excinfo:
        world.service.approve(action_id, "alice", code=codes["bob"])
    assert refusal_reason(excinfo) == "mismatch"
    assert world.approvals(action_id) == []


def test_a_code_never_issued_to_the_approver_is_refused(world: World) -> None:
    action_id = world.propose()
    codes = world.issue(action_id, ["bob"])
    with pytest.raises(ApprovalCodeInvalid) as excinfo:
        world.service.approve(action_id, "alice", code=codes["bob"])
    assert refusal_reason(excinfo) == "not_issued"


def test_a_replayed_code_is_refused_on_its_second_use(db: Any, clock: ManualClock) -> None:
    world = World(db, clock, load_policy_text(TWO_OF_THREE))
    action_id = world.propose()
    codes = world.issue(action_id)
    assert world.service.approve(action_id, "alice", code=codes["alice"]).state == "pending_approval"
    with pytest.raises(ApprovalCodeInvalid) as excinfo:
        world.service.approve(action_id, "alice", code=codes["alice"])
    assert refusal_reason(excinfo) == "already_used"
    assert world.approvals(action_id) == [("alice", "approve")]
    assert world.service.approve(action_id, "bob", code=codes["bob"]).state == "approved"


def test_a_code_is_single_use_at_the_codes_level(world: World) -> None:
    action_id = world.propose()
    codes = world.issue(action_id)
    world.verify(action_id, "carol", codes["carol"])
    with pytest.raises(ApprovalCodeInvalid) as excinfo:
        world.verify(action_id, "carol", codes["carol"])
    assert refusal_reason(excinfo) == "already_used"


def test_an_expired_code_is_refused(world: World) -> None:
    action_id = world.propose()
    codes = world.issue(action_id)
    world.clock.advance(timedelta(hours=24))
    with pytest.raises(ApprovalCodeInvalid) as excinfo:
        world.verify(action_id, "alice", codes["alice"])
    assert refusal_reason(excinfo) == "expired"
    with pytest.raises(ApprovalExpired):
        world.service.approve(action_id, "alice", code=codes["alice"])
    assert world.approvals(action_id) == []


def test_a_code_for_a_changed_action_is_refused(world: World) -> None:
    action_id = world.propose()
    codes = world.issue(action_id)
    with transaction(world.db.sessions) as session:
        row = session.get(Action, action_id)
        assert row is not None
        row.action_hash = "0" * 64  # an amended action: type, target or params changed
    with pytest.raises(ApprovalCodeInvalid) as excinfo:
        world.service.approve(action_id, "alice", code=codes["alice"])
    assert refusal_reason(excinfo) == "action_changed"
    assert world.approvals(action_id) == []


def test_a_reissued_code_replaces_the_old_one(world: World) -> None:
    action_id = world.propose()
    first = world.issue(action_id)
    second = world.issue(action_id)
    with pytest.raises(ApprovalCodeInvalid):
        world.service.approve(action_id, "alice", code=first["alice"])
    assert world.service.approve(action_id, "alice", code=second["alice"]).state == "approved"


def test_codes_are_accepted_however_the_person_types_them(world: World) -> None:
    action_id = world.propose()
    code = world.issue(action_id)["alice"]
    typed = code.replace("-", " ").lower().replace("1", "l").replace("0", "o")
    assert world.service.approve(action_id, "alice", code=typed).state == "approved"


def test_waived_codes_approve_without_a_code(db: Any, clock: ManualClock) -> None:
    world = World(db, clock, load_policy_text(WAIVED))
    action_id = world.propose()
    assert world.issue(action_id) == {}
    assert world.service.approve(action_id, "alice").state == "approved"


def test_the_store_never_holds_a_plaintext_code(world: World) -> None:
    action_id = world.propose()
    codes = world.issue(action_id)
    with world.db.engine.connect() as conn:
        stored = " ".join(str(v) for row in conn.execute(sa.select(ApprovalCode.__table__)) for v in row)
        audit = " ".join(str(v) for row in conn.execute(sa.text("SELECT details FROM audit_log")) for v in row)
    for code in codes.values():
        for form in (code, normalise_code(code), code.lower()):
            assert form not in stored
            assert form not in audit


def test_codes_are_only_issued_while_an_action_waits_for_approval(world: World) -> None:
    action_id = world.propose()
    codes = world.issue(action_id)
    world.service.approve(action_id, "alice", code=codes["alice"])
    with pytest.raises(ApprovalCodesUnavailable):
        world.issue(action_id)


def test_each_approver_is_told_what_who_why_impact_rules_code_and_deadline(world: World) -> None:
    action_id = world.propose()
    with transaction(world.db.sessions) as session:
        row = session.get(Action, action_id)
        assert row is not None
        codes = world.codes.issue(session, row)
        notes = approval_notifications(session, row, codes)
    assert [n.recipients[0].email for n in notes] == ["alice@example.com", "bob@example.com", "carol@example.com"]
    alice = notes[0]
    for expected in ("reassign_manager", "emp_1", "mgr_2", "agent-1", "team lead left", "high",
                     "high-impact-needs-approval", codes["alice"], "2026-11-23T09:00:00+00:00"):
        assert expected in alice.text
    assert codes["bob"] not in alice.text
    assert alice.data["code"] == codes["alice"]


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        ApprovalCodes(b"too short")


MIXED = """
version: "test-mixed"
impact: {default: low, types: {reassign_manager: high}}
rules:
  - id: named-and-group
    kind: requires_approval
    action_types: [reassign_manager]
    approval: {approvers: {users: [dave, agent-1], groups: [approvers]}, min_approvals: 9, require_codes: false,
               codes_waiver_reason: "who may approve is under test, not the code"}
"""


def test_code_issuing_and_approve_agree_on_who_may_approve(db: Any, clock: ManualClock) -> None:
    """One rule decides: everyone code issuing names may approve, and everyone else is refused by approve."""
    world = World(db, clock, load_policy_text(MIXED))
    world.service.upsert_principal("dave", groups=["interns"])
    action_id = world.propose()
    with transaction(db.sessions) as session:
        row = session.get(Action, action_id)
        assert row is not None
        listed = set(authorised_approvers(session, row))
    assert listed == {"alice", "bob", "carol", "dave"}  # named user, group members; never the proposer agent-1
    for who in ("alice", "bob", "carol", "dave", "agent-1", "mallory", "nobody-at-all"):
        try:
            world.service.approve(action_id, who, reason="checking who may decide")
            allowed = True
        except (PermissionDenied, SelfApprovalRefused):
            allowed = False
        assert allowed == (who in listed), who
