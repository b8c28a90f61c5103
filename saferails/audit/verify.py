"""Verify the audit chain: every hash recomputed, every link and sequence number checked, the head compared,
and (with the public key) every signed checkpoint checked.

What each check catches:

- a record's hash no longer matches its columns: the record was altered in place;
- a record's ``prev_hash`` is not the previous record's hash: a record was inserted, replaced or re-hashed;
- a gap in the sequence numbers where the link does not hold either: a record was deleted (a gap whose link
  holds is a number a rolled-back transaction drew on PostgreSQL: ``audit_log_sequence`` is not gapless);
- a record written unchained (``saferails.audit.sequencer``) below a chained one: the sequencer skipped it; one
  left unchained longer than ``max_unchained_age``: nobody sequences the chain (both checked only on what is
  chained when verification runs: records above the head are not in the chain yet);
- the ``audit_head`` row disagrees with the last record: the newest records were deleted, or records were
  appended behind the chain's back;
- with ``key`` (``AuditVerifierKey``, the public key; the private key is not needed), the signed checkpoints
  (``saferails.audit.checkpoints``) the writer leaves in every transaction that appends:
  - a checkpoint whose hash differs from the record at its sequence: the chain was rewritten consistently
    (every later hash recomputed) at or before that record;
  - a checkpoint beyond the last record: the tail was deleted;
  - records in no checkpoint's range: appended by someone who cannot sign (an appended forgery, or a forgery
    slipped under the next real append), or their checkpoints deleted;
  - a checkpoint with a bad signature, an unknown key id or an unparseable field: forged;
- with ``published`` (the JSON-lines file ``publish_checkpoints`` keeps outside the database): the same
  comparisons against checkpoints the database no longer holds, so deleting records AND their checkpoints is
  caught too;
- an anchor exported by hand (``saferails.audit.anchor``) no longer matches: as before, for stores without a
  signing key.

An unparseable stored field (a timestamp that is not one) is reported as a broken record, never raised.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from saferails.audit.chain import GENESIS_HASH, read_head, record_digest
from saferails.audit.checkpoints import Checkpoint, CheckpointFileInvalid, read_published
from saferails.audit.signing import AuditVerifierKey
from saferails.clock import as_utc
from saferails.errors import AuditChainBroken, InvalidInput
from saferails.store.tables import AuditCheckpoint, AuditRecord

# A result row carrying the RECORD_COLUMNS attributes (Row's type parameters differ between SQLAlchemy 2.0 and 2.1).
_Row = Any

if TYPE_CHECKING:  # anchor.py verifies before exporting, so it imports this module
    from saferails.audit.anchor import Anchor

RECORD_COLUMNS = (
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
_CHECKPOINT_COLUMNS = (
    AuditCheckpoint.sequence,
    AuditCheckpoint.hash,
    AuditCheckpoint.prev_sequence,
    AuditCheckpoint.prev_hash,
    AuditCheckpoint.signed_at,
    AuditCheckpoint.key_id,
    AuditCheckpoint.signature,
)


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of one verification.

    ``records_checked`` counts the records read, including the broken one when verification stopped early.
    ``first_broken_sequence`` is the first sequence number that cannot be trusted (the altered record, the first
    missing one, the record whose link does not hold, or the first record no valid signed checkpoint vouches
    for); ``problem`` says why in one line. ``head_sequence`` and ``head_hash`` are what the ``audit_head`` row
    says (0 and the genesis hash for an empty store): when ``ok`` they are the chain's head, the values to anchor.
    ``anchor_checked`` is true when an anchor was given.

    Added with signed checkpoints: ``signatures_checked`` is true when a public key was given (only then do
    uncovered records make the chain fail); ``checkpoints_checked`` counts the stored checkpoints verified;
    ``signed_through`` is the last record covered by valid signed checkpoints and ``unsigned_records`` how many
    records after it were read (without a key these are reported, not failed: e.g. appends made before a signer
    was installed); ``published_checked`` counts the lines of the published checkpoint file compared.
    ``unchained_records`` counts the records written unchained that the sequencer has not chained yet (never
    checked: they are not in the chain until it does).
    """

    ok: bool
    records_checked: int
    first_broken_sequence: int | None
    problem: str | None
    head_sequence: int
    head_hash: str
    anchor_checked: bool = False
    signatures_checked: bool = False
    checkpoints_checked: int = 0
    signed_through: int = 0
    unsigned_records: int = 0
    published_checked: int = 0
    unchained_records: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Broken:
    sequence: int
    problem: str


def verify_chain(
    session: Session,
    *,
    anchor: Anchor | None = None,
    batch_size: int = 5000,
    key: AuditVerifierKey | Iterable[AuditVerifierKey] | None = None,
    published: Path | str | None = None,
    now: datetime | None = None,
    max_unchained_age: timedelta | None = None,
) -> VerifyReport:
    """Check the whole chain and return a report; never raises for a broken chain (see ``require_intact``).

    Records (and checkpoints) are read in ``sequence`` order, ``batch_size`` at a time by keyset, as plain rows
    that do not stay in the session; the published file is streamed one bounded line at a time: memory does not
    grow with the chain. Reads only; the caller owns the transaction (``read_transaction`` gives one snapshot).
    Appends that commit while verification runs are followed (the head row is re-read once the records run
    out), so a concurrent writer never makes an intact chain look broken. Stops at the first problem found.

    ``key`` is the public key (or several, e.g. across a key rotation) checkpoint signatures must verify
    against; with it, every record must lie in the range of a validly signed checkpoint. ``published`` is the
    file ``publish_checkpoints`` appends to; a missing file is not an error (nothing published yet), an
    unreadable or malformed one is a finding. With ``now`` and ``max_unchained_age`` a record written unchained
    (``saferails.audit.sequencer``) that is older than that is a finding (call ``sequence_pending`` first to
    verify everything written so far). Raises ``InvalidInput`` if ``batch_size < 1``.
    """
    if batch_size < 1:
        raise InvalidInput(f"batch_size must be at least 1, got {batch_size}", batch_size=batch_size)
    keys = _keys(key)
    sqlite = session.get_bind().dialect.name == "sqlite"
    records = _Records(session, batch_size, sqlite)
    signed = _Signed(session, batch_size, sqlite, keys)
    public = _Published(published, keys)
    checked, last_sequence, last_hash = 0, 0, GENESIS_HASH
    broken = _anchor_at_genesis(anchor) or public.error
    anchor_seen = anchor is None or anchor.sequence == 0
    if broken is None:
        for row in records:
            checked += 1
            broken = (
                _check(row, last_sequence, last_hash)
                or _check_anchor(row, anchor)
                or signed.at(row.sequence, row.hash)
                or signed.earliest(public.at(row.sequence, row.hash))
            )
            if broken is not None:
                break
            if anchor is not None and row.sequence == anchor.sequence:
                anchor_seen = True
            last_sequence, last_hash = row.sequence, row.hash
        else:
            broken = (
                _check_head(records.head, last_sequence, last_hash)
                or signed.beyond(last_sequence)
                or signed.earliest(public.beyond(last_sequence))
                or signed.uncovered(last_sequence)
                or _check_unchained(session, last_sequence, now, max_unchained_age)
            )
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
        signatures_checked=keys is not None,
        checkpoints_checked=signed.checked,
        signed_through=signed.covered,
        unsigned_records=max(0, last_sequence - signed.covered) if broken is None else 0,
        published_checked=public.checked,
        unchained_records=_count_unchained(session),
    )


def require_intact(
    session: Session,
    anchor: Anchor | None = None,
    *,
    key: AuditVerifierKey | Iterable[AuditVerifierKey] | None = None,
    published: Path | str | None = None,
) -> VerifyReport:
    """``verify_chain`` that raises ``AuditChainBroken`` (the report in ``details["report"]``) unless ok."""
    report = verify_chain(session, anchor=anchor, key=key, published=published)
    if not report.ok:
        raise AuditChainBroken(
            f"audit chain broken at record {report.first_broken_sequence}: {report.problem}",
            report=report.to_dict(),
        )
    return report


def _keys(key: AuditVerifierKey | Iterable[AuditVerifierKey] | None) -> dict[str, AuditVerifierKey] | None:
    if key is None:
        return None
    listed = [key] if isinstance(key, AuditVerifierKey) else list(key)
    if not listed:
        raise InvalidInput("key: give at least one public key, or None to skip signature checks")
    return {k.key_id: k for k in listed}


def _keyset(session: Session, columns: Any, order: Any, after: int, batch_size: int, *where: Any) -> Iterator[_Row]:
    while True:
        batch = session.execute(
            sa.select(*columns).where(order > after, *where).order_by(order).limit(batch_size)
        ).all()
        yield from batch
        if len(batch) < batch_size:
            return
        after = batch[-1].sequence


def _raw_time(column: Any, sqlite: bool) -> Any:
    # SQLite stores times as text anyone can overwrite with garbage; read the text and parse it per record so a
    # bad value names its record instead of failing the whole batch inside the driver's type conversion.
    return sa.type_coerce(column, sa.String).label(column.key) if sqlite else column


class _Records:
    """Every chained record in sequence order (unchained ones are not in the chain yet). When they run out the
    head row is re-read: if it is ahead, appends committed meanwhile and reading resumes after the last record
    seen; ``head`` is the last head read."""

    def __init__(self, session: Session, batch_size: int, sqlite: bool) -> None:
        self.session = session
        self.batch_size = batch_size
        self.columns = tuple(_raw_time(c, sqlite) if c.key == "occurred_at" else c for c in RECORD_COLUMNS)
        self.head: tuple[int, str] = (0, GENESIS_HASH)
        self.finished = False

    def __iter__(self) -> Iterator[_Row]:
        after = 0
        while True:
            progressed = False
            for row in _keyset(self.session, self.columns, AuditRecord.sequence, after, self.batch_size,
                               AuditRecord.hash.is_not(None)):
                progressed = True
                after = row.sequence
                yield row
            self.head = read_head(self.session)
            if self.head[0] <= after or not progressed:
                self.finished = True
                return


class _Signed:
    """The stored checkpoints, consumed in step with the records. ``covered`` is the last record inside the
    ranges of valid checkpoints seen so far (contiguous from 0); without keys nothing is checked."""

    def __init__(
        self, session: Session, batch_size: int, sqlite: bool, keys: dict[str, AuditVerifierKey] | None
    ) -> None:
        self.keys = keys
        self.covered, self.covered_hash, self.checked = 0, GENESIS_HASH, 0
        self._next: Any = None
        self._rows: Iterator[_Row] | None = None
        if keys is not None:
            columns = tuple(_raw_time(c, sqlite) if c.key == "signed_at" else c for c in _CHECKPOINT_COLUMNS)
            self._rows = self._stream(session, columns, batch_size)
            self._advance()

    @staticmethod
    def _stream(session: Session, columns: Any, batch_size: int) -> Iterator[_Row]:
        # Checkpoints committed meanwhile are followed like records: keyset batches re-query after each one.
        after = -1
        while True:
            batch = session.execute(
                sa.select(*columns)
                .where(AuditCheckpoint.sequence > after)
                .order_by(AuditCheckpoint.sequence)
                .limit(batch_size)
            ).all()
            yield from batch
            if len(batch) < batch_size:
                return
            after = batch[-1].sequence

    def _advance(self) -> None:
        assert self._rows is not None
        self._next = next(self._rows, None)

    def at(self, sequence: int, digest: str) -> _Broken | None:
        """Check the checkpoint at record ``sequence`` (whose verified hash is ``digest``), if there is one."""
        row = self._next
        if row is None or row.sequence > sequence:
            return None
        self._advance()
        self.checked += 1
        checkpoint, broken = self._valid(row)
        if broken is not None:
            return broken
        assert checkpoint is not None
        if row.sequence < sequence:  # only a checkpoint at 0 can be passed over: records start at 1, no gaps
            return _Broken(self.covered + 1, f"checkpoint {row.sequence}: names no record (forged)")
        if checkpoint.hash != digest:
            return _Broken(
                self.covered + 1,
                f"signed checkpoint {sequence} says hash {checkpoint.hash} but record {sequence} has {digest} "
                f"(records {self.covered + 1}..{sequence} rewritten)",
            )
        if checkpoint.prev_sequence > self.covered:
            return self._gap(checkpoint.prev_sequence)
        if checkpoint.prev_sequence < self.covered or checkpoint.prev_hash != self.covered_hash:
            return _Broken(
                self.covered + 1,
                f"signed checkpoint {sequence} starts at record {checkpoint.prev_sequence}, not at the previous "
                f"checkpoint's record {self.covered}",
            )
        self.covered, self.covered_hash = sequence, digest
        return None

    def _valid(self, row: _Row) -> tuple[Checkpoint | None, _Broken | None]:
        assert self.keys is not None
        where = max(1, min(self.covered + 1, int(row.sequence)))
        try:
            checkpoint = Checkpoint.from_row(row)
        except ValueError as exc:
            return None, _Broken(where, f"checkpoint {row.sequence}: unparseable ({exc}): forged or damaged")
        verifier = self.keys.get(checkpoint.key_id)
        if verifier is None:
            return None, _Broken(where, f"checkpoint {row.sequence}: signed by unknown key {checkpoint.key_id!r}")
        if not verifier.verify(checkpoint.signature, checkpoint.message()):
            return None, _Broken(where, f"checkpoint {row.sequence}: signature does not verify (forged)")
        return checkpoint, None

    def _gap(self, upto: int) -> _Broken:
        return _Broken(
            self.covered + 1,
            f"records {self.covered + 1}..{upto} are not covered by a signed checkpoint "
            "(appended without the signing key, or their checkpoints deleted)",
        )

    def beyond(self, last_sequence: int) -> _Broken | None:
        """A checkpoint left after the last record: the tail was deleted (or a forged checkpoint)."""
        row = self._next
        if row is None:
            return None
        self.checked += 1
        _, broken = self._valid(row)
        if broken is not None:
            return broken
        return _Broken(
            last_sequence + 1,
            f"signed checkpoint {row.sequence} is beyond the last record {last_sequence} (chain truncated)",
        )

    def earliest(self, broken: _Broken | None) -> _Broken | None:
        """A finding made later than the last valid checkpoint names the first record no checkpoint vouches
        for: everything after ``covered`` is suspect once the chain is known to be tampered with."""
        if broken is None or self.keys is None or broken.sequence <= self.covered + 1:
            return broken
        return _Broken(
            self.covered + 1, f"{broken.problem}; records after {self.covered} are not covered by a signed checkpoint"
        )

    def uncovered(self, last_sequence: int) -> _Broken | None:
        if self.keys is None or self.covered >= last_sequence:
            return None
        return self._gap(last_sequence)


class _Published:
    """The published checkpoint file, streamed in step with the records (its lines ascend by sequence)."""

    def __init__(self, path: Path | str | None, keys: dict[str, AuditVerifierKey] | None) -> None:
        self.keys = keys
        self.checked = 0
        self.error: _Broken | None = None
        self._next: tuple[int, Checkpoint] | None = None
        self._lines: Iterator[tuple[int, Checkpoint]] | None = None
        self._last_sequence = 0
        self.path = None if path is None else Path(path)
        if self.path is not None and self.path.exists():
            self._lines = read_published(self.path)
            self.error = self._advance()

    def _advance(self) -> _Broken | None:
        assert self._lines is not None and self.path is not None
        try:
            self._next = next(self._lines, None)
        except CheckpointFileInvalid as exc:
            self._next = None
            return _Broken(self._last_sequence + 1, f"published checkpoints: {exc}")
        if self._next is None:
            return None
        number, checkpoint = self._next
        if checkpoint.sequence <= self._last_sequence:
            return _Broken(
                self._last_sequence + 1,
                f"published checkpoints: {self.path} line {number} goes back to record {checkpoint.sequence}",
            )
        self._last_sequence = checkpoint.sequence
        if self.keys is not None:
            verifier = self.keys.get(checkpoint.key_id)
            if verifier is None or not verifier.verify(checkpoint.signature, checkpoint.message()):
                return _Broken(
                    checkpoint.sequence,
                    f"published checkpoints: {self.path} line {number} has an invalid signature or unknown key",
                )
        return None

    def at(self, sequence: int, digest: str) -> _Broken | None:
        if self._next is None or self._next[1].sequence != sequence:
            return None
        number, checkpoint = self._next
        self.checked += 1
        if checkpoint.hash != digest:
            return _Broken(
                sequence,
                f"published checkpoint ({self.path} line {number}) says record {sequence} has hash "
                f"{checkpoint.hash}, the store has {digest} (chain rewritten at or before record {sequence})",
            )
        return self._advance()

    def beyond(self, last_sequence: int) -> _Broken | None:
        if self._next is None:
            return None
        number, checkpoint = self._next
        self.checked += 1
        return _Broken(
            last_sequence + 1,
            f"published checkpoint ({self.path} line {number}) names record {checkpoint.sequence} but the chain "
            f"ends at {last_sequence} (tail deleted)",
        )


def _check(row: _Row, last_sequence: int, last_hash: str) -> _Broken | None:
    expected = last_sequence + 1
    if row.sequence != expected and row.prev_hash != last_hash:
        if last_sequence == 0:
            return _Broken(expected, f"sequence gap: the chain starts at {row.sequence}, not 1 (record deleted)")
        return _Broken(expected, f"sequence gap: {last_sequence} followed by {row.sequence} (record deleted)")
    fields = {column.key: getattr(row, column.key) for column in RECORD_COLUMNS if column.key != "hash"}
    try:
        fields["occurred_at"] = _parse_time(fields["occurred_at"])
        digest = record_digest(**fields)
    except (ValueError, TypeError, OverflowError) as exc:
        return _Broken(row.sequence, f"record {row.sequence}: unparseable field ({exc}) (content altered)")
    if digest != row.hash:
        return _Broken(row.sequence, f"record {row.sequence}: hash mismatch (content altered)")
    if row.prev_hash != last_hash:
        if last_sequence == 0:
            return _Broken(row.sequence, f"record {row.sequence}: prev_hash is not the genesis hash")
        return _Broken(row.sequence, f"record {row.sequence}: prev_hash does not match record {last_sequence}")
    return None


def _check_unchained(
    session: Session, last_sequence: int, now: datetime | None, max_age: timedelta | None
) -> _Broken | None:
    if session.get_bind().dialect.name == "sqlite":  # SQLite chains inline: its hash columns are NOT NULL
        return None
    skipped = session.execute(
        sa.select(sa.func.min(AuditRecord.sequence)).where(
            AuditRecord.hash.is_(None), AuditRecord.sequence < last_sequence
        )
    ).scalar_one_or_none()
    if skipped is not None:
        return _Broken(int(skipped), f"record {skipped} was never chained (below the chained record {last_sequence})")
    if now is None or max_age is None:
        return None
    stale = session.execute(
        sa.select(sa.func.min(AuditRecord.sequence)).where(
            AuditRecord.hash.is_(None), AuditRecord.occurred_at < as_utc(now) - max_age
        )
    ).scalar_one_or_none()
    if stale is None:
        return None
    return _Broken(
        int(stale), f"record {stale} has been left unchained for more than {max_age} (is the sequencer running?)"
    )


def _count_unchained(session: Session) -> int:
    if session.get_bind().dialect.name == "sqlite":
        return 0
    return int(session.execute(
        sa.select(sa.func.count()).select_from(AuditRecord).where(AuditRecord.hash.is_(None))
    ).scalar_one())


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise TypeError(f"occurred_at is not a timestamp: {value!r:.80}")
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise ValueError(f"occurred_at is not a timestamp: {value!r:.80}") from None


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
