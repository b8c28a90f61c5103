"""Helpers shared by the sweep tests: a policy with one high-impact type per timeout action, and the store."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from saferails.actions.service import ActionService, Proposal
from saferails.clock import ManualClock
from saferails.policy import load_policy_text
from saferails.store.db import transaction
from saferails.store.tables import Action, AuditRecord

# Three high-impact types, one per timeout action; everything else low impact and auto-approved.
POLICY = """
version: "sweep-test"
impact: {default: low, types: {reassign_manager: high, team_restructure: high, role_change: high}}
approval_defaults: {approvers: {groups: [approvers]}, min_approvals: 1, timeout: 1h, timeout_action: fail,
                    require_codes: false, codes_waiver_reason: "sweep tests are about timeouts"}
rules:
  - id: restructure-rejects-on-timeout
    kind: requires_approval
    action_types: [team_restructure]
    approval: {approvers: {groups: [approvers]}, min_approvals: 1, timeout: 1h, timeout_action: reject,
               require_codes: false, codes_waiver_reason: "sweep tests are about timeouts"}
  - id: role-change-approves-on-timeout
    kind: requires_approval
    action_types: [role_change]
    approval: {approvers: {groups: [approvers]}, min_approvals: 1, timeout: 1h, timeout_action: approve,
               require_codes: false, codes_waiver_reason: "sweep tests are about timeouts"}
  - id: reassignment-fails-on-timeout
    kind: requires_approval
    action_types: [reassign_manager]
"""


def service(db: Any, clock: ManualClock) -> ActionService:
    svc = ActionService(db.sessions, load_policy_text(POLICY), clock)
    svc.upsert_principal("alice", groups=["approvers"])
    return svc


def propose_pending(svc: ActionService, n: int, action_type: str = "reassign_manager") -> list[str]:
    params = {
        "reassign_manager": {"new_manager_id": "mgr_2"},
        "team_restructure": {"new_team_id": "team_9"},
        "role_change": {"new_role": "lead"},
    }[action_type]
    proposals = [Proposal(action_type=action_type, target=f"emp_{i}", params=params, proposer="agent-1",
                          reason="sweep test") for i in range(n)]
    views = svc.propose_many(proposals)
    assert all(v.state == "pending_approval" for v in views)
    return [v.id for v in views]


def set_flow_run(db: Any, action_id: str, flow_run_id: str | None) -> None:
    """Test setup: say which (possibly long gone) flow run carried the action."""
    with transaction(db.sessions) as session:
        session.execute(sa.update(Action).where(Action.id == action_id).values(flow_run_id=flow_run_id))


def events(db: Any, action_id: str) -> list[str]:
    with transaction(db.sessions) as session:
        stmt = sa.select(AuditRecord.event).where(AuditRecord.entity_id == action_id).order_by(AuditRecord.sequence)
        return list(session.execute(stmt).scalars())
