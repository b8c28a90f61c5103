"""The hash chain: canonical encoding and append.

Each record's ``hash`` is SHA-256 over the canonical JSON of every other column plus ``prev_hash``; the first
record's ``prev_hash`` is ``GENESIS_HASH``. Appending locks the single ``audit_head`` row (SELECT ... FOR UPDATE
on PostgreSQL; SQLite transactions already hold the writer lock from BEGIN IMMEDIATE), so concurrent writers
extend the chain one after the other and sequence numbers have no gaps.

When a signer is installed on the session (``saferails.audit.checkpoints.install_signer``), a transaction that
appended records writes ONE signed checkpoint of the head it leaves (``audit_checkpoints``) just before it
commits, in the same transaction: a batch of records costs one signature (~50 us). Anything that moves the head
must do it through ``_locked_head`` so the checkpoint covers it.

Unchained writes (PostgreSQL, when ``install_sequencer`` enabled them on the session): appending does not touch
the head. Each record is inserted with its final content, a number from ``audit_log_sequence`` (so its place
in the chain is fixed when it is written), the MAC of both (``content_mac``, when a signer is installed) and no
``prev_hash``/``hash``; ``saferails.audit.sequencer`` chains
such records later, in number order, under the head lock, and signs one checkpoint per pass. Writers then never
wait for each other on the head row.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from saferails.audit.checkpoints import checkpoint_row, sign_checkpoint, signer_of
from saferails.audit.signing import AuditSigner
from saferails.clock import as_utc
from saferails.errors import ConfigurationError
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


@dataclass(frozen=True, slots=True)
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


def digest_of(row: Any, prev_hash: str | None = None) -> str:
    """Recompute a stored record's hash from its columns (an ``AuditRecord`` or a result row with its columns),
    linked to ``prev_hash`` when given (the sequencer chaining it), else to its own stored ``prev_hash``. Raises
    ``ValueError`` for a record not chained yet and no ``prev_hash`` given."""
    prev_hash = row.prev_hash if prev_hash is None else prev_hash
    if prev_hash is None:
        raise ValueError(f"audit record {row.sequence} is not chained yet")
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
        prev_hash=prev_hash,
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


@dataclass(frozen=True, slots=True)
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
    occurred_at = as_utc(now).astimezone(UTC)
    if writes_unchained(session):
        _append_unchained(session, entries, occurred_at)
        return []
    # Core statements on the transaction's connection: no ORM objects, no autoflush (PostgreSQL checks at commit
    # that the head names the newest record, so the head may move before the records are inserted).
    claimed = _claimed_head(session, entries, occurred_at)
    if claimed is not None:
        lock, rows, appended = claimed
        session.connection().execute(_AUDIT_INSERT, rows)
    else:
        lock = _head_lock(session)
        rows, appended = _chained(entries, occurred_at, lock.head)
        session.connection().execute(_AUDIT_INSERT, rows)
        _move_head(session, lock, appended[-1].sequence, appended[-1].hash)
    lock.last_time = occurred_at
    return appended


_AUDIT_INSERT = sa.insert(AuditRecord.__table__)  # type: ignore[arg-type]


def _chained(entries: Sequence[AuditEntry], occurred_at: datetime, head: _Head,
             ) -> tuple[list[dict[str, Any]], list[Appended]]:
    """The rows of ``entries`` chained after ``head``, and where each lands."""
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
            **_content(sequence, occurred_at, entry, details),
            "prev_hash": prev,
            "hash": digest,
        })
        appended.append(Appended(sequence, digest))
        prev = digest
    return rows, appended


def _content(sequence: int, occurred_at: datetime, entry: AuditEntry, details: str) -> dict[str, Any]:
    """A record's content columns (what its hash and MAC cover besides the link): both append paths insert it."""
    return {"sequence": sequence, "occurred_at": occurred_at, "actor": entry.actor, "event": entry.event,
            "entity_type": entry.entity_type, "entity_id": entry.entity_id, "action_type": entry.action_type,
            "target": entry.target, "tenant": entry.tenant, "details": details}
SEQUENCE_NAME = "audit_log_sequence"
# The barrier CTE is materialised before any row is produced, so the lock is held before the first number is drawn.
_NUMBERS_WITH_BARRIER = sa.text(
    "WITH barrier AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared(:key) AS held) "
    f"SELECT nextval('{SEQUENCE_NAME}') AS number, (SELECT sequence FROM audit_head WHERE id = {HEAD_ROW_ID}) AS head "
    "FROM barrier, generate_series(1, :count)"
)
_NUMBERS = sa.text(
    f"SELECT nextval('{SEQUENCE_NAME}') AS number, (SELECT sequence FROM audit_head WHERE id = {HEAD_ROW_ID}) AS head "
    "FROM generate_series(1, :count)"
)
SEQUENCER_INFO_KEY = "saferails.audit_sequencer"
# pg_advisory_xact_lock key shared by unchained writers (shared mode) and the sequencer (exclusive, briefly): see
# ``saferails.audit.sequencer``. Any bigint no other part of the application uses.
SEQUENCER_LOCK_KEY = 0x5AFE_A0D1_7000_0001
_BARRIER_KEY = "saferails.audit_sequencer_barrier"


class AuditSequenceBehind(ConfigurationError):
    """An unchained append drew a number at or below the chain head: the store was appended to inline (without
    ``audit_sequencer``) after migration 0012, so ``audit_log_sequence`` is behind. Nothing is written."""

    code = "AUDIT_SEQUENCE_BEHIND"


def install_sequencer(target: sessionmaker[Session] | Session, enabled: bool) -> None:
    """Make every transaction of ``target`` (a session factory, or one session) append audit records unchained
    (PostgreSQL; ignored on SQLite, which chains inline) for ``saferails.audit.sequencer`` to chain later.
    ``False`` restores inline chaining. Every process writing one database must use the same mode."""
    info: dict[Any, Any] = target.kw.setdefault("info", {}) if isinstance(target, sessionmaker) else target.info
    if enabled:
        info[SEQUENCER_INFO_KEY] = True
    else:
        info.pop(SEQUENCER_INFO_KEY, None)


def writes_unchained(session: Session) -> bool:
    """True when appends on ``session`` are written unchained (enabled and the backend is PostgreSQL)."""
    return session.info.get(SEQUENCER_INFO_KEY) is True and session.get_bind().dialect.name == "postgresql"


def _append_unchained(session: Session, entries: Sequence[AuditEntry], occurred_at: datetime) -> None:
    """Insert ``entries`` with their numbers and without hashes, each with its MAC when a signer is installed.
    The transaction first takes the sequencer's advisory lock in shared mode (once, in the statement that draws
    the first numbers; held to commit): the sequencer's exclusive take of it waits for every transaction that
    may still commit a number, which is how it knows which numbers are settled."""
    connection = session.connection()
    transaction = session.get_transaction()
    first = session.info.get(_BARRIER_KEY) is not transaction
    drawn = connection.execute(_NUMBERS_WITH_BARRIER if first else _NUMBERS,
                               {"key": SEQUENCER_LOCK_KEY, "count": len(entries)}).all()
    session.info[_BARRIER_KEY] = transaction
    numbers = sorted(int(row.number) for row in drawn)
    head = max((int(row.head or 0) for row in drawn), default=0)
    if numbers[0] <= head:
        raise AuditSequenceBehind(
            f"audit_log_sequence drew {numbers[0]}, at or below the chain head {head}: this store was appended to "
            "inline since migration 0012; as the owner, run SELECT setval('audit_log_sequence', "
            "(SELECT sequence FROM audit_head) + 1, false) with the writers stopped",
            number=numbers[0],
            head=head,
        )
    signer = signer_of(session)
    rows: list[dict[str, Any]] = []
    for number, entry in zip(numbers, entries, strict=True):
        row = _content(number, occurred_at, entry, canonical_json(entry.details))
        row["mac"] = None if signer is None else content_mac(signer, row)
        rows.append(row)
    connection.execute(_AUDIT_INSERT, rows)


def content_mac(signer: AuditSigner, fields: dict[str, Any]) -> str:
    """The MAC of an unchained record's content and number (``fields``: every hashed column but ``prev_hash``),
    made by writers and checked by the sequencer before it chains the record."""
    content = record_digest(
        sequence=fields["sequence"],
        occurred_at=fields["occurred_at"],
        actor=fields["actor"],
        event=fields["event"],
        entity_type=fields["entity_type"],
        entity_id=fields["entity_id"],
        action_type=fields["action_type"],
        target=fields["target"],
        tenant=fields["tenant"],
        details=fields["details"],
        prev_hash="",
    )
    return signer.entry_mac(content.encode("ascii"))


_HEAD_KEY = "saferails.audit_head"
_HEAD_TABLE: sa.Table = AuditHead.__table__  # type: ignore[assignment]
# Core statements built once (compiled once): the head is read and written without the ORM, so a transaction
# that appends pays two small statements and no unit-of-work flush for it.
_HEAD_SELECT = (
    sa.select(_HEAD_TABLE.c.sequence, _HEAD_TABLE.c.hash).where(_HEAD_TABLE.c.id == HEAD_ROW_ID).with_for_update()
)
_HEAD_UPDATE = (
    sa.update(_HEAD_TABLE)
    .where(_HEAD_TABLE.c.id == HEAD_ROW_ID)
    .values(sequence=sa.bindparam("h_sequence"), hash=sa.bindparam("h_hash"))
)
_HEAD_SEED = sa.insert(_HEAD_TABLE).values(id=HEAD_ROW_ID, sequence=0, hash=GENESIS_HASH)
# Moves the head only if it is still where this process last saw it: the UPDATE locks the row as SELECT ... FOR
# UPDATE would (PostgreSQL re-checks the condition after waiting for a concurrent writer), so a right guess
# locks, reads and moves the head in one statement.
_HEAD_CLAIM = (
    sa.update(_HEAD_TABLE)
    .where(_HEAD_TABLE.c.id == HEAD_ROW_ID, _HEAD_TABLE.c.sequence == sa.bindparam("g_sequence"),
           _HEAD_TABLE.c.hash == sa.bindparam("g_hash"))
    .values(sequence=sa.bindparam("h_sequence"), hash=sa.bindparam("h_hash"))
)
# Per database (engine): the head as this process last read or wrote it. Only ever a guess for ``_HEAD_CLAIM``:
# a wrong one (another process appended, a transaction rolled back) costs one UPDATE that matches nothing.
_LAST_SEEN: weakref.WeakKeyDictionary[Any, _Head] = weakref.WeakKeyDictionary()


@dataclass
class _Head:
    """The chain head as this transaction holds it (the ``audit_head`` row, locked)."""

    sequence: int
    hash: str


@dataclass
class _HeadLock:
    """The head row locked by one transaction, and what the last checkpoint written in it covered.

    ``stale`` is set when a savepoint of the transaction rolls back: the head it wrote is undone in the database,
    so the next use reads it again (the lock itself is kept: it belongs to the outer transaction)."""

    transaction: Any
    head: _Head
    checkpointed_sequence: int
    checkpointed_hash: str
    last_time: datetime | None = None
    stale: bool = False


def _locked_head(session: Session) -> _Head:
    """The chain head, locked for the rest of the current transaction.

    Locked once per transaction (SELECT ... FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the
    writer lock) and then kept in ``session.info``: while the lock is held nobody else can move the head, so the
    in-memory copy is authoritative (read again after a savepoint rollback). Move it with ``_move_head`` only.
    """
    return _head_lock(session).head


def _read_head_locked(session: Session) -> _Head:
    found = session.connection().execute(_HEAD_SELECT).one_or_none()
    if found is None:
        # Migration 0001 seeds the head row; this only happens on a schema created without it.
        session.connection().execute(_HEAD_SEED)
        head = _Head(0, GENESIS_HASH)
    else:
        head = _Head(int(found.sequence), str(found.hash))
    _LAST_SEEN[session.get_bind()] = _Head(head.sequence, head.hash)
    return head


def _claimed_head(session: Session, entries: Sequence[AuditEntry], occurred_at: datetime,
                  ) -> tuple[_HeadLock, list[dict[str, Any]], list[Appended]] | None:
    """The first append of a transaction, when the head is still where this process last saw it: the head
    moved past ``entries`` with ONE statement (``_HEAD_CLAIM``), which also locks it, and the rows chained after
    it for the caller to insert. None when the transaction already holds the head, or the guess is missing or
    wrong (then nothing was written)."""
    connection = session.connection()  # autobegin now: the lock belongs to the transaction the UPDATE runs in
    transaction = session.get_transaction()
    cached = session.info.get(_HEAD_KEY)
    if isinstance(cached, _HeadLock) and cached.transaction is transaction:
        return None
    bind = session.get_bind()
    guess = _LAST_SEEN.get(bind)
    if guess is None:
        return None
    rows, appended = _chained(entries, occurred_at, guess)
    new = _Head(appended[-1].sequence, appended[-1].hash)
    moved = connection.execute(_HEAD_CLAIM, {"g_sequence": guess.sequence, "g_hash": guess.hash,
                                             "h_sequence": new.sequence, "h_hash": new.hash})
    if moved.rowcount != 1:
        return None
    lock = _HeadLock(transaction, new, guess.sequence, guess.hash)
    session.info[_HEAD_KEY] = lock
    _LAST_SEEN[bind] = _Head(new.sequence, new.hash)
    return lock, rows, appended


def _head_lock(session: Session) -> _HeadLock:
    if session.get_transaction() is None:
        session.connection()  # autobegin now: the lock belongs to the transaction the SELECT below runs in
    transaction = session.get_transaction()
    cached = session.info.get(_HEAD_KEY)
    if isinstance(cached, _HeadLock) and cached.transaction is transaction:
        if cached.stale:
            cached.head = _read_head_locked(session)
            cached.stale = False
        return cached
    head = _read_head_locked(session)
    lock = _HeadLock(transaction, head, head.sequence, head.hash)
    session.info[_HEAD_KEY] = lock
    return lock


def _move_head(session: Session, lock: _HeadLock, sequence: int, digest: str) -> None:
    """Write the head ``lock`` holds forward to ``sequence``/``digest`` at once (a later savepoint rollback undoes
    it in the database, and ``_head_lock`` then reads it again)."""
    session.connection().execute(_HEAD_UPDATE, {"h_sequence": sequence, "h_hash": digest})
    lock.head.sequence, lock.head.hash = sequence, digest
    _LAST_SEEN[session.get_bind()] = _Head(sequence, digest)


@event.listens_for(Session, "after_soft_rollback")
def _head_after_rollback(session: Session, previous_transaction: Any) -> None:
    """A rolled-back savepoint undid any head move made inside it: the transaction's copy must be read again."""
    lock = session.info.get(_HEAD_KEY)
    if isinstance(lock, _HeadLock) and previous_transaction.nested:
        lock.stale = True


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
    if signer is None:
        return
    head = _head_lock(session).head  # read again if a savepoint rolled its move back
    if head.sequence == lock.checkpointed_sequence:
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
