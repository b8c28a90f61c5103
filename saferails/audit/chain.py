"""The hash chain: canonical encoding and append.

Each record's ``hash`` is SHA-256 over the canonical JSON of every other column plus ``prev_hash``; the first
record's ``prev_hash`` is ``GENESIS_HASH``. Appending locks the single ``audit_head`` row (SELECT ... FOR UPDATE
on PostgreSQL; SQLite transactions already hold the writer lock from BEGIN IMMEDIATE), so concurrent writers
extend the chain one after the other and sequence numbers have no gaps.

When a signer is installed on the session (``saferails.audit.checkpoints.install_signer``), a transaction that
appended records writes ONE signed checkpoint of the head it leaves (``audit_checkpoints``) just before it
commits, in the same transaction: a batch of records costs one signature (~50 us). Anything that moves the head
must do it through ``_locked_head`` so the checkpoint covers it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from saferails.audit.checkpoints import checkpoint_row, sign_checkpoint, signer_of
from saferails.clock import as_utc
from saferails.store.tables import AuditHead, AuditRecord

GENESIS_HASH = "0" * 64
T = TypeVar("T")
HEAD_ROW_ID = 1


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, datetimes as ISO-8601 UTC. Same bytes on every backend."""
    return _CANONICAL.encode(value)


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


# One encoder for every call (``json.dumps`` with options builds a new one each time); encoding is reentrant.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)


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


def append(session: Session, entry: AuditEntry, *, now: datetime) -> Appended | None:
    """Append ``entry`` to the chain inside the caller's transaction (never commits). See ``append_many``
    (None inside a ``deferred`` block)."""
    appended = append_many(session, [entry], now=now)
    return appended[0] if appended else None


_DEFERRED = "saferails.audit.deferred"


@contextmanager
def deferred(session: Session) -> Iterator[None]:
    """Inside the block, ``append``/``append_many`` on ``session`` only keep their entries; they are chained
    and written in order, as one INSERT per distinct ``now``, when the block ends (nothing in the block may
    read them back). On an exception nothing is written: the caller's transaction rolls back. Nested blocks
    join the outer one."""
    if _DEFERRED in session.info:
        yield
        return
    kept: list[tuple[datetime, list[AuditEntry]]] = []
    session.info[_DEFERRED] = kept
    try:
        yield
    finally:
        session.info.pop(_DEFERRED, None)
    for now, entries in _grouped(kept):
        append_many(session, entries, now=now)


def _grouped(kept: list[tuple[datetime, list[T]]]) -> list[tuple[datetime, list[T]]]:
    """Consecutive groups at the same time merged (order kept)."""
    out: list[tuple[datetime, list[T]]] = []
    for now, items in kept:
        if out and out[-1][0] == now:
            out[-1][1].extend(items)
        else:
            out.append((now, list(items)))
    return out


@dataclass(frozen=True)
class Appended:
    """Where one appended record landed in the chain."""

    sequence: int
    hash: str


def append_many(session: Session, entries: Sequence[AuditEntry], *, now: datetime) -> list[Appended]:
    """Append ``entries`` in order inside the caller's transaction (never commits), all at time ``now``; inside
    a ``deferred`` block they are only kept (returns ``[]``) and written when it ends.

    The head is locked once per transaction; each record's hash chains on the previous one in Python and all
    the records go to the database in ONE multi-row INSERT (executemany), written at once: a later query in the
    same transaction sees them, and a rolled-back savepoint takes them with it. Time is truncated to
    microseconds and stored as UTC so the hash recomputes identically after a round trip.
    """
    if not entries:
        return []
    kept = session.info.get(_DEFERRED)
    if isinstance(kept, list):
        kept.append((now, list(entries)))
        return []
    lock = _head_lock(session)
    head = lock.head
    occurred_at = as_utc(now).astimezone(UTC)
    sequence, prev = head.sequence, head.hash
    rows: list[dict[str, Any]] = []
    appended: list[Appended] = []
    for entry in entries:
        details = canonical_json(entry.details)
        sequence += 1
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
            prev_hash=prev,
        )
        rows.append({
            "sequence": sequence,
            "occurred_at": occurred_at,
            "actor": entry.actor,
            "event": entry.event,
            "entity_type": entry.entity_type,
            "entity_id": entry.entity_id,
            "action_type": entry.action_type,
            "target": entry.target,
            "tenant": entry.tenant,
            "details": details,
            "prev_hash": prev,
            "hash": digest,
        })
        appended.append(Appended(sequence, digest))
        prev = digest
    # A Core INSERT on the transaction's connection: no ORM objects, no autoflush; the head row's UPDATE is
    # flushed with the rest of the unit of work (PostgreSQL checks at commit that it names the newest record).
    session.connection().execute(_AUDIT_INSERT, rows)
    head.sequence = sequence
    head.hash = prev
    lock.last_time = occurred_at
    return appended


_AUDIT_INSERT = sa.insert(AuditRecord.__table__)  # type: ignore[arg-type]


_HEAD_KEY = "saferails.audit_head"


@dataclass
class _HeadLock:
    """The head row locked by one transaction, and what the last checkpoint written in it covered."""

    transaction: Any
    head: AuditHead
    checkpointed_sequence: int
    checkpointed_hash: str
    last_time: datetime | None = None


def _locked_head(session: Session) -> AuditHead:
    """The chain head, locked for the rest of the current transaction.

    Locked once per transaction (SELECT ... FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the
    writer lock) and then kept in ``session.info``: while the lock is held nobody else can move the head, so the
    in-memory copy is authoritative. ``populate_existing`` discards a copy loaded earlier without the lock.
    """
    return _head_lock(session).head


def _head_lock(session: Session) -> _HeadLock:
    if session.get_transaction() is None:
        session.connection()  # autobegin now: the lock belongs to the transaction the SELECT below runs in
    transaction = session.get_transaction()
    cached = session.info.get(_HEAD_KEY)
    if isinstance(cached, _HeadLock) and cached.transaction is transaction:
        return cached
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
    lock = _HeadLock(transaction, found, found.sequence, found.hash)
    session.info[_HEAD_KEY] = lock
    return lock


@event.listens_for(Session, "before_commit")
def _checkpoint_before_commit(session: Session) -> None:
    """Sign the head this transaction leaves, once, just before it commits (the row is flushed by the commit).

    Runs for every session in the process but costs a dictionary look-up unless this transaction moved the head
    and a signer is installed. A savepoint released with appends gets its own checkpoint; the outer commit then
    covers only what came after it.
    """
    lock = session.info.get(_HEAD_KEY)
    if not isinstance(lock, _HeadLock) or lock.transaction is not session.get_transaction():
        return
    signer = signer_of(session)
    if signer is None or lock.head.sequence == lock.checkpointed_sequence:
        return
    checkpoint = sign_checkpoint(
        signer,
        sequence=lock.head.sequence,
        digest=lock.head.hash,
        prev_sequence=lock.checkpointed_sequence,
        prev_hash=lock.checkpointed_hash,
        signed_at=lock.last_time or datetime.now(UTC),
    )
    session.add(checkpoint_row(checkpoint))
    lock.checkpointed_sequence, lock.checkpointed_hash = checkpoint.sequence, checkpoint.hash


def read_head(session: Session) -> tuple[int, str]:
    """``(sequence, hash)`` as the ``audit_head`` row states it, ``(0, GENESIS_HASH)`` before any append.

    A plain read (no lock, nothing left in the session) for verification and anchoring; appenders use the lock.
    """
    row = session.execute(
        sa.select(AuditHead.sequence, AuditHead.hash).where(AuditHead.id == HEAD_ROW_ID)
    ).one_or_none()
    return (0, GENESIS_HASH) if row is None else (int(row.sequence), str(row.hash))
