"""The hash chain: canonical encoding and append.

Each record's ``hash`` is SHA-256 over the canonical JSON of every other column plus ``prev_hash``; the first
record's ``prev_hash`` is ``GENESIS_HASH``. Appending locks the single ``audit_head`` row (SELECT ... FOR UPDATE
on PostgreSQL; SQLite transactions already hold the writer lock from BEGIN IMMEDIATE), so concurrent writers
extend the chain one after the other and sequence numbers have no gaps.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from saferails.clock import as_utc
from saferails.store.tables import AuditHead, AuditRecord

GENESIS_HASH = "0" * 64
HEAD_ROW_ID = 1


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, datetimes as ISO-8601 UTC. Same bytes on every backend."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "total_seconds"):
        return value.total_seconds()
    return str(value)


@dataclass(frozen=True)
class AuditEntry:
    """What a caller wants recorded. The chain adds sequence, time, prev_hash and hash."""

    actor: str
    event: str
    entity_type: str
    entity_id: str | None = None
    action_type: str | None = None
    target: str | None = None
    tenant: str = "default"
    details: dict[str, Any] = field(default_factory=dict)


def record_digest(
    *,
    sequence: int,
    occurred_at: datetime,
    actor: str,
    event: str,
    entity_type: str,
    entity_id: str | None,
    action_type: str | None,
    target: str | None,
    tenant: str,
    details: str,
    prev_hash: str,
) -> str:
    """The hash of one record. ``details`` is the stored canonical JSON text."""
    body = canonical_json(
        {
            "sequence": sequence,
            "occurred_at": as_utc(occurred_at).isoformat(),
            "actor": actor,
            "event": event,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "action_type": action_type,
            "target": target,
            "tenant": tenant,
            "details": details,
            "prev_hash": prev_hash,
        }
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def digest_of(row: AuditRecord) -> str:
    """Recompute a stored record's hash from its columns."""
    return record_digest(
        sequence=row.sequence,
        occurred_at=row.occurred_at,
        actor=row.actor,
        event=row.event,
        entity_type=row.entity_type,
        entity_id=row.entity_id,
        action_type=row.action_type,
        target=row.target,
        tenant=row.tenant,
        details=row.details,
        prev_hash=row.prev_hash,
    )


def append(session: Session, entry: AuditEntry, *, now: datetime) -> AuditRecord:
    """Append ``entry`` to the chain inside the caller's transaction (never commits).

    Time is truncated to microseconds and stored as UTC so the hash recomputes identically after a round trip.
    """
    head = _locked_head(session)
    occurred_at = as_utc(now).astimezone(UTC)
    details = canonical_json(entry.details)
    sequence = head.sequence + 1
    digest = record_digest(
        sequence=sequence,
        occurred_at=occurred_at,
        actor=entry.actor,
        event=entry.event,
        entity_type=entry.entity_type,
        entity_id=entry.entity_id,
        action_type=entry.action_type,
        target=entry.target,
        tenant=entry.tenant,
        details=details,
        prev_hash=head.hash,
    )
    record = AuditRecord(
        sequence=sequence,
        occurred_at=occurred_at,
        actor=entry.actor,
        event=entry.event,
        entity_type=entry.entity_type,
        entity_id=entry.entity_id,
        action_type=entry.action_type,
        target=entry.target,
        tenant=entry.tenant,
        details=details,
        prev_hash=head.hash,
        hash=digest,
    )
    session.add(record)
    head.sequence = sequence
    head.hash = digest
    # No flush here: the ORM batches the inserts of a transaction (many appends cost one round trip at commit).
    return record


_HEAD_KEY = "saferails.audit_head"


def _locked_head(session: Session) -> AuditHead:
    """The chain head, locked for the rest of the current transaction.

    Locked once per transaction (SELECT ... FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the
    writer lock) and then kept in ``session.info``: while the lock is held nobody else can move the head, so the
    in-memory copy is authoritative. ``populate_existing`` discards a copy loaded earlier without the lock.
    """
    transaction = session.get_transaction()
    cached = session.info.get(_HEAD_KEY)
    if cached is not None and cached[0] is transaction:
        head: AuditHead = cached[1]
        return head
    found = session.execute(
        sa.select(AuditHead)
        .where(AuditHead.id == HEAD_ROW_ID)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if found is None:
        # Migration 0001 seeds the head row; this only happens on a schema created without it.
        found = AuditHead(id=HEAD_ROW_ID, sequence=0, hash=GENESIS_HASH)
        session.add(found)
    session.info[_HEAD_KEY] = (transaction, found)
    return found


def read_head(session: Session) -> tuple[int, str]:
    """``(sequence, hash)`` as the ``audit_head`` row states it, ``(0, GENESIS_HASH)`` before any append.

    A plain read (no lock, nothing left in the session) for verification and anchoring; appenders use the lock.
    """
    row = session.execute(
        sa.select(AuditHead.sequence, AuditHead.hash).where(AuditHead.id == HEAD_ROW_ID)
    ).one_or_none()
    return (0, GENESIS_HASH) if row is None else (int(row.sequence), str(row.hash))
