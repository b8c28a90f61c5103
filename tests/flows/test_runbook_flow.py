"""The runbook flow under Prefect: seed 002's investigate-threat runbook against the local threat service. The
high-risk branch pauses the run in the approval gate, a resume with the form decides it, the run completes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from prefect.flow_runs import resume_flow_run

from blocks.settings import Runtime
from examples.threat_service import ThreatService, serve
from flows import api, runbook_api
from flows.runbook_flow import runbook_event_flow
from saferails.cli import main
from saferails.clock import ManualClock
from saferails.runbooks.validation import load_runbook, load_runbook_text
from saferails.runbooks.views import ExecutionContext, LegalBasis
from tasks.runbooks import runbook_service
from tests.support.cli import provision
from tests.support.flowkit import Outbox, eventually, finish_flow_runs

pytestmark = pytest.mark.flow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "runbooks" / "investigate-threat.yaml"
MANAGER = "soc-manager-1"


@pytest.fixture(autouse=True)
def _runs_finished(runtime: Runtime) -> Iterator[None]:
    """After each test, every flow run it started in this process (runbook runs and the action runs of action
    steps) ends and its logs reach the server. It depends on ``runtime`` so it is torn down first: before the
    runtime is uninstalled and the test's store dropped."""
    before = api.flow_threads()  # runs another test left going are that test's to end
    yield
    finish_flow_runs(ignore=before)


@pytest.fixture
def threat_service() -> Iterator[ThreatService]:
    server = serve(0)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def registered(runtime: Runtime) -> Runtime:
    for manager in (MANAGER, "soc-manager-2"):
        runtime.actions.upsert_principal(manager, groups=["soc-managers"], email=f"{manager}@example.com")
    runbook_service().register(load_runbook(EXAMPLE), "soc-lead")
    return runtime


def context() -> ExecutionContext:
    return ExecutionContext(tenant="acme-soc", initiated_by="analyst-7",
                            legal_basis=LegalBasis(authority="ir-policy-4.2", classification="confidential",
                                                   retention_days=365),
                            authorized_users=["analyst-7", MANAGER])


def inputs(service: ThreatService, indicator: str) -> dict[str, Any]:
    return {"indicator": indicator, "enrichment_url": service.url, "containment_url": service.url}


def run_state(flow_run_id: UUID) -> str:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    return "" if state is None else state.type.value


def artifact(key: str) -> str | None:
    with get_client(sync_client=True) as client:
        found = client.read_latest_artifacts()
    for a in found:
        if a.key == key:
            return str(a.data)
    return None


def test_a_high_risk_threat_pauses_the_run_for_a_soc_manager_and_completes_once_approved_in_the_form(
    registered: Runtime, outbox: Outbox, threat_service: ThreatService,
) -> None:
    view, run_id = runbook_api.start_runbook("investigate-threat", inputs(threat_service, "evil-c2.example.net"),
                                             context(), poll_interval=1)
    eventually(lambda: run_state(run_id) == "PAUSED")
    waiting = runbook_api.status(view.id).step("require-approval")
    assert waiting.state == "awaiting_approval"
    assert threat_service.containments == []
    code = outbox.code_for(str(waiting.approval_action_id), MANAGER)
    assert code, "the SOC manager was sent a one-time approval code"
    request = artifact(f"approval-{waiting.approval_action_id}")
    assert request is not None and "> High-risk threat evil-c2.example.net detected." in request

    resume_flow_run(run_id, run_input={"decision": "approve", "approver": MANAGER, "code": code,
                                       "reason": "C2 beacon confirmed"})
    eventually(lambda: run_state(run_id) == "COMPLETED")
    final = runbook_api.status(view.id)
    assert final.state == "completed"
    assert final.step("execute-containment").state == "completed"
    assert [c["isolated"] for c in threat_service.containments] == ["evil-c2.example.net"]
    action = registered.actions.get(str(waiting.approval_action_id))
    assert [(a.approver, a.channel) for a in action.approvals] == [(MANAGER, "prefect-ui")]
    summary = artifact(f"runbook-{view.id}")
    assert summary is not None and "execute-containment" in summary and "completed" in summary


def test_a_rejection_in_the_form_ends_the_run_and_nothing_is_contained(
    registered: Runtime, outbox: Outbox, threat_service: ThreatService,
) -> None:
    view, run_id = runbook_api.start_runbook("investigate-threat", inputs(threat_service, "evil.example.com"),
                                             context(), poll_interval=1)
    eventually(lambda: run_state(run_id) == "PAUSED")
    action_id = str(runbook_api.status(view.id).step("require-approval").approval_action_id)
    runbook_api.reject_step(view.id, "require-approval", MANAGER, outbox.code_for(action_id, MANAGER),
                            "false positive")
    eventually(lambda: run_state(run_id) == "COMPLETED")
    final = runbook_api.status(view.id)
    assert final.state == "failed"
    assert final.step("execute-containment").state in ("skipped", "cancelled")
    assert threat_service.containments == []


def test_a_low_risk_threat_runs_to_the_end_without_pausing(
    registered: Runtime, threat_service: ThreatService,
) -> None:
    view, run_id = runbook_api.start_runbook("investigate-threat", inputs(threat_service, "newsletter.example.org"),
                                             context(), wait=True, poll_interval=1, timeout=120)
    assert view.state == "completed"
    assert view.step("require-approval").state == "skipped"
    eventually(lambda: run_state(run_id) == "COMPLETED")


def test_the_cli_with_prefect_waits_while_the_run_is_paused_and_prints_the_completed_execution(
    registered: Runtime, outbox: Outbox, threat_service: ThreatService, sqlite_db: Any, clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SAFERAILS_DATABASE_URL", sqlite_db.url)
    monkeypatch.setenv("SAFERAILS_CLI_EXTENSIONS", "flows.cli_extension:register")
    monkeypatch.delenv("SAFERAILS_APPROVAL_SECRET", raising=False)
    monkeypatch.setenv("SAFERAILS_TOKEN", provision("analyst-7"))  # the CLI acts as an authenticated operator
    # The CLI opens its own store on the system clock; the flows' runtime must agree on what time it is.
    clock.set(datetime.now(UTC))
    argv = ["runbook", "start", str(EXAMPLE), "--input", "indicator=evil-c2.example.net",
            "--input", f"enrichment_url={threat_service.url}", "--input", f"containment_url={threat_service.url}",
            "--tenant", "acme-soc", "--user", "analyst-7", "--authorized-user", MANAGER,
            "--prefect", "--poll-interval", "1", "--wait-timeout", "120", "--json"]
    codes: list[int] = []
    command = threading.Thread(target=lambda: codes.append(main(argv)), daemon=True)
    command.start()

    def waiting_action() -> tuple[str, str] | None:
        for execution in runbook_service().list_executions(runbook_id="investigate-threat"):
            step = execution.step("require-approval")
            if step.approval_action_id and outbox.code_for(step.approval_action_id, MANAGER):
                return execution.id, step.approval_action_id
        return None

    execution_id, action_id = eventually(waiting_action)
    flow_run_id = runbook_api.live_flow_run(execution_id)
    assert flow_run_id is not None
    eventually(lambda: run_state(flow_run_id) == "PAUSED")
    resume_flow_run(flow_run_id, run_input={"decision": "approve", "approver": MANAGER,
                                            "code": outbox.code_for(action_id, MANAGER), "reason": "contain"})
    command.join(timeout=120)
    assert codes == [0]
    printed = json.loads(capsys.readouterr().out)
    assert printed["state"] == "completed" and printed["flow_run_id"] == str(flow_run_id)
    assert [c["isolated"] for c in threat_service.containments] == ["evil-c2.example.net"]


WAIT_FOR_TICKET = """\
id: wait-for-ticket
name: Wait for the ticket
version: "1"
inputs:
  ticket: {type: string}
steps:
  - id: ticket-opened
    type: wait-for-event
    config: {correlation_id: "ticket-{inputs.ticket}", timeout: 1h}
"""


def test_an_event_delivered_by_the_event_flow_releases_a_waiting_run(registered: Runtime) -> None:
    runbook_service().register(load_runbook_text(WAIT_FOR_TICKET), "ops")
    view, run_id = runbook_api.start_runbook("wait-for-ticket", {"ticket": "T-7"}, context(), poll_interval=1)
    eventually(lambda: runbook_api.status(view.id).step("ticket-opened").state == "awaiting_event")
    assert run_state(run_id) == "RUNNING"
    runbook_event_flow("ticket-T-7", {"status": "open"}, actor="ticketing", tenant="acme-soc")
    eventually(lambda: run_state(run_id) == "COMPLETED")
    final = runbook_api.status(view.id)
    assert final.state == "completed"
    assert final.step("ticket-opened").output
