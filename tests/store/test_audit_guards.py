"""Migration 0002: the database itself refuses to rewrite the audit trail, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from saferails import audit
from saferails.clock import ManualClock
from saferails.store.db import MIGRATIONS_DIR, transaction
from saferails.store.tables import AuditHead, AuditRecord


def append_three(db: Any, clock: ManualClock) -> None:
    for n in range(3):
        with transaction(db.sessions) as session:
            audit.append(
                session, audit.AuditEntry(actor=f"user-{n}", event="noted", entity_type="test"), now=clock.now()
            )
        clock.advance(timedelta(minutes=1))


def rows(db: Any) -> list[tuple[Any, ...]]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(AuditRecord.__table__).order_by(AuditRecord.sequence))]


def head(db: Any) -> tuple[int, str]:
    with db.engine.connect() as conn:
        row = conn.execute(sa.select(AuditHead.sequence, AuditHead.hash)).one()
        return int(row.sequence), str(row.hash)


def refused(db: Any, sql: str) -> str:
    """Run ``sql`` in its own transaction; return the database's error message (the statement must fail)."""
    with pytest.raises(sa.exc.IntegrityError) as info, db.engine.begin() as conn:
        conn.execute(sa.text(sql))
    return str(info.value.orig)


def alembic(db: Any, action: Any, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        action(cfg, revision)


def triggers(db: Any) -> set[str]:
    sql = (
        "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        if db.backend == "sqlite"
        else "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
    )
    with db.engine.connect() as conn:
        return set(conn.execute(sa.text(sql)).scalars())


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_log SET actor = 'mallory' WHERE sequence = 2",
        "UPDATE audit_log SET details = '{}'",
        "UPDATE audit_log SET sequence = sequence + 10 WHERE sequence = 3",
    ],
    ids=["one field of one record", "every record", "a sequence number"],
)
def test_updating_audit_records_is_refused_and_nothing_changes(db: Any, clock: ManualClock, sql: str) -> None:
    append_three(db, clock)
    before = rows(db)

    assert "audit_log is append-only" in refused(db, sql)

    assert rows(db) == before


@pytest.mark.parametrize(
    "sql",
    ["DELETE FROM audit_log WHERE sequence = 2", "DELETE FROM audit_log"],
    ids=["one record", "every record"],
)
def test_deleting_audit_records_is_refused_and_they_stay(db: Any, clock: ManualClock, sql: str) -> None:
    append_three(db, clock)
    before = rows(db)

    assert "audit_log is append-only" in refused(db, sql)

    assert rows(db) == before


def test_emptying_the_audit_log_in_one_statement_is_refused(db: Any, clock: ManualClock) -> None:
    """TRUNCATE skips row triggers on PostgreSQL, so it has its own; SQLite has no TRUNCATE, only DELETE."""
    append_three(db, clock)
    before = rows(db)
    statements = (
        ["TRUNCATE audit_log", "TRUNCATE audit_log, audit_head", "TRUNCATE audit_head"]
        if db.backend == "postgresql"
        else ["DELETE FROM audit_log"]
    )

    messages = [refused(db, sql) for sql in statements]

    assert all("append-only" in m or "only moves forward" in m for m in messages)
    assert rows(db) == before
    assert head(db)[0] == 3


def test_changing_a_record_through_the_orm_fails_at_flush_and_is_rolled_back(db: Any, clock: ManualClock) -> None:
    append_three(db, clock)
    before = rows(db)

    with pytest.raises(sa.exc.IntegrityError, match="audit_log is append-only"), transaction(db.sessions) as session:
        record = session.get(AuditRecord, 1)
        assert record is not None
        record.actor = "someone else"
        session.flush()

    assert rows(db) == before


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_head SET sequence = 2, hash = 'x'",
        "UPDATE audit_head SET sequence = 3",
        "DELETE FROM audit_head",
    ],
    ids=["moved backwards", "rewritten in place", "deleted"],
)
def test_the_chain_head_only_moves_forward(db: Any, clock: ManualClock, sql: str) -> None:
    append_three(db, clock)
    before = head(db)

    assert "audit_head only moves forward" in refused(db, sql)

    assert head(db) == before


def test_appending_moves_the_head_forward_past_the_guards(db: Any, clock: ManualClock) -> None:
    assert head(db) == (0, audit.GENESIS_HASH)

    append_three(db, clock)

    with db.engine.connect() as conn:
        newest = conn.execute(sa.select(AuditRecord.hash).order_by(AuditRecord.sequence.desc()).limit(1)).scalar_one()
    assert head(db) == (3, newest)


def test_the_downgrade_removes_the_guards_and_the_upgrade_restores_them(db: Any) -> None:
    installed = triggers(db)
    expected = (
        {"audit_log_no_update", "audit_log_no_delete", "audit_head_forward_only", "audit_head_no_delete"}
        if db.backend == "sqlite"
        else {"audit_log_append_only", "audit_log_no_truncate", "audit_head_forward_only", "audit_head_no_truncate"}
    )
    # 0009 (signed checkpoints) builds on 0002 and adds its own guards; downgrading 0002 removes both.
    expected |= (
        {
            "audit_log_no_replace",
            "audit_head_no_replace",
            "audit_checkpoints_no_replace",
            "audit_checkpoints_no_update",
            "audit_checkpoints_no_delete",
        }
        if db.backend == "sqlite"
        else {"audit_checkpoints_append_only", "audit_checkpoints_no_truncate", "audit_head_consistent"}
    )
    assert {t for t in installed if t.startswith("audit_")} == expected

    alembic(db, command.downgrade, "0002@-2")  # 0009, then 0002
    assert not {t for t in triggers(db) if t.startswith("audit_")}
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET actor = 'anyone'"))  # no rows, but no longer refused either
        conn.execute(sa.text("DELETE FROM audit_head"))
        conn.execute(sa.text(f"INSERT INTO audit_head VALUES (1, 0, '{audit.GENESIS_HASH}')"))

    alembic(db, command.upgrade, "heads")
    assert triggers(db) == installed
    assert "audit_head only moves forward" in refused(db, "DELETE FROM audit_head")
