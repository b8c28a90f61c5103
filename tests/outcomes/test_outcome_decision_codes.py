"""A person's decision on an inconclusive outcome check goes through one-time codes, as an approval does: the
monitor issues a code to each person who may decide (never the proposer) and sends it; resolving needs the
decider's own unspent code; refusals are audited and change nothing; the evidence shows effect, interval and the
target against its controls."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from saferails.approvals.codes import ApprovalCodes
from saferails.errors import ApprovalCodeInvalid, PermissionDenied
from saferails.outcomes import OutcomeMonitor
from saferails.outcomes.report import render_evidence
from saferails.outcomes.rules import RuleBook, TypeRules
from saferails.store.db import transaction
from saferails.store.tables import Principal
from tests.outcomes.test_did_monitor import PRE_WEEKS, _erratic_target_then_a_drop
from tests.support.flowkit import SECRET, Outbox
from tests.support.outcome_world import World


def _coded_monitor(world: World, outbox: Outbox) -> OutcomeMonitor:
    world.actions.upsert_principal("alice", email="alice@example.com")
    world.actions.upsert_principal("bob", email="bob@example.com")
    world.actions.upsert_principal("hr-bot")
    with transaction(world.db.sessions) as session:
        session.execute(sa.update(Principal).where(Principal.id.in_(["alice", "bob", "hr-bot"]))
                        .values(roles=["approver"]))
    rules = RuleBook({"reassign_manager": TypeRules(timedelta(days=7), judge="did", pre_weeks=PRE_WEEKS)})
    return OutcomeMonitor(world.db.sessions, world.clock, world.executor, rules, cache=world.cache,
                          codes=ApprovalCodes(SECRET.encode(), world.clock), notifier=outbox)


def _inconclusive(world: World, monitor: OutcomeMonitor) -> str:
    action_id = _erratic_target_then_a_drop(world)
    monitor.schedule()
    world.clock.advance(timedelta(days=7))
    (outcome,) = monitor.run_due(worker_id="w1").outcomes
    assert outcome.state == "inconclusive"
    return action_id


def test_deciders_get_codes_and_only_a_deciders_own_code_resolves(world: World) -> None:
    outbox = Outbox()
    monitor = _coded_monitor(world, outbox)
    action_id = _inconclusive(world, monitor)
    proposer = world.actions.get(action_id).proposer
    sent = {n.data["approver"] for n in outbox.sent if n.data.get("purpose") == "outcome_decision"}
    assert sent == {"alice", "bob", "hr-bot"} - {proposer}
    alice, bob = outbox.code_for(action_id, "alice"), outbox.code_for(action_id, "bob")
    assert alice and bob and alice != bob

    with pytest.raises(ApprovalCodeInvalid):
        monitor.resolve_inconclusive(action_id, "alice", roll_back=True, reason="r", code=bob)
    with pytest.raises(ApprovalCodeInvalid):
        monitor.resolve_inconclusive(action_id, "alice", roll_back=True, reason="r", code=None)
    with pytest.raises(PermissionDenied):
        monitor.resolve_inconclusive(action_id, "mallory", roll_back=False, reason="r", code=alice)
    check = monitor.check_for(action_id)
    assert check is not None and check.state == "inconclusive"
    assert world.actions.get(action_id).state == "completed"
    assert world.events(action_id)[-3:] == ["outcome_resolution_refused"] * 3

    outcome = monitor.resolve_inconclusive(action_id, "alice", roll_back=True, reason="cut off", code=alice)

    assert outcome.state == "negative" and world.actions.get(action_id).state == "rolled_back"
    assert world.events(action_id)[-3:] == ["outcome_inconclusive_resolved", "rollback_started", "rolled_back"]


def test_a_spent_code_does_not_decide_twice_and_the_evidence_shows_target_against_controls(world: World) -> None:
    outbox = Outbox()
    monitor = _coded_monitor(world, outbox)
    action_id = _inconclusive(world, monitor)
    check = monitor.check_for(action_id)
    assert check is not None
    evidence = render_evidence(check)
    assert "inconclusive" in evidence and "| isolation | degree_centrality |" in evidence
    assert "target" in evidence and "controls" in evidence and "after" in evidence
    code = outbox.code_for(action_id, "bob")

    kept = monitor.resolve_inconclusive(action_id, "bob", roll_back=False, reason="on leave", code=code)

    assert kept.state == "ok" and world.actions.get(action_id).state == "completed"
    with pytest.raises(Exception, match="no inconclusive outcome check"):
        monitor.resolve_inconclusive(action_id, "bob", roll_back=True, reason="again", code=code)
