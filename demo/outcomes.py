"""The outcome-monitoring part of ``make demo`` (seed 000): an isolating intervention is rolled back, a harmless one
is kept.

``outcomes_demo(store, clock, out, execution)`` runs on an open store whose clock is ``clock`` (a ManualClock:
the three weeks pass by moving it, never by sleeping). A 60-person sample org with 24 weeks of interactions and
burnout readings (the default ``did`` judge's pre-period); two interventions approved and executed through the
core (``reassign_manager`` of a team member under a lead far away in the org, which needs a human approval, and
``schedule_focus_time`` for someone else, approved automatically); an outcome sweep schedules both checks. The
three weeks after, everyone works as before except the reassigned person, who stops meeting the old team. The
clock moves 21 days (the default delay), the sweep runs again: the judge compares each target with its matched
controls, the reassignment's isolation (degree centrality down far more than 30%, net of its teammates) is
audited ``negative_outcome_detected`` and rolled back (the old manager is back); the focus time is
``outcome_ok``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TextIO

import pandas as pd
import sqlalchemy as sa

from saferails.actions.models import Proposal
from saferails.api import Store
from saferails.cli import output as cli_output
from saferails.clock import ManualClock
from saferails.execution import ExecutionService
from saferails.notify.outbox_log import InboxNotifier
from saferails.org.repository import OrgRepository
from saferails.orggraph.loading import insert_interactions, insert_wellbeing
from saferails.orggraph.sample import SampleOrg, generate_org, insert_sample, start_of
from saferails.orggraph.snapshots import SnapshotCache
from saferails.outcomes.monitor import MonitorReport, OutcomeMonitor
from saferails.store.db import transaction
from saferails.store.tables import AuditRecord

__all__ = ["OutcomesDemoReport", "outcomes_demo"]

ORG_SIZE, SEED = 60, 7
HISTORY_WEEKS, AFTER_DAYS = 24, 21  # the default policy's pre_weeks and delay_days
PROPOSER, APPROVER = "hr-agent", "hana"
SHOWN = ("degree_centrality", "betweenness", "clustering", "burnout")
COLUMNS = ("intervention", "metric", "before", "after", "change")
SHOWN_EVENTS = ("executed", "outcome_check_scheduled", "negative_outcome_detected", "outcome_ok", "rolled_back")


@dataclass
class OutcomesDemoReport:
    """What the section showed: the two actions, their final states and audit events, the manager change."""

    isolating_id: str = ""
    harmless_id: str = ""
    states: dict[str, str] = field(default_factory=dict)  # action id -> final state
    events: dict[str, list[str]] = field(default_factory=dict)  # action id -> audit events, oldest first
    managers: list[str | None] = field(default_factory=list)  # target's manager: before, after execution, at end


def _say(out: TextIO, text: str) -> None:
    out.write(f"  {text}\n")


def _pick(org: SampleOrg) -> tuple[str, str, str, str]:
    """(isolating target, its manager, the far lead it moves under, harmless target): plain members of the first
    and last teams, so the new manager sits on the other side of the org."""
    members = org.employees[org.employees["role"] == "member"]
    first, last = org.employees["team_id"].iloc[0], org.employees["team_id"].iloc[-1]
    target = members[members["team_id"] == first].iloc[1]
    far_lead = org.employees[(org.employees["team_id"] == last) & (org.employees["role"] == "lead")].iloc[0]
    harmless = members[members["team_id"] == last].iloc[1]
    return str(target["id"]), str(target["manager_id"]), str(far_lead["id"]), str(harmless["id"])


def _split(frame: pd.DataFrame, column: str, when: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    return frame[frame[column] < when], frame[frame[column] >= when]


def _execute(store: Store, execution: ExecutionService, action_type: str, target: str, params: dict[str, Any],
             reason: str) -> tuple[str, str]:
    view = store.actions.propose(Proposal(action_type=action_type, target=target, params=params, proposer=PROPOSER,
                                          reason=reason))
    how = "approved automatically"
    if view.state == "pending_approval":
        code = InboxNotifier(store.settings.data_dir / "inbox").latest_code(APPROVER, view.id)
        view = store.actions.approve(view.id, APPROVER, reason="reviewed with the team lead", code=code)
        how = f"approved by {APPROVER}"
    done = execution.execute(view.id)
    return view.id, f"{view.impact.upper():<6} {action_type} {target}: {how}, {done.state}"


def _manager(store: Store, person: str) -> str | None:
    with transaction(store.sessions) as session:
        return OrgRepository(session).require_employee(person).manager_id


def _events(store: Store, action_id: str) -> list[str]:
    with transaction(store.sessions) as session:
        stmt = (sa.select(AuditRecord.event).where(AuditRecord.entity_type == "action",
                                                    AuditRecord.entity_id == action_id)
                .order_by(AuditRecord.sequence))
        return list(session.execute(stmt).scalars())


def _change(before: Any, after: Any) -> str:
    if before is None or after is None:
        return "-"
    return "n/a" if before == 0 else f"{(after - before) / before:+.0%}"


def _judged(monitor: OutcomeMonitor, action_id: str) -> str:
    """The did judge's isolation finding in one line: effect net of the controls, interval, verdict."""
    check = monitor.check_for(action_id)
    judgement = ((check.result or {}).get("judgement") or {}) if check else {}
    found = next((m for m in judgement.get("metrics", []) if m["rule"] == "isolation"), None)
    if found is None or found.get("effect") is None:
        return f"judge {judgement.get('method', '-')}: no isolation finding"
    low, high = found["interval"]
    return (f"judge {judgement['method']}: degree centrality {found['effect']:+.0%} against "
            f"{len(judgement.get('controls', []))} matched controls, interval {low:+.0%}..{high:+.0%} "
            f"(threshold -30%) -> {found['verdict']}")


def _table(report: MonitorReport, labels: dict[str, str], out: TextIO) -> None:
    rows = []
    for outcome in sorted(report.outcomes, key=lambda o: list(labels).index(o.action_id)
                          if o.action_id in labels else len(labels)):
        if outcome.action_id not in labels:
            continue
        for metric in SHOWN:
            before, after = outcome.before.get(metric), outcome.after.get(metric)
            rows.append([labels[outcome.action_id] if metric == SHOWN[0] else "", metric,
                         "-" if before is None else f"{before:.4f}", "-" if after is None else f"{after:.4f}",
                         _change(before, after)])
    buffer = io.StringIO()
    cli_output.render_table(COLUMNS, rows, buffer)
    for line in buffer.getvalue().splitlines():
        _say(out, line)


def outcomes_demo(store: Store, clock: ManualClock, out: TextIO, execution: ExecutionService) -> OutcomesDemoReport:
    """Run the outcome scenario on ``store`` (whose clock must be ``clock``) and print it to ``out`` (~20 lines).
    Needs a store whose approvals take no one-time codes (the demo's). Returns what happened."""
    report = OutcomesDemoReport()
    title = "Outcome monitoring: a harmful intervention undone, a harmless one kept (seed 000)"
    out.write(f"\n== {title} {'=' * max(3, 76 - len(title))}\n")
    midnight = pd.Timestamp(start_of(0, clock.now()))
    org = generate_org(ORG_SIZE, seed=SEED, start=start_of(7 * HISTORY_WEEKS, clock.now()),
                       days=7 * HISTORY_WEEKS + AFTER_DAYS)
    past_i, next_i = _split(org.interactions, "occurred_at", midnight)
    past_w, next_w = _split(org.wellbeing, "observed_at", midnight)
    with transaction(store.sessions) as session:
        insert_sample(session, SampleOrg(org.teams, org.employees, past_i, past_w))
    store.actions.upsert_principal(PROPOSER, groups=["agents"], actor="demo")
    store.actions.upsert_principal(APPROVER, groups=["approvers"], actor="demo")
    _say(out, f"sample org (seed {SEED}): {ORG_SIZE} people in {len(org.teams)} teams, {len(past_i)} interactions "
              f"and {len(past_w)} burnout readings in the last {HISTORY_WEEKS} weeks")

    target, manager, far_lead, harmless = _pick(org)
    report.managers.append(_manager(store, target))
    report.isolating_id, line = _execute(store, execution, "reassign_manager", target,
                                         {"new_manager_id": far_lead}, f"balance spans of control: {manager}")
    _say(out, line)
    start = clock.now().replace(minute=0, second=0, microsecond=0) + timedelta(days=1, hours=1)
    report.harmless_id, line = _execute(store, execution, "schedule_focus_time", harmless,
                                        {"start": start.isoformat(), "end": (start + timedelta(hours=2)).isoformat()},
                                        "protect deep work")
    _say(out, line)
    report.managers.append(_manager(store, target))
    monitor = OutcomeMonitor(store.sessions, clock, execution, cache=SnapshotCache())
    scheduled = monitor.schedule()
    due = monitor.check_for(report.isolating_id)
    when = cli_output.format_time(due.due_at if due else None)
    _say(out, f"outcome sweep: {scheduled} check(s) scheduled, due {when}")

    # The weeks after: as usual, except that the reassigned person no longer meets the old team.
    team = set(org.employees.loc[org.employees["team_id"] == org.employees.set_index("id").at[target, "team_id"], "id"])
    cut = ((next_i["person_a"] == target) & next_i["person_b"].isin(team)) | (
        (next_i["person_b"] == target) & next_i["person_a"].isin(team))
    with transaction(store.sessions) as session:
        insert_interactions(session, next_i[~cut])
        insert_wellbeing(session, next_w)
    _say(out, f"the {AFTER_DAYS // 7} weeks after: {target} stops meeting the old team ({int(cut.sum())} "
              "interactions fewer)")
    clock.advance(timedelta(days=AFTER_DAYS))
    decided = monitor.run_due(worker_id="demo:outcome-sweep")
    _say(out, f"clock +{AFTER_DAYS} days -> {cli_output.format_time(clock.now())}; outcome sweep decides "
              f"{decided.claimed} check(s): {decided.count('negative')} negative, {decided.count('ok')} ok")
    labels = {report.isolating_id: f"reassign {target}", report.harmless_id: f"focus time {harmless}"}
    for action_id, label in labels.items():
        _say(out, f"{label}: {_judged(monitor, action_id)}")
    _table(decided, labels, out)

    report.managers.append(_manager(store, target))
    for action_id in (report.isolating_id, report.harmless_id):
        report.states[action_id] = store.actions.get(action_id).state
        report.events[action_id] = _events(store, action_id)
    trail = [e for e in report.events[report.isolating_id] if e in SHOWN_EVENTS]
    _say(out, f"reassign {target}: {' -> '.join(trail)}; now {report.states[report.isolating_id]}")
    _say(out, f"  manager of {target}: {report.managers[0]} -> {report.managers[1]} -> {report.managers[2]}")
    kept = [e for e in report.events[report.harmless_id] if e in SHOWN_EVENTS]
    _say(out, f"focus time {harmless}: {' -> '.join(kept)}; kept ({report.states[report.harmless_id]})")
    return report

