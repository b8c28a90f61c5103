"""The demo's execution part (``make demo``): actions carried by the Prefect action flow, for real.

Runs in the demo's store (same database and ManualClock as the foundation part, so the audit trail verified at
the end covers it) through a second :class:`~saferails.api.Store` that has a per-run approval secret and a
JSON-lines notifier (``<demo dir>/notifications.jsonl``): approvers get one-time codes, and the scripted approver
reads its code from that file, then answers through ``flows.api.approve`` / ``reject``, which resume the paused
flow run with the same form input the Prefect UI submits. File actions act under ``<demo dir>/files``.

Prefect: the flows, tasks and blocks layers are imported only inside :func:`show_execution`, so the rest of the
demo starts without loading Prefect (the demo is an edge, like the CLI; the library never imports Prefect).
Unless a Prefect API is already configured, Prefect runs in its ephemeral mode (a temporary local server for this
process, data under ``<demo dir>/prefect``; no Prefect server has to be running), with analytics and heartbeats off.

Cases: a LOW action executed automatically, a HIGH one paused then approved with a code, a 2-of-3 approval, a
rejection, a timeout (the clock moved to the deadline), a rollback of the reassignment; the blocked payment and
the 51st email are the foundation part's (sections 4 and 5) and are referred to, not repeated.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, TextIO

from saferails.actions.models import ActionView, Proposal
from saferails.api import Store, open_store
from saferails.clock import ManualClock
from saferails.handlers import HandlerSettings
from saferails.notify.outbox_log import JsonLinesNotifier
from saferails.org import OrgRepository
from saferails.policy import Policy
from saferails.store.db import transaction

__all__ = ["ORG", "ExecutionReport", "show_execution"]

POLL_INTERVAL = 1  # seconds a paused demo run waits between checks for an answer
PREFECT_ENV = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "WARNING",
               # A fresh PREFECT_HOME migrates its database first: more than the default 20 s on a slow machine.
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}

ORG: dict[str, Any] = {
    "teams": [{"id": "platform", "name": "Platform"}, {"id": "data", "name": "Data"}],
    "roles": [{"id": "engineer"}, {"id": "lead"}, {"id": "director"}],
    "employees": [
        {"id": "ceo", "name": "Cleo", "email": "cleo@example.com", "team_id": "platform", "role": "director"},
        {"id": "mgr_1", "name": "Max", "email": "max@example.com", "manager_id": "ceo", "team_id": "platform",
         "role": "lead"},
        {"id": "mgr_2", "name": "Mia", "email": "mia@example.com", "manager_id": "ceo", "team_id": "data",
         "role": "lead"},
        *({"id": f"emp_{n}", "name": f"Employee {n}", "email": f"emp{n}@example.com", "manager_id": "mgr_1",
           "team_id": "platform", "role": "engineer"} for n in (21, 22, 23, 24)),
    ],
}


class DemoLike(Protocol):
    """What this part needs from ``demo.run``'s demo object."""

    store: Store
    clock: ManualClock
    out: TextIO

    def section(self, title: str) -> None: ...

    def say(self, text: str) -> None: ...


@dataclass
class ExecutionReport:
    """Final states by case, what the world looked like, and where the files and notifications are."""

    file_root: Path
    notifications: Path
    outcomes: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


def show_execution(d: DemoLike, policy: Policy, outcomes: dict[str, str], directory: Path) -> ExecutionReport:
    """Run the execution part on ``d``'s store and clock; ``outcomes`` holds the foundation part's results (payment and
    51st email are reported from there). Returns what happened, also written into ``outcomes``."""
    report = ExecutionReport(file_root=directory / "files", notifications=directory / "notifications.jsonl")
    report.file_root.mkdir(parents=True, exist_ok=True)
    settings = d.store.settings.with_changes(approval_secret=secrets.token_urlsafe(48), data_dir=directory)
    notifier = JsonLinesNotifier(report.notifications)
    with _prefect_environment(directory / "prefect"), open_store(settings, clock=d.clock, policy=policy,
                                                                 notifier=notifier) as store:
        with transaction(store.sessions) as session:
            OrgRepository(session).insert(ORG)
        _Scenario(d, store, notifier, report, outcomes).run()
    outcomes.update({f"exec_{k}": v for k, v in report.outcomes.items()})
    return report


@contextmanager
def _prefect_environment(home: Path) -> Iterator[None]:
    """Prefect settings for the demo, restored afterwards. They take effect when Prefect is first imported here
    (a process that already imported Prefect, e.g. a test session, keeps its own API)."""
    wanted = PREFECT_ENV | {"PREFECT_HOME": str(home)}
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update({k: v for k, v in wanted.items() if k == "PREFECT_HOME" or k not in os.environ})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _Scenario:
    def __init__(self, d: DemoLike, store: Store, notifier: JsonLinesNotifier, report: ExecutionReport,
                 earlier: dict[str, str]) -> None:
        self.d, self.store, self.notifier, self.report, self.earlier = d, store, notifier, report, earlier
        self.api: Any = None  # flows.api, imported in run(): importing this module must not load Prefect

    def run(self) -> None:
        from blocks.settings import install_runtime, runtime_from_store
        from flows import api

        self.api = api
        handler_settings = HandlerSettings(file_root=self.report.file_root)
        install_runtime(runtime_from_store(self.store, handler_settings=handler_settings))
        try:
            with api.heartbeats_off():
                self.d.section("Execution through the Prefect action flow (one flow run per action)")
                self.d.say(f"files under {self.report.file_root}; approval codes go to {self.report.notifications}")
                high = self._low_and_high()
                self._two_of_three()
                self._rejection()
                self._timeout()
                self._refusals()
                self._rollback(high)
                self._ui()
        finally:
            install_runtime(None)

    # --- helpers ----------------------------------------------------------------------------------------------
    def submit(self, action_type: str, target: str, params: dict[str, Any], proposer: str, reason: str,
               **extra: Any) -> Any:
        proposal = Proposal(action_type=action_type, target=target, params=params, proposer=proposer, reason=reason,
                            **extra)
        return self.api.submit_action(proposal, poll_interval=POLL_INTERVAL)

    def paused(self, submission: Any) -> ActionView:
        """Wait until the run is paused at the gate (the form is up); the view the approvers see."""
        view: ActionView = self.api.wait_until_paused(submission.action.id, timeout=60)
        self.d.say(f"  flow run PAUSED at the approval gate (form + request artifact), "
                   f"waiting for {view.min_approvals} approval(s); codes sent to "
                   f"{', '.join(self.codes_sent(view.id)) or 'nobody'}")
        return view

    def issued(self, action_id: str) -> dict[str, str]:
        """``{approver: code}`` as the approvers would read them in their mail (here: the JSON-lines file); a
        later notification replaces an earlier code."""
        codes: dict[str, str] = {}
        for note in self.notifier.read():
            data = note.get("data")
            if note.get("entity_id") == action_id and isinstance(data, dict) and data.get("code"):
                codes[str(data["approver"])] = str(data["code"])
        return codes

    def codes_sent(self, action_id: str) -> list[str]:
        return sorted(self.issued(action_id))

    def code(self, action_id: str, approver: str) -> str:
        return self.issued(action_id)[approver]

    def decide(self, decide: Callable[..., ActionView], view: ActionView, approver: str, reason: str) -> ActionView:
        self.d.clock.advance(timedelta(minutes=3))
        after: ActionView = decide(view.id, approver, self.code(view.id, approver), reason)
        after = self._recorded(after, approver)
        verb = "approves" if decide is self.api.approve else "rejects"
        # The count, not the state: once the quorum is in, execution races this line.
        self.d.say(f"  {approver} {verb} with code from notifications.jsonl "
                   f"({len(after.valid_approvers)}/{after.min_approvals} approvals)")
        return after

    def _recorded(self, view: ActionView, approver: str, within: float = 30) -> ActionView:
        """The action once the store shows ``approver``'s answer counted (or the action decided). Under load the
        answer can come back before the gate's write is visible here; the printed count must be the store's.
        A refused answer never shows up: after ``within`` seconds the view is what the store holds."""
        deadline = time.monotonic() + within
        while view.state == "pending_approval" and approver not in view.valid_approvers:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
            view = self.store.actions.get(view.id)
        return view

    def final(self, label: str, action_id: str) -> ActionView:
        view: ActionView = self.api.wait_for_outcome(action_id, 120)
        self.report.outcomes[label] = view.state
        return view

    def employee(self, employee_id: str) -> dict[str, Any]:
        with transaction(self.store.sessions) as session:
            e = OrgRepository(session).require_employee(employee_id)
            return {"manager_id": e.manager_id, "team_id": e.team_id, "role": e.role}

    # --- the cases --------------------------------------------------------------------------------------------
    def _low_and_high(self) -> ActionView:
        self.d.say("LOW: create_document, no rule objects -> the flow executes it at once")
        sub = self.api.submit_action(Proposal(action_type="create_document", target="notes/standup.md",
                                              params={"path": "standup.md", "content": "# Stand-up\n- ship v2\n"},
                                              proposer="agent-1", reason="daily notes"), wait=True, timeout=120)
        written = (self.report.file_root / "standup.md").is_file()
        self.report.outcomes["low"] = sub.action.state
        self.report.facts["low_file_written"] = written
        self.d.say(f"  -> {sub.action.state}; file {'written' if written else 'MISSING'}: files/standup.md")
        self.d.say("HIGH: reassign_manager emp_21 from mgr_1 to mgr_2 -> the flow pauses for a human")
        before = self.employee("emp_21")["manager_id"]
        sub = self.submit("reassign_manager", "emp_21", {"new_manager_id": "mgr_2"}, "agent-2",
                          "mgr_1 has too many direct reports")
        view = self.decide(self.api.approve, self.paused(sub), "alice", "checked with HR")
        view = self.final("high", view.id)
        after = self.employee("emp_21")["manager_id"]
        self.report.facts["high_manager"] = (before, after)
        self.d.say(f"  -> {view.state}: emp_21 reports to {after} (was {before})")
        return view

    def _two_of_three(self) -> None:
        self.d.say("2 of 3: team_restructure emp_22 to team data (rule restructures-need-two)")
        sub = self.submit("team_restructure", "emp_22", {"new_team_id": "data"}, "agent-1", "data team is short")
        view = self.paused(sub)
        self.decide(self.api.approve, view, "alice", "fine by me")
        self.decide(self.api.approve, view, "bob", "agreed")
        view = self.final("two_of_three", view.id)
        self.d.say(f"  -> {view.state}: emp_22 is in team {self.employee('emp_22')['team_id']}")

    def _rejection(self) -> None:
        self.d.say("Rejection: role_change emp_23 to director")
        sub = self.submit("role_change", "emp_23", {"new_role": "director"}, "agent-2", "strong quarter")
        view = self.decide(self.api.reject, self.paused(sub), "carol", "promotion cycle is in March")
        view = self.final("rejected", view.id)
        self.d.say(f"  -> {view.state}: emp_23 is still {self.employee('emp_23')['role']}; nothing executed")

    def _timeout(self) -> None:
        self.d.say("Timeout: role_change emp_24 to lead, and nobody answers")
        proposal = Proposal(action_type="role_change", target="emp_24", params={"new_role": "lead"},
                            proposer="agent-1", reason="acting lead", idempotency_key="demo-timeout-emp_24")
        recorded = self.store.actions.propose(proposal)
        assert recorded.approval_deadline is not None
        # Move the clock to one second before the deadline, so the gate pauses for exactly that second.
        self.d.clock.advance(recorded.approval_deadline - self.d.clock.now() - timedelta(seconds=1))
        sub = self.api.submit_action(proposal, poll_interval=POLL_INTERVAL)
        self.paused(sub)
        self.d.clock.advance(timedelta(seconds=2))
        view = self.final("timeout", recorded.id)
        self.d.say(f"  clock moved past the 24 h deadline, to {view.updated_at:%Y-%m-%d %H:%M}Z -> {view.state} "
                   f"(policy timeout action: {view.timeout_action or 'fail'}); emp_24 is still "
                   f"{self.employee('emp_24')['role']}")

    def _refusals(self) -> None:
        payment = self.earlier.get("payment", "not run")
        email = self.earlier.get("email_51", "not run")
        self.d.say(f"Blocked payment (above): {payment}; the 51st email (above): {email}. A refused action "
                   "never reaches a handler: its flow run ends at once in a state named Blocked or RateLimited")

    def _rollback(self, high: ActionView) -> None:
        self.d.clock.advance(timedelta(minutes=10))
        before = self.employee("emp_21")["manager_id"]
        view = self.api.rollback(high.id, "alice", "mgr_2 is on leave: undo the reassignment")
        after = self.employee("emp_21")["manager_id"]
        self.report.outcomes["rollback"] = view.state
        self.report.facts["rollback_manager"] = (before, after)
        self.d.say(f"Rollback of the reassignment: {view.state}; emp_21's manager {before} -> {after}")

    def _ui(self) -> None:
        self.d.say("Watch the same in the Prefect UI:")
        for line in (
            "1. `make serve` (starts a Prefect server on http://127.0.0.1:4200, or PORT=4300, and serves the "
            "saferails-action flow)",
            "2. in another shell, with PREFECT_API_URL=http://127.0.0.1:4200/api and SAFERAILS_APPROVAL_SECRET set: "
            "flows.api.submit_action(Proposal(...), deployment='saferails-action/action')",
            "3. open http://127.0.0.1:4200/runs, click the Paused run '<type> <target> · <id>': the request is shown "
            "above the form; pick a decision, your principal id, the code from your mail, a reason; click Submit",
        ):
            self.d.say(f"  {line}")
