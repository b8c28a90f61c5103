"""``saferails runbook ...`` end to end on SQLite and PostgreSQL: validate, start (in-process), the approval
branch decided with ``saferails approve``, operator control, events, logs and evidence."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from examples.threat_service import ThreatService, serve
from tests.support.cli import Cli, use_database

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "runbooks" / "investigate-threat.yaml"
CONTEXT = ["--tenant", "acme-soc", "--user", "analyst-7", "--authority", "ir-policy-4.2",
           "--classification", "confidential", "--retention-days", "365",
           "--authorized-user", "analyst-7", "--authorized-user", "soc-manager-1"]

OPS_CHECK = """\
id: ops-check
name: Ops check
version: "1"
description: wait for the ticket, then notify
inputs:
  url: {type: string}
  ticket: {type: string}
steps:
  - id: wait-ticket
    type: wait-for-event
    config: {correlation_id: "ticket-{inputs.ticket}", timeout: 1h}
  - id: notify
    type: call-service
    depends_on: [wait-ticket]
    retry_policy: {max_attempts: 1}
    config: {method: POST, url: "{inputs.url}", body: {ticket: "{inputs.ticket}"}}
"""


class Switch(ThreadingHTTPServer):
    """A service that answers 400 while ``failing`` is set, else 200 with ``{"ok": true}``; counts its calls."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SwitchHandler)
        self.failing = True
        self.calls = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/notify"


class _SwitchHandler(BaseHTTPRequestHandler):
    server: Switch

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.calls += 1
        status, body = (400, b'{"error": "down for the test"}') if self.server.failing else (200, b'{"ok": true}')
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def cli(db: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    use_database(monkeypatch, db.url)
    run = Cli(capsys)
    for manager in ("soc-manager-1", "soc-manager-2"):
        assert run("principal", "add", manager, "--group", "soc-managers").code == 0
    return run


@pytest.fixture
def threat_service() -> Iterator[ThreatService]:
    server = serve(0)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def switch() -> Iterator[Switch]:
    server = Switch()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def start_threat(cli: Cli, service: ThreatService, indicator: str) -> Any:
    return cli.ok("runbook", "start", str(EXAMPLE), "--input", f"indicator={indicator}",
                  "--input", f"enrichment_url={service.url}", "--input", f"containment_url={service.url}", *CONTEXT)


def steps(execution: Any) -> dict[str, Any]:
    return {s["step_id"]: s for s in execution["steps"]}


def start_ops(cli: Cli, tmp_path: Path, switch: Switch, ticket: str = "T-1") -> Any:
    path = tmp_path / "ops-check.yaml"
    path.write_text(OPS_CHECK)
    return cli.ok("runbook", "start", str(path), "--input", f"url={switch.url}", "--input", f"ticket={ticket}",
                  *CONTEXT)


def test_validate_accepts_the_seed_example_and_lists_its_steps(cli: Cli) -> None:
    run = cli("runbook", "validate", str(EXAMPLE))
    assert run.code == 0, run.err
    assert "valid runbook investigate-threat" in run.out
    assert "require-approval" in run.out


def test_a_runbook_with_a_cycle_is_refused_naming_the_steps_and_nothing_is_registered(cli: Cli,
                                                                                      tmp_path: Path) -> None:
    path = tmp_path / "cycle.yaml"
    path.write_text(OPS_CHECK.replace("config: {correlation_id", "depends_on: [notify]\n    config: {correlation_id"))
    run = cli("runbook", "validate", str(path))
    assert run.code == 2
    assert run.err.startswith("error[RUNBOOK_INVALID]")
    assert "wait-ticket" in run.err and "notify" in run.err
    started = cli("runbook", "start", str(path), "--input", "url=http://127.0.0.1:9/", "--input", "ticket=x", "--json")
    assert started.code == 2 and started.error()["error_code"] == "RUNBOOK_INVALID"
    assert cli.ok("runbook", "list") == []


def test_a_high_risk_indicator_waits_for_a_soc_manager_and_contains_the_threat_once_approved(
    cli: Cli, threat_service: ThreatService, tmp_path: Path,
) -> None:
    execution = start_threat(cli, threat_service, "evil-c2.example.net")
    assert execution["state"] == "awaiting"
    waiting = steps(execution)["require-approval"]
    assert waiting["state"] == "awaiting_approval"
    table = cli("runbook", "status", execution["id"])
    assert f"approve action {waiting['approval_action_id']}" in table.out
    assert threat_service.containments == []

    code = cli.code("soc-manager-1", waiting["approval_action_id"])
    approved = cli("approve", waiting["approval_action_id"], "--approver", "soc-manager-1", "--reason", "C2 seen",
                   "--code", code)
    assert approved.code == 0, approved.err
    done = cli.ok("runbook", "run", execution["id"])
    assert done["state"] == "completed"
    assert steps(done)["execute-containment"]["state"] == "completed"
    assert [c["isolated"] for c in threat_service.containments] == ["evil-c2.example.net"]
    assert threat_service.containments[0]["headers"]["X-Tenant-Id"] == "acme-soc"

    logs = cli("runbook", "logs", execution["id"])
    assert logs.code == 0 and "execute-containment" in logs.out
    assert cli.ok("runbook", "evidence", execution["id"])


def test_a_low_risk_indicator_takes_the_automatic_branch_and_the_approval_is_skipped_with_its_reason(
    cli: Cli, threat_service: ThreatService,
) -> None:
    execution = start_threat(cli, threat_service, "newsletter.example.org")
    assert execution["state"] == "completed"
    skipped = steps(execution)["require-approval"]
    assert skipped["state"] == "skipped" and skipped["skip_reason"]
    assert steps(execution)["execute-containment"]["state"] == "skipped"
    assert [m["monitoring"] for m in threat_service.monitored] == ["newsletter.example.org"]
    assert threat_service.containments == []
    assert "skipped:" in cli("runbook", "status", execution["id"]).out


def test_an_operator_cancels_a_waiting_execution_with_a_reason_and_a_second_cancel_is_refused(
    cli: Cli, tmp_path: Path, switch: Switch,
) -> None:
    execution = start_ops(cli, tmp_path, switch)
    assert steps(execution)["wait-ticket"]["state"] == "awaiting_event"
    cancelled = cli.ok("runbook", "cancel", execution["id"], "--actor", "oncall-1", "--reason", "duplicate ticket")
    assert cancelled["state"] == "cancelled"
    again = cli("runbook", "cancel", execution["id"], "--actor", "oncall-1", "--reason", "again", "--json")
    assert again.code == 5
    audit = cli.ok("audit", "query", "--actor", "oncall-1")
    assert any("cancel" in r["event"] for r in audit["records"])


def test_an_event_sent_from_the_cli_releases_the_waiting_step_and_retry_step_reruns_only_the_failed_step(
    cli: Cli, tmp_path: Path, switch: Switch,
) -> None:
    execution = start_ops(cli, tmp_path, switch, ticket="T-9")
    assert cli.ok("runbook", "send-event", "ticket-T-9", "--tenant", "acme-soc", "--payload-json", '{"status": "open"}')
    failed = cli.ok("runbook", "run", execution["id"])
    assert failed["state"] == "failed"
    assert steps(failed)["notify"]["state"] == "failed" and switch.calls == 1

    switch.failing = False
    retried = cli.ok("runbook", "retry-step", execution["id"], "notify", "--actor", "oncall-1")
    assert retried["state"] == "completed"
    assert steps(retried)["wait-ticket"]["attempts"] == 1
    assert switch.calls == 2


def test_pause_holds_an_execution_until_resume_and_replay_starts_a_new_one_with_the_same_inputs(
    cli: Cli, tmp_path: Path, switch: Switch,
) -> None:
    switch.failing = False
    execution = start_ops(cli, tmp_path, switch, ticket="T-5")
    paused = cli.ok("runbook", "pause", execution["id"], "--actor", "oncall-1", "--reason", "change freeze")
    assert paused["state"] == "paused"
    cli.ok("runbook", "send-event", "ticket-T-5", "--tenant", "acme-soc")
    assert cli.ok("runbook", "run", execution["id"])["state"] == "paused"
    assert switch.calls == 0
    resumed = cli.ok("runbook", "resume", execution["id"], "--actor", "oncall-1")
    assert resumed["state"] == "completed" and switch.calls == 1

    replayed = cli.ok("runbook", "replay", execution["id"], "--actor", "oncall-1")
    assert replayed["id"] != execution["id"]
    assert replayed["inputs"] == execution["inputs"]


def test_list_and_show_print_tables_and_schema_prints_the_json_schema(cli: Cli) -> None:
    cli.ok("runbook", "register", str(EXAMPLE))
    listing = cli("runbook", "list")
    assert listing.code == 0 and "investigate-threat" in listing.out and "version" in listing.out
    shown = cli("runbook", "show", "investigate-threat")
    assert "enrich-indicators" in shown.out and "depends on" in shown.out
    schema = cli("runbook", "schema")
    assert schema.code == 0 and "steps" in schema.json()["properties"]


def test_executions_lists_the_newest_first_and_filters_by_runbook_state_and_tenant(
    cli: Cli, threat_service: ThreatService, tmp_path: Path, switch: Switch,
) -> None:
    high = start_threat(cli, threat_service, "evil-c2.example.net")
    low = start_threat(cli, threat_service, "newsletter.example.org")
    path = tmp_path / "ops-check.yaml"
    path.write_text(OPS_CHECK)
    ops = cli.ok("runbook", "start", str(path), "--input", f"url={switch.url}", "--input", "ticket=T-3",
                 "--tenant", "night-shift")

    everything = cli.ok("runbook", "executions")
    assert {e["id"] for e in everything} == {high["id"], low["id"], ops["id"]}
    assert [e["id"] for e in cli.ok("runbook", "executions", "--runbook", "investigate-threat")] == [
        low["id"], high["id"]]
    assert [e["id"] for e in cli.ok("runbook", "executions", "--state", "completed")] == [low["id"]]
    assert [e["id"] for e in cli.ok("runbook", "executions", "--tenant", "night-shift")] == [ops["id"]]
    assert len(cli.ok("runbook", "executions", "--limit", "2")) == 2
    assert cli.ok("runbook", "executions", "--runbook", "investigate-threat", "--state", "cancelled") == []

    table = cli("runbook", "executions", "--runbook", "investigate-threat")
    assert table.code == 0, table.err
    assert "waiting on" in table.out.splitlines()[0]
    high_line = next(line for line in table.out.splitlines() if line.startswith(high["id"]))
    assert "awaiting" in high_line and "require-approval" in high_line and "acme-soc" in high_line
    assert cli("runbook", "executions", "--tenant", "nobody").out.strip() == "(no executions)"


def test_executions_refuses_an_unknown_state_naming_the_valid_ones(cli: Cli) -> None:
    run = cli("runbook", "executions", "--state", "done", "--json")
    assert run.code == 2
    assert run.error()["error_code"] == "INVALID_INPUT"
    assert "completed" in run.error()["message"]
