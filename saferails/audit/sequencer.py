"""The audit sequencer: chains the records that writers appended unchained (PostgreSQL).

With unchained writes (``saferails.audit.chain.install_sequencer``) a writer inserts each audit record with its
final content and a number from ``audit_log_sequence``, but without ``prev_hash``/``hash``, and never touches
the head row: concurrent writers do not queue behind each other. ``sequence_pending`` then chains, in number
order, every record whose number is settled, much as a certificate-transparency log sequences submitted entries
within a bounded delay:

1. **Barrier** (a short transaction): take the advisory lock that every unchained writer holds in shared mode
   until it commits, in exclusive mode. It is granted once every transaction that might still commit a number
   has ended; the highest number then in ``audit_log`` is the bound. Every number at or below it is settled:
   committed (visible now) or rolled back (a gap for good). The lock is released at once; writers that start
   later draw higher numbers.
2. **Chain** (one transaction per batch): lock the head row, read the unchained records between the head and
   the bound in number order, compute each hash on the previous one, write ``prev_hash`` and ``hash`` (migration
   0012 lets each record be chained exactly once, its other columns unchanged) and move the head. With a signer
   installed, each record's MAC (``content_mac``: HMAC under a key derived from the signing key, made by the
   writer) must hold first: a record inserted with the database credentials alone is never chained, so never
   signed (``AuditEntryForged``; nothing after it is chained either, and ``audit verify`` then reports it left
   unchained). The
   transaction's signed checkpoint (``saferails.audit.checkpoints``) covers the records it chained.

Who calls it: ``Store.sequence_audit`` (and so every sweep, through ``publish_audit_checkpoint``), ``audit
verify`` before it verifies (sequence-on-read). ``verify_chain`` fails when a record is left unchained longer
than the allowed delay, or when one below a chained record was skipped. Several sequencers may run at once: the
head lock orders them and each chains only what is above the head. On SQLite nothing is ever written unchained
and this is a no-op.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from saferails.audit.chain import SEQUENCER_LOCK_KEY, _head_lock, _move_head, content_mac, digest_of, read_head
from saferails.audit.checkpoints import signer_of
from saferails.audit.signing import AuditSigner
from saferails.audit.verify import RECORD_COLUMNS
from saferails.clock import as_utc
from saferails.errors import AuditChainBroken, InvalidInput
from saferails.store.tables import AuditRecord

_TABLE = AuditRecord.__table__
_CHAIN_UPDATE = (
    sa.update(_TABLE)  # type: ignore[arg-type]
    .where(_TABLE.c.sequence == sa.bindparam("b_sequence"), _TABLE.c.hash.is_(None))
    .values(prev_hash=sa.bindparam("b_prev_hash"), hash=sa.bindparam("b_hash"))
)
# A stored record's columns as verify reads them, and its MAC.
_CONTENT = (*RECORD_COLUMNS, AuditRecord.mac)


class AuditEntryForged(AuditChainBroken):
    """A record written unchained has no valid MAC: it was not written by a process holding the audit key.
    The sequencer chains nothing from it on (fail closed) until someone looks (``audit verify``)."""

    code = "AUDIT_ENTRY_FORGED"


@dataclass(frozen=True)
class Sequenced:
    """What one ``sequence_pending`` call did: ``chained`` records, and the head it left."""

    chained: int
    head_sequence: int
    head_hash: str


def sequence_pending(
    sessions: sessionmaker[Session], *, now: datetime | None = None, batch_size: int = 5000
) -> Sequenced:
    """Chain every settled unchained record (see the module docstring), ``batch_size`` per transaction, each
    transaction signing its checkpoint at ``now`` (default: the system time) when a signer is installed. Commits
    its own transactions; never holds the writers' lock longer than it takes to read the bound.

    Raises ``AuditEntryForged`` when a record's MAC does not hold (with a signer installed), ``AuditChainBroken``
    when a record above the head already has a hash (someone chained it behind the
    sequencer's back: nothing is chained after it until ``audit verify`` is looked at) and ``InvalidInput`` if
    ``batch_size < 1``. Returns at once on SQLite, or when nothing is unchained.
    """
    if batch_size < 1:
        raise InvalidInput(f"batch_size must be at least 1, got {batch_size}", batch_size=batch_size)
    chained = 0
    with sessions.begin() as session:
        head = read_head(session)
        if session.get_bind().dialect.name != "postgresql" or not _any_unchained(session, head[0]):
            return Sequenced(0, *head)
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(SEQUENCER_LOCK_KEY)))
        bound = int(session.execute(sa.select(sa.func.max(AuditRecord.sequence))).scalar_one() or 0)
    at = as_utc(now).astimezone(UTC) if now is not None else datetime.now(UTC)
    while True:
        with sessions.begin() as session:
            done, head = _chain_batch(session, bound, batch_size, at)
        chained += done
        if done < batch_size:
            return Sequenced(chained, *head)


def _any_unchained(session: Session, above: int) -> bool:
    found = session.execute(
        sa.select(AuditRecord.sequence).where(AuditRecord.hash.is_(None), AuditRecord.sequence > above).limit(1)
    ).first()
    return found is not None


def _mac_holds(signer: AuditSigner, row: Any) -> bool:
    fields = {column.key: getattr(row, column.key) for column in _CONTENT[:10]}
    return row.mac is not None and hmac.compare_digest(str(row.mac), content_mac(signer, fields))


def _chain_batch(session: Session, bound: int, batch_size: int, at: datetime) -> tuple[int, tuple[int, str]]:
    lock = _head_lock(session)
    head = lock.head
    rows = session.execute(
        sa.select(*_CONTENT)
        .where(AuditRecord.sequence > head.sequence, AuditRecord.sequence <= bound)
        .order_by(AuditRecord.sequence)
        .limit(batch_size)
    ).all()
    if not rows:
        return 0, (head.sequence, head.hash)
    prev = head.hash
    updates = []
    signer = signer_of(session)
    for row in rows:
        if row.hash is not None or row.prev_hash is not None:
            raise AuditChainBroken(
                f"audit record {row.sequence} above the head ({head.sequence}) is already chained: not written by "
                "the sequencer; run audit verify",
                sequence=row.sequence,
            )
        if signer is not None and not _mac_holds(signer, row):
            raise AuditEntryForged(
                f"audit record {row.sequence} has no valid MAC: not written by a process holding the audit key; "
                "nothing after it is chained; run audit verify",
                sequence=row.sequence,
            )
        digest = digest_of(row, prev_hash=prev)
        updates.append({"b_sequence": row.sequence, "b_prev_hash": prev, "b_hash": digest})
        prev = digest
    result = session.connection().execute(_CHAIN_UPDATE, updates)
    if result.rowcount != len(updates):
        raise AuditChainBroken(
            f"audit records {rows[0].sequence}..{rows[-1].sequence} changed while being chained; run audit verify",
            sequence=rows[0].sequence,
        )
    _move_head(session, lock, int(rows[-1].sequence), prev)
    lock.last_time = at
    return len(rows), (head.sequence, head.hash)
