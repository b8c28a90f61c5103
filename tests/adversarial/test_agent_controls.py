"""A paused or budgeted agent trying to carry on anyway (seed 003's fleet controls). Each on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from saferails.actions.models import Proposal
from saferails.clock import ManualClock
from saferails.errors import InvalidTransition
from saferails.policy import ActionRequest, DenyCode, Outcome, PolicyEngine, Principal, default_policy
from saferails.policy.rules import AgentFacts
from tests.agents.conftest import Fleet, open_fleet

PURCHASE = {"item": "gpu", "quantity": 1, "max_total": "150.00", "currency": "EUR", "vendor": "shop"}


@pytest.fixture
def fleet(db: Any, tmp_path: Path, clock: ManualClock) -> Iterator[Fleet]:
    f = open_fleet(db.url, tmp_path, clock)
    yield f
    f.store.close()


def _as_agent(agent: str, action_type: str, target: str, params: dict[str, Any]) -> Proposal:
    return Proposal(action_type=action_type, target=target, params=params, proposer=agent, reason="please",
                    tenant="acme")


def test_a_paused_agent_cannot_resume_itself_nor_slip_proposals_through_other_entry_points(fleet: Fleet) -> None:
    fleet.run("pause_agent", "buyer-1", {"duration_minutes": 60, "reason": "stopped by ops"})
    itself = fleet.store.actions.propose(_as_agent("buyer-1", "resume_agent", "buyer-1", {"reason": "I am fine"}))
    assert itself.state == "blocked" and itself.decision["code"] == "AGENT_PAUSED"
    batch = fleet.store.actions.propose_many([_as_agent("buyer-1", "make_purchase", "operating", PURCHASE)] * 3)
    assert [a.state for a in batch] == ["blocked"] * 3
    assert fleet.status("buyer-1") == "paused"


def test_an_approval_the_paused_agent_was_waiting_for_cannot_be_given_any_more(fleet: Fleet) -> None:
    pending = fleet.store.actions.propose(
        _as_agent("buyer-1", "move_file", "docs", {"source": "a.txt", "destination": "b.txt"}))
    assert pending.state == "pending_approval"
    fleet.run("pause_agent", "buyer-1", {"duration_minutes": 60, "reason": "stopped by ops"})
    with pytest.raises(InvalidTransition):
        fleet.approve(pending.id, "bob")
    assert fleet.store.actions.get(pending.id).state == "cancelled"


def test_splitting_a_purchase_into_small_ones_does_not_get_past_the_budget(fleet: Fleet) -> None:
    fleet.run("set_budget", "buyer-1", {"amount": "1000", "currency": "EUR", "period": "month"})
    states = [fleet.store.actions.propose(_as_agent("buyer-1", "make_purchase", "operating", PURCHASE)).state
              for _ in range(8)]
    assert states == ["approved"] * 6 + ["blocked"] * 2  # 6 x 150 = 900; a 7th would be 1050


def test_splitting_a_purchase_inside_one_batch_does_not_get_past_the_budget(fleet: Fleet) -> None:
    fleet.run("set_budget", "buyer-1", {"amount": "1000", "currency": "EUR", "period": "month"})
    batch = fleet.store.actions.propose_many([_as_agent("buyer-1", "make_purchase", "operating", PURCHASE)] * 8)
    assert [a.state for a in batch] == ["approved"] * 6 + ["blocked"] * 2  # as one at a time: the batch's own count
    again = fleet.store.actions.propose_many([_as_agent("buyer-1", "make_purchase", "operating", PURCHASE)] * 2)
    assert [a.state for a in again] == ["blocked"] * 2  # the 2 blocked ones above spent nothing, the 6 did


def test_a_fleet_pause_of_another_workspace_touches_nothing(fleet: Fleet) -> None:
    fleet.agents.register("rival-1", tenant="rival", department="sales")
    action = fleet.propose("pause_agent", "rival", {"scope": "fleet", "reason": "sabotage"}, tenant="acme")
    for approver in ("bob", "carol"):
        fleet.approve(action.id, approver)
    done = fleet.store.execution.execute(action.id)
    assert done.state == "failed"
    assert fleet.status("rival-1") == "active"
    # A department name shared with another workspace reaches only the action's own workspace.
    dept = fleet.propose("pause_agent", "sales", {"scope": "department", "reason": "ours only"}, tenant="acme")
    fleet.approve(dept.id, "bob")
    result = fleet.store.execution.execute(dept.id).result
    assert result is not None and sorted(result["affected"]) == ["buyer-1", "sales-2"]
    assert fleet.status("rival-1") == "active"


class _BrokenRegistry:
    def count(self, proposer: str, action_type: str, since: datetime) -> int:
        return 0

    def agent_facts(self, proposer: str, action_type: str, params: Mapping[str, Any], now: datetime,
                    ) -> AgentFacts | None:
        raise RuntimeError("agent registry unavailable")


def test_the_agent_rule_fails_closed_when_the_registry_cannot_answer() -> None:
    request = ActionRequest("create_document", "a.md", {"path": "a.md", "content": "x"}, Principal("bot"))
    decision = PolicyEngine(default_policy()).evaluate(request, now=datetime(2026, 11, 29, tzinfo=UTC),
                                                       counter=_BrokenRegistry())
    assert decision.outcome is Outcome.DENY and decision.code is DenyCode.POLICY_EVALUATION_FAILED
    assert "agent registry unavailable" in decision.explanation
