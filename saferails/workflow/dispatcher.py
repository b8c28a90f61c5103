"""The outbox dispatcher: claims unprocessed events, runs the automation triggers that match them.

Delivery is at least once, effects happen once:

1. **Claim** (one short transaction): up to ``batch_size`` events that are unprocessed, not dead-lettered,
   available and not claimed by a live lease, oldest first, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (on SQLite
   ``BEGIN IMMEDIATE`` serialises claimers). Claimed rows get ``claimed_by``/``claimed_until`` (a lease), so a
   second dispatcher skips them, and a crashed one's events come back when the lease runs out.
2. **Process** each event: evaluate the active triggers for its ``event_type``; each action of each matching
   trigger runs unless ``trigger_effects`` already holds ``(trigger_id, event_id, action_index)``. Webhook calls
   run outside any transaction (no database lock is held while a remote server answers) and their effect row is
   committed right after they succeed. Every other action, its effect row and the event's "processed" mark run
   in one transaction per batch, first without savepoints (their audit records and outbox events written
   set-based at the end); if an event fails, that attempt rolls back and the batch is redone with one SAVEPOINT
   per event: the batch commits once, and an event that fails rolls back only its own savepoint (an alert's
   notifier may then have been called twice: delivery is at least once). Webhooks of an event therefore run
   before its database actions. A webhook whose success could not be recorded (crash in between) is called
   again: receivers dedupe on the ``webhook-id`` header (:func:`webhook_message_id`).
   Webhooks are signed per Standard Webhooks (:mod:`saferails.notify.signing`) and sent through the egress
   guard (:mod:`saferails.net.egress`): a URL that resolves to a private, loopback or link-local address fails
   the event with ``EgressRefused`` unless the
   ``egress`` policy allows its host.
3. **Fail**: a failing event adds one to ``attempts``, records ``last_error`` and has ``available_at`` pushed
   back exponentially (``retry_base * 2**(attempts-1)``, at most ``retry_cap``); at ``max_attempts`` it is
   dead-lettered (``dead_letters()`` lists them, ``requeue()`` gives one a fresh start).

Before marking an event processed the dispatcher re-locks it and checks it still holds the claim, so an event
whose lease expired and was taken over is never finished twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from saferails import transitions
from saferails.audit.chain import canonical_json
from saferails.clock import Clock
from saferails.errors import ConfigurationError, ExecutionError, NotFound, SaferailsError
from saferails.net.egress import EgressPolicy, send
from saferails.notify.signing import WebhookSigner
from saferails.store.db import transaction
from saferails.store.tables import OutboxEvent
from saferails.workflow import alerts, ops
from saferails.workflow.metrics import METRICS, WorkflowMetrics
from saferails.workflow.tables import AutomationTrigger, TriggerEffect
from saferails.workflow.triggers import (
    CallWebhookAction,
    CompiledTrigger,
    CreateTaskAction,
    EmitAlertAction,
    TransitionAction,
    TriggerAction,
    render,
)

Sleeper = Callable[[float], None]
PROCESSED, FAILED, DEAD_LETTERED, LOST = "processed", "failed", "dead_lettered", "lost"


@dataclass(frozen=True)
class DispatchReport:
    claimed: int = 0
    processed: int = 0
    failed: int = 0
    dead_lettered: int = 0
    effects: int = 0
    skipped_effects: int = 0
    lost_claims: int = 0


@dataclass(frozen=True)
class DeadLetter:
    event_id: str
    event_type: str
    aggregate_type: str
    aggregate_id: str
    attempts: int
    last_error: str | None
    created_at: datetime
    dead_lettered_at: datetime


@dataclass(frozen=True)
class _Event:
    id: str
    event_type: str
    aggregate_type: str
    aggregate_id: str
    payload: dict[str, Any]
    actor: str
    correlation_id: str | None
    done: frozenset[tuple[str, int]] = field(default_factory=frozenset)

    def context(self) -> dict[str, Any]:
        return {"event_type": self.event_type, "aggregate_type": self.aggregate_type,
                "aggregate_id": self.aggregate_id, "payload": self.payload, "actor": self.actor}


@dataclass
class _Tally:
    effects: int = 0
    skipped: int = 0


def webhook_message_id(event_id: str, trigger_id: str, action_index: int) -> str:
    """The ``webhook-id`` of one trigger action's call for one event: the same on every retry and redelivery,
    different for two triggers (or two actions) fired by the same event, so receivers dedupe on it exactly."""
    return f"{event_id}:{trigger_id}:{action_index}"


class OutboxDispatcher:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        worker_id: str,
        notifier: alerts.Notifier | None = None,
        http_client: httpx.Client | None = None,
        *,
        webhook_secret: str | bytes | None = None,
        egress: EgressPolicy | None = None,
        sleeper: Sleeper = time.sleep,
        max_attempts: int = 5,
        lease: timedelta = timedelta(minutes=5),
        retry_base: timedelta = timedelta(seconds=30),
        retry_cap: timedelta = timedelta(hours=1),
        webhook_backoff_seconds: float = 0.5,
        metrics: WorkflowMetrics = METRICS,
    ) -> None:
        if max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1", max_attempts=max_attempts)
        self.sessions = sessions
        self.clock = clock
        self.worker_id = worker_id
        self.notifier = notifier
        self.http_client = http_client
        self.signer = None if not webhook_secret else WebhookSigner(webhook_secret)
        self.egress = egress or EgressPolicy()
        self.sleeper = sleeper
        self.max_attempts = max_attempts
        self.lease = lease
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.webhook_backoff_seconds = webhook_backoff_seconds
        self.metrics = metrics

    # --- the loop -----------------------------------------------------------------------------------------
    def run_once(self, batch_size: int = 100) -> DispatchReport:
        """Claim and process one batch; returns what happened (``claimed == 0`` means nothing was due)."""
        events, triggers = self._claim(batch_size)
        report = DispatchReport(claimed=len(events))
        ready: list[tuple[_Event, list[CompiledTrigger], _Tally]] = []
        for event in events:
            tally = _Tally()
            try:
                matching = self._matching(event, triggers.get(event.event_type, []))
                self._run_webhooks(event, matching, tally)
            except Exception as exc:  # noqa: BLE001 - any failure of an event's work is recorded on the event
                report = self._count(report, event, self._fail(event, exc), tally)
                continue
            ready.append((event, matching, tally))
        try:
            outcomes = self._finish_batch(ready)
        except Exception:  # noqa: BLE001 - the batch transaction itself failed: retry event by event
            outcomes = [(event, self._finish_alone(event, matching, tally), tally) for event, matching, tally in ready]
        for event, outcome, tally in outcomes:
            report = self._count(report, event, outcome, tally)
        return report

    def drain(self, batch_size: int = 100, max_batches: int = 1000) -> DispatchReport:
        """Run batches until nothing is due (or ``max_batches``); the sum of their reports."""
        total = DispatchReport()
        for _ in range(max_batches):
            report = self.run_once(batch_size)
            total = DispatchReport(*(a + b for a, b in zip(_fields(total), _fields(report), strict=True)))
            if report.claimed == 0:
                break
        return total

    # --- dead letters -------------------------------------------------------------------------------------
    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with transaction(self.sessions) as session:
            rows = session.execute(
                sa.select(OutboxEvent).where(OutboxEvent.dead_lettered_at.is_not(None))
                .order_by(OutboxEvent.position).limit(limit)
            ).scalars().all()
            return [DeadLetter(r.id, r.event_type, r.aggregate_type, r.aggregate_id, r.attempts, r.last_error,
                               r.created_at, r.dead_lettered_at) for r in rows if r.dead_lettered_at is not None]

    def requeue(self, event_id: str) -> None:
        """Give a dead-lettered event a fresh start (attempts 0, available now). Raises ``NotFound`` if there is
        no such dead letter. Effects it already had are still skipped."""
        with transaction(self.sessions) as session:
            row = session.execute(
                sa.select(OutboxEvent).where(OutboxEvent.id == event_id, OutboxEvent.dead_lettered_at.is_not(None))
                .with_for_update()
            ).scalar_one_or_none()
            if row is None:
                raise NotFound("dead_letter", event_id)
            row.dead_lettered_at = None
            row.attempts = 0
            row.available_at = self.clock.now()
            row.claimed_by = None
            row.claimed_until = None

    # --- claim --------------------------------------------------------------------------------------------
    def _claim(self, batch_size: int) -> tuple[list[_Event], dict[str, list[CompiledTrigger]]]:
        with transaction(self.sessions) as session:
            now = self.clock.now()
            rows = session.execute(
                sa.select(OutboxEvent)
                .where(
                    OutboxEvent.processed_at.is_(None),
                    OutboxEvent.dead_lettered_at.is_(None),
                    OutboxEvent.available_at <= now,
                    sa.or_(OutboxEvent.claimed_until.is_(None), OutboxEvent.claimed_until <= now),
                )
                .order_by(OutboxEvent.position)
                .limit(batch_size)
                .with_for_update(skip_locked=True)
            ).scalars().all()
            if not rows:
                return [], {}
            for row in rows:
                row.claimed_by = self.worker_id
                row.claimed_until = now + self.lease
            ids = [r.id for r in rows]
            done: dict[str, set[tuple[str, int]]] = {i: set() for i in ids}
            for trigger_id, event_id, index in session.execute(
                sa.select(TriggerEffect.trigger_id, TriggerEffect.event_id, TriggerEffect.action_index)
                .where(TriggerEffect.event_id.in_(ids))
            ).all():
                done[event_id].add((trigger_id, index))
            events = [
                _Event(r.id, r.event_type, r.aggregate_type, r.aggregate_id, dict(r.payload), r.actor,
                       r.correlation_id, frozenset(done[r.id]))
                for r in rows
            ]
            return events, self._triggers(session, {r.event_type for r in rows})

    def _triggers(self, session: Session, event_types: set[str]) -> dict[str, list[CompiledTrigger]]:
        by_type: dict[str, list[CompiledTrigger]] = {}
        rows = session.execute(
            sa.select(AutomationTrigger)
            .where(AutomationTrigger.active.is_(True), AutomationTrigger.event_type.in_(sorted(event_types)))
            .order_by(AutomationTrigger.id)
        ).scalars().all()
        for row in rows:
            try:
                compiled = CompiledTrigger(row)
            except SaferailsError:
                # A stored trigger that no longer parses (written around the service) is skipped, not fatal.
                self.metrics.trigger_evaluations.labels(row.id, "invalid").inc()
                continue
            by_type.setdefault(row.event_type, []).append(compiled)
        return by_type

    # --- process ------------------------------------------------------------------------------------------
    def _count(self, report: DispatchReport, event: _Event, outcome: str, tally: _Tally) -> DispatchReport:
        if outcome == LOST:
            return replace(report, lost_claims=report.lost_claims + 1)
        self.metrics.outbox_processed.labels(event.event_type, outcome).inc()
        return replace(
            report,
            processed=report.processed + (outcome == PROCESSED),
            failed=report.failed + (outcome != PROCESSED),
            dead_lettered=report.dead_lettered + (outcome == DEAD_LETTERED),
            effects=report.effects + tally.effects,
            skipped_effects=report.skipped_effects + tally.skipped,
        )

    def _matching(self, event: _Event, triggers: list[CompiledTrigger]) -> list[CompiledTrigger]:
        context = event.context()
        matching = []
        for trigger in triggers:
            try:
                matched = trigger.matches(context)
            except SaferailsError:
                self.metrics.trigger_evaluations.labels(trigger.id, "error").inc()
                raise
            self.metrics.trigger_evaluations.labels(trigger.id, "matched" if matched else "not_matched").inc()
            if matched:
                matching.append(trigger)
        return matching

    def _pending(self, event: _Event, matching: list[CompiledTrigger], *, webhooks: bool
                 ) -> list[tuple[CompiledTrigger, int, TriggerAction]]:
        return [
            (t, i, a) for t in matching for i, a in enumerate(t.actions)
            if isinstance(a, CallWebhookAction) == webhooks
        ]

    def _run_webhooks(self, event: _Event, matching: list[CompiledTrigger], tally: _Tally) -> None:
        for trigger, index, action in self._pending(event, matching, webhooks=True):
            if (trigger.id, index) in event.done:
                tally.skipped += 1
                continue
            assert isinstance(action, CallWebhookAction)
            result = self._call_webhook(event, trigger, index, action)
            with transaction(self.sessions) as session:
                if self._effect_exists(session, trigger.id, event.id, index):
                    tally.skipped += 1
                    continue
                session.add(self._effect(trigger, event, index, action, result))
            tally.effects += 1

    def _finish_batch(self, ready: list[tuple[_Event, list[CompiledTrigger], _Tally]]
                      ) -> list[tuple[_Event, str, _Tally]]:
        """One transaction for the batch. First without savepoints (the effects' records written set-based at
        the end, see ``transitions.batched``); if any event fails, that attempt is rolled back whole and the
        batch is redone with one SAVEPOINT per event, so a failing event rolls back only its own effects and
        records its failure while the others commit together. Either way one commit per batch."""
        if not ready:
            return []
        try:
            return self._finish_batch_once(ready, savepoints=False)
        except _EventFailed:
            return self._finish_batch_once(ready, savepoints=True)

    def _finish_batch_once(self, ready: list[tuple[_Event, list[CompiledTrigger], _Tally]], *, savepoints: bool
                           ) -> list[tuple[_Event, str, _Tally]]:
        ids = [event.id for event, _, _ in ready]
        outcomes: list[tuple[_Event, str, _Tally]] = []
        with transaction(self.sessions) as session, \
                (nullcontext() if savepoints else transitions.batched(session)):
            # Records kept for later would outlive a rolled-back savepoint: deferred only without savepoints.
            now = self.clock.now()
            rows = {r.id: r for r in session.execute(
                sa.select(OutboxEvent).where(OutboxEvent.id.in_(ids)).with_for_update()
                .execution_options(populate_existing=True)
            ).scalars()}
            done = self._done(session, ids)
            for event, matching, tally in ready:
                row = rows[event.id]
                if row.processed_at is not None or row.claimed_by != self.worker_id:
                    outcomes.append((event, LOST, tally))
                    continue
                local = _Tally()
                if not any((t.id, event.id, i) not in done
                           for t, i, _ in self._pending(event, matching, webhooks=False)):
                    # Nothing to apply (no trigger matched, or every effect is already recorded): no savepoint.
                    local.skipped = len(self._pending(event, matching, webhooks=False))
                    _mark_processed(row, now)
                    outcomes.append((event, PROCESSED, _Tally(tally.effects, tally.skipped + local.skipped)))
                    continue
                if not savepoints:
                    try:
                        self._apply_all(session, event, matching, done, local, now)
                    except Exception as exc:
                        raise _EventFailed(event.id) from exc
                    _mark_processed(row, now)
                else:
                    try:
                        with session.begin_nested():
                            self._apply_all(session, event, matching, done, local, now)
                            _mark_processed(row, now)
                    except Exception as exc:  # noqa: BLE001 - recorded on the event, the batch goes on
                        outcomes.append((event, self._record_failure(row, exc, now), tally))
                        continue
                merged = _Tally(tally.effects + local.effects, tally.skipped + local.skipped)
                outcomes.append((event, PROCESSED, merged))
        return outcomes

    def _finish_alone(self, event: _Event, matching: list[CompiledTrigger], tally: _Tally) -> str:
        try:
            with transaction(self.sessions) as session:
                now = self.clock.now()
                row = self._lock_event(session, event.id)
                if row.processed_at is not None or row.claimed_by != self.worker_id:
                    return LOST
                local = _Tally()
                self._apply_all(session, event, matching, self._done(session, [event.id]), local, now)
                _mark_processed(row, now)
            tally.effects += local.effects
            tally.skipped += local.skipped
            return PROCESSED
        except Exception as exc:  # noqa: BLE001 - any failure of an event's work is recorded on the event
            return self._fail(event, exc)

    def _apply_all(self, session: Session, event: _Event, matching: list[CompiledTrigger],
                   done: set[tuple[str, str, int]], tally: _Tally, now: datetime) -> None:
        for trigger, index, action in self._pending(event, matching, webhooks=False):
            if (trigger.id, event.id, index) in done:
                tally.skipped += 1
                continue
            result = self._apply(session, event, trigger, action, now)
            session.add(self._effect(trigger, event, index, action, result))
            tally.effects += 1

    def _fail(self, event: _Event, exc: Exception) -> str:
        with transaction(self.sessions) as session:
            row = self._lock_event(session, event.id)
            if row.processed_at is not None or row.claimed_by != self.worker_id:
                return LOST
            return self._record_failure(row, exc, self.clock.now())

    def _record_failure(self, row: OutboxEvent, exc: Exception, now: datetime) -> str:
        message = exc.message if isinstance(exc, SaferailsError) else str(exc)
        row.attempts += 1
        row.last_error = f"{type(exc).__name__}: {message}"[:4000]
        row.claimed_by = None
        row.claimed_until = None
        if row.attempts >= self.max_attempts:
            row.dead_lettered_at = now
            return DEAD_LETTERED
        row.available_at = now + min(self.retry_cap, self.retry_base * (2 ** (row.attempts - 1)))
        return FAILED

    @staticmethod
    def _lock_event(session: Session, event_id: str) -> OutboxEvent:
        return session.execute(
            sa.select(OutboxEvent).where(OutboxEvent.id == event_id).with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one()

    @staticmethod
    def _done(session: Session, ids: list[str]) -> set[tuple[str, str, int]]:
        return {(t, e, i) for t, e, i in session.execute(
            sa.select(TriggerEffect.trigger_id, TriggerEffect.event_id, TriggerEffect.action_index)
            .where(TriggerEffect.event_id.in_(ids))
        ).all()}

    # --- actions ------------------------------------------------------------------------------------------
    def _apply(self, session: Session, event: _Event, trigger: CompiledTrigger, action: TriggerAction,
               now: datetime) -> dict[str, Any]:
        context = event.context()
        actor = f"trigger:{trigger.id}"
        if isinstance(action, CreateTaskAction):
            plan_id = event.payload.get("action_plan_id") if action.inherit_action_plan else None
            spec = ops.parse(ops.TaskInput, {
                "title": render(action.title, context),
                "task_type": render(action.task_type, context),
                "priority": render(action.priority, context),
                "description": render(action.description, context),
                "assigned_to": None if action.assigned_to is None else render(action.assigned_to, context),
                "action_plan_id": plan_id if isinstance(plan_id, str) else None,
                "metadata": {"source_event_id": event.id, "trigger_id": trigger.id},
            }, "task")
            task = ops.create_task(session, spec, actor=actor, now=now, correlation_id=event.correlation_id or event.id)
            return {"task_id": task.id}
        if isinstance(action, TransitionAction):
            entity_id = render(action.entity_id, context)
            ops.change_state(session, action.entity_type, entity_id, action.target, actor=actor, now=now,
                             details={"trigger_id": trigger.id, "event_id": event.id},
                             correlation_id=event.correlation_id or event.id)
            return {"entity_type": action.entity_type, "entity_id": entity_id, "target": action.target}
        if isinstance(action, EmitAlertAction):
            alert = alerts.Alert(action.alert_type, render(action.message, context), action.severity,
                                 entity_type=event.aggregate_type, entity_id=event.aggregate_id,
                                 details={"trigger_id": trigger.id, "event_id": event.id})
            alerts.emit(session, alert, notifier=self.notifier, actor=actor, now=now)
            return {"alert_type": action.alert_type}
        raise ExecutionError(f"action {action.type!r} cannot run inside a transaction")  # pragma: no cover

    def _call_webhook(self, event: _Event, trigger: CompiledTrigger, index: int,
                      action: CallWebhookAction) -> dict[str, Any]:
        if self.signer is None:
            raise ConfigurationError("call_webhook needs the dispatcher's webhook_secret", trigger_id=trigger.id)
        body = canonical_json({"event_id": event.id, "trigger_id": trigger.id, **event.context()}).encode("utf-8")
        msg_id = webhook_message_id(event.id, trigger.id, index)
        client = self.http_client or httpx.Client(timeout=10.0)
        problem = ""
        try:
            for attempt in range(1, action.max_attempts + 1):
                if attempt > 1:
                    self.sleeper(self.webhook_backoff_seconds * 2 ** (attempt - 2))
                headers = {"Content-Type": "application/json", **self.signer.headers(msg_id, body, self.clock.now())}
                try:
                    response = send(client, "POST", action.url, policy=self.egress, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                    continue
                if response.status_code < 300:
                    return {"url": action.url, "status": response.status_code, "attempts": attempt}
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    break  # the receiver refused this request; retrying the same bytes cannot help
        finally:
            if self.http_client is None:
                client.close()
        raise ExecutionError(f"webhook {action.url} failed: {problem}", url=action.url, trigger_id=trigger.id)

    # --- helpers ------------------------------------------------------------------------------------------
    @staticmethod
    def _effect_exists(session: Session, trigger_id: str, event_id: str, index: int) -> bool:
        return session.get(TriggerEffect, (trigger_id, event_id, index)) is not None

    def _effect(self, trigger: CompiledTrigger, event: _Event, index: int, action: TriggerAction,
                result: Mapping[str, Any]) -> TriggerEffect:
        return TriggerEffect(trigger_id=trigger.id, event_id=event.id, action_index=index, action_type=action.type,
                             result=dict(result), worker_id=self.worker_id, created_at=self.clock.now())


class _EventFailed(Exception):
    """An event's effects failed in a batch run without savepoints: roll the batch back and redo it with them."""


def _mark_processed(row: OutboxEvent, now: datetime) -> None:
    row.processed_at = now
    row.claimed_by = None
    row.claimed_until = None


def _fields(report: DispatchReport) -> tuple[int, ...]:
    return (report.claimed, report.processed, report.failed, report.dead_lettered, report.effects,
            report.skipped_effects, report.lost_claims)
