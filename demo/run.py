"""``python -m demo`` (``make demo``): the main scenario, deterministic, on the embedded default.

A FRESH SQLite file (``.demo/demo.db``, removed at start). First the policy's decisions through the core:
principals, actions of every impact, self-approval refused, a blocked payment, the hourly email limit, a KYC
check. Then actions carried by the Prefect action flow and executed for real (``demo.actions``: the
approval gate with one-time codes, 2-of-3, a rejection, a timeout, a rollback), seed 002's investigate-threat
runbook against a local threat service (``demo.runbooks``), seed 004's workflow triggers and SLA breach
(``demo.workflow``), fleet controls (``demo.fleet``: a paused agent refused, a fleet pause approved by two
and rolled back), and last the audit trail and its verification against an exported anchor.
Time comes from a ManualClock, so every run prints the same decisions and times (ids and hashes differ).
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import yaml

from demo.runbooks import runbook_demo
from demo.workflow import workflow_demo
from saferails.actions.models import ActionView, Proposal
from saferails.actions.service import ActionService
from saferails.api import Store, open_store, refusal_for
from saferails.audit.anchor import export_anchor, load_anchor
from saferails.audit.query import AuditQuery, query_audit
from saferails.audit.verify import verify_chain
from saferails.cli import output as cli_output
from saferails.clock import ManualClock
from saferails.errors import SaferailsError
from saferails.notify.outbox_log import InboxNotifier
from saferails.policy import Policy, default_policy, load_policy_text
from saferails.settings import Settings
from saferails.store.db import transaction

__all__ = ["DEMO_START", "DemoReport", "main", "run_demo"]

DEMO_START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
DEFAULT_DIR = Path(".demo")
TRAIL_LENGTH = 15

# The default policy asks one approver; this part of the demo shows an n-of-m requirement, so it adds a rule.
TWO_OF_THREE_RULE: dict[str, Any] = {
    "id": "restructures-need-two",
    "description": "demo: a team restructure needs 2 of the 3 approvers",
    "kind": "requires_approval",
    "action_types": ["team_restructure"],
    "approval": {"min_approvals": 2},
}


@dataclass
class DemoReport:
    """What the demo found: whether the trail verified (directly and against the anchor) and where it lives."""

    database: Path
    anchor: Path
    verified: bool = False
    records_checked: int = 0
    head_hash: str | None = None
    outcomes: dict[str, str] = field(default_factory=dict)


class _Demo:
    def __init__(self, store: Store, clock: ManualClock, out: TextIO, report: DemoReport) -> None:
        self.store = store
        self.clock = clock
        self.out = out
        self.report = report

    def section(self, title: str) -> None:
        self.out.write(f"\n== {title} {'=' * max(3, 76 - len(title))}\n")

    def say(self, text: str) -> None:
        self.out.write(f"  {text}\n")

    def propose(self, label: str, action_type: str, target: str, params: dict[str, Any], proposer: str,
                reason: str = "", service: ActionService | None = None, *, quiet: bool = False) -> ActionView:
        view = (service or self.store.actions).propose(
            Proposal(action_type=action_type, target=target, params=params, proposer=proposer, reason=reason)
        )
        self.report.outcomes[label] = view.state
        if not quiet:
            self.say(describe(view))
        return view

    def refused(self, what: str, exc: SaferailsError) -> None:
        self.report.outcomes[what] = exc.code
        self.say(f"{what} -> refused error[{exc.code}]")


def describe(view: ActionView) -> str:
    """One line per decision: impact, type, time, state and the rule (or refusal) behind it."""
    when = cli_output.format_time(view.updated_at)[11:16]
    head = f"{view.impact.upper():<6} {view.action_type:<17} by {view.proposer:<8} {when} -> "
    refusal = refusal_for(view)
    if refusal is not None:
        return head + f"BLOCKED error[{refusal.code}] {_deciding(view)}" + _retry(view)
    if view.state == "pending_approval":
        approval = view.decision.get("approval") or {}
        who = ", ".join([*approval.get("users", []), *(f"group {g}" for g in approval.get("groups", []))])
        return head + f"pending: needs {approval.get('min_approvals')} approval(s) from {who}"
    if view.state == "approved" and view.min_approvals == 0:
        return head + "approved automatically (no rule objected)"
    return head + view.state


def _deciding(view: ActionView) -> str:
    code = view.decision.get("code")
    for r in view.decision.get("reasons", []):
        if r.get("fired") and r.get("code") == code:
            return f"rule {r['rule_id']}: {r['message']}"
    return ""


def _retry(view: ActionView) -> str:
    retry = view.decision.get("retry_after")
    return f"\n{'':9}retry after {cli_output.format_time(retry)}" if retry else ""


def demo_policy(base: Policy) -> Policy:
    """The default policy plus the 2-of-3 rule, under its own version (decisions name it), as a YAML document."""
    data = base.model_dump(mode="json", exclude_none=True)
    data["version"] = f"{base.version}-demo"
    data["rules"] = [*data["rules"], TWO_OF_THREE_RULE]
    return load_policy_text(yaml.safe_dump(data, sort_keys=False))


def _principals(d: _Demo) -> None:
    d.section("Principals")
    svc = d.store.actions
    for agent in ("agent-1", "agent-2"):
        svc.upsert_principal(agent, groups=["agents"])
    for person in ("alice", "bob", "carol"):
        svc.upsert_principal(person, email=f"{person}@example.com", groups=["approvers"])
    svc.upsert_principal("dana", groups=["buyers"], kyc_verified=True)
    d.say("agents: agent-1, agent-2 | approvers (group 'approvers'): alice, bob, carol | buyer: dana (KYC verified)")
    d.say(f"policy {d.store.policy.version} ({d.store.policy.fingerprint[:12]}), clock at "
          f"{cli_output.format_time(d.clock.now())}")


def _impacts(d: _Demo) -> None:
    d.section("Actions of every impact (seed 000: LOW/MEDIUM run automatically, HIGH waits for a human)")
    d.propose("low", "create_document", "docs/q4-plan.md", {"path": "docs/q4-plan.md", "content": "# Q4"}, "agent-1")
    d.propose("medium", "reduce_meetings", "emp_42", {"max_weekly_meeting_hours": 12}, "agent-1",
              "emp_42 spends 31 h/week in meetings")
    high = d.propose("high", "reassign_manager", "emp_7", {"new_manager_id": "mgr_3"}, "agent-2",
                     "mgr_1 has 19 direct reports")
    d.say("why (`saferails show` prints the same):")
    for line in cli_output.explanation(high).splitlines():
        d.say(f"  {line}")
    d.clock.advance(timedelta(minutes=5))
    try:
        d.store.actions.approve(high.id, "agent-2")
    except SaferailsError as exc:
        d.refused("agent-2 approving its own proposal", exc)
    # alice types the one-time code from her own inbox (<demo dir>/inbox/alice.jsonl, mode 0600).
    code = InboxNotifier(d.store.settings.data_dir / "inbox").latest_code("alice", high.id)
    view = d.store.actions.approve(high.id, "alice", reason="checked with HR", code=code)
    d.report.outcomes["high"] = view.state
    d.say(f"alice approves -> {view.state} ({len(view.valid_approvers)}/{view.min_approvals} approvals)")


def _blocked_payment(d: _Demo) -> None:
    d.section("A blocked payment (seed 001: payments are blocked by default)")
    d.propose("payment", "make_payment", "acct:ops", {"amount": "1200.00", "currency": "EUR", "payee": "ACME"},
              "agent-1", "invoice 2211")


def _rate_limit(d: _Demo) -> None:
    d.section("Rate limit: 51 emails in one hour (seed 001: 50 per hour)")
    email = {"to": ["team@example.com"], "subject": "stand-up notes", "body": "..."}
    states: list[str] = []
    for _ in range(50):
        d.clock.advance(timedelta(minutes=1))
        states.append(d.propose("email", "send_email", "mbx:agent-1", email, "agent-1", quiet=True).state)
    d.say(f"emails 1-50 ({cli_output.format_time(d.clock.now() - timedelta(minutes=49))[11:]} to "
          f"{cli_output.format_time(d.clock.now())[11:]}): {states.count('approved')} approved automatically")
    d.clock.advance(timedelta(minutes=1))
    last = d.propose("email_51", "send_email", "mbx:agent-1", email, "agent-1")
    refusal = refusal_for(last)
    if refusal is not None:
        d.report.outcomes["email_51"] = refusal.code


def _kyc(d: _Demo) -> None:
    d.section("Purchases need a KYC-verified proposer")
    laptop = {"item": "laptop", "quantity": 1, "max_total": "1800", "currency": "EUR", "vendor": "ACME"}
    d.propose("purchase_no_kyc", "make_purchase", "acct:it", laptop, "agent-1")
    d.propose("purchase_kyc", "make_purchase", "acct:it", laptop, "dana")


def execution_and_rollback(d: _Demo) -> None:
    """Section 8: actions executed for real through the Prefect action flow (``demo.actions``)."""
    from demo.actions import show_execution  # loads Prefect only when the demo gets here

    executed = show_execution(d, demo_policy(d.store.policy), d.report.outcomes, d.report.database.parent)
    d.report.outcomes.update(executed.outcomes)


def _trail(d: _Demo) -> None:
    d.section(f"Audit trail (last {TRAIL_LENGTH} records, as `saferails audit query` prints them)")
    with transaction(d.store.sessions) as session:
        page = query_audit(session, AuditQuery(limit=TRAIL_LENGTH, descending=True))
    buffer = io.StringIO()
    cli_output.render_table(cli_output.AUDIT_COLUMNS, cli_output.audit_rows(page.records[::-1]), buffer)
    for line in buffer.getvalue().splitlines():
        d.out.write(f"  {line}\n")


def _verify(d: _Demo) -> None:
    d.section("Verification (`saferails audit export-head` + `saferails audit verify --anchor`)")
    with transaction(d.store.sessions) as session:
        export_anchor(session, d.report.anchor, d.clock.now())
    d.say(f"chain head exported to {d.report.anchor}")
    with transaction(d.store.sessions) as session:
        plain = verify_chain(session)
        anchored = verify_chain(session, anchor=load_anchor(d.report.anchor))
    for label, report in (("verify", plain), ("verify --anchor", anchored)):
        buffer = io.StringIO()
        cli_output.render_verify_report(report, buffer)
        for line in buffer.getvalue().splitlines():
            d.say(f"{label}: {line.removeprefix('audit chain ')}")
    d.report.verified = bool(plain.ok and anchored.ok)
    d.report.records_checked = int(plain.records_checked)
    d.report.head_hash = plain.head_hash
    d.say("VERIFIED: the audit trail is intact" if d.report.verified else "NOT VERIFIED")


def run_demo(directory: Path = DEFAULT_DIR, out: TextIO | None = None) -> DemoReport:
    """Run the whole scenario in ``directory`` (emptied first) and print it to ``out`` (stdout)."""
    out = out or sys.stdout
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    database = directory / "demo.db"
    report = DemoReport(database=database, anchor=directory / "audit-anchor.json")
    settings = Settings(database_url=f"sqlite:///{database}", policy_path=None, approval_secret=None,
                        data_dir=directory)
    clock = ManualClock(DEMO_START)
    out.write(f"saferails demo: a fresh SQLite store at {database}\n")
    with open_store(settings, clock=clock, policy=default_policy()) as store:
        demo = _Demo(store, clock, out, report)
        for step in (_principals, _impacts, _blocked_payment, _rate_limit, _kyc, execution_and_rollback):
            step(demo)
        report.outcomes.update(runbook_demo(store, out))
        workflow_demo(store, clock, out)
        from demo.outcome_gate import outcome_gate_demo
        from demo.outcomes import outcomes_demo  # here, so hooking in stayed a one-place change
        from saferails.execution import ExecutionService

        outcomes_demo(store, clock, out, ExecutionService(store.sessions, clock, None, sleeper=lambda s: None))
        report.outcomes["outcome_gate"] = outcome_gate_demo(
            store, clock, out, ExecutionService(store.sessions, clock, None, sleeper=lambda s: None))
        from demo.fleet import fleet_demo

        report.outcomes.update(fleet_demo(demo))
        # Last, so the verification covers every record the demo wrote (actions, runbooks, workflow).
        _trail(demo)
        _verify(demo)
    out.write(f"\ndone: {report.records_checked} audit records, verified={report.verified}; "
              f"inspect with SAFERAILS_DATABASE_URL=sqlite:///{database} saferails list\n")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where the demo store lives (emptied first)")
    args = parser.parse_args(argv)
    report = run_demo(args.dir)
    return 0 if report.verified else 3


if __name__ == "__main__":
    sys.exit(main())
