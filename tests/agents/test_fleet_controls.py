"""Pausing agents, budgets and their undo, through the same propose -> approve -> execute path as every action."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from saferails.actions.models import Proposal
from saferails.agents.audit import ActionAuditQuery
from saferails.api import refusal_for
from saferails.audit.query import AuditQuery, query_audit
from saferails.errors import InvalidInput, InvalidParams
from saferails.store.db import read_transaction
from saferails.sweeps.agents import AutoResumeSweep
from tests.agents.conftest import Fleet

PURCHASE = {"item": "laptop", "quantity": 1, "max_total": "400.00", "currency": "EUR", "vendor": "acme-shop"}


def _buy(fleet: Fleet, agent: str = "buyer-1", **params: Any) -> Any:
    return fleet.propose("make_purchase", "operating", PURCHASE | params, proposer=agent)


def test_a_paused_agent_is_refused_with_the_reason_and_resume_lets_it_go_again(fleet: Fleet) -> None:
    done = fleet.run("pause_agent", "buyer-1", {"duration_minutes": 60, "reason": "runaway purchases"})
    assert done.state == "completed"
    assert done.result is not None and done.result["affected"] == ["buyer-1"]
    assert fleet.status("buyer-1") == "paused"

    refused = _buy(fleet)
    assert refused.state == "blocked"
    refusal = refusal_for(refused)
    assert refusal is not None and refusal.code == "AGENT_PAUSED" and refusal.exit_code == 6
    assert "runaway purchases" in refusal.message
    assert _buy(fleet, "sales-2").state == "approved"  # another agent is not affected

    resumed = fleet.run("resume_agent", "buyer-1", {"reason": "fixed"})
    assert resumed.state == "completed" and fleet.status("buyer-1") == "active"
    assert _buy(fleet).state == "approved"


def test_a_pause_ends_by_itself_when_its_time_is_up(fleet: Fleet) -> None:
    fleet.run("pause_agent", "buyer-1", {"duration_minutes": 30, "reason": "cool down"})
    fleet.clock.advance(timedelta(minutes=29))
    assert AutoResumeSweep(fleet.store.sessions, fleet.clock).run().count("resolved") == 0
    assert _buy(fleet).state == "blocked"
    fleet.clock.advance(timedelta(minutes=1))
    report = AutoResumeSweep(fleet.store.sessions, fleet.clock).run()
    assert [i.action_id for i in report.items if i.outcome == "resolved"] == ["buyer-1"]
    assert fleet.status("buyer-1") == "active"
    with read_transaction(fleet.store.sessions) as session:
        records = query_audit(session, AuditQuery(entity_type="agent", entity_id="buyer-1")).records
    assert any(r.event == "agent_pause_expired" and r.actor == "system:agent-auto-resume" for r in records)
    assert _buy(fleet).state == "approved"


def test_a_pause_cancels_the_agents_pending_approvals_with_the_reason(fleet: Fleet) -> None:
    pending = fleet.propose("move_file", "docs", {"source": "a.txt", "destination": "b.txt"}, proposer="buyer-1")
    assert pending.state == "pending_approval"
    fleet.run("pause_agent", "buyer-1", {"duration_minutes": 5, "reason": "investigating"})
    cancelled = fleet.store.actions.get(pending.id)
    assert cancelled.state == "cancelled"
    with read_transaction(fleet.store.sessions) as session:
        records = query_audit(session, AuditQuery(entity_type="action", entity_id=pending.id)).records
    assert any(r.event == "cancelled" and "investigating" in str(r.details.get("reason")) for r in records)


def test_a_pause_cancels_the_agents_approved_and_scheduled_actions_before_they_start(fleet: Fleet) -> None:
    doc = {"path": "later.md", "content": "x"}
    scheduled = fleet.store.actions.propose(Proposal(
        action_type="create_document", target="later.md", params=doc, proposer="buyer-1", reason="r",
        tenant="acme", scheduled_for=fleet.clock.now() + timedelta(hours=1)))
    assert scheduled.state == "approved"
    fleet.run("pause_agent", "buyer-1", {"duration_minutes": 5, "reason": "investigating"})
    assert fleet.store.actions.get(scheduled.id).state == "cancelled"
    fleet.clock.advance(timedelta(hours=2))
    AutoResumeSweep(fleet.store.sessions, fleet.clock).run()
    assert fleet.status("buyer-1") == "active"
    assert fleet.store.actions.get(scheduled.id).state == "cancelled"  # not revived by the end of the pause


def test_a_purchase_beyond_the_remaining_budget_is_refused(fleet: Fleet) -> None:
    assert fleet.run("set_budget", "buyer-1", {"amount": "1000", "currency": "EUR", "period": "day"}).state == \
        "completed"
    assert _buy(fleet, max_total="600.00").state == "approved"
    refused = _buy(fleet, max_total="500.00")
    refusal = refusal_for(refused)
    assert refused.state == "blocked" and refusal is not None and refusal.code == "BUDGET_EXCEEDED"
    assert "400.00 EUR left" in refusal.message
    assert _buy(fleet, max_total="400.00").state == "approved"  # exactly what is left
    other_currency = _buy(fleet, max_total="1.00", currency="USD")
    refusal = refusal_for(other_currency)
    assert refusal is not None and refusal.code == "BUDGET_EXCEEDED"
    fleet.clock.advance(timedelta(days=1))  # a new day, a new budget
    assert _buy(fleet, max_total="900.00").state == "approved"


def test_rolling_back_set_budget_restores_the_previous_budget(fleet: Fleet) -> None:
    fleet.run("set_budget", "buyer-1", {"amount": "100", "currency": "EUR", "period": "week"})
    second = fleet.run("set_budget", "buyer-1", {"amount": "5000", "currency": "EUR", "period": "month"})
    assert fleet.agents.get("buyer-1").budget_amount == "5000"
    undone = fleet.store.execution.rollback(second.id, "olga", reason="too generous")
    assert undone.state == "rolled_back"
    view = fleet.agents.get("buyer-1")
    assert (view.budget_amount, view.budget_period) == ("100", "week")
    assert _buy(fleet, max_total="150.00").state == "blocked"


def test_department_pause_needs_approval_and_pauses_only_that_department(fleet: Fleet) -> None:
    action = fleet.propose("pause_agent", "sales", {"scope": "department", "duration_minutes": 120,
                                                   "reason": "sales bots misbehaving"})
    assert action.state == "pending_approval" and action.min_approvals == 1
    fleet.approve(action.id, "bob")
    done = fleet.store.execution.execute(action.id)
    assert done.result is not None and sorted(done.result["affected"]) == ["buyer-1", "sales-2"]
    assert [fleet.status(a) for a in ("buyer-1", "sales-2", "ops-1")] == ["paused", "paused", "active"]


@pytest.mark.parametrize(("scope", "target", "impact", "state"), [
    ("agent", "buyer-1", "medium", "approved"),
    ("department", "sales", "high", "pending_approval"),
    ("fleet", "acme", "high", "pending_approval"),
])
def test_a_pause_is_high_impact_by_scope(sqlite_fleet: Fleet, scope: str, target: str, impact: str,
                                         state: str) -> None:
    """The default policy's ``impact.raise_when``: one agent's pause runs at once; a department or the fleet is
    HIGH impact, so the gate's high-impact rule holds it for approval (and the decision says why)."""
    action = sqlite_fleet.propose("pause_agent", target, {"scope": scope, "duration_minutes": 30, "reason": "r"})
    assert (action.impact, action.state) == (impact, state)
    fired = [r["rule_id"] for r in action.decision["reasons"] if r.get("fired")]
    assert fired[0] == f"impact:{impact}"
    assert ("high-impact-needs-approval" in fired) is (impact == "high")


def test_the_fleet_kill_switch_needs_two_approvals_and_one_rollback_lets_every_agent_go(fleet: Fleet) -> None:
    action = fleet.propose("pause_agent", "acme", {"scope": "fleet", "duration_minutes": 600,
                                                  "reason": "kill switch"})
    assert action.state == "pending_approval" and action.min_approvals == 2
    assert fleet.approve(action.id, "bob").state == "pending_approval"
    assert fleet.approve(action.id, "carol").state == "approved"
    done = fleet.store.execution.execute(action.id)
    assert done.result is not None and done.result["workspace"] == "acme" and done.result["scope"] == "fleet"
    assert all(fleet.status(a) == "paused" for a in ("buyer-1", "sales-2", "ops-1"))
    assert _buy(fleet, "ops-1").state == "blocked"

    undone = fleet.store.execution.rollback(action.id, "olga", reason="false alarm")
    assert undone.state == "rolled_back"
    assert all(fleet.status(a) == "active" for a in ("buyer-1", "sales-2", "ops-1"))
    assert _buy(fleet, "ops-1").state == "approved"


def test_a_rollback_leaves_alone_an_agent_paused_again_by_someone_else(fleet: Fleet) -> None:
    first = fleet.run("pause_agent", "buyer-1", {"duration_minutes": 10, "reason": "first"})
    fleet.clock.advance(timedelta(minutes=10))
    AutoResumeSweep(fleet.store.sessions, fleet.clock).run()
    fleet.run("pause_agent", "buyer-1", {"duration_minutes": 60, "reason": "second"})
    undone = fleet.store.execution.rollback(first.id, "olga", reason="undo the first")
    assert undone.state == "rolled_back"
    assert fleet.status("buyer-1") == "paused"
    assert fleet.agents.get("buyer-1").pause_reason == "second"


@pytest.mark.parametrize("params", [{"duration_minutes": 0, "reason": "x"}, {"duration_minutes": 43_201, "reason": "x"},
                                    {"duration_minutes": 10}, {"scope": "galaxy", "reason": "x"}])
def test_pause_parameters_are_checked_before_anything_is_recorded(sqlite_fleet: Fleet, params: dict[str, Any]) -> None:
    with pytest.raises(InvalidParams):
        sqlite_fleet.propose("pause_agent", "buyer-1", params)
    assert sqlite_fleet.store.actions.list() == []


def test_the_audit_trail_holds_the_playbooks_fields_and_is_queryable_newest_first(fleet: Fleet) -> None:
    done = fleet.run("pause_agent", "buyer-1", {"duration_minutes": 15, "reason": "audit me"})
    fleet.store.execution.rollback(done.id, "olga", reason="undo")
    with read_transaction(fleet.store.sessions) as session:
        page = query_audit(session, AuditQuery(tenant="acme", action_type="pause_agent", descending=True))
        by_actor = query_audit(session, AuditQuery(tenant="acme", actor="olga", entity_id=done.id)).records
    events = [r.event for r in page.records]
    assert events[0] == "rolled_back" and events[-1] == "action_proposed"  # newest first
    assert {"action_proposed", "execution_started", "executed", "rollback_started", "rolled_back"} <= set(events)
    proposed = next(r for r in page.records if r.event == "action_proposed")
    assert proposed.actor == "olga" and proposed.details["params"]["scope"] == "agent"
    completed = next(r for r in page.records if r.event == "executed")
    result = completed.details["result"]
    assert (result["workspace"], result["scope"], result["can_rollback"]) == ("acme", "agent", True)
    assert all(r.entity_id == done.id for r in page.records)  # the rollback is linked to the action it undoes
    assert [r.event for r in by_actor] == ["action_proposed", "rollback_started", "rolled_back"]


def test_the_playbooks_action_record_is_filtered_by_workspace_scope_actor_and_type_newest_first(
        fleet: Fleet) -> None:
    first = fleet.run("pause_agent", "buyer-1", {"duration_minutes": 15, "reason": "one agent"})
    fleet.clock.advance(timedelta(seconds=1))
    fleet.store.execution.rollback(first.id, "olga", reason="false alarm")
    fleet.clock.advance(timedelta(seconds=1))
    budget = fleet.run("set_budget", "ops-1", {"amount": "100", "currency": "EUR", "period": "week"})
    fleet.clock.advance(timedelta(seconds=1))
    kill = fleet.propose("pause_agent", "acme", {"scope": "fleet", "duration_minutes": 60, "reason": "kill"})

    everything = fleet.agents.actions(ActionAuditQuery(workspace="acme"))
    assert [r.action_id for r in everything] == [kill.id, budget.id, first.id]  # newest first
    (record,) = fleet.agents.actions(ActionAuditQuery(workspace="acme", scope="agent", action_type="pause_agent"))
    assert (record.action_id, record.workspace, record.scope, record.actor, record.actor_role) == (
        first.id, "acme", "agent", "olga", "operators")
    assert record.params == {"scope": "agent", "duration_minutes": 15, "reason": "one agent"}
    assert (record.status, record.error_message, record.can_rollback) == ("rolled_back", None, False)
    assert record.result is not None and record.result["can_rollback"] is True
    assert record.started_at is not None and record.completed_at is not None and record.rolled_back_at is not None
    assert record.started_at <= record.completed_at <= record.rolled_back_at
    assert (record.rolled_back_by, record.rollback_reason) == ("olga", "false alarm")

    (fleet_record,) = fleet.agents.actions(ActionAuditQuery(scope="fleet"))
    assert (fleet_record.status, fleet_record.started_at) == ("pending_approval", None)
    assert [r.scope for r in fleet.agents.actions(ActionAuditQuery(action_type="set_budget"))] == ["agent"]
    assert fleet.agents.actions(ActionAuditQuery(actor="bob")) == []
    assert fleet.agents.actions(ActionAuditQuery(workspace="other")) == []
    assert fleet.agents.actions(ActionAuditQuery(workspace="acme"), tenants=frozenset({"default"})) == []
    assert fleet.agents.actions(ActionAuditQuery(before=budget.created_at)) == [everything[2]]
    assert budget.id in {r.action_id for r in fleet.agents.actions(ActionAuditQuery(limit=2))}
    with pytest.raises(InvalidInput):
        ActionAuditQuery(scope="galaxy")


def test_the_workspace_and_scope_query_is_served_by_an_index(sqlite_fleet: Fleet) -> None:
    with sqlite_fleet.store.engine.connect() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT * FROM actions WHERE tenant = 'acme' AND scope = 'fleet' "
            "ORDER BY created_at DESC LIMIT 50").all()
    assert "ix_actions_tenant_scope_created" in " ".join(str(row[-1]) for row in plan)


@pytest.mark.parametrize(("action_type", "target", "params", "state"), [
    ("pause_agent", "buyer-1", {"duration_minutes": 30, "reason": "stop"}, "approved"),
    ("resume_agent", "buyer-1", {"reason": "go"}, "pending_approval"),
    ("set_budget", "buyer-1", {"amount": "1000000", "currency": "EUR"}, "pending_approval"),
])
def test_from_the_prefect_ui_only_a_pause_runs_without_approval(sqlite_fleet: Fleet, action_type: str, target: str,
                                                                 params: dict[str, Any], state: str) -> None:
    """Prefect records no user (the operator deployments propose as ``prefect-ui``): stopping one agent is safe
    to allow, but letting agents go again or raising a budget must be approved by someone who proves who they are."""
    action = sqlite_fleet.propose(action_type, target, params, proposer="prefect-ui")
    assert action.state == state


def test_the_actor_role_is_the_proposers_role_when_it_has_one(fleet: Fleet) -> None:
    """Seed 003's audit record names the actor's role (``operator``), not only its policy groups."""
    identity = fleet.store.identity
    admin = identity.authenticate(identity.bootstrap_admin("root").token)
    identity.add_principal(admin, "opal", roles=["operator"], groups=["operators"])
    paused = fleet.propose("pause_agent", "ops-1", {"scope": "agent", "duration_minutes": 5, "reason": "r"},
                           proposer="opal")
    (record,) = fleet.agents.actions(ActionAuditQuery(workspace="acme", actor="opal"))
    assert (record.action_id, record.actor_role) == (paused.id, "operator")
