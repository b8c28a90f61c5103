"""``saferails task|plan|trigger|sla|outbox|workflow|metrics``, run in-process through ``saferails.cli.main``
against real databases (SQLite and PostgreSQL). The CLI reads the system clock, so the SLA breach is driven
through the Python API (``open_store(..., clock=ManualClock)``) and only its result is read back through the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from saferails.api import open_store
from saferails.clock import ManualClock
from saferails.policy import default_policy
from saferails.settings import Settings
from saferails.workflow.permissions import WorkflowActor
from saferails.workflow.sla import SlaMonitor
from tests.support.cli import Cli, provision, use_database

ADMIN = ("--actor", "ada", "--role", "admin")


@pytest.fixture
def cli(db: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    use_database(monkeypatch, db.url)
    return Cli(capsys)


def _intake(cli: Cli, assignee: str = "sam") -> str:
    task = cli.ok("task", "create", "--title", "Referral 7", "--type", "intake", "--assign", assignee, *ADMIN)
    return str(task["id"])


def test_an_assignee_takes_a_task_from_new_to_completed_and_its_sla_is_met(cli: Cli) -> None:
    task_id = _intake(cli)
    assert cli.ok("task", "show", task_id)["sla"]["target_minutes"] == 60
    assert cli.ok("task", "transition", task_id, "in_progress", "--actor", "sam")["state"] == "in_progress"
    done = cli.ok("task", "transition", task_id, "completed", "--actor", "sam", "--reason", "placed")
    assert done["state"] == "completed"
    assert (done["sla"]["end_state"], done["sla"]["breached"]) == ("completed", False)
    table = cli("task", "list").out.splitlines()
    assert table[0].split() == ["id", "title", "type", "priority", "state", "assignee", "plan", "created"]
    assert "completed" in table[1] and "Referral 7" in table[1]


def test_an_invalid_transition_exits_5_naming_the_entity_and_both_states(cli: Cli) -> None:
    task_id = _intake(cli)
    result = cli("task", "transition", task_id, "completed", *ADMIN, "--json")
    assert result.code == 5
    error = result.error()
    assert error["error_code"] == "INVALID_TRANSITION"
    assert {k: error["details"][k] for k in ("entity_type", "current_state", "target_state")} == {
        "entity_type": "task", "current_state": "new", "target_state": "completed"}
    text = cli("task", "transition", task_id, "completed", *ADMIN)
    assert text.err == "error[INVALID_TRANSITION]: task transition from 'new' to 'completed' is not allowed\n"
    assert cli.ok("task", "show", task_id)["state"] == "new"


def test_a_user_who_neither_created_nor_holds_a_task_is_denied_and_nothing_changes(cli: Cli) -> None:
    task_id = _intake(cli)
    result = cli("task", "transition", task_id, "in_progress", "--actor", "rob", "--json")
    assert result.code == 7
    assert result.error()["error_code"] == "PERMISSION_DENIED"
    assert result.error()["details"]["roles"] == ["user"]
    assert cli.ok("task", "show", task_id)["state"] == "new"


def test_the_default_actor_is_a_plain_user_who_may_create_tasks_but_not_plans(cli: Cli) -> None:
    task = cli.ok("task", "create", "--title", "call back")
    assert task["created_by"] == "cli"
    result = cli("plan", "create", "--title", "winter", "--goal", "g")
    assert (result.code, result.err.split("]")[0]) == (7, "error[PERMISSION_DENIED")
    assert cli.ok("plan", "list") == []


def test_a_plan_is_created_activated_and_archived_by_an_admin(cli: Cli) -> None:
    plan = cli.ok("plan", "create", "--title", "winter", "--goal", "assess within 4h", *ADMIN)
    assert plan["state"] == "draft"
    assert cli.ok("plan", "activate", plan["id"], *ADMIN)["state"] == "active"
    assert cli.ok("plan", "archive", plan["id"], *ADMIN)["state"] == "archived"
    assert [p["state"] for p in cli.ok("plan", "list")] == ["archived"]
    guard = cli("plan", "activate", cli.ok("plan", "create", "--title", "empty", *ADMIN)["id"], *ADMIN)
    assert guard.code == 5 and "TRANSITION_GUARD_FAILED" in guard.err


def test_dispatch_runs_the_built_in_trigger_and_creates_a_high_priority_assessment_task(cli: Cli) -> None:
    task_id = _intake(cli)
    cli.ok("task", "transition", task_id, "in_progress", "--actor", "sam")
    cli.ok("task", "transition", task_id, "completed", "--actor", "sam")
    assert cli.ok("task", "list", "--type", "assessment") == []
    report = cli.ok("outbox", "dispatch")
    assert report["failed"] == 0 and report["effects"] == 1
    [assessment] = cli.ok("task", "list", "--type", "assessment")
    assert (assessment["title"], assessment["priority"], assessment["state"]) == (
        "Assessment: Referral 7", "high", "new")
    assert assessment["metadata"]["trigger_id"] == "intake_completed_followup"
    again = cli.ok("outbox", "dispatch", "--once", "--batch", "10")
    assert again["effects"] == 0
    assert len(cli.ok("task", "list", "--type", "assessment")) == 1


def test_a_trigger_added_from_flags_fires_and_once_disabled_does_not(cli: Cli) -> None:
    added = cli.ok("trigger", "add", "--id", "blocked-alert", "--event-type", "TaskStateChanged",
                   "--predicate", "{field: payload.to_state, operator: eq, value: blocked}",
                   "--action", '{"type": "create_task", "title": "Unblock ${payload.title}", "priority": "high"}',
                   *ADMIN)
    assert [t["id"] for t in added] == ["blocked-alert"]
    first = _intake(cli)
    cli.ok("task", "transition", first, "blocked", "--actor", "sam")
    cli.ok("outbox", "dispatch")
    assert [t["title"] for t in cli.ok("task", "list", "--type", "general")] == ["Unblock Referral 7"]
    assert cli.ok("trigger", "disable", "blocked-alert", *ADMIN)["active"] is False
    second = _intake(cli)
    cli.ok("task", "transition", second, "blocked", "--actor", "sam")
    cli.ok("outbox", "dispatch")
    assert len(cli.ok("task", "list", "--type", "general")) == 1
    cli.ok("trigger", "remove", "blocked-alert", *ADMIN)
    assert "blocked-alert" not in [t["id"] for t in cli.ok("trigger", "list")]


def test_a_trigger_file_with_an_unknown_operator_is_refused_and_nothing_is_stored(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "triggers.yaml"
    path.write_text(
        "- id: good-one\n  event_type: TaskStateChanged\n  actions: [{type: emit_alert, alert_type: a, message: m}]\n"
        "- id: bad-one\n  event_type: TaskStateChanged\n  predicate: {field: payload.to_state, operator: like, "
        "value: x}\n  actions: [{type: emit_alert, alert_type: a, message: m}]\n", encoding="utf-8")
    result = cli("trigger", "add", "--file", str(path), *ADMIN, "--json")
    assert result.code == 2
    assert result.error()["error_code"] == "CONDITION_INVALID"
    ids = [t["id"] for t in cli.ok("trigger", "list")]
    assert ids == ["action_plan_activated_alert", "intake_completed_followup"]


def test_managing_triggers_needs_more_than_the_default_user_role(cli: Cli) -> None:
    result = cli("trigger", "disable", "intake_completed_followup")
    assert result.code == 7 and result.err.startswith("error[PERMISSION_DENIED]")
    assert all(t["active"] for t in cli.ok("trigger", "list"))


def test_sla_set_changes_a_target_and_a_fresh_task_is_not_breached_by_the_sweep(cli: Cli) -> None:
    configs = {c["task_type"]: c["target_minutes"] for c in cli.ok("sla", "list")}
    assert configs == {"intake": 60, "assessment": 240, "review": 120, "general": 480}
    updated = cli.ok("sla", "set", "--task-type", "review", "--target-minutes", "90", *ADMIN)
    assert (updated["service_area"], updated["target_minutes"], updated["active"]) == ("review", 90, True)
    created = cli.ok("sla", "set", "--task-type", "audit", "--target-minutes", "30", *ADMIN)
    assert created["service_area"] == "audit"
    assert cli("sla", "set", "--task-type", "audit", "--target-minutes", "0", *ADMIN).code == 2
    _intake(cli)
    assert cli.ok("sla", "sweep") == []
    assert cli("sla", "sweep").out == "(no SLA breaches)\n"


def test_an_sla_breach_made_with_a_manual_clock_shows_in_the_cli_as_breached_and_escalated(
    cli: Cli, db: Any, tmp_path: Path
) -> None:
    clock = ManualClock()
    settings = Settings(database_url=db.url, policy_path=None, approval_secret=None, data_dir=tmp_path)
    with open_store(settings, clock=clock, policy=default_policy()) as store:
        task = store.workflow.create_task(WorkflowActor("ada", frozenset({"admin"})), title="Referral 9",
                                          task_type="intake", priority="medium")
        clock.advance(timedelta(minutes=59))
        assert SlaMonitor(store.sessions).sweep_breaches(clock.now()) == []
        clock.advance(timedelta(minutes=2))
        [breach] = SlaMonitor(store.sessions).sweep_breaches(clock.now())
    assert breach.task_id == task.id
    shown = cli.ok("task", "show", task.id)
    assert shown["priority"] == "critical"
    assert shown["sla"]["breached"] is True
    assert "BREACHED" in cli("task", "show", task.id).out
    stats = cli.ok("workflow", "stats", *ADMIN)
    assert stats["sla"]["breached"] == 1 and stats["sla"]["open_breached"] == 1


def test_stats_need_an_admin_or_agency_role_and_metadata_needs_none(cli: Cli) -> None:
    assert cli("workflow", "stats").code == 7
    stats = cli.ok("workflow", "stats", "--actor", "eve", "--role", "agency")
    assert stats["tasks"]["new"] == 0 and stats["outbox"]["dead_letters"] == 0
    meta = cli.ok("workflow", "metadata")
    assert set(meta["state_machines"]) == {"task", "action_plan"}
    assert "admin" in meta["roles"]
    assert "new          in_progress  started     yes" in cli("workflow", "metadata").out


def test_dead_letters_are_listed_and_requeueing_an_unknown_event_exits_4(cli: Cli) -> None:
    assert cli.ok("outbox", "dead-letters") == []
    assert cli("outbox", "dead-letters").out == "(no dead letters)\n"
    result = cli("outbox", "requeue", "no-such-event", "--json")
    assert result.code == 4 and result.error()["error_code"] == "NOT_FOUND"


def test_bad_arguments_exit_2_with_invalid_input(cli: Cli) -> None:
    assert cli("task", "list", "--state", "done").code == 2
    missing = cli("trigger", "add", "--id", "x", *ADMIN)
    assert missing.code == 2 and "needs --file" in missing.err
    assert cli("task", "create", "--title", "t", "--priority", "urgent").code == 2


def test_metrics_serve_answers_metrics_and_health_on_127_0_0_1(db: Any, tmp_path: Path) -> None:
    env = {**os.environ, "SAFERAILS_DATABASE_URL": db.url, "SAFERAILS_DATA_DIR": str(tmp_path),
           "SAFERAILS_TOKEN": provision("cli", database_url=db.url, data_dir=str(tmp_path))}
    proc = subprocess.Popen([sys.executable, "-m", "saferails.cli", "metrics", "serve", "--port", "0", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("}"):
                break
        url = json.loads("".join(lines))["url"]
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, timeout=10) as client:
            metrics = client.get("/metrics")
            assert metrics.status_code == 200
            for name in ("workflow_transition_total", "automation_trigger_evaluations_total",
                         "sla_records_breached_total", "outbox_events_processed_total", "active_tasks_total"):
                assert name in metrics.text
            assert client.get("/health/live").json() == {"status": "ok"}
            assert client.get("/health/ready").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
