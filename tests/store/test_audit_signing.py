"""Signed checkpoints: keys outside the database, one checkpoint per appending transaction, verification with the
public key and the published file; bounded reads of every file verification touches."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from saferails import audit
from saferails.audit.anchor import AnchorInvalid, load_anchor, sign_unsigned_records
from saferails.audit.checkpoints import (
    CheckpointFileInvalid,
    CheckpointForged,
    install_signer,
    last_published,
    publish_checkpoints,
    read_published,
)
from saferails.audit.signing import AuditKeyInvalid, AuditSigner, AuditVerifierKey, public_key_path_for
from saferails.audit.verify import verify_chain
from saferails.clock import ManualClock
from saferails.errors import AuditChainBroken
from saferails.store.db import read_transaction, session_factory, transaction
from saferails.store.tables import AuditCheckpoint


def entry(n: int) -> audit.AuditEntry:
    return audit.AuditEntry(actor=f"user-{n}", event="noted", entity_type="test", details={"n": n})


def append_in_transactions(sessions: Any, clock: ManualClock, sizes: list[int]) -> None:
    """One transaction per size, appending that many records."""
    n = 0
    for size in sizes:
        with transaction(sessions) as session:
            for _ in range(size):
                n += 1
                audit.append(session, entry(n), now=clock.now())
        clock.advance(timedelta(minutes=1))


def checkpoints(db: Any) -> list[tuple[int, int]]:
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.select(AuditCheckpoint.prev_sequence, AuditCheckpoint.sequence).order_by(AuditCheckpoint.sequence)
        )
        return [(int(r.prev_sequence), int(r.sequence)) for r in rows]


def verify(db: Any, **kwargs: Any) -> audit.VerifyReport:
    with read_transaction(db.sessions) as session:
        return verify_chain(session, **kwargs)


@pytest.fixture
def signer() -> AuditSigner:
    return AuditSigner.generate()


# --- keys ------------------------------------------------------------------------------------------------------


def test_a_missing_key_is_generated_private_0600_in_a_0700_directory_public_readable(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-signing.key"

    signer = AuditSigner.load_or_create(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    public = public_key_path_for(path)
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert b"PRIVATE" not in public.read_bytes()
    assert AuditVerifierKey.from_file(public).key_id == signer.key_id
    assert signer.key_id.startswith("ed25519:") and len(signer.key_id) == len("ed25519:") + 64


def test_the_same_key_is_loaded_on_every_later_start(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-signing.key"
    first = AuditSigner.load_or_create(path)
    public_key_path_for(path).unlink()

    again = AuditSigner.load_or_create(path)

    assert again.key_id == first.key_id
    assert AuditVerifierKey.from_file(public_key_path_for(path)).key_id == first.key_id


def test_a_private_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit-signing.key"
    AuditSigner.load_or_create(path)
    os.chmod(path, 0o644)

    with pytest.raises(AuditKeyInvalid, match="accessible by group or others"):
        AuditSigner.load_or_create(path)


@pytest.mark.parametrize("content", [b"not a key", b"x" * (100 * 1024)], ids=["garbage", "too large"])
def test_a_key_file_that_is_not_a_key_is_refused_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "audit-signing.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)

    with pytest.raises(AuditKeyInvalid, match=str(path)):
        AuditSigner.load_or_create(path)
    with pytest.raises(AuditKeyInvalid, match=str(path)):
        AuditVerifierKey.from_file(path)


def test_reading_a_device_as_a_key_or_anchor_stops_at_the_bound() -> None:
    with pytest.raises(AuditKeyInvalid, match="larger than"):
        AuditVerifierKey.from_file("/dev/zero")
    with pytest.raises(AnchorInvalid, match="larger than"):
        load_anchor("/dev/zero")


# --- the writer ------------------------------------------------------------------------------------------------


def test_each_appending_transaction_writes_exactly_one_checkpoint_over_its_records(
    db: Any, clock: ManualClock, signer: AuditSigner
) -> None:
    install_signer(db.sessions, signer)

    append_in_transactions(db.sessions, clock, [1, 3, 1, 5])
    with transaction(db.sessions) as session:  # a transaction that appends nothing signs nothing
        session.execute(sa.text("SELECT 1"))

    assert checkpoints(db) == [(0, 1), (1, 4), (4, 5), (5, 10)]
    report = verify(db, key=signer.verifier)
    assert report.ok, report.problem
    assert (report.signatures_checked, report.checkpoints_checked, report.signed_through) == (True, 4, 10)
    assert report.unsigned_records == 0


def test_savepoints_released_or_rolled_back_leave_a_chain_covered_by_checkpoints(
    db: Any, clock: ManualClock, signer: AuditSigner
) -> None:
    install_signer(db.sessions, signer)

    with transaction(db.sessions) as session:
        audit.append(session, entry(1), now=clock.now())
        with session.begin_nested():
            audit.append(session, entry(2), now=clock.now())
        audit.append(session, entry(3), now=clock.now())
    with transaction(db.sessions) as session:
        audit.append(session, entry(4), now=clock.now())
        with pytest.raises(RuntimeError), session.begin_nested():
            audit.append(session, entry(99), now=clock.now())
            raise RuntimeError("undo the savepoint")
        audit.append(session, entry(5), now=clock.now())

    report = verify(db, key=signer.verifier)
    assert report.ok, report.problem
    assert report.head_sequence == report.signed_through == 5
    assert checkpoints(db)[-1][1] == 5


def test_a_session_factory_built_with_a_signer_signs(db: Any, clock: ManualClock, signer: AuditSigner) -> None:
    sessions = session_factory(db.engine, audit_signer=signer)

    append_in_transactions(sessions, clock, [2])

    assert checkpoints(db) == [(0, 2)]


def test_a_rolled_back_transaction_leaves_neither_records_nor_checkpoint(
    db: Any, clock: ManualClock, signer: AuditSigner
) -> None:
    install_signer(db.sessions, signer)
    append_in_transactions(db.sessions, clock, [1])

    with pytest.raises(RuntimeError), transaction(db.sessions) as session:
        audit.append(session, entry(99), now=clock.now())
        raise RuntimeError("boom")

    assert checkpoints(db) == [(0, 1)]
    assert verify(db, key=signer.verifier).ok


def test_without_a_signer_appends_work_and_only_a_keyed_verify_reports_them(
    db: Any, clock: ManualClock, signer: AuditSigner
) -> None:
    install_signer(db.sessions, signer)
    append_in_transactions(db.sessions, clock, [2])
    install_signer(db.sessions, None)
    append_in_transactions(db.sessions, clock, [1, 1])

    plain = verify(db)
    keyed = verify(db, key=signer.verifier)

    assert plain.ok and plain.unsigned_records == 4  # nothing to check signatures with: reported, not failed
    assert not keyed.ok
    assert keyed.first_broken_sequence == 3
    assert "records 3..4 are not covered by a signed checkpoint" in (keyed.problem or "")


def test_an_operator_signs_records_appended_without_a_signer_after_checking_them(
    db: Any, clock: ManualClock, signer: AuditSigner
) -> None:
    append_in_transactions(db.sessions, clock, [2, 1])
    assert not verify(db, key=signer.verifier).ok

    with transaction(db.sessions) as session:
        written = sign_unsigned_records(session, signer, clock.now())
    with transaction(db.sessions) as session:
        assert sign_unsigned_records(session, signer, clock.now()) is None

    assert written is not None and (written.prev_sequence, written.sequence) == (0, 3)
    assert verify(db, key=signer.verifier).ok
    install_signer(db.sessions, signer)
    append_in_transactions(db.sessions, clock, [1])
    assert checkpoints(db) == [(0, 3), (3, 4)]
    assert verify(db, key=signer.verifier).ok


def test_a_record_slipped_under_a_later_signed_append_cannot_be_signed_afterwards(
    db: Any, clock: ManualClock, signer: AuditSigner
) -> None:
    install_signer(db.sessions, signer)
    append_in_transactions(db.sessions, clock, [2])
    install_signer(db.sessions, None)
    append_in_transactions(db.sessions, clock, [1])  # record 3: written by someone without the key
    install_signer(db.sessions, signer)
    append_in_transactions(db.sessions, clock, [1])  # record 4: a real append, signed (3, 4]

    report = verify(db, key=signer.verifier)
    with pytest.raises(AuditChainBroken) as info, transaction(db.sessions) as session:
        sign_unsigned_records(session, signer, clock.now())

    assert not report.ok and report.first_broken_sequence == 3
    assert "records 3..3 are not covered" in (report.problem or "")
    assert "record 3" in str(info.value)
    assert checkpoints(db) == [(0, 2), (3, 4)]


def test_a_verifier_that_does_not_know_the_signing_key_fails(db: Any, clock: ManualClock, signer: AuditSigner) -> None:
    install_signer(db.sessions, signer)
    append_in_transactions(db.sessions, clock, [1])

    report = verify(db, key=AuditSigner.generate().verifier)

    assert not report.ok and "unknown key" in (report.problem or "")
    assert verify(db, key=[AuditSigner.generate().verifier, signer.verifier]).ok  # a key rotation's set


# --- publication -----------------------------------------------------------------------------------------------


def test_publishing_appends_the_newest_checkpoint_once(
    db: Any, clock: ManualClock, signer: AuditSigner, tmp_path: Path
) -> None:
    install_signer(db.sessions, signer)
    path = tmp_path / "out" / audit.DEFAULT_PUBLISHED_NAME
    with read_transaction(db.sessions) as session:
        assert publish_checkpoints(session, path) is None  # nothing signed yet
    append_in_transactions(db.sessions, clock, [1, 2])

    with read_transaction(db.sessions) as session:
        first = publish_checkpoints(session, path, key=signer.verifier)
        again = publish_checkpoints(session, path)
    append_in_transactions(db.sessions, clock, [1])
    with read_transaction(db.sessions) as session:
        second = publish_checkpoints(session, path)

    assert first is not None and first.sequence == 3 and again is None
    assert second is not None and second.sequence == 4
    assert [c.sequence for _, c in read_published(path)] == [3, 4]
    assert last_published(path) == second
    line = json.loads(path.read_text().splitlines()[0])
    assert line["format"] == "saferails-audit-checkpoint" and line["key_id"] == signer.key_id
    report = verify(db, key=signer.verifier, published=path)
    assert report.ok and report.published_checked == 2


def test_a_forged_newest_checkpoint_is_not_published(
    db: Any, clock: ManualClock, signer: AuditSigner, tmp_path: Path
) -> None:
    install_signer(db.sessions, signer)
    append_in_transactions(db.sessions, clock, [1])
    forger = AuditSigner.generate()
    install_signer(db.sessions, forger)
    append_in_transactions(db.sessions, clock, [1])
    path = tmp_path / audit.DEFAULT_PUBLISHED_NAME

    with pytest.raises(CheckpointForged, match="not published"), read_transaction(db.sessions) as session:
        publish_checkpoints(session, path, key=signer.verifier)

    assert not path.exists()


def test_a_published_file_that_is_not_checkpoints_is_a_finding_not_a_crash(
    db: Any, clock: ManualClock, signer: AuditSigner, tmp_path: Path
) -> None:
    install_signer(db.sessions, signer)
    append_in_transactions(db.sessions, clock, [1])
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text('{"format": "saferails-audit-checkpoint", "version": 1, "sequence": "x"}\n')

    report = verify(db, key=signer.verifier, published=garbage)
    endless = verify(db, key=signer.verifier, published="/dev/zero")

    assert not report.ok and "line 1" in (report.problem or "")
    assert not endless.ok and "longer than" in (endless.problem or "")
    with pytest.raises(CheckpointFileInvalid):
        last_published(garbage)


# --- unparseable fields ----------------------------------------------------------------------------------------


def test_an_unparseable_timestamp_names_its_record(sqlite_db: Any, clock: ManualClock, signer: AuditSigner) -> None:
    install_signer(sqlite_db.sessions, signer)
    append_in_transactions(sqlite_db.sessions, clock, [1, 1, 1])
    path = sqlite_db.url.split(":///", 1)[1]
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET occurred_at = 'not a time' WHERE sequence = 2")
    conn.execute("DROP TRIGGER audit_checkpoints_no_update")
    conn.execute("UPDATE audit_checkpoints SET signed_at = 'never' WHERE sequence = 3")
    conn.commit()
    conn.close()

    report = verify(sqlite_db)

    assert not report.ok and report.first_broken_sequence == 2
    assert "occurred_at is not a timestamp" in (report.problem or "")


def test_an_unparseable_checkpoint_field_is_reported_as_forged(
    sqlite_db: Any, clock: ManualClock, signer: AuditSigner
) -> None:
    install_signer(sqlite_db.sessions, signer)
    append_in_transactions(sqlite_db.sessions, clock, [1, 1])
    conn = sqlite3.connect(sqlite_db.url.split(":///", 1)[1])
    conn.execute("DROP TRIGGER audit_checkpoints_no_update")
    conn.execute("UPDATE audit_checkpoints SET signed_at = 'never' WHERE sequence = 2")
    conn.commit()
    conn.close()

    report = verify(sqlite_db, key=signer.verifier)

    assert not report.ok and report.first_broken_sequence == 2
    assert "checkpoint 2: unparseable" in (report.problem or "")


# --- SQLite: REPLACE cannot get past the guards -----------------------------------------------------------------

GENESIS = audit.GENESIS_HASH
REPLACEMENTS = {
    "audit_log": "INTO audit_log "
    "(sequence, occurred_at, actor, event, entity_type, tenant, details, prev_hash, hash) "
    f"VALUES (1, '2026-01-01 00:00:00.000000', 'mallory', 'noted', 'test', 'default', '{{}}', "
    f"'{GENESIS}', '{GENESIS}')",
    "audit_head": f"INTO audit_head (id, sequence, hash) VALUES (1, 0, '{GENESIS}')",
    "audit_checkpoints": "INTO audit_checkpoints "
    "(sequence, hash, prev_sequence, prev_hash, signed_at, key_id, signature) "
    f"VALUES (1, '{GENESIS}', 0, '{GENESIS}', '2026-01-01 00:00:00.000000', 'k', 's')",
}


@pytest.mark.parametrize("verb", ["INSERT OR REPLACE", "REPLACE"])
@pytest.mark.parametrize("table", sorted(REPLACEMENTS))
def test_replace_through_a_raw_sqlite_connection_is_refused_and_changes_nothing(
    sqlite_db: Any, clock: ManualClock, signer: AuditSigner, table: str, verb: str
) -> None:
    install_signer(sqlite_db.sessions, signer)
    append_in_transactions(sqlite_db.sessions, clock, [1, 1])
    conn = sqlite3.connect(sqlite_db.url.split(":///", 1)[1])  # no pragmas: recursive_triggers is off
    assert conn.execute("PRAGMA recursive_triggers").fetchone() == (0,)
    before = conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()

    with pytest.raises(sqlite3.IntegrityError, match=r"append-only|only moves forward"):
        conn.execute(f"{verb} {REPLACEMENTS[table]}")
    conn.rollback()

    assert conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall() == before
    conn.close()
    assert verify(sqlite_db, key=signer.verifier).ok


def test_a_second_head_row_is_refused(sqlite_db: Any) -> None:
    conn = sqlite3.connect(sqlite_db.url.split(":///", 1)[1])
    with pytest.raises(sqlite3.IntegrityError, match="only moves forward"):
        conn.execute(f"INSERT INTO audit_head (id, sequence, hash) VALUES (2, 5, '{GENESIS}')")
    conn.close()
