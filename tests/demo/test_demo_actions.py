"""``make demo`` section 8: actions carried by the Prefect action flow really change the demo's world.

Runs the section alone on a fresh store (the foundation part's refusals passed in as it would pass them), under
Prefect's ephemeral API or, in a session that already started the flow tests' harness, under that one.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any, TextIO

import pytest
import yaml

from demo.actions import ExecutionReport, show_execution
from saferails.api import Store, open_store
from saferails.clock import ManualClock
from saferails.policy import Policy, default_policy, load_policy_text
from saferails.settings import Settings

pytestmark = pytest.mark.flow


class MiniDemo:
    def __init__(self, store: Store, clock: ManualClock, out: TextIO) -> None:
        self.store, self.clock, self.out = store, clock, out

    def section(self, title: str) -> None:
        self.out.write(f"== {title}\n")

    def say(self, text: str) -> None:
        self.out.write(f"  {text}\n")


def two_of_three_policy() -> Policy:
    data = default_policy().model_dump(mode="json", exclude_none=True)
    data["rules"].append({"id": "restructures-need-two", "kind": "requires_approval",
                          "action_types": ["team_restructure"], "approval": {"min_approvals": 2}})
    return load_policy_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def section(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExecutionReport, dict[str, str], str]:
    directory = tmp_path_factory.mktemp("demo-actions")
    settings = Settings(database_url=f"sqlite:///{directory / 'demo.db'}", policy_path=None, approval_secret=None,
                        data_dir=directory)
    clock = ManualClock(datetime(2026, 11, 22, 9, 0, tzinfo=UTC))
    out = io.StringIO()
    outcomes = {"payment": "blocked", "email_51": "RATE_LIMITED"}
    with open_store(settings, clock=clock, policy=default_policy()) as store:
        for person in ("alice", "bob", "carol"):
            store.actions.upsert_principal(person, email=f"{person}@example.com", groups=["approvers"])
        report = show_execution(MiniDemo(store, clock, out), two_of_three_policy(), outcomes, directory)
    return report, outcomes, out.getvalue()


def test_the_low_impact_document_is_written_under_the_demo_file_root(section: Any) -> None:
    report, outcomes, _ = section
    assert outcomes["exec_low"] == "completed"
    assert (report.file_root / "standup.md").read_text().startswith("# Stand-up")


def test_the_high_impact_reassignment_waits_for_a_coded_approval_then_changes_the_manager(section: Any) -> None:
    report, outcomes, text = section
    assert outcomes["exec_high"] == "completed"
    assert report.facts["high_manager"] == ("mgr_1", "mgr_2")
    assert "alice approves with code from notifications.jsonl (1/1 approvals)" in text
    assert report.notifications.is_file()


def test_two_of_three_a_rejection_and_a_timeout_end_as_the_approvers_and_the_clock_decided(section: Any) -> None:
    _, outcomes, text = section
    assert (outcomes["exec_two_of_three"], outcomes["exec_rejected"], outcomes["exec_timeout"]) == (
        "completed", "rejected", "timed_out")
    assert "alice approves with code from notifications.jsonl (1/2 approvals)" in text
    assert "emp_23 is still engineer" in text and "emp_24 is still engineer" in text


def test_the_rollback_gives_the_employee_back_their_manager(section: Any) -> None:
    report, outcomes, _ = section
    assert outcomes["exec_rollback"] == "rolled_back"
    assert report.facts["rollback_manager"] == ("mgr_2", "mgr_1")


def test_the_refusals_are_reported_from_the_foundation_part_and_the_ui_is_explained(section: Any) -> None:
    _, _, text = section
    assert "Blocked payment (above): blocked; the 51st email (above): RATE_LIMITED" in text
    assert "http://127.0.0.1:4200" in text and "make serve" in text

