"""Verify the audit chain: every hash recomputed, every link and sequence number checked, the head compared.

What each check catches:

- a record's hash no longer matches its columns: the record was altered in place;
- a record's ``prev_hash`` is not the previous record's hash: a record was inserted, replaced or re-hashed;
- a gap in the sequence numbers: a record was deleted;
- the ``audit_head`` row disagrees with the last record: the newest records were deleted, or records were
  appended behind the chain's back;
- an anchor exported earlier (``saferails.audit.anchor``) no longer matches: the newest records were deleted
  AND the head row rewritten to match, or the whole tail rewritten consistently. Only an anchor kept outside
  the database can catch this, because whoever can rewrite the table can rewrite everything in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from saferails.audit.chain import GENESIS_HASH, read_head, record_digest
from saferails.errors import AuditChainBroken, InvalidInput
from saferails.store.tables import AuditRecord

# A result row carrying the _COLUMNS attributes (Row's type parameters differ between SQLAlchemy 2.0 and 2.1).
_Row = Any

if TYPE_CHECKING:  # anchor.py verifies before exporting, so it imports this module
    from saferails.audit.anchor import Anchor

_COLUMNS = (
    AuditRecord.sequence,
    AuditRecord.occurred_at,
    AuditRecord.actor,
    AuditRecord.event,
    AuditRecord.entity_type,
    AuditRecord.entity_id,
    AuditRecord.action_type,
    AuditRecord.target,
    AuditRecord.tenant,
    AuditRecord.details,
    AuditRecord.prev_hash,
    AuditRecord.hash,
)


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of one verification.

    ``records_checked`` counts the records read, including the broken one when verification stopped early.
    ``first_broken_sequence`` is the first sequence number that cannot be trusted (the altered record, the first
    missing one, or the record whose link does not hold); ``problem`` says why in one line. ``head_sequence`` and
    ``head_hash`` are what the ``audit_head`` row says (0 and the genesis hash for an empty store): when ``ok``
    they are the chain's head, the values to anchor. ``anchor_checked`` is true when an anchor was given.
    """

    ok: bool
    records_checked: int
    first_broken_sequence: int | None
    problem: str | None
    head_sequence: int
    head_hash: str
    anchor_checked: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Broken:
    sequence: int
    problem: str


def verify_chain(session: Session, *, anchor: Anchor | None = None, batch_size: int = 5000) -> VerifyReport:
    """Check the whole chain and return a report; never raises for a broken chain (see ``require_intact``).

    Records are read in ``sequence`` order, ``batch_size`` at a time by keyset, as plain rows that do not stay in
    the session: memory does not grow with the chain. Reads only; the caller owns the transaction. Appends that
    commit while verification runs are followed (the head row is re-read once the records run out), so a
    concurrent writer never makes an intact chain look broken. Stops at the first problem found.
    Raises ``InvalidInput`` if ``batch_size < 1``.
    """
    if batch_size < 1:
        raise InvalidInput(f"batch_size must be at least 1, got {batch_size}", batch_size=batch_size)
    records = _Records(session, batch_size)
    checked, last_sequence, last_hash = 0, 0, GENESIS_HASH
    broken = _anchor_at_genesis(anchor)
    anchor_seen = anchor is None or anchor.sequence == 0
    if broken is None:
        for row in records:
            checked += 1
            broken = _check(row, last_sequence, last_hash) or _check_anchor(row, anchor)
            if broken is not None:
                break
            if anchor is not None and row.sequence == anchor.sequence:
                anchor_seen = True
            last_sequence, last_hash = row.sequence, row.hash
        else:
            broken = _check_head(records.head, last_sequence, last_hash)
    if broken is None and anchor is not None and not anchor_seen:
        broken = _Broken(
            last_sequence + 1, f"anchor: record {anchor.sequence} missing (chain truncated after {last_sequence})"
        )
    head = records.head if records.finished else read_head(session)
    return VerifyReport(
        ok=broken is None,
        records_checked=checked,
        first_broken_sequence=None if broken is None else broken.sequence,
        problem=None if broken is None else broken.problem,
        head_sequence=head[0],
        head_hash=head[1],
        anchor_checked=anchor is not None,
    )


def require_intact(session: Session, anchor: Anchor | None = None) -> VerifyReport:
    """``verify_chain`` that raises ``AuditChainBroken`` (the report in ``details["report"]``) unless ok."""
    report = verify_chain(session, anchor=anchor)
    if not report.ok:
        raise AuditChainBroken(
            f"audit chain broken at record {report.first_broken_sequence}: {report.problem}",
            report=report.to_dict(),
        )
    return report


class _Records:
    """Every record in sequence order. When they run out the head row is re-read: if it is ahead, appends
    committed meanwhile and reading resumes after the last record seen; ``head`` is the last head read."""

    def __init__(self, session: Session, batch_size: int) -> None:
        self.session = session
        self.batch_size = batch_size
        self.head: tuple[int, str] = (0, GENESIS_HASH)
        self.finished = False

    def __iter__(self) -> Iterator[_Row]:
        after = 0
        while True:
            progressed = False
            for row in self._after(after):
                progressed = True
                after = row.sequence
                yield row
            self.head = read_head(self.session)
            if self.head[0] <= after or not progressed:
                self.finished = True
                return

    def _after(self, after: int) -> Iterator[_Row]:
        while True:
            batch = self.session.execute(
                sa.select(*_COLUMNS)
                .where(AuditRecord.sequence > after)
                .order_by(AuditRecord.sequence)
                .limit(self.batch_size)
            ).all()
            yield from batch
            if len(batch) < self.batch_size:
                return
            after = batch[-1].sequence


def _check(row: _Row, last_sequence: int, last_hash: str) -> _Broken | None:
    expected = last_sequence + 1
    if row.sequence != expected:
        if last_sequence == 0:
            return _Broken(expected, f"sequence gap: the chain starts at {row.sequence}, not 1 (record deleted)")
        return _Broken(expected, f"sequence gap: {last_sequence} followed by {row.sequence} (record deleted)")
    fields = {column.key: getattr(row, column.key) for column in _COLUMNS if column.key != "hash"}
    if record_digest(**fields) != row.hash:
        return _Broken(row.sequence, f"record {row.sequence}: hash mismatch (content altered)")
    if row.prev_hash != last_hash:
        if last_sequence == 0:
            return _Broken(row.sequence, f"record {row.sequence}: prev_hash is not the genesis hash")
        return _Broken(row.sequence, f"record {row.sequence}: prev_hash does not match record {last_sequence}")
    return None


def _check_anchor(row: _Row, anchor: Anchor | None) -> _Broken | None:
    if anchor is None or row.sequence != anchor.sequence or row.hash == anchor.hash:
        return None
    return _Broken(
        row.sequence,
        f"anchor: record {row.sequence} has hash {row.hash} but the anchor says {anchor.hash} "
        f"(chain rewritten at or before record {row.sequence})",
    )


def _anchor_at_genesis(anchor: Anchor | None) -> _Broken | None:
    if anchor is None or anchor.sequence != 0 or anchor.hash == GENESIS_HASH:
        return None
    return _Broken(0, f"anchor: an anchor at record 0 must carry the genesis hash, not {anchor.hash}")


def _check_head(head: tuple[int, str], last_sequence: int, last_hash: str) -> _Broken | None:
    sequence, digest = head
    if sequence != last_sequence:
        return _Broken(
            min(sequence, last_sequence) + 1, f"head row says {sequence} but the last record is {last_sequence}"
        )
    if digest != last_hash:
        return _Broken(sequence, f"head row hash does not match record {sequence}")
    return None
