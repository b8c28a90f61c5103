"""The inconclusive part of ``make demo``: the ``did`` judge cannot tell a change from a person's ordinary weeks,
so a person decides, with their one-time code, and the change is rolled back.

``outcome_gate_demo(store, clock, out, execution)`` runs on an open store whose clock is ``clock`` (a
ManualClock). A team of six where ``gt`` is erratic (all five teammates in even weeks, two in odd ones) for eight
weeks; ``gt`` is reassigned to another team's lead (approved by ``alice`` with her code), then meets two
teammates. The judge (``did``, 8-week pre-period and a 7-day delay for this demo; the default policy's are 24
weeks and 21 days) sees a 40% drop it
cannot separate from ``gt``'s own odd weeks: ``inconclusive``. The monitor issues one-time codes to the action's
approvers and the evidence is shown; ``bob`` answers with his code (the check the monitor flow's pause and
``saferails outcomes resolve`` make) and the change is rolled back.
"""

from __future__ import annotations

from datetime import timedelta
from itertools import combinations
from typing import TextIO

import pandas as pd

from saferails.actions.models import Proposal
from saferails.api import Store
from saferails.clock import ManualClock
from saferails.execution import ExecutionService
from saferails.notify.outbox_log import InboxNotifier
from saferails.org.repository import OrgRepository
from saferails.orggraph.loading import insert_interactions
from saferails.orggraph.snapshots import SnapshotCache
from saferails.outcomes.monitor import OutcomeMonitor
from saferails.outcomes.rules import load_rulebook
from saferails.store.db import transaction

__all__ = ["outcome_gate_demo"]

TEAM_G = ["gl", "gt", "g1", "g2", "g3", "g4"]
TEAM_H = ["hl", "h1", "h2", "h3", "h4", "h5"]
PRE_WEEKS = 8


def _say(out: TextIO, text: str) -> None:
    out.write(f"  {text}\n")


def _meet(store: Store, clock: ManualClock, pairs: list[tuple[str, str]], days: range) -> None:
    midnight = clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
    rows = [{"kind": "message", "person_a": a, "person_b": b, "occurred_at": midnight + timedelta(days=d, hours=10),
             "weight": 1.0} for d in days for a, b in pairs]
    with transaction(store.sessions) as session:
        insert_interactions(session, pd.DataFrame(rows))


def _usual(store: Store, clock: ManualClock, days: range) -> None:
    pairs = [p for team in (TEAM_G, TEAM_H) for p in combinations(team, 2) if "gt" not in p] + [("gl", "hl")]
    _meet(store, clock, pairs, days)


def outcome_gate_demo(store: Store, clock: ManualClock, out: TextIO, execution: ExecutionService) -> str:
    """Run the scenario (module docstring) and print it (~12 lines); returns the action's final state."""
    title = "Outcome monitoring: an inconclusive check decided by a person"
    out.write(f"\n== {title} {'=' * max(3, 76 - len(title))}\n")
    employees = [{"id": p, "name": p.upper(), "email": f"{p}@example.org", "team_id": team, "role": "member",
                  "manager_id": None if p == lead else lead}
                 for team, lead, people in (("tG", "gl", TEAM_G), ("tH", "hl", TEAM_H)) for p in people]
    with transaction(store.sessions) as session:
        OrgRepository(session).insert({"teams": [{"id": "tG"}, {"id": "tH"}], "employees": employees})
    for week in range(-PRE_WEEKS, 0):
        days = range(7 * week, 7 * week + 7)
        _usual(store, clock, days)
        mates = ["gl", "g1", "g2", "g3", "g4"] if week % 2 == 0 else ["gl", "g1"]
        _meet(store, clock, [("gt", m) for m in mates], days)
    _say(out, f"team tG for {PRE_WEEKS} weeks: gt meets all five teammates one week, two the next")

    view = store.actions.propose(Proposal(action_type="reassign_manager", target="gt",
                                          params={"new_manager_id": "hl"}, proposer="agent-1",
                                          reason="gt works mostly with team tH"))
    if view.state == "pending_approval":
        code = InboxNotifier(store.settings.data_dir / "inbox").latest_code("alice", view.id)
        store.actions.approve(view.id, "alice", reason="worth a try", code=code)
    executed = execution.execute(view.id, "demo")
    _say(out, f"reassign_manager gt -> hl: {executed.state}; the week after, gt meets two teammates")
    _usual(store, clock, range(0, 7))
    _meet(store, clock, [("gt", "gl"), ("gt", "g1")], range(0, 7))

    rules = load_rulebook({"reassign_manager": {"judge": "did", "pre_weeks": PRE_WEEKS, "delay_days": 7}})
    monitor = OutcomeMonitor(store.sessions, clock, execution, rules, cache=SnapshotCache(), codes=store.codes,
                             notifier=store.notifier)
    monitor.schedule()
    clock.advance(timedelta(days=7))
    monitor.run_due(worker_id="demo:outcome-gate")
    check = monitor.check_for(view.id)
    assert check is not None and check.result is not None
    isolation = next(m for m in check.result["judgement"]["metrics"] if m["rule"] == "isolation")
    low, high = isolation["interval"]
    _say(out, f"judge did: degree centrality {isolation['effect']:+.0%} net of teammates, interval "
              f"{low:+.0%}..{high:+.0%} (threshold -30%) -> {check.state}")
    _say(out, f"not rolled back automatically; codes sent to {', '.join(check.result.get('deciders', []))}; the "
              "monitor flow pauses with this evidence")
    code = InboxNotifier(store.settings.data_dir / "inbox").latest_code("bob", view.id)
    outcome = monitor.resolve_inconclusive(view.id, "bob", roll_back=True, code=code, channel="demo",
                                           reason="gt says the new team never took them in")
    _say(out, f"bob answers with his code: roll back -> check {outcome.state}, action {outcome.rollback_state}")
    return str(outcome.rollback_state)
