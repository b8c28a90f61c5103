"""The audit sequencer (issue 15, writers that scale): on PostgreSQL writers append unchained records without
touching the head; ``sequence_pending`` chains the settled ones in number order and signs their checkpoint;
verification fails on a record skipped or left unchained too long; a chained record never changes. SQLite keeps
chaining inline (the setting is ignored there)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from saferails import audit
from saferails.audit.chain import AuditSequenceBehind, install_sequencer, record_digest
from saferails.audit.checkpoints import install_signer
from saferails.audit.sequencer import AuditEntryForged, sequence_pending
from saferails.audit.signing import AuditSigner
from saferails.audit.verify import verify_chain
from saferails.clock import ManualClock
from saferails.errors import AuditChainBroken
from saferails.store.db import read_transaction, transaction
from saferails.store.tables import AuditCheckpoint, AuditRecord


def entry(n: int) -> audit.AuditEntry:
    return audit.AuditEntry(actor=f"user-{n}", event="noted", entity_type="test", details={"n": n})


@pytest.fixture
def signer(tmp_path: Any) -> AuditSigner:
    return AuditSigner.load_or_create(tmp_path / "keys" / "audit.key")


@pytest.fixture
def sequenced(db: Any, signer: AuditSigner) -> Any:
    install_signer(db.sessions, signer)
    install_sequencer(db.sessions, True)
    return db


@pytest.fixture
def pg_sequenced(postgresql_db: Any, signer: AuditSigner) -> Any:
    """The sequencer's own behaviour (gaps, concurrent writers, the one-time chaining UPDATE): PostgreSQL only,
    since SQLite chains inline."""
    install_signer(postgresql_db.sessions, signer)
    install_sequencer(postgresql_db.sessions, True)
    return postgresql_db


def append(db: Any, clock: ManualClock, numbers: list[int]) -> list[audit.Appended]:
    with transaction(db.sessions) as session:
        return audit.append_many(session, [entry(n) for n in numbers], now=clock.now())


def stored(db: Any) -> list[tuple[int, str | None, str]]:
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(AuditRecord.sequence, AuditRecord.hash, AuditRecord.actor)
                            .order_by(AuditRecord.sequence))
        return [(int(r.sequence), r.hash, r.actor) for r in rows]


def verify(db: Any, **kwargs: Any) -> audit.VerifyReport:
    with read_transaction(db.sessions) as session:
        return verify_chain(session, **kwargs)


def test_appends_are_chained_by_the_sequencer_in_number_order(sequenced: Any, signer: AuditSigner,
                                                              clock: ManualClock) -> None:
    db = sequenced
    append(db, clock, [1, 2])
    append(db, clock, [3])
    if db.backend == "sqlite":  # inline: chained at once, nothing for the sequencer
        assert all(h is not None for _, h, _ in stored(db))
        assert sequence_pending(db.sessions).chained == 0
    else:
        assert [(s, h) for s, h, _ in stored(db)] == [(1, None), (2, None), (3, None)]
        with db.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(AuditCheckpoint)).scalar_one() == 0
        pending = verify(db, key=signer.verifier)
        assert pending.ok and pending.records_checked == 0 and pending.unchained_records == 3
        late = verify(db, now=clock.now() + timedelta(minutes=10), max_unchained_age=timedelta(minutes=5))
        assert not late.ok and late.first_broken_sequence == 1 and "left unchained" in (late.problem or "")
        done = sequence_pending(db.sessions, now=clock.now())
        assert (done.chained, done.head_sequence) == (3, 3)
    report = verify(db, key=signer.verifier, now=clock.now() + timedelta(days=1), max_unchained_age=timedelta(1))
    assert report.ok and report.records_checked == 3 and report.signed_through == 3, report
    assert report.unchained_records == 0
    assert [actor for _, _, actor in stored(db)] == ["user-1", "user-2", "user-3"]
    assert sequence_pending(db.sessions).chained == 0


def test_a_rolled_back_number_is_a_gap_the_links_vouch_for(pg_sequenced: Any, signer: AuditSigner,
                                                            clock: ManualClock) -> None:
    db = pg_sequenced
    append(db, clock, [1])
    with pytest.raises(RuntimeError), transaction(db.sessions) as session:
        audit.append(session, entry(99), now=clock.now())
        raise RuntimeError("roll back")
    append(db, clock, [3])
    sequence_pending(db.sessions, now=clock.now())
    assert [s for s, _, _ in stored(db)] == [1, 3]
    report = verify(db, key=signer.verifier)
    assert report.ok and report.records_checked == 2 and report.head_sequence == 3, report


def test_the_sequencer_waits_for_a_writer_still_in_its_transaction(pg_sequenced: Any, clock: ManualClock) -> None:
    """Number 1 is drawn first but committed after number 2: chaining 2 alone would skip 1 for good."""
    db = pg_sequenced
    slow = db.sessions()
    slow.begin()
    audit.append(slow, entry(1), now=clock.now())  # holds number 1, uncommitted
    append(db, clock, [2])
    result: list[Any] = []
    sequencer = threading.Thread(target=lambda: result.append(sequence_pending(db.sessions, now=clock.now())))
    sequencer.start()
    with db.engine.connect() as conn:  # wait (bounded) until the sequencer queues behind the open transaction
        for _ in range(100_000):
            waiting = conn.execute(sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).scalar_one()
            if waiting:
                break
        assert waiting == 1
    assert result == []
    slow.commit()
    slow.close()
    sequencer.join(timeout=60)
    assert result and result[0].chained == 2
    assert [(s, h is not None) for s, h, _ in stored(db)] == [(1, True), (2, True)]
    assert verify(db).ok


def test_a_chained_record_never_changes_and_content_cannot_change_while_chaining(
        pg_sequenced: Any, clock: ManualClock) -> None:
    db = pg_sequenced
    append(db, clock, [1, 2])
    sequence_pending(db.sessions, now=clock.now())
    append(db, clock, [3])
    refused = [
        "UPDATE audit_log SET hash = repeat('0', 64) WHERE sequence = 1",
        "UPDATE audit_log SET prev_hash = NULL, hash = NULL WHERE sequence = 2",
        "UPDATE audit_log SET actor = 'mallory', prev_hash = 'x', hash = 'y' WHERE sequence = 3",
        "UPDATE audit_log SET sequence = 4, prev_hash = 'x', hash = 'y' WHERE sequence = 3",
        "DELETE FROM audit_log WHERE sequence = 3",
    ]
    for statement in refused:
        with pytest.raises(sa.exc.IntegrityError, match="append-only"), db.engine.begin() as conn:
            conn.execute(sa.text(statement))
    assert sequence_pending(db.sessions, now=clock.now()).chained == 1
    assert verify(db).ok


def test_a_record_chained_behind_the_sequencers_back_stops_it_and_breaks_verify(
        pg_sequenced: Any, clock: ManualClock) -> None:
    db = pg_sequenced
    append(db, clock, [1, 2])
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET prev_hash = :p, hash = :h WHERE sequence = 2"),
                     {"p": "0" * 64, "h": "f" * 64})
    with pytest.raises(AuditChainBroken, match="already chained"):
        sequence_pending(db.sessions, now=clock.now())
    report = verify(db)
    assert not report.ok and report.first_broken_sequence == 2 and "hash mismatch" in (report.problem or "")


def test_a_record_skipped_below_a_chained_one_is_a_finding(pg_sequenced: Any, clock: ManualClock) -> None:
    db = pg_sequenced
    append(db, clock, [1])
    sequence_pending(db.sessions, now=clock.now())
    append(db, clock, [2, 3])
    # Chain 3 on top of 1 by hand (as a faulty sequencer would), leaving 2 unchained below it.
    with db.engine.begin() as conn:
        head = conn.execute(sa.text("SELECT sequence, hash FROM audit_head")).one()
        row = conn.execute(sa.select(AuditRecord).where(AuditRecord.sequence == 3)).one()
        digest = record_digest(sequence=3, occurred_at=row.occurred_at, actor=row.actor, event=row.event,
                               entity_type=row.entity_type, entity_id=row.entity_id, action_type=row.action_type,
                               target=row.target, tenant=row.tenant, details=row.details, prev_hash=head.hash)
        conn.execute(sa.text("UPDATE audit_log SET prev_hash = :p, hash = :h WHERE sequence = 3"),
                     {"p": head.hash, "h": digest})
        conn.execute(sa.text("UPDATE audit_head SET sequence = 3, hash = :h"), {"h": digest})
    report = verify(db)
    assert not report.ok and report.first_broken_sequence == 2 and "never chained" in (report.problem or "")


def test_a_record_inserted_without_the_key_is_never_chained(pg_sequenced: Any, clock: ManualClock) -> None:
    """Database credentials alone (no MAC) cannot get a record signed: the sequencer stops before it."""
    db = pg_sequenced
    append(db, clock, [1])
    with db.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO audit_log (sequence, occurred_at, actor, event, entity_type, tenant, details) "
            "VALUES (nextval('audit_log_sequence'), now(), 'mallory', 'approved', 'action', 'default', '{}')"))
    append(db, clock, [3])
    with pytest.raises(AuditEntryForged, match="record 2 has no valid MAC"):
        sequence_pending(db.sessions, now=clock.now())
    assert [(s, h is not None) for s, h, _ in stored(db)] == [(1, False), (2, False), (3, False)]
    late = verify(db, now=clock.now() + timedelta(hours=1), max_unchained_age=timedelta(minutes=5))
    assert not late.ok and "left unchained" in (late.problem or "")


def test_unchained_appends_refuse_a_sequence_behind_the_head(postgresql_db: Any, clock: ManualClock) -> None:
    """A store appended to inline after migration 0012, then switched: the writer refuses, nothing is written."""
    db = postgresql_db
    append(db, clock, [1, 2, 3])  # inline: numbers 1..3, the sequence object still at 1
    install_sequencer(db.sessions, True)
    with pytest.raises(AuditSequenceBehind, match="at or below the chain head 3"):
        append(db, clock, [4])
    assert [s for s, _, _ in stored(db)] == [1, 2, 3]
    with db.engine.begin() as conn:
        conn.execute(sa.text("SELECT setval('audit_log_sequence', (SELECT sequence FROM audit_head) + 1, false)"))
    append(db, clock, [4])
    assert sequence_pending(db.sessions, now=clock.now()).chained == 1
    assert verify(db).ok
