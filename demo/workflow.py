"""The workflow part of ``make demo`` (seed 004): a trigger creates a follow-up task, and a breach is caught.

``workflow_demo(store, clock, out)`` runs on an open store whose clock is ``clock`` (a ManualClock, so the SLA
breach comes from moving time, never from sleeping): a coordinator activates an action plan and hands an intake
task to a caseworker, who completes it; one dispatcher pass runs the built-in triggers (the completed intake
creates a high-priority assessment task, the plan activation raises an alert); then the clock moves past the
assessment's 240-minute SLA and the breach sweep marks it, alerts and escalates it. Statistics close the section.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TextIO

from saferails.api import Store
from saferails.cli import output as cli_output
from saferails.cli.workflow import TASK_COLUMNS, render_stats
from saferails.clock import ManualClock
from saferails.errors import SaferailsError
from saferails.workflow.alerts import Alert
from saferails.workflow.dispatcher import OutboxDispatcher
from saferails.workflow.metrics import WorkflowMetrics
from saferails.workflow.permissions import WorkflowActor
from saferails.workflow.service import WorkflowService
from saferails.workflow.sla import SlaMonitor
from saferails.workflow.views import TaskView

__all__ = ["WorkflowDemoReport", "workflow_demo"]

COORDINATOR = WorkflowActor("ada", frozenset({"agency"}))
CASEWORKER = WorkflowActor("sam", frozenset({"user"}))
BYSTANDER = WorkflowActor("rob", frozenset({"user"}))
WORK_TIME = timedelta(minutes=35)


@dataclass
class WorkflowDemoReport:
    """What the workflow section showed, for tests and for the summary line."""

    intake_task_id: str | None = None
    assessment_task_id: str | None = None
    assessment_priority: str | None = None
    breached_task_ids: list[str] = field(default_factory=list)
    priority_before_breach: str | None = None
    priority_after_breach: str | None = None
    alerts: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)


class _Section:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def title(self, text: str) -> None:
        self.out.write(f"\n== {text} {'=' * max(3, 76 - len(text))}\n")

    def say(self, text: str) -> None:
        self.out.write(f"  {text}\n")

    def table(self, tasks: list[TaskView]) -> None:
        buffer = io.StringIO()
        rows = [[cli_output.short_id(t.id), t.title, t.task_type, t.priority, t.state, t.assigned_to,
                 cli_output.short_id(t.action_plan_id), t.created_at] for t in tasks]
        cli_output.render_table(TASK_COLUMNS, rows, buffer)
        for line in buffer.getvalue().splitlines():
            self.say(line)


def workflow_demo(store: Store, clock: ManualClock, out: TextIO) -> WorkflowDemoReport:
    """Run the workflow scenario on ``store`` (whose clock must be ``clock``) and print it to ``out``."""
    report = WorkflowDemoReport()
    alerts: list[Alert] = []
    metrics = WorkflowMetrics()  # the demo's counters stay out of the process-wide registry
    svc = WorkflowService(store.sessions, clock, metrics=metrics)
    s = _Section(out)

    s.title("Workflow: an intake task completed by its assignee (seed 004)")
    plan = svc.create_action_plan(COORDINATOR, title="Winter shelter capacity",
                                  goals=["every referral assessed within 4 hours"])
    plan = svc.activate_action_plan(COORDINATOR, plan.id)
    s.say(f"ada (agency) activates action plan {plan.title!r} -> {plan.state}")
    intake = svc.create_task(COORDINATOR, title="Referral 1042: family of four", task_type="intake",
                             assigned_to=CASEWORKER.id, action_plan_id=plan.id)
    report.intake_task_id = intake.id
    s.say(f"ada creates intake task {cli_output.short_id(intake.id)} for sam (intake SLA 60 min)")
    try:
        svc.transition_task(BYSTANDER, intake.id, "in_progress")
    except SaferailsError as exc:
        report.refusals.append(exc.code)
        s.say(f"rob (user, not the assignee) starts it -> refused error[{exc.code}]")
    svc.transition_task(CASEWORKER, intake.id, "in_progress")
    clock.advance(WORK_TIME)
    done = svc.transition_task(CASEWORKER, intake.id, "completed", reason="placement found")
    record = svc.sla_record(intake.id)
    took = f", SLA met in {record.actual_minutes:g} min" if record is not None and not record.breached else ""
    s.say(f"sam starts and completes it at {cli_output.format_time(clock.now())[11:16]} -> {done.state}{took}")

    s.title("Workflow: the outbox dispatcher runs the built-in triggers")
    dispatcher = OutboxDispatcher(store.sessions, clock, "demo-dispatcher", notifier=alerts.append, metrics=metrics)
    # drain, not one batch: the foundation sections left their own (trigger-less) events ahead of ours.
    run = dispatcher.drain()
    s.say(f"dispatcher run: {run.processed} events processed (oldest first), {run.effects} trigger effects, "
          f"{run.failed} failed")
    followups = [t for t in svc.list_tasks(task_type="assessment") if t.metadata.get("trigger_id")]
    if followups:
        assessment = followups[0]
        report.assessment_task_id = assessment.id
        report.assessment_priority = assessment.priority
        s.say(f"trigger {assessment.metadata['trigger_id']} created the follow-up task:")
        s.table([assessment])
    for alert in alerts:
        report.alerts.append(alert.alert_type)
        s.say(f"alert [{alert.severity}] {alert.alert_type}: {alert.message}")
    alerts.clear()

    s.title("Workflow: nobody picks up the assessment (clock moved 241 minutes)")
    before = {t.id: t.priority for t in svc.list_tasks(limit=1000)}
    report.priority_before_breach = before.get(report.assessment_task_id or "")
    clock.advance(timedelta(minutes=241))
    breaches = SlaMonitor(store.sessions, notifier=alerts.append, metrics=metrics).sweep_breaches(clock.now())
    report.breached_task_ids = [b.task_id for b in breaches]
    s.say(f"clock now {cli_output.format_time(clock.now())}: the SLA sweep found {len(breaches)} breach(es)")
    for breach in breaches:
        after = svc.get_task(breach.task_id)
        if breach.task_id == report.assessment_task_id:
            report.priority_after_breach = after.priority
        s.say(f"task {cli_output.short_id(breach.task_id)} breached its {breach.target_minutes}-min SLA by "
              f"{breach.overdue_minutes:g} min; priority {before.get(breach.task_id)} -> {after.priority} (escalated)")
    for alert in alerts:
        report.alerts.append(alert.alert_type)
        s.say(f"alert [{alert.severity}] {alert.alert_type}: {alert.message}")

    s.title("Workflow: statistics (`saferails workflow stats` prints the same)")
    buffer = io.StringIO()
    render_stats(svc.stats(COORDINATOR), buffer)
    for line in buffer.getvalue().splitlines():
        s.say(line)
    return report
