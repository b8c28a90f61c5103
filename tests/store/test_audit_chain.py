"""The hash chain on both backends: a real service's trail verifies, every kind of tampering is named, anchors
catch what the database alone cannot, and concurrent appenders keep the chain gapless.

Tampering tests first remove the append-only guards (as an owner of the database could) and then rewrite rows
with plain SQL, the way an attacker would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa

from saferails import audit
from saferails.actions.service import ActionService, Proposal
from saferails.audit import Anchor, AnchorInvalid, VerifyReport, export_anchor, load_anchor, verify_chain
from saferails.audit.chain import record_digest
from saferails.clock import ManualClock
from saferails.errors import AuditChainBroken, InvalidInput, SaferailsError
from saferails.policy import default_policy
from saferails.store.db import create_engine, session_factory, transaction
from saferails.store.tables import AuditRecord
from tests.support.approvals import coded_service

AUDIT_TABLE = cast(sa.Table, AuditRecord.__table__)
COLUMNS = [c.name for c in AUDIT_TABLE.columns]
SQLITE_GUARDS = ("audit_log_no_update", "audit_log_no_delete", "audit_head_forward_only", "audit_head_no_delete")


# --- helpers ----------------------------------------------------------------------------------------------------
def service_trail(db: Any, clock: ManualClock) -> ActionService:
    """A realistic trail: principals, an approval, a rejection, a cancellation, a block, an auto-approval, a
    timeout."""
    svc = coded_service(db.sessions, default_policy(), clock)
    for name in ("alice", "bob"):
        svc.upsert_principal(name, groups=["approvers"])
    approved = svc.propose(reassign("emp_1"))
    clock.advance(timedelta(minutes=5))
    svc.approve(approved.id, "alice", reason="looks right")
    rejected = svc.propose(reassign("emp_2"))
    svc.reject(rejected.id, "bob", reason="wrong manager")
    moved = svc.propose(
        Proposal(
            action_type="move_file",
            target="reports/q3.pdf",
            params={"source": "a", "destination": "b"},
            proposer="agent-1",
        )
    )
    svc.cancel(moved.id, "agent-1", reason="not needed")
    svc.propose(
        Proposal(
            action_type="make_payment",
            target="acct-9",
            params={"amount": "10", "currency": "EUR", "payee": "p"},
            proposer="agent-1",
        )
    )
    svc.propose(
        Proposal(
            action_type="send_email",
            target="mailbox",
            proposer="agent-1",
            params={"to": ["x@example.com"], "subject": "hello", "body": "hi"},
        )
    )
    with pytest.raises(SaferailsError):
        svc.approve(approved.id, "bob")
    svc.propose(reassign("emp_3"))
    clock.advance(timedelta(hours=25))
    svc.expire_due()
    return svc


def reassign(target: str) -> Proposal:
    return Proposal(
        action_type="reassign_manager",
        target=target,
        params={"new_manager_id": "mgr_2"},
        proposer="agent-1",
        reason="improve team dynamics",
    )


def append_n(db: Any, clock: ManualClock, n: int, *, actor: str = "writer") -> None:
    with transaction(db.sessions) as session:
        for i in range(n):
            audit.append(
                session,
                audit.AuditEntry(actor=actor, event="noted", entity_type="test", entity_id=f"e-{i}", details={"i": i}),
                now=clock.now(),
            )
            clock.advance(timedelta(seconds=1))


def verify(db: Any, anchor: Anchor | None = None, **kwargs: Any) -> VerifyReport:
    with transaction(db.sessions) as session:
        return verify_chain(session, anchor=anchor, **kwargs)


def record(db: Any, sequence: int) -> dict[str, Any]:
    with db.engine.connect() as conn:
        return dict(
            conn.execute(sa.select(AuditRecord.__table__).where(AuditRecord.sequence == sequence)).one()._mapping
        )


def count(db: Any) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(AuditRecord)).scalar_one())


@contextmanager
def tampering(db: Any) -> Iterator[sa.Connection]:
    """A transaction with the append-only guards gone, as the owner of the database could arrange."""
    with db.engine.begin() as conn:
        if db.backend == "sqlite":
            for name in SQLITE_GUARDS:
                conn.execute(sa.text(f"DROP TRIGGER {name}"))
        else:
            conn.execute(sa.text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
            conn.execute(sa.text("ALTER TABLE audit_head DISABLE TRIGGER USER"))
        yield conn


def rehash(values: dict[str, Any]) -> dict[str, Any]:
    fields = {k: v for k, v in values.items() if k not in ("hash", "mac")}  # mac: not part of the hash
    return {**values, "hash": record_digest(**fields)}


def set_head(conn: sa.Connection, sequence: int, digest: str) -> None:
    conn.execute(sa.text("UPDATE audit_head SET sequence = :s, hash = :h"), {"s": sequence, "h": digest})


def insert(conn: sa.Connection, values: dict[str, Any]) -> None:
    conn.execute(sa.insert(AUDIT_TABLE).values(**values))


def delete(conn: sa.Connection, *sequences: int) -> None:
    conn.execute(sa.delete(AUDIT_TABLE).where(AuditRecord.sequence.in_(sequences)))


def replace(conn: sa.Connection, sequence: int, values: dict[str, Any]) -> None:
    conn.execute(sa.update(AUDIT_TABLE).where(AuditRecord.sequence == sequence).values(**values))


# --- intact chains ----------------------------------------------------------------------------------------------
def test_a_trail_written_by_the_action_service_verifies(db: Any, clock: ManualClock) -> None:
    service_trail(db, clock)
    last = record(db, count(db))

    report = verify(db)

    assert report.ok, report.problem
    assert report.records_checked == count(db) >= 18  # the tampering tests below rely on 18 records
    assert (report.first_broken_sequence, report.problem) == (None, None)
    assert (report.head_sequence, report.head_hash) == (last["sequence"], last["hash"])
    assert report.to_dict()["ok"] is True


def test_an_empty_store_verifies_with_nothing_checked(db: Any) -> None:
    report = verify(db)

    assert report.ok
    assert (report.records_checked, report.head_sequence, report.head_hash) == (0, 0, audit.GENESIS_HASH)


@pytest.mark.parametrize("batch_size", [1, 2, 7, 5000])
def test_the_batch_size_changes_nothing_in_the_answer(db: Any, clock: ManualClock, batch_size: int) -> None:
    append_n(db, clock, 14)
    assert verify(db, batch_size=batch_size).records_checked == 14
    with tampering(db) as conn:
        replace(conn, 7, {"actor": "mallory"})

    report = verify(db, batch_size=batch_size)

    assert (report.ok, report.first_broken_sequence, report.records_checked) == (False, 7, 7)


def test_a_batch_size_below_one_is_refused(db: Any) -> None:
    with pytest.raises(InvalidInput, match="batch_size"):
        verify(db, batch_size=0)


def test_a_rolled_back_append_leaves_no_gap(db: Any, clock: ManualClock) -> None:
    append_n(db, clock, 2)
    with pytest.raises(RuntimeError), transaction(db.sessions) as session:
        audit.append(session, audit.AuditEntry(actor="x", event="lost", entity_type="test"), now=clock.now())
        raise RuntimeError("the caller's work failed")
    append_n(db, clock, 1)

    assert verify(db).ok
    assert [record(db, s)["sequence"] for s in (1, 2, 3)] == [1, 2, 3]


# --- tampering inside the chain ---------------------------------------------------------------------------------
def test_a_changed_field_in_one_record_is_named(db: Any, clock: ManualClock) -> None:
    service_trail(db, clock)
    with tampering(db) as conn:
        replace(conn, 5, {"actor": "mallory"})

    report = verify(db)

    assert not report.ok
    assert report.first_broken_sequence == 5
    assert report.problem == "record 5: hash mismatch (content altered)"


def test_an_altered_details_json_is_named(db: Any, clock: ManualClock) -> None:
    service_trail(db, clock)
    original = json.loads(record(db, 6)["details"])
    forged = audit.canonical_json({**original, "reason": "approved by the board"})
    with tampering(db) as conn:
        replace(conn, 6, {"details": forged})

    report = verify(db)

    assert (report.ok, report.first_broken_sequence) == (False, 6)
    assert report.problem == "record 6: hash mismatch (content altered)"


def test_a_changed_record_with_a_recomputed_hash_breaks_the_link_to_the_next_one(db: Any, clock: ManualClock) -> None:
    service_trail(db, clock)
    forged = rehash({**record(db, 8), "actor": "mallory"})
    with tampering(db) as conn:
        replace(conn, 8, forged)

    report = verify(db)

    assert report.first_broken_sequence == 9
    assert report.problem == "record 9: prev_hash does not match record 8"


def test_a_deleted_middle_record_is_reported_as_a_gap(db: Any, clock: ManualClock) -> None:
    service_trail(db, clock)
    with tampering(db) as conn:
        delete(conn, 17)

    report = verify(db)

    assert report.first_broken_sequence == 17
    assert report.problem == "sequence gap: 16 followed by 18 (record deleted)"


def test_a_deleted_first_record_is_reported(db: Any, clock: ManualClock) -> None:
    append_n(db, clock, 3)
    with tampering(db) as conn:
        delete(conn, 1)

    report = verify(db)

    assert report.first_broken_sequence == 1
    assert report.problem == "sequence gap: the chain starts at 2, not 1 (record deleted)"


def test_a_forged_record_inserted_in_the_middle_is_detected(db: Any, clock: ManualClock) -> None:
    """The forger renumbers the later records to make room and gives the forgery a correct hash and link."""
    service_trail(db, clock)
    total = count(db)
    last_hash = record(db, total)["hash"]
    forged = rehash({**record(db, 10), "actor": "mallory", "event": "approved", "prev_hash": record(db, 9)["hash"]})
    with tampering(db) as conn:
        conn.execute(sa.text("UPDATE audit_log SET sequence = -(sequence + 1) WHERE sequence >= 10"))
        conn.execute(sa.text("UPDATE audit_log SET sequence = -sequence WHERE sequence < 0"))
        insert(conn, forged)
        set_head(conn, total + 1, last_hash)

    report = verify(db)

    assert not report.ok
    assert report.first_broken_sequence == 11
    assert report.problem == "record 11: hash mismatch (content altered)"


def test_a_forged_record_appended_behind_the_heads_back_is_detected(db: Any, clock: ManualClock) -> None:
    append_n(db, clock, 5)
    last = record(db, 5)
    with tampering(db) as conn:
        insert(conn, rehash({**last, "sequence": 6, "actor": "mallory", "prev_hash": last["hash"]}))

    report = verify(db)

    assert report.first_broken_sequence == 6
    assert report.problem == "head row says 5 but the last record is 6"


def test_two_swapped_records_are_detected(db: Any, clock: ManualClock) -> None:
    service_trail(db, clock)
    fourth, fifth = record(db, 4), record(db, 5)
    with tampering(db) as conn:
        replace(conn, 4, {k: v for k, v in fifth.items() if k != "sequence"})
        replace(conn, 5, {k: v for k, v in fourth.items() if k != "sequence"})

    report = verify(db)

    assert report.first_broken_sequence == 4
    assert report.problem == "record 4: hash mismatch (content altered)"


# --- the head and the anchor ------------------------------------------------------------------------------------
def test_deleting_the_newest_records_without_fixing_the_head_is_caught(db: Any, clock: ManualClock) -> None:
    append_n(db, clock, 41)
    with tampering(db) as conn:
        delete(conn, 40, 41)

    report = verify(db)

    assert report.first_broken_sequence == 40
    assert report.problem == "head row says 41 but the last record is 39"


def test_deleting_the_newest_records_and_fixing_the_head_is_caught_only_with_the_anchor(
    db: Any, clock: ManualClock, tmp_path: Path
) -> None:
    append_n(db, clock, 40)
    with transaction(db.sessions) as session:
        anchor = export_anchor(session, tmp_path / "anchor.json", clock.now())
    assert (anchor.sequence, anchor.hash) == (40, record(db, 40)["hash"])
    new_head = record(db, 39)["hash"]
    with tampering(db) as conn:
        delete(conn, 40)
        set_head(conn, 39, new_head)

    without_anchor = verify(db)
    with_anchor = verify(db, anchor=load_anchor(tmp_path / "anchor.json"))

    assert without_anchor.ok
    assert not with_anchor.ok
    assert with_anchor.first_broken_sequence == 40
    assert with_anchor.problem == "anchor: record 40 missing (chain truncated after 39)"
    assert with_anchor.anchor_checked


def test_rewriting_the_whole_tail_and_head_consistently_is_caught_only_with_the_anchor(
    db: Any, clock: ManualClock
) -> None:
    append_n(db, clock, 10)
    with transaction(db.sessions) as session:
        anchor = audit.current_head(session, clock.now())
    prev_hash = record(db, 6)["hash"]
    forgeries = []
    for sequence in range(7, 11):
        forgeries.append(rehash({**record(db, sequence), "actor": "mallory", "prev_hash": prev_hash}))
        prev_hash = forgeries[-1]["hash"]
    with tampering(db) as conn:
        for forged in forgeries:
            replace(conn, forged["sequence"], forged)
        set_head(conn, 10, prev_hash)

    assert verify(db).ok
    report = verify(db, anchor=anchor)

    assert report.first_broken_sequence == 10
    assert report.problem is not None
    assert report.problem.startswith("anchor: record 10 has hash")


def test_an_anchor_taken_earlier_still_matches_a_chain_that_grew(db: Any, clock: ManualClock) -> None:
    append_n(db, clock, 5)
    with transaction(db.sessions) as session:
        anchor = audit.current_head(session)
    append_n(db, clock, 5)

    report = verify(db, anchor=anchor)

    assert report.ok and report.anchor_checked and report.records_checked == 10


def test_require_intact_raises_audit_chain_broken_with_the_report(db: Any, clock: ManualClock) -> None:
    append_n(db, clock, 3)
    with transaction(db.sessions) as session:
        assert audit.require_intact(session).ok
    with tampering(db) as conn:
        replace(conn, 2, {"event": "forged"})

    with pytest.raises(AuditChainBroken) as info, transaction(db.sessions) as session:
        audit.require_intact(session)

    assert info.value.code == "AUDIT_CHAIN_BROKEN"
    assert info.value.details["report"]["first_broken_sequence"] == 2
    assert "record 2: hash mismatch" in info.value.message


# --- anchor files -----------------------------------------------------------------------------------------------
def test_an_exported_anchor_reads_back_and_leaves_no_temporary_file(
    db: Any, clock: ManualClock, tmp_path: Path
) -> None:
    append_n(db, clock, 3)
    path = tmp_path / "anchors" / "head.json"

    with transaction(db.sessions) as session:
        written = export_anchor(session, path, clock.now())

    assert load_anchor(path) == written
    assert written == Anchor(3, record(db, 3)["hash"], clock.now())
    assert json.loads(path.read_text())["format"] == "saferails-audit-anchor"
    assert sorted(p.name for p in path.parent.iterdir()) == ["head.json"]


def test_export_refuses_to_replace_the_anchor_of_a_chain_that_was_since_truncated(
    db: Any, clock: ManualClock, tmp_path: Path
) -> None:
    path = tmp_path / "head.json"
    append_n(db, clock, 5)
    with transaction(db.sessions) as session:
        export_anchor(session, path, clock.now())
    evidence = path.read_text()
    new_head = record(db, 4)["hash"]
    with tampering(db) as conn:
        delete(conn, 5)
        set_head(conn, 4, new_head)

    with pytest.raises(AuditChainBroken, match="chain truncated after 4"), transaction(db.sessions) as session:
        export_anchor(session, path, clock.now())

    assert path.read_text() == evidence


def test_export_refuses_a_broken_chain_and_writes_nothing(db: Any, clock: ManualClock, tmp_path: Path) -> None:
    append_n(db, clock, 3)
    with tampering(db) as conn:
        replace(conn, 1, {"actor": "mallory"})

    anchors = tmp_path / "anchors"
    anchors.mkdir()

    with pytest.raises(AuditChainBroken), transaction(db.sessions) as session:
        export_anchor(session, anchors / "head.json", clock.now())

    assert list(anchors.iterdir()) == []


GOOD = {
    "format": "saferails-audit-anchor",
    "version": 1,
    "sequence": 3,
    "hash": "a" * 64,
    "exported_at": "2026-11-22T09:00:00+00:00",
}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("not json", "Invalid JSON"),
        ("[1, 2]", "(root)"),
        (json.dumps({**GOOD, "hash": "xyz"}), "hash"),
        (json.dumps({**GOOD, "sequence": -1}), "sequence"),
        (json.dumps({**GOOD, "sequence": "3"}), "sequence"),
        (json.dumps({**GOOD, "exported_at": "2026-11-22T09:00:00"}), "exported_at"),
        (json.dumps({**GOOD, "format": "something-else"}), "format"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "hash"}), "hash"),
        (json.dumps({**GOOD, "extra": 1}), "extra"),
    ],
    ids=[
        "not JSON",
        "not an object",
        "bad hash",
        "negative sequence",
        "sequence as text",
        "naive time",
        "foreign format",
        "missing hash",
        "unknown field",
    ],
)
def test_a_malformed_anchor_file_is_refused_naming_the_problem(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "anchor.json"
    path.write_text(content)

    with pytest.raises(AnchorInvalid) as info:
        load_anchor(path)

    assert info.value.code == "ANCHOR_INVALID"
    assert isinstance(info.value, InvalidInput)
    assert fragment in info.value.message and str(path) in info.value.message


def test_a_missing_anchor_file_is_refused_with_anchor_invalid(tmp_path: Path) -> None:
    with pytest.raises(AnchorInvalid, match="cannot read anchor file"):
        load_anchor(tmp_path / "nowhere.json")


def test_a_well_formed_anchor_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "anchor.json"
    path.write_text(json.dumps(GOOD))

    anchor = load_anchor(path)

    assert (anchor.sequence, anchor.hash, anchor.exported_at and anchor.exported_at.isoformat()) == (
        3,
        "a" * 64,
        "2026-11-22T09:00:00+00:00",
    )


# --- concurrency ------------------------------------------------------------------------------------------------
def test_two_threads_appending_200_times_each_produce_a_gapless_chain_that_verifies(
    db: Any, clock: ManualClock
) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(name: str) -> None:
        try:
            start.wait()
            for i in range(200):
                with transaction(db.sessions) as session:
                    audit.append(
                        session,
                        audit.AuditEntry(actor=name, event="noted", entity_type="test", details={"i": i}),
                        now=clock.now(),
                    )
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("left", "right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    with db.engine.connect() as conn:
        sequences = conn.execute(sa.select(AuditRecord.sequence).order_by(AuditRecord.sequence)).scalars().all()
        per_actor = dict(conn.execute(sa.select(AuditRecord.actor, sa.func.count()).group_by(AuditRecord.actor)).all())
    assert sequences == list(range(1, 401))
    assert per_actor == {"left": 200, "right": 200}
    report = verify(db)
    assert report.ok and report.records_checked == 400 and report.head_sequence == 400


def test_two_processes_taking_turns_each_chain_on_the_head_the_other_left(db: Any, clock: ManualClock) -> None:
    # Each engine stands for a process: its guess of the head goes stale whenever the other one appends.
    other = create_engine(db.url)
    try:
        factories = [db.sessions, session_factory(other)]
        for i in range(6):
            with transaction(factories[i % 2]) as session:
                audit.append(session, audit.AuditEntry(actor=f"p{i % 2}", event="noted", entity_type="test",
                                                       details={"i": i}), now=clock.now())
                audit.append(session, audit.AuditEntry(actor=f"p{i % 2}", event="again", entity_type="test"),
                             now=clock.now())
    finally:
        other.dispose()

    report = verify(db)
    assert report.ok, report.problem
    assert report.records_checked == report.head_sequence == 12


def test_verifying_while_others_append_never_reports_an_intact_chain_as_broken(db: Any, clock: ManualClock) -> None:
    append_n(db, clock, 20)
    done = threading.Event()
    reports: list[VerifyReport] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(60):
                append_n(db, clock, 1)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set():
        reports.append(verify(db, batch_size=3))
    thread.join()
    reports.append(verify(db, batch_size=3))

    assert errors == []
    assert all(r.ok for r in reports), [r.problem for r in reports if not r.ok]
    assert reports[-1].records_checked == 80
