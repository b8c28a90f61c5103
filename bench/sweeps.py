"""Expire-sweep benchmark (issue 4): the cost of a sweep must follow the due items, not the table.

Per backend, one database grows in two steps: ``small`` rows (of which ``due`` pending approvals are past their
deadline), swept; then topped up to ``large`` rows with ``due`` fresh due items, swept again. Everything else in
the table is realistic clutter: most actions finished, 10% pending with a future deadline (in the same partial
index as the due ones). Rows are bulk-loaded with raw batched INSERTs (sqlite3) or COPY (psycopg 3), never the
ORM, then ``ANALYZE``-d (``VACUUM (ANALYZE)`` on PostgreSQL, counted in the load time). Reported per step: load
time and rows/s, the due count query, the sweep's wall time and its cost per due item, the CPU seconds this
process spent in it (on SQLite all of the database work, so the gap to the wall time is the disk: WAL writes,
checkpoints and fsync), and the plan (``EXPLAIN``) of the due query, which must use ``ix_actions_pending_deadline``.

Sizes: default 100k -> 1M rows, ``--full`` 1M -> 10M (about ten minutes of loading per backend on the reference
machine), ``--quick`` 10k -> 100k with 1,000 due; ``--n N`` gives N -> 10N with N/100 due (smoke runs).
``python -m bench.sweeps [--full] [--quick] [--backend B]`` runs this area alone; under ``python -m bench``
set ``SAFERAILS_BENCH_SWEEPS_FULL=1`` for the full sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.common import BenchArgs, BenchDatabase, Result, bench_databases, format_table, postgres_problem, rate
from saferails.actions.service import ActionService
from saferails.clock import ManualClock
from saferails.policy import default_policy
from saferails.store.db import create_engine, migrate, session_factory, transaction
from saferails.store.tables import Action
from saferails.sweeps import ExpireSweep
from saferails.sweeps.claims import due_query, explain
from saferails.sweeps.expire import ORDER, SWEEP, due_conditions

AREA = "sweeps"
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
INDEX = "ix_actions_pending_deadline"
COLUMNS = ("id", "action_type", "target", "params", "proposer", "reason", "tenant", "priority", "idempotency_key",
           "action_hash", "impact", "state", "decision", "min_approvals", "approval_deadline", "timeout_action",
           "version", "created_at", "updated_at")
BATCH = 50_000
DECISION = json.dumps({"outcome": "needs_approval"})
PARAMS = json.dumps({"new_manager_id": "mgr_2"})


def sizes(args: BenchArgs, full: bool) -> tuple[int, int, int]:
    """(small rows, large rows, due items per step)."""
    if args.n is not None:
        return args.n, 10 * args.n, max(1, args.n // 100)
    if args.quick:
        return 10_000, 100_000, 1_000
    return (1_000_000, 10_000_000, 10_000) if full else (100_000, 1_000_000, 10_000)


def run(args: BenchArgs, *, full: bool | None = None) -> list[Result]:
    if full is None:
        full = os.environ.get("SAFERAILS_BENCH_SWEEPS_FULL", "") in ("1", "true", "yes")
    small, large, due = sizes(args, full)
    results: list[Result] = []
    with bench_databases(args) as databases:
        for database in databases:
            results += _measure(database, small, large, due)
    return results


# --- rows -----------------------------------------------------------------------------------------------------
def _rows(start: int, stop: int, due: int, stamp: str) -> Iterator[tuple[Any, ...]]:
    """Rows ``start..stop``; ``due`` of them (spread evenly) are pending with a passed deadline."""
    step = max(1, (stop - start) // max(due, 1))
    past = (NOW - timedelta(hours=1)).isoformat(sep=" ")
    future = (NOW + timedelta(hours=23)).isoformat(sep=" ")
    made_due = 0
    deadline: str | None
    for i in range(start, stop):
        if made_due < due and (i - start) % step == 0:
            state, deadline = "pending_approval", past
            made_due += 1
        elif i % 10 == 1:
            state, deadline = "pending_approval", future
        else:
            state, deadline = ("completed", None) if i % 10 else ("timed_out", past)
        key = f"{stamp}{i:012d}".rjust(36, "0")
        yield (key, "reassign_manager", f"emp_{i}", PARAMS, "agent-1", "", "default", 5, key, "0" * 64, "high",
               state, DECISION, 1, deadline, "fail", 1, past, past)


def _load(database: BenchDatabase, start: int, stop: int, due: int, stamp: str) -> float:
    t0 = time.perf_counter()
    if database.backend == "sqlite":
        conn = sqlite3.connect(database.sqlite_path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        placeholders = ", ".join("?" for _ in COLUMNS)
        sql = f"INSERT INTO actions ({', '.join(COLUMNS)}) VALUES ({placeholders})"
        batch: list[tuple[Any, ...]] = []
        for row in _rows(start, stop, due, stamp):
            batch.append(row)
            if len(batch) == BATCH:
                conn.execute("BEGIN")
                conn.executemany(sql, batch)
                conn.execute("COMMIT")
                batch.clear()
        if batch:
            conn.execute("BEGIN")
            conn.executemany(sql, batch)
            conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.close()
    else:
        with psycopg.connect(database.libpq_conninfo) as pg:
            with pg.cursor() as cur, cur.copy(f"COPY actions ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in _rows(start, stop, due, stamp):
                    copy.write_row(row)
            pg.commit()
            pg.autocommit = True
            # VACUUM as well: a bulk-loaded table has no visibility map and unset hint bits until (auto)vacuum
            # runs, so the first reads of the due rows would write every page they touch, and autovacuum would
            # start at some random point of the measurement. A table in service has been vacuumed.
            pg.execute("VACUUM (ANALYZE) actions")
            # And checkpointed: the load's WAL (hundreds of MB for 1M rows) would otherwise be flushed by a
            # checkpoint spread over the next minutes, its writes competing with the sweep's for the disk.
            pg.execute("CHECKPOINT")
    return time.perf_counter() - t0


# --- one step: load, count, explain, sweep --------------------------------------------------------------------
def _measure(database: BenchDatabase, small: int, large: int, due: int) -> list[Result]:
    engine = create_engine(database.url)
    migrate(engine)
    clock = ManualClock(NOW)
    actions = ActionService(session_factory(engine), default_policy(), clock)
    out: list[Result] = []
    loaded = 0
    try:
        for step, rows in enumerate((small, large)):
            load_s = _load(database, loaded, rows, due, f"s{step}")
            added, loaded = rows - loaded, rows
            out.append(Result(AREA, f"bulk load to {rows:,} actions", database.backend, rate(added, load_s),
                              "rows/s", added, f"{load_s:.1f} s for {added:,} rows",
                              {"seconds": load_s, "table_rows": rows}))
            out += _sweep(database, actions, rows, due)
    finally:
        engine.dispose()
    return out


def _sweep(database: BenchDatabase, actions: ActionService, rows: int, due: int) -> list[Result]:
    now = actions.clock.now()
    with transaction(actions.sessions) as session:
        plan = explain(session, due_query(Action, due_conditions(now), ORDER, 500, now, sweep=SWEEP,
                                          dialect=database.backend))
    uses_index = any(INDEX in line for line in plan)
    sweep = ExpireSweep(actions, batch_size=500, progress_every=max(1, due // 4))
    t0 = time.perf_counter()
    counted = sweep.count_due()
    count_s = time.perf_counter() - t0
    t0, c0, w0 = time.perf_counter(), time.process_time(), _written()
    report = sweep.run()
    sweep_s, cpu_s, written = time.perf_counter() - t0, time.process_time() - c0, _written() - w0
    resolved = report.count("resolved")
    check = "" if resolved == due == counted else f" UNEXPECTED: {resolved} resolved, {counted} counted, {due} due"
    table = f"table {rows:,}"
    return [
        Result(AREA, f"due count query, {table}", database.backend, count_s * 1000, "ms", counted,
               f"{counted:,} due", {"plan": plan}),
        Result(AREA, f"expire sweep, {table}", database.backend, sweep_s, "s", resolved,
               f"{resolved:,} resolved; {cpu_s:.2f} s CPU in this process"
               + (f", {written / max(resolved, 1) / 1024:.0f} KiB written per item" if written > 0 else "")
               + f"; plan uses {INDEX}: {'yes' if uses_index else 'NO'}{check}",
               {"plan": plan, "uses_index": uses_index, "table_rows": rows, "cpu_seconds": cpu_s,
                "bytes_written": written}),
        Result(AREA, f"expire sweep per due item, {table}", database.backend, sweep_s / max(resolved, 1) * 1000,
               "ms", resolved, "lock_due + resolve_locked_timeouts: one transaction per batch of 500"),
    ]


def _written() -> int:
    """Bytes this process has passed to ``write()`` so far (Linux ``/proc/self/io``; 0 elsewhere): on SQLite the
    WAL frames and the checkpoints' copies of every page the sweep dirtied."""
    try:
        with open("/proc/self/io") as io:
            return next(int(line.split(":")[1]) for line in io if line.startswith("wchar:"))
    except (OSError, StopIteration, ValueError):
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweeps", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="1M -> 10M rows (slow to load)")
    parser.add_argument("--quick", action="store_true", help="10k -> 100k rows, 1,000 due")
    parser.add_argument("--n", type=int, help="N -> 10N rows, N/100 due")
    parser.add_argument("--backend", action="append", choices=("sqlite", "postgresql"), dest="backends")
    ns = parser.parse_args(argv)
    args = BenchArgs(quick=ns.quick, n=ns.n, backends=tuple(ns.backends or ("sqlite", "postgresql")))
    if "postgresql" in args.backends and (problem := postgres_problem(args.pg_admin_url)) is not None:
        print(f"PostgreSQL unreachable ({problem}): SQLite only")
        args = replace(args, backends=tuple(b for b in args.backends if b != "postgresql"))
    results = run(args, full=ns.full)
    print(format_table(results))
    for r in results:
        if r.name.startswith("expire sweep, "):
            print(f"\nEXPLAIN ({r.backend}, {r.name}):\n  " + "\n  ".join(r.details["plan"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
