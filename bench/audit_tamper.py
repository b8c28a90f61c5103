"""The audit tamper campaign (used by ``tests/adversarial/test_audit_tamper.py`` and by ``make bench``, which
prints its counts): someone with full write access to the database (triggers bypassed, as a table owner or a
superuser can) but without the private signing key edits, deletes, inserts, reorders, rewrites consistently,
appends, truncates and forges checkpoints. ``verify_chain`` with only the public key and the published checkpoint
file (nothing exported by hand) must detect every case and name a record at or before the first one touched.

Each case runs inside one transaction that is rolled back afterwards, so one signed chain serves the whole
campaign. ``tamper_campaign`` returns the counts per kind (attempts, detected) for reports and benches.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from saferails import audit
from saferails.audit.chain import record_digest
from saferails.audit.checkpoints import install_signer, publish_checkpoints, sign_checkpoint
from saferails.audit.signing import AuditSigner
from saferails.audit.verify import VerifyReport, verify_chain
from saferails.clock import ManualClock
from saferails.store.db import read_transaction, transaction
from saferails.store.tables import AuditCheckpoint, AuditHead, AuditRecord

START = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
LOG = cast(sa.Table, AuditRecord.__table__)
CHECKPOINTS = cast(sa.Table, AuditCheckpoint.__table__)
HEAD = cast(sa.Table, AuditHead.__table__)
# Transactions of the base chain: mostly one record each, some batches (one checkpoint covers a batch).
BASE_TRANSACTIONS = [1, 1, 1, 2, 1, 1, 1, 3, 1, 1, 2, 1]
_HASH_FIELDS = (
    "sequence",
    "occurred_at",
    "actor",
    "event",
    "entity_type",
    "entity_id",
    "action_type",
    "target",
    "tenant",
    "details",
    "prev_hash",
)


@dataclass
class Outcome:
    attempts: int = 0
    detected: int = 0
    misnamed: list[str] = field(default_factory=list)


@dataclass
class Ctx:
    conn: sa.Connection
    rng: random.Random
    signer: AuditSigner
    records: list[dict[str, Any]]
    checkpoints: list[dict[str, Any]]

    @property
    def last(self) -> int:
        return len(self.records)


# --- helpers that write as the attacker ------------------------------------------------------------------------


def _rehash(records: list[dict[str, Any]], start: int) -> None:
    """Renumber from index ``start`` and recompute every hash from there (a consistent rewrite)."""
    prev = audit.GENESIS_HASH if start == 0 else records[start - 1]["hash"]
    for index in range(start, len(records)):
        rec = records[index]
        rec["sequence"] = index + 1
        rec["prev_hash"] = prev
        rec["hash"] = record_digest(**{k: rec[k] for k in _HASH_FIELDS})
        prev = rec["hash"]


def _write_tail(ctx: Ctx, records: list[dict[str, Any]], start: int) -> None:
    """Replace records from index ``start`` with ``records[start:]`` and point the head at the new last one."""
    ctx.conn.execute(LOG.delete().where(LOG.c.sequence > start))
    if records[start:]:
        ctx.conn.execute(LOG.insert(), records[start:])
    _set_head(ctx, records)


def _set_head(ctx: Ctx, records: list[dict[str, Any]]) -> None:
    sequence, digest = (records[-1]["sequence"], records[-1]["hash"]) if records else (0, audit.GENESIS_HASH)
    ctx.conn.execute(HEAD.update().values(sequence=sequence, hash=digest))


def _edit(rec: dict[str, Any], rng: random.Random) -> None:
    name = rng.choice(["actor", "event", "target", "details", "occurred_at", "tenant"])
    if name == "details":
        rec["details"] = '{"n":-1}'
    elif name == "occurred_at":
        rec["occurred_at"] = rec["occurred_at"] + timedelta(seconds=rng.randint(1, 3600))
    else:
        rec[name] = f"{rec[name] or ''}-forged"


def _forged_record(ctx: Ctx) -> dict[str, Any]:
    last = ctx.records[-1]
    return {
        **last,
        "actor": "mallory",
        "event": "approved",
        "details": '{"forged":true}',
        "occurred_at": last["occurred_at"] + timedelta(seconds=1),
    }


# --- the cases: each tampers, and returns the highest sequence verification may name -----------------------------


def edit_one_record(ctx: Ctx) -> int:
    k = ctx.rng.randint(1, ctx.last)
    rec = dict(ctx.records[k - 1])
    _edit(rec, ctx.rng)
    ctx.conn.execute(LOG.update().where(LOG.c.sequence == k).values({n: rec[n] for n in _HASH_FIELDS}))
    return k


def edit_and_rehash_one_record(ctx: Ctx) -> int:
    k = ctx.rng.randint(1, ctx.last)
    rec = dict(ctx.records[k - 1])
    _edit(rec, ctx.rng)
    rec["hash"] = record_digest(**{n: rec[n] for n in _HASH_FIELDS})
    ctx.conn.execute(LOG.update().where(LOG.c.sequence == k).values(rec))
    if k == ctx.last:
        _set_head(ctx, [rec])
    return k + 1  # the broken link shows at the next record (or the checkpoint at or before k)


def delete_one_record(ctx: Ctx) -> int:
    k = ctx.rng.randint(1, ctx.last - 1)
    ctx.conn.execute(LOG.delete().where(LOG.c.sequence == k))
    return k


def insert_a_record(ctx: Ctx) -> int:
    k = ctx.rng.randint(1, ctx.last)
    records = [dict(r) for r in ctx.records]
    records.insert(k - 1, {**records[k - 1], "actor": "mallory", "details": '{"inserted":true}'})
    _rehash(records, k - 1)
    _write_tail(ctx, records, k - 1)
    return k


def reorder_two_records(ctx: Ctx) -> int:
    i, j = sorted(ctx.rng.sample(range(1, ctx.last + 1), 2))
    records = [dict(r) for r in ctx.records]
    records[i - 1], records[j - 1] = records[j - 1], records[i - 1]
    _rehash(records, i - 1)
    _write_tail(ctx, records, i - 1)
    return i


def rewrite_the_tail_consistently(ctx: Ctx) -> int:
    k = ctx.rng.randint(1, ctx.last)
    records = [dict(r) for r in ctx.records]
    _edit(records[k - 1], ctx.rng)
    _rehash(records, k - 1)
    _write_tail(ctx, records, k - 1)
    return k


def rewrite_the_tail_and_delete_its_checkpoints(ctx: Ctx) -> int:
    k = rewrite_the_tail_consistently(ctx)
    ctx.conn.execute(CHECKPOINTS.delete().where(CHECKPOINTS.c.sequence >= k))
    return k


def append_forged_records(ctx: Ctx) -> int:
    records = [dict(r) for r in ctx.records]
    for _ in range(ctx.rng.randint(1, 3)):
        records.append(_forged_record(ctx))
    _rehash(records, ctx.last)
    _write_tail(ctx, records, ctx.last)
    return ctx.last + 1


def append_a_forgery_under_a_real_append(ctx: Ctx) -> int:
    """The forgery is followed by a genuine append whose checkpoint is signed with the real key."""
    first = append_forged_records(ctx)
    session = Session(bind=ctx.conn)  # joins the campaign's transaction; commit() does not end it
    install_signer(session, ctx.signer)
    entry = audit.AuditEntry(actor="writer", event="noted", entity_type="test")
    audit.append(session, entry, now=ctx.records[-1]["occurred_at"] + timedelta(minutes=5))
    session.commit()
    session.close()
    head = ctx.conn.execute(sa.select(HEAD.c.sequence)).scalar_one()
    signed = ctx.conn.execute(sa.select(CHECKPOINTS.c.prev_sequence).where(CHECKPOINTS.c.sequence == head)).one()
    assert signed.prev_sequence == head - 1  # the real append signed only its own record
    return first


def delete_the_tail(ctx: Ctx) -> int:
    keep = ctx.rng.randint(1, ctx.last - 1)
    _write_tail(ctx, [dict(r) for r in ctx.records[:keep]], keep)
    return keep + 1


def delete_the_tail_and_its_checkpoints(ctx: Ctx) -> int:
    keep = delete_the_tail(ctx) - 1
    ctx.conn.execute(CHECKPOINTS.delete().where(CHECKPOINTS.c.sequence > keep))
    return keep + 1


def corrupt_a_checkpoint_signature(ctx: Ctx) -> int:
    cp = ctx.rng.choice(ctx.checkpoints)
    signature = cp["signature"]
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    ctx.conn.execute(CHECKPOINTS.update().where(CHECKPOINTS.c.sequence == cp["sequence"]).values(signature=flipped))
    return int(cp["sequence"])


def edit_checkpoints_to_match_a_rewrite(ctx: Ctx) -> int:
    """A consistent rewrite, with the stored checkpoints' hashes edited to match (signatures copied)."""
    k = rewrite_the_tail_consistently(ctx)
    rows = ctx.conn.execute(sa.select(LOG.c.sequence, LOG.c.hash)).all()
    for sequence, digest in rows:
        ctx.conn.execute(CHECKPOINTS.update().where(CHECKPOINTS.c.sequence == sequence).values(hash=digest))
    return k


def sign_a_forgery_with_another_key(ctx: Ctx, claim_real_key: bool) -> int:
    first = append_forged_records(ctx)
    attacker = AuditSigner.generate()
    head = ctx.conn.execute(sa.select(HEAD.c.sequence, HEAD.c.hash)).one()
    last = ctx.checkpoints[-1]
    cp = sign_checkpoint(
        attacker,
        sequence=int(head.sequence),
        digest=str(head.hash),
        prev_sequence=int(last["sequence"]),
        prev_hash=str(last["hash"]),
        signed_at=ctx.records[-1]["occurred_at"],
    )
    row = {**cp.to_dict(), "signed_at": cp.signed_at}
    if claim_real_key:
        row["key_id"] = ctx.signer.key_id
    ctx.conn.execute(CHECKPOINTS.insert(), {c.key: row[c.key] for c in CHECKPOINTS.c})
    return first


CASES: dict[str, Callable[[Ctx], int]] = {
    "edit one record": edit_one_record,
    "edit and rehash one record": edit_and_rehash_one_record,
    "delete one record": delete_one_record,
    "insert a record (tail rehashed)": insert_a_record,
    "reorder two records (tail rehashed)": reorder_two_records,
    "rewrite the tail consistently": rewrite_the_tail_consistently,
    "rewrite the tail, delete its checkpoints": rewrite_the_tail_and_delete_its_checkpoints,
    "append forged records": append_forged_records,
    "append a forgery under a real append": append_a_forgery_under_a_real_append,
    "delete the tail": delete_the_tail,
    "delete the tail and its checkpoints": delete_the_tail_and_its_checkpoints,
    "corrupt a checkpoint signature": corrupt_a_checkpoint_signature,
    "edit checkpoints to match a rewrite": edit_checkpoints_to_match_a_rewrite,
    "sign a forgery with another key": lambda ctx: sign_a_forgery_with_another_key(ctx, claim_real_key=False),
    "sign a forgery, claim the real key id": lambda ctx: sign_a_forgery_with_another_key(ctx, claim_real_key=True),
}


# --- the campaign ----------------------------------------------------------------------------------------------


def build_signed_chain(
    sessions: sessionmaker[Session], clock: ManualClock, signer: AuditSigner, published: Path
) -> None:
    """The chain under attack: BASE_TRANSACTIONS appended with the signer, the newest checkpoint published."""
    install_signer(sessions, signer)
    n = 0
    for size in BASE_TRANSACTIONS:
        with transaction(sessions) as session:
            for _ in range(size):
                n += 1
                entry = audit.AuditEntry(
                    actor=f"user-{n % 3}", event="noted", entity_type="test", target=f"t{n}", details={"n": n}
                )
                audit.append(session, entry, now=clock.now())
        clock.advance(timedelta(minutes=1))
    with read_transaction(sessions) as session:
        publish_checkpoints(session, published)


def _bypass_guards(conn: sa.Connection) -> None:
    """What an owner or superuser can do; undone by the rollback that ends each case."""
    if conn.dialect.name == "sqlite":
        names = conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars().all()
        for name in names:
            conn.execute(sa.text(f'DROP TRIGGER "{name}"'))
    else:
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))


def _verify(conn: sa.Connection, signer: AuditSigner, published: Path) -> VerifyReport:
    session = Session(bind=conn)
    try:
        return verify_chain(session, key=signer.verifier, published=published, batch_size=4)
    finally:
        session.close()


def tamper_campaign(
    engine: Engine, signer: AuditSigner, published: Path, *, rounds: int, seed: int
) -> dict[str, Outcome]:
    """Run every case ``rounds`` times with random choices from ``seed`` against the signed chain in ``engine``
    (built by ``build_signed_chain``); each case is rolled back. Returns attempts and detections per case; a
    detection that names a record after the first one touched is listed in ``misnamed``."""
    rng = random.Random(seed)
    outcomes = {name: Outcome() for name in CASES}
    with engine.connect() as conn:
        records = [dict(r._mapping) for r in conn.execute(sa.select(LOG).order_by(LOG.c.sequence))]
        checkpoints = [dict(r._mapping) for r in conn.execute(sa.select(CHECKPOINTS).order_by(CHECKPOINTS.c.sequence))]
        conn.rollback()
        for _ in range(rounds):
            for name, case in CASES.items():
                ctx = Ctx(conn, rng, signer, [dict(r) for r in records], [dict(c) for c in checkpoints])
                trans = conn.begin()
                try:
                    _bypass_guards(conn)
                    named_at_most = case(ctx)
                    report = _verify(conn, signer, published)
                finally:
                    trans.rollback()
                outcome = outcomes[name]
                outcome.attempts += 1
                if not report.ok:
                    outcome.detected += 1
                    if report.first_broken_sequence is None or report.first_broken_sequence > named_at_most:
                        outcome.misnamed.append(f"named {report.first_broken_sequence}, touched {named_at_most}")
    return outcomes


def campaign_counts(outcomes: dict[str, Outcome]) -> dict[str, dict[str, int]]:
    """Plain counts for a report: ``{case: {"attempts": n, "detected": n}}`` plus a ``"total"`` entry."""
    counts = {name: {"attempts": o.attempts, "detected": o.detected} for name, o in outcomes.items()}
    counts["total"] = {
        "attempts": sum(o.attempts for o in outcomes.values()),
        "detected": sum(o.detected for o in outcomes.values()),
    }
    return counts


def run(args: Any) -> list[Any]:
    """``make bench``: the campaign's counts per backend (attempts and detections per kind of tampering)."""
    import tempfile

    from bench.common import Result, bench_databases
    from saferails.store.db import create_engine, migrate, session_factory

    rounds = 2 if args.quick else 4
    results: list[Result] = []
    with bench_databases(args) as databases, tempfile.TemporaryDirectory(prefix="saferails-tamper-") as tmp:
        for database in databases:
            engine = create_engine(database.url)
            try:
                migrate(engine)
                signer = AuditSigner.generate()
                published = Path(tmp) / f"{database.backend}-{audit.DEFAULT_PUBLISHED_NAME}"
                build_signed_chain(session_factory(engine), ManualClock(START), signer, published)
                counts = campaign_counts(tamper_campaign(engine, signer, published, rounds=rounds, seed=20261129))
            finally:
                engine.dispose()
            total = counts.pop("total")
            missed = {name: c for name, c in counts.items() if c["detected"] != c["attempts"]}
            note = f"{len(counts)} kinds x {rounds} rounds; " + (
                "every attempt detected" if not missed else f"MISSED: {missed}")
            results.append(Result("audit_tamper", "tamper attempts detected", database.backend,
                                  float(total["detected"]), f"of {total['attempts']}", total["attempts"], note,
                                  details={"counts": counts}))
    return results
