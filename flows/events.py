"""Every audit record, also as a Prefect event, so automations can react (``saferails.approved`` ...).

``relay_audit_events`` emits the records after a cursor (the last relayed audit sequence) kept in the Prefect
Variable ``saferails-audit-cursor``. Delivery is at least once: the cursor moves after a batch is emitted, and
each event's id is derived from the record's hash, so a repeat after a crash (or from an overlapping run)
carries the same id. Served, one run relays pass after pass for an hour (``flows.housekeeping``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import sqlalchemy as sa
from prefect import flow, get_run_logger, task
from prefect.events import emit_event
from prefect.variables import Variable

from blocks.settings import current_runtime
from flows.housekeeping import INTERVAL_SECONDS, repeat_in_runtime
from saferails.audit.chain import read_head
from saferails.clock import as_utc
from saferails.store.db import transaction
from saferails.store.tables import AuditRecord

CURSOR_VARIABLE = "saferails-audit-cursor"
EVENT_NAMESPACE = uuid.UUID("6f1c1d5e-3b0a-4c55-9a36-5a4f6c0de001")


def event_for(record: AuditRecord) -> dict[str, Any]:
    """The ``emit_event`` arguments for one audit record."""
    resource = {
        "prefect.resource.id": f"saferails.{record.entity_type}.{record.entity_id}",
        "prefect.resource.name": record.target or str(record.entity_id),
        "saferails.actor": record.actor,
        "saferails.tenant": record.tenant,
    }
    if record.action_type:
        resource["saferails.action-type"] = record.action_type
    return {
        "event": f"saferails.{record.event}",
        "resource": resource,
        "occurred": as_utc(record.occurred_at),
        "payload": {"sequence": record.sequence, "hash": record.hash, "details": json.loads(record.details)},
        "id": uuid.uuid5(EVENT_NAMESPACE, record.hash if record.hash is not None else f"sequence:{record.sequence}"),
    }


@task(name="relay-audit-batch")
def relay_batch(after: int, limit: int) -> int:
    """Emit the audit records with sequence > ``after`` (at most ``limit``) up to the chain's head; returns the
    last sequence emitted. Records above the head are not chained yet (``saferails.audit.sequencer``): a number
    there may still be committed later, so the relay waits for the sequencer to pass it."""
    with transaction(current_runtime().sessions) as session:
        head_sequence, _ = read_head(session)
        stmt = (sa.select(AuditRecord).where(AuditRecord.sequence > after, AuditRecord.sequence <= head_sequence)
                .order_by(AuditRecord.sequence).limit(limit))
        records = list(session.execute(stmt).scalars())
        events = [event_for(r) for r in records]
    last = after
    for record, kwargs in zip(records, events, strict=True):
        emit_event(**kwargs)
        last = record.sequence
    return last


def relay_pass(batch_size: int, max_batches: int) -> int:
    """Relay what is new now (up to ``max_batches`` batches); returns how many records were relayed."""
    cursor = int(Variable.get(CURSOR_VARIABLE, default=0) or 0)
    relayed = 0
    for _ in range(max_batches):
        # The task's function, not a task run: a pass every few seconds would add hundreds of task runs an hour.
        last = relay_batch.fn(cursor, batch_size)
        if last == cursor:
            break
        relayed += last - cursor
        cursor = last
        Variable.set(CURSOR_VARIABLE, cursor, overwrite=True)
    if relayed:
        get_run_logger().info("relayed %d audit records; cursor at %d", relayed, cursor)
    return relayed


@flow(name="saferails-relay-audit-events")
def relay_audit_events(batch_size: int = 500, max_batches: int = 20, period_seconds: float = 0,
                       interval_seconds: float = INTERVAL_SECONDS) -> int:
    """Relay new audit records as events, pass after pass for ``period_seconds`` (0: one pass; the served
    deployment loops for an hour, see ``flows.housekeeping``); returns how many were relayed by this run."""
    passes = repeat_in_runtime(lambda: relay_pass(batch_size, max_batches), period=period_seconds,
                               interval=interval_seconds)
    return sum(passes)
