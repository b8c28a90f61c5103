"""``make demo``: the scenario runs on a fresh SQLite file and ends with a verified audit trail."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from demo.run import DemoReport, main, run_demo

pytestmark = pytest.mark.slow  # seconds each (a demo run, a subprocess, a wheel build, a fuzz run)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoReport, str]:
    out = io.StringIO()
    report = run_demo(tmp_path_factory.mktemp("demo") / ".demo", out)
    return report, out.getvalue()


def test_the_demo_ends_with_a_verified_audit_trail(demo: tuple[DemoReport, str]) -> None:
    report, text = demo
    assert report.verified
    assert report.records_checked > 60
    assert "VERIFIED: the audit trail is intact" in text
    assert "matches the exported anchor" in text
    assert report.anchor.is_file()


def test_the_demo_shows_every_impact_level_decided_by_the_policy(demo: tuple[DemoReport, str]) -> None:
    report, text = demo
    assert report.outcomes["medium"] == "approved"
    # The LOW and HIGH ones are then carried through the Prefect action flow and executed.
    assert (report.outcomes["low"], report.outcomes["high"]) == ("completed", "completed")
    assert "HIGH   reassign_manager" in text and "pending: needs 1" in text


def test_the_demo_blocks_the_payment(demo: tuple[DemoReport, str]) -> None:
    report, text = demo
    assert report.outcomes["payment"] == "blocked"
    assert "make_payment      by agent-1" in text and "BLOCKED error[ACTION_BLOCKED] rule payments-blocked" in text


def test_the_51st_email_is_refused_with_a_retry_time(demo: tuple[DemoReport, str]) -> None:
    report, text = demo
    assert report.outcomes["email_51"] == "RATE_LIMITED"
    assert "emails 1-50" in text and "50 approved automatically" in text
    assert "error[RATE_LIMITED] rule email-rate-limit" in text
    assert "retry after 2026-11-22 10:06:00Z" in text  # the first of the 50 leaves the hour window then


def test_the_demo_needs_two_of_three_approvers_rejects_checks_kyc_and_times_out(
    demo: tuple[DemoReport, str],
) -> None:
    report, text = demo
    assert report.outcomes["two_of_three"] == "completed"
    assert "alice approves with code from notifications.jsonl (1/2 approvals)" in text
    assert "bob approves with code from notifications.jsonl (2/2 approvals)" in text
    assert report.outcomes["rejected"] == "rejected"
    assert (report.outcomes["purchase_no_kyc"], report.outcomes["purchase_kyc"]) == ("blocked", "approved")
    assert report.outcomes["timeout"] == "timed_out"


def test_the_demo_sends_an_inconclusive_outcome_to_a_person_who_rolls_it_back(demo: tuple[DemoReport, str]) -> None:
    report, text = demo
    section = text.split("an inconclusive check decided by a person", 1)[1].split("\n== ", 1)[0]
    assert "-> inconclusive" in section and "not rolled back automatically" in section
    assert "bob answers with his code: roll back" in section
    assert report.outcomes["outcome_gate"] == "rolled_back"


def test_the_demo_prints_the_tail_of_the_audit_trail(demo: tuple[DemoReport, str]) -> None:
    _, text = demo
    trail = text.split("== Audit trail", 1)[1].split("== Verification", 1)[0]
    assert "seq" in trail and "rolled_back" in trail


def test_running_the_demo_twice_starts_from_a_fresh_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "demo"
    assert main(["--dir", str(directory)]) == 0
    first = capsys.readouterr().out
    assert main(["--dir", str(directory)]) == 0
    second = capsys.readouterr().out
    assert first.count("\n") == second.count("\n")
    assert "VERIFIED" in second


def test_the_demo_pauses_an_agent_and_rolls_back_a_fleet_pause_approved_by_two(demo: tuple[DemoReport, str]) -> None:
    report, text = demo
    assert (report.outcomes["pause_agent"], report.outcomes["resume_agent"]) == ("completed", "completed")
    assert report.outcomes["paused_agent_proposal"] == "AGENT_PAUSED"
    assert "refused error[AGENT_PAUSED] rule paused-agents-and-budgets" in text and "runaway emails" in text
    assert "HIGH pause_agent, scope fleet -> pending_approval (2 approvals needed)" in text
    assert (report.outcomes["fleet_pause"], report.outcomes["fleet_rollback"]) == ("completed", "rolled_back")
    assert "active again agent-1, agent-2" in text
