"""SLA tracking: a record starts when a task is created and stops when it completes or is cancelled.

Starting at creation (not at ``in_progress``) measures what the requester experiences: an intake task that
nobody starts is exactly the delay seed 004's one-hour intake SLA exists to catch. The config is the active one
for the task's type (preferring the task's ``metadata.service_area`` when several areas cover that type), else
the active ``general`` config; no config, no record.

A record stopped after its deadline without having been swept is marked breached at stop (counted, no alert:
the task is already over). ``SlaMonitor.sweep_breaches`` marks open overdue records breached exactly once,
audits ``sla_breached`` on the task (with its outbox event), alerts, and escalates the task to ``critical``.
Sweeps claim rows with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite's BEGIN IMMEDIATE serialises them),
and filter on ``breached = false``, so two sweepers never breach one record twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from saferails import transitions
from saferails.clock import as_utc
from saferails.errors import NotFound
from saferails.store.db import transaction
from saferails.workflow import alerts
from saferails.workflow.machines import TASK
from saferails.workflow.metrics import METRICS, WorkflowMetrics
from saferails.workflow.tables import SlaConfig, SlaRecord, Task

GENERAL = "general"
SWEEP_ACTOR = "system:sla-monitor"


def _config_for(session: Session, task: Task) -> SlaConfig | None:
    rows = session.execute(
        sa.select(SlaConfig).where(SlaConfig.active.is_(True), SlaConfig.task_type.in_([task.task_type, GENERAL]))
    ).scalars().all()
    area = (task.meta or {}).get("service_area")

    def rank(c: SlaConfig) -> tuple[int, int, str]:
        return (0 if c.task_type == task.task_type else 1, 0 if c.service_area == area else 1, c.id)

    return min(rows, key=rank) if rows else None


def start(session: Session, task: Task, now: datetime) -> SlaRecord | None:
    """Open the SLA record for a newly created task (inside the creating transaction)."""
    config = _config_for(session, task)
    if config is None:
        return None
    record = SlaRecord(
        id=str(uuid.uuid4()),
        task_id=task.id,
        sla_config_id=config.id,
        target_minutes=config.target_minutes,
        started_at=now,
        due_at=now + timedelta(minutes=config.target_minutes),
        breached=False,
        created_at=now,
    )
    session.add(record)
    return record


def stop(session: Session, task_id: str, end_state: str, now: datetime, metrics: WorkflowMetrics = METRICS) -> None:
    """Close the task's open record with ``actual_minutes`` (no-op when there is none)."""
    record = session.execute(
        sa.select(SlaRecord).where(SlaRecord.task_id == task_id, SlaRecord.completed_at.is_(None)).with_for_update()
    ).scalar_one_or_none()
    if record is None:
        return
    record.completed_at = now
    record.end_state = end_state
    record.actual_minutes = round((now - as_utc(record.started_at)).total_seconds() / 60, 3)
    if not record.breached and now > as_utc(record.due_at):
        record.breached = True
        record.breached_at = now
        metrics.sla_breaches.inc()


@dataclass(frozen=True)
class Breach:
    record_id: str
    task_id: str
    target_minutes: int
    overdue_minutes: float


class SlaMonitor:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        notifier: alerts.Notifier | None = None,
        metrics: WorkflowMetrics = METRICS,
    ) -> None:
        self.sessions = sessions
        self.notifier = notifier
        self.metrics = metrics

    def sweep_breaches(self, now: datetime, *, limit: int = 500) -> list[Breach]:
        """Mark up to ``limit`` open records whose ``due_at`` has passed as breached; return what was breached.

        Idempotent: a breached record is never breached again. One transaction per sweep, with one statement
        each for the records, their tasks, the audit records and the outbox events; the cost grows with the
        records due, not with the table (index on completed_at, breached, due_at).
        """
        found: list[Breach] = []
        # One statement locks the batch's tasks, and its audit records and outbox events go out as one INSERT
        # each when the ``batched`` block ends (before the commit).
        with transaction(self.sessions) as session, transitions.batched(session):
            records = session.execute(
                sa.select(SlaRecord)
                .where(SlaRecord.completed_at.is_(None), SlaRecord.breached.is_(False), SlaRecord.due_at <= now)
                .order_by(SlaRecord.due_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).scalars().all()
            kind = transitions.entity_kind(TASK)
            tasks = transitions.lock_rows(session, kind, [r.task_id for r in records])
            for record in records:
                task = tasks.get(record.task_id)
                if task is None:
                    raise NotFound(TASK, record.task_id)
                found.append(self._breach(session, record, task, now))
        self.metrics.sla_breaches.inc(len(found))
        return found

    def _breach(self, session: Session, record: SlaRecord, task: Task, now: datetime) -> Breach:
        record.breached = True
        record.breached_at = now
        overdue = round((now - as_utc(record.due_at)).total_seconds() / 60, 3)
        previous_priority = task.priority
        # Escalation: a breached task jumps the queue. Priority is not lifecycle state, so it is written here
        # and recorded in the same audit/outbox event as the breach.
        task.priority = "critical"
        task.escalated_at = now
        task.version += 1
        task.updated_at = now
        details = {
            "sla_record_id": record.id,
            "target_minutes": record.target_minutes,
            "overdue_minutes": overdue,
            "escalated_priority_from": previous_priority,
            "escalated_priority_to": "critical",
        }
        transitions.record_event(session, TASK, task, actor=SWEEP_ACTOR, event="sla_breached", now=now,
                                 details=details)
        alerts.emit(
            session,
            alerts.Alert("sla_breached", f"task {task.title!r} breached its {record.target_minutes}-minute SLA",
                         severity="warning", entity_type=TASK, entity_id=task.id, details=details),
            notifier=self.notifier, actor=SWEEP_ACTOR, now=now,
        )
        return Breach(record.id, task.id, record.target_minutes, overdue)
