"""The demo's fleet-control section (seed 003): an operator pauses an agent (its next proposal is refused with
the reason) and resumes it; then the kill switch, a pause of the whole fleet, is approved by two people and rolled
back. Everything goes through the core (propose, the policy, approvals with one-time codes, execute, rollback)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Protocol

from saferails.actions.models import ActionView, Proposal
from saferails.api import Store, refusal_for
from saferails.clock import ManualClock
from saferails.notify.outbox_log import InboxNotifier

__all__ = ["fleet_demo"]

OPERATOR = "olga"
EMAIL = {"to": ["team@example.com"], "subject": "status", "body": "..."}


class _Demo(Protocol):
    store: Store
    clock: ManualClock

    def section(self, title: str) -> None: ...
    def say(self, text: str) -> None: ...


def _control(store: Store, action_type: str, target: str, params: dict[str, Any], reason: str) -> ActionView:
    return store.actions.propose(Proposal(action_type=action_type, target=target, params=params, proposer=OPERATOR,
                                          reason=reason))


def fleet_demo(d: _Demo) -> dict[str, str]:
    """Run the section; the outcomes it reached, by label (for the demo's report and its tests)."""
    store, outcomes = d.store, {}
    d.section("Fleet controls (seed 003: an operator pauses agents; the kill switch needs two approvers)")
    store.actions.upsert_principal(OPERATOR, groups=["operators"])
    for agent in ("agent-1", "agent-2"):
        store.agents.register(agent, tenant="default", department="ops")
    d.clock.advance(timedelta(minutes=1))

    pause = _control(store, "pause_agent", "agent-1", {"scope": "agent", "duration_minutes": 30,
                                                       "reason": "runaway emails"}, "runaway emails")
    pause = store.execution.execute(pause.id)
    outcomes["pause_agent"] = pause.state
    d.say(f"{pause.impact.upper()} pause_agent agent-1 for 30 min by {OPERATOR} -> {pause.state} (no approval)")
    email = store.actions.propose(Proposal(action_type="send_email", target="mbx:agent-1", params=EMAIL,
                                           proposer="agent-1"))
    refusal = refusal_for(email)
    outcomes["paused_agent_proposal"] = refusal.code if refusal else email.state
    why = refusal.message[refusal.message.find("rule "):] if refusal else "-"  # from the rule on: the reason
    d.say(f"agent-1 proposes send_email -> refused error[{outcomes['paused_agent_proposal']}] {why}")
    resume = store.execution.execute(_control(store, "resume_agent", "agent-1", {"scope": "agent",
                                                                                 "reason": "fixed"}, "fixed").id)
    outcomes["resume_agent"] = resume.state
    d.say(f"resume_agent agent-1 -> {resume.state}; agent-1 is {store.agents.get('agent-1').status}")

    kill = _control(store, "pause_agent", "default", {"scope": "fleet", "duration_minutes": 120,
                                                      "reason": "incident drill"}, "incident drill")
    d.say(f"{kill.impact.upper()} pause_agent, scope fleet -> {kill.state} ({kill.min_approvals} approvals needed)")
    inbox = InboxNotifier(store.settings.data_dir / "inbox")
    for approver in ("alice", "bob"):
        kill = store.actions.approve(kill.id, approver, reason="drill agreed",
                                     code=inbox.latest_code(approver, kill.id))
    kill = store.execution.execute(kill.id)
    paused = sorted(a.id for a in store.agents.list(status="paused"))
    outcomes["fleet_pause"] = kill.state
    d.say(f"alice and bob approve -> {kill.state}: paused {', '.join(paused)}")
    d.clock.advance(timedelta(minutes=5))
    undone = store.execution.rollback(kill.id, OPERATOR, reason="drill over")
    outcomes["fleet_rollback"] = undone.state
    active = sorted(a.id for a in store.agents.list(status="active"))
    d.say(f"rollback by {OPERATOR} -> {undone.state}: active again {', '.join(active)}")
    return outcomes
