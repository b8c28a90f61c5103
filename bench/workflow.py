"""Workflow benchmarks (issue 6): outbox dispatch throughput beside the store's batched write ceiling.

Per backend, in one run so the numbers are comparable:

1. the batched write ceiling: raw driver, 1,000 rows per COMMIT (sqlite3 WAL ``synchronous=FULL``; psycopg 3
   ``executemany``), median of three;
2. ``OutboxDispatcher.drain`` over N pending events with one trivial trigger that matches every event and emits
   an alert (no notifier: an audit record), in batches of 100: one claim and one commit per batch, a savepoint
   per event holding its audit append, effect row and processed mark;
3. the same with a trigger that never matches: the dispatcher's own overhead (claim, evaluate, mark).

Every run checks that all N events were processed and that the effect count is exactly N (or 0), so a row never
silently measures failures.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from datetime import UTC, datetime

import psycopg
import sqlalchemy as sa

from bench.common import BenchArgs, BenchDatabase, Result, bench_databases, median, rate
from saferails import outbox
from saferails.clock import ManualClock
from saferails.store.db import create_engine, migrate, session_factory, transaction
from saferails.store.tables import OutboxEvent
from saferails.workflow.dispatcher import OutboxDispatcher
from saferails.workflow.metrics import WorkflowMetrics
from saferails.workflow.tables import AutomationTrigger, TriggerEffect

AREA = "workflow"
CEILING_BATCH = 1_000
DISPATCH_BATCH = 100
START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
PAYLOAD = "x" * 200


def run(args: BenchArgs) -> list[Result]:
    events = args.size(2_000, 300)
    ceiling_rows = max(CEILING_BATCH, args.size(20_000, 5_000))
    results: list[Result] = []
    with bench_databases(args) as databases:
        for database in databases:
            results.append(_ceiling(database, ceiling_rows))
            results += _dispatch(database, events)
    return results


# --- the batched write ceiling --------------------------------------------------------------------------------
def _ceiling(database: BenchDatabase, rows: int) -> Result:
    runs: list[float] = []
    batches = [min(CEILING_BATCH, rows - i) for i in range(0, rows, CEILING_BATCH)]
    if database.backend == "sqlite":
        conn = sqlite3.connect(database.sqlite_path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE bench_wf_ceiling (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
        for _ in range(3):
            start = time.perf_counter()
            for size in batches:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT INTO bench_wf_ceiling (payload) VALUES (?)", [(PAYLOAD,)] * size)
                conn.execute("COMMIT")
            runs.append(rate(rows, time.perf_counter() - start))
        conn.execute("DROP TABLE bench_wf_ceiling")
        conn.close()
        driver = "sqlite3 WAL sync=FULL"
    else:
        with psycopg.connect(database.libpq_conninfo) as pg:
            pg.execute("CREATE TABLE bench_wf_ceiling (id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL)")
            pg.commit()
            for _ in range(3):
                start = time.perf_counter()
                for size in batches:
                    with pg.cursor() as cur:
                        cur.executemany("INSERT INTO bench_wf_ceiling (payload) VALUES (%s)", [(PAYLOAD,)] * size)
                    pg.commit()
                runs.append(rate(rows, time.perf_counter() - start))
            pg.execute("DROP TABLE bench_wf_ceiling")
            pg.commit()
        driver = "psycopg 3 executemany"
    return Result(AREA, f"ceiling: raw {CEILING_BATCH:,} rows per COMMIT", database.backend, median(runs), "rows/s",
                  rows, note=f"{driver}; median of 3, range {min(runs):,.0f}-{max(runs):,.0f}",
                  details={"runs_rows_per_s": runs})


# --- dispatch -------------------------------------------------------------------------------------------------
def _dispatch(database: BenchDatabase, events: int) -> list[Result]:
    engine = create_engine(database.url)
    try:
        migrate(engine)
        sessions = session_factory(engine)
        clock = ManualClock(START)
        results = []
        for label, predicate, expected_effects in (
            ("matching trivial trigger (emit_alert)", None, events),
            ("non-matching trigger (overhead only)",
             {"field": "payload.never", "operator": "exists", "value": True}, 0),
        ):
            _reset(sessions, predicate)
            _enqueue(sessions, clock, events)
            dispatcher = OutboxDispatcher(sessions, clock, "bench", metrics=WorkflowMetrics())
            start = time.perf_counter()
            report = dispatcher.drain(batch_size=DISPATCH_BATCH, max_batches=events)
            seconds = time.perf_counter() - start
            with sessions() as s:
                effects = s.execute(sa.select(sa.func.count()).select_from(TriggerEffect)).scalar_one()
            if report.processed != events or effects != expected_effects or report.failed:
                raise RuntimeError(f"dispatch bench measured the wrong thing: {report}, {effects} effects")
            results.append(Result(
                AREA, f"dispatch: {label}", database.backend, rate(events, seconds), "events/s", events,
                note=f"batches of {DISPATCH_BATCH}: one commit per batch, a savepoint per event with effects",
                details={"seconds": seconds, "effects": effects},
            ))
        return results
    finally:
        engine.dispose()


def _reset(sessions: sa.orm.sessionmaker[sa.orm.Session], predicate: dict[str, object] | None) -> None:
    with transaction(sessions) as s:
        s.execute(sa.delete(TriggerEffect))
        s.execute(sa.update(AutomationTrigger).values(active=False))
        s.execute(sa.delete(AutomationTrigger).where(AutomationTrigger.id == "bench-trivial"))
        s.add(AutomationTrigger(
            id="bench-trivial", event_type="BenchEvent", predicate=predicate,
            actions=[{"type": "emit_alert", "alert_type": "bench", "message": "event ${aggregate_id}"}],
            description="benchmark", active=True, created_at=START, updated_at=START,
        ))


def _enqueue(sessions: sa.orm.sessionmaker[sa.orm.Session], clock: ManualClock, events: int) -> None:
    for first in range(0, events, 1_000):
        with transaction(sessions) as s:
            for i in range(first, min(events, first + 1_000)):
                outbox.append(s, outbox.DomainEvent("BenchEvent", "bench", str(i), "bench", {"n": i}),
                              now=clock.now())
    with sessions() as s:
        pending = s.execute(sa.select(sa.func.count()).select_from(OutboxEvent)
                            .where(OutboxEvent.processed_at.is_(None))).scalar_one()
    if pending != events:
        raise RuntimeError(f"expected {events} pending events, found {pending}")


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.workflow [--quick]``: this area alone (``python -m bench --only workflow`` also works)."""
    from bench.common import format_table

    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    print(format_table(run(BenchArgs(quick=quick))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
