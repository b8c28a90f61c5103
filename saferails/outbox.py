"""Transactional outbox: events written in the same transaction as the change they announce.

Dispatchers (the workflow layer, Prefect event emission) read them later, at least once; consumers dedupe by
``OutboxEvent.id``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from saferails.audit.chain import canonical_json
from saferails.store.tables import OutboxEvent


@dataclass(frozen=True)
class DomainEvent:
    event_type: str
    aggregate_type: str
    aggregate_id: str
    actor: str
    payload: dict[str, Any] = field(default_factory=dict)
    tenant: str = "default"
    correlation_id: str | None = None


def append(session: Session, event: DomainEvent, *, now: datetime) -> OutboxEvent:
    """Add ``event`` to the outbox inside the caller's transaction (never commits)."""
    row = OutboxEvent(
        id=str(uuid.uuid4()),
        event_type=event.event_type,
        aggregate_type=event.aggregate_type,
        aggregate_id=event.aggregate_id,
        # Round-trip through canonical JSON: datetimes and decimals become strings, on every backend alike.
        payload=json.loads(canonical_json(event.payload)),
        correlation_id=event.correlation_id,
        actor=event.actor,
        tenant=event.tenant,
        created_at=now,
        available_at=now,
        attempts=0,
    )
    session.add(row)
    return row
