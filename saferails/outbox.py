"""Transactional outbox: events written in the same transaction as the change they announce.

Dispatchers (the workflow layer, Prefect event emission) read them later, at least once; consumers dedupe by
``OutboxEvent.id``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
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


def append(session: Session, event: DomainEvent, *, now: datetime) -> str:
    """Add ``event`` to the outbox inside the caller's transaction (never commits); returns its id."""
    return append_many(session, [event], now=now)[0]


def append_many(session: Session, events: Sequence[DomainEvent], *, now: datetime) -> list[str]:
    """Add ``events`` to the outbox in order, in ONE multi-row INSERT inside the caller's transaction (never
    commits; written at once, so a rolled-back savepoint takes them with it). Returns their ids in order."""
    if not events:
        return []
    rows = [
        {
            "id": str(uuid.uuid4()),
            "event_type": event.event_type,
            "aggregate_type": event.aggregate_type,
            "aggregate_id": event.aggregate_id,
            # Canonical JSON, bound as text (``_OUTBOX_INSERT``): datetimes and decimals become strings, on every
            # backend alike, and the payload is encoded once.
            "payload_json": canonical_json(event.payload),
            "correlation_id": event.correlation_id,
            "actor": event.actor,
            "tenant": event.tenant,
            "created_at": now,
            "available_at": now,
            "attempts": 0,
        }
        for event in events
    ]
    kept = session.info.get(_DEFERRED)
    if isinstance(kept, list):
        kept.extend(rows)
    else:
        session.connection().execute(_OUTBOX_INSERT, rows)
    return [str(row["id"]) for row in rows]


_DEFERRED = "saferails.outbox.deferred"


@contextmanager
def deferred(session: Session) -> Iterator[None]:
    """Inside the block, ``append``/``append_many`` on ``session`` keep their rows (ids are assigned at once) and
    write them in ONE INSERT when the block ends; nothing on an exception. Nested blocks join the outer one."""
    if _DEFERRED in session.info:
        yield
        return
    kept: list[dict[str, Any]] = []
    session.info[_DEFERRED] = kept
    try:
        yield
    finally:
        session.info.pop(_DEFERRED, None)
    if kept:
        session.connection().execute(_OUTBOX_INSERT, kept)


class _EncodedJSON(sa.types.TypeDecorator[str]):
    """The payload column's JSON type, bound as JSON text its caller already encoded: the driver gets the text
    unchanged (PostgreSQL casts it to JSONB), so the payload is not encoded a second time."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        return dialect.type_descriptor(postgresql.JSONB() if dialect.name == "postgresql" else sa.JSON())

    def bind_processor(self, dialect: sa.Dialect) -> None:
        return None


_OUTBOX_INSERT = sa.insert(OutboxEvent.__table__).values(  # type: ignore[arg-type]
    payload=sa.bindparam("payload_json", type_=_EncodedJSON())
)
