"""The runbook part of ``make demo``: seed 002's investigate-threat runbook against a local threat service.

A high-risk indicator takes the approval branch (the execution waits for a SOC manager, who approves through
``ActionService`` like any action approval), then contains the host; a low-risk one takes the automatic branch
(the approval step is skipped with its reason). Then the logs and evidence of the high-risk execution, and the
audit chain verified again with every runbook record in it. In-process (``RunbookService.run``), no Prefect: the
same runbook pauses in the Prefect UI with ``saferails runbook start ... --prefect``.

Deterministic: time comes from the store's clock (a ManualClock in the demo moves instead of sleeping), the
service scores indicators by their text, and every run prints the same lines (ids, hashes and port differ).
"""

from __future__ import annotations

import importlib.util
import io
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from saferails.api import Store
from saferails.audit.chain import canonical_json
from saferails.audit.verify import verify_chain
from saferails.cli import output as cli_output
from saferails.cli.runbook import EVIDENCE_COLUMNS, LOG_COLUMNS, execution_rows
from saferails.clock import ManualClock
from saferails.net.egress import EgressPolicy
from saferails.notify.outbox_log import InboxNotifier
from saferails.runbooks.service import RunbookService
from saferails.runbooks.validation import load_runbook
from saferails.runbooks.views import ExecutionContext, ExecutionView, LegalBasis
from saferails.store.db import transaction

__all__ = ["EXAMPLES", "RUNBOOK_FILE", "runbook_demo"]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RUNBOOK_FILE = EXAMPLES / "runbooks" / "investigate-threat.yaml"
ANALYST = "analyst-7"
MANAGERS = ("soc-manager-1", "soc-manager-2")
TENANT = "acme-soc"


def _threat_service_module() -> ModuleType:
    """``examples/threat_service.py`` (an example, not a package: loaded from its file)."""
    spec = importlib.util.spec_from_file_location("saferails_demo_threat_service", EXAMPLES / "threat_service.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError(EXAMPLES / "threat_service.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def section(self, title: str) -> None:
        self.out.write(f"\n== {title} {'=' * max(3, 76 - len(title))}\n")

    def say(self, text: str) -> None:
        self.out.write(f"  {text}\n")

    def table(self, columns: tuple[str, ...], rows: list[list[Any]]) -> None:
        buffer = io.StringIO()
        cli_output.render_table(columns, rows, buffer)
        for line in buffer.getvalue().splitlines():
            self.say(line)


def _context() -> ExecutionContext:
    return ExecutionContext(
        tenant=TENANT, initiated_by=ANALYST,
        legal_basis=LegalBasis(authority="incident-response-policy-4.2", classification="confidential",
                               retention_days=365),
        authorized_users=[ANALYST, *MANAGERS])


def _sleeper(store: Store) -> Any:
    """Retry backoff moves the demo's ManualClock instead of sleeping."""
    clock = store.clock

    def sleep(seconds: float) -> None:
        if isinstance(clock, ManualClock):
            clock.advance(timedelta(seconds=seconds))

    return sleep


def _show(p: _Printer, view: ExecutionView) -> None:
    p.say(f"execution {view.id[:8]}: {view.state}")
    p.table(("step", "type", "state", "attempts", "result"), execution_rows(view))


def runbook_demo(store: Store, out: TextIO) -> dict[str, str]:
    """Run the scenario on ``store`` and print it to ``out``; returns the outcomes by label
    (``runbook_high``/``runbook_low``: the executions' final states, ``runbook_containments``: hosts isolated)."""
    p = _Printer(out)
    server = _threat_service_module().serve(0)
    try:
        return _scenario(store, p, server)
    finally:
        server.shutdown()
        server.server_close()


def _scenario(store: Store, p: _Printer, server: Any) -> dict[str, str]:
    # The demo's threat service listens on loopback, which the egress guard refuses unless allowed by name.
    svc = RunbookService(store.sessions, store.clock, store.actions, sleeper=_sleeper(store),
                         egress=EgressPolicy(allowed_hosts=frozenset({"127.0.0.1"})))
    outcomes: dict[str, str] = {}
    p.section("Runbook (seed 002): investigate-threat against a local enrichment/containment service")
    for manager in MANAGERS:
        store.actions.upsert_principal(manager, email=f"{manager}@example.com", groups=["soc-managers"])
    store.actions.upsert_principal(ANALYST, groups=["analysts"])
    template = svc.register(load_runbook(RUNBOOK_FILE), "soc-lead")
    step_ids = [s["id"] for s in template.definition["steps"]]
    p.say(f"registered {template.runbook_id} v{template.version} ({len(step_ids)} steps: {', '.join(step_ids)})")
    p.say("threat service on 127.0.0.1 (a free port): indicators containing 'evil' score 9, others 3")
    urls = {"enrichment_url": server.url, "containment_url": server.url}

    p.section("High risk: the runbook waits for a SOC manager, then contains the threat")
    high = svc.start(template.runbook_id, {"indicator": "evil-c2.example.net", **urls}, context=_context())
    high = svc.run(high.id)
    _show(p, high)
    waiting = next(s for s in high.steps if s.state == "awaiting_approval")
    action_id = str(waiting.approval_action_id)
    _advance(store, timedelta(minutes=4))
    code = InboxNotifier(store.settings.data_dir / "inbox").latest_code(MANAGERS[0], action_id)
    action = store.actions.approve(action_id, MANAGERS[0], reason="C2 beacon confirmed; contain it", code=code)
    p.say(f"{MANAGERS[0]} approves step {waiting.step_id} (action {action_id[:8]}) -> {action.state}")
    high = svc.run(high.id)
    _show(p, high)
    outcomes["runbook_high"] = high.state

    p.section("Low risk: the automatic branch, the approval step skipped")
    low = svc.run(svc.start(template.runbook_id, {"indicator": "newsletter.example.org", **urls},
                            context=_context()).id)
    _show(p, low)
    outcomes["runbook_low"] = low.state
    isolated = sorted(c["isolated"] for c in server.containments)
    watched = sorted(m["monitoring"] for m in server.monitored)
    outcomes["runbook_containments"] = ",".join(isolated)
    outcomes["runbook_monitored"] = ",".join(watched)
    p.say(f"the service contained: {', '.join(isolated) or 'nothing'}; monitors: {', '.join(watched) or 'nothing'}")

    p.section("Logs and evidence of the high-risk execution (`saferails runbook logs|evidence EXEC`)")
    logs = svc.logs(high.id)
    p.table(LOG_COLUMNS, [[ln.at, ln.step_id or "-", ln.level, ln.message[:80]] for ln in logs])
    evidence = svc.evidence(high.id)
    p.table(EVIDENCE_COLUMNS, [[e.at, e.step_id, e.kind, canonical_json(e.content)[:70]] for e in evidence])
    with transaction(store.sessions) as session:
        report = verify_chain(session)
    p.say(f"audit chain {'OK' if report.ok else 'BROKEN'} with the runbook records: "
          f"{report.records_checked} records checked")
    return outcomes


def _advance(store: Store, delta: timedelta) -> None:
    if isinstance(store.clock, ManualClock):
        store.clock.advance(delta)
