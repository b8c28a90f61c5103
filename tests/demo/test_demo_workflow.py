"""The workflow part of ``make demo``: the trigger creates the assessment task and the moved clock breaches it."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.run import DEMO_START
from demo.workflow import WorkflowDemoReport, workflow_demo
from saferails.api import Store, open_store
from saferails.audit.verify import verify_chain
from saferails.clock import ManualClock
from saferails.policy import default_policy
from saferails.settings import Settings
from saferails.store.db import transaction

pytestmark = pytest.mark.slow  # seconds each (a demo run, a subprocess, a wheel build, a fuzz run)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, WorkflowDemoReport, str]]:
    directory: Path = tmp_path_factory.mktemp("workflow-demo")
    settings = Settings(database_url=f"sqlite:///{directory / 'demo.db'}", policy_path=None, approval_secret=None,
                        data_dir=directory)
    clock = ManualClock(DEMO_START)
    out = io.StringIO()
    with open_store(settings, clock=clock, policy=default_policy()) as store:
        report = workflow_demo(store, clock, out)
        yield store, report, out.getvalue()


def test_the_completed_intake_task_makes_the_trigger_create_a_high_priority_assessment_task(
    ran: tuple[Store, WorkflowDemoReport, str],
) -> None:
    store, report, text = ran
    assert report.assessment_task_id is not None and report.assessment_priority == "high"
    intake = store.workflow.get_task(report.intake_task_id or "")
    assessment = store.workflow.get_task(report.assessment_task_id)
    assert intake.state == "completed"
    assert assessment.task_type == "assessment" and assessment.action_plan_id == intake.action_plan_id
    assert "trigger intake_completed_followup created the follow-up task" in text
    assert "Assessment: Referral 1042: family of four  assessment  high" in text


def test_the_plan_activation_raises_its_alert_and_a_stranger_may_not_touch_the_task(
    ran: tuple[Store, WorkflowDemoReport, str],
) -> None:
    _, report, text = ran
    assert report.alerts[0] == "action_plan_activated"
    assert "alert [info] action_plan_activated: Action plan Winter shelter capacity was activated" in text
    assert report.refusals == ["PERMISSION_DENIED"]


def test_moving_the_clock_past_240_minutes_breaches_and_escalates_only_the_assessment(
    ran: tuple[Store, WorkflowDemoReport, str],
) -> None:
    store, report, text = ran
    assert report.breached_task_ids == [report.assessment_task_id]
    assert (report.priority_before_breach, report.priority_after_breach) == ("high", "critical")
    assert report.alerts[-1] == "sla_breached"
    assert "breached its 240-min SLA by 1 min; priority high -> critical (escalated)" in text
    assert "sla: open 1, met 1, breached 1 (still open 1)" in text
    record = store.workflow.sla_record(report.assessment_task_id or "")
    assert record is not None and record.breached


def test_the_audit_chain_still_verifies_after_the_workflow_section(
    ran: tuple[Store, WorkflowDemoReport, str],
) -> None:
    store, _, _ = ran
    with transaction(store.sessions) as session:
        assert verify_chain(session).ok
