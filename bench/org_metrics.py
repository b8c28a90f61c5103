"""``saferails org metrics PERSON --window 7d --step 1d`` where a person waits (issue 12): a generated
organisation (default 2,000 people, 28 days of interactions), a person's metrics over the last two weeks
(15 windows of 7 days), each against its goal from the issue, on the first requested backend:

1. cold: no snapshot stored yet, every window computed (the figure is dominated by the graph computation; the
   time per window is shown beside it);
2. warm: another process (a fresh in-memory cache) asks the same series: every window loaded, none computed.
   Goal: a few seconds (:data:`WARM_GOAL_SECONDS`);
3. the next day: the series moved by one step, one window computed, fourteen loaded (same goal plus one window).
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta

from bench.common import BenchArgs, Result, bench_databases
from saferails.api import compose
from saferails.clock import ManualClock
from saferails.orggraph import SnapshotCache
from saferails.orggraph.service import generate_sample_org, person_metrics
from saferails.settings import Settings
from saferails.store.db import create_engine, migrate, session_factory

AREA = "org_metrics"
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
WEEK, DAY = timedelta(days=7), timedelta(days=1)
WARM_GOAL_SECONDS = 5.0
"""The issue's "a few seconds" for the series once its windows are stored."""


def run(args: BenchArgs) -> list[Result]:
    people = min(20_000, max(50, args.size(2_000, 300)))
    with bench_databases(args) as databases:
        database = databases[0]
        engine = create_engine(database.url)
        try:
            migrate(engine)
            clock = ManualClock(NOW)
            store = compose(Settings(), session_factory(engine), clock=clock)
            counts = generate_sample_org(store, people, seed=5, days=28)
            person = "p00042" if people > 42 else "p00001"

            def series(cache: SnapshotCache) -> tuple[float, int]:
                started = time.perf_counter()
                points = person_metrics(store, person, window=WEEK, step=DAY, cache=cache)
                return time.perf_counter() - started, len(points)

            cold_cache, warm_cache = SnapshotCache(), SnapshotCache()
            cold, windows = series(cold_cache)
            warm, _ = series(warm_cache)
            clock.advance(DAY)
            next_cache = SnapshotCache()
            next_day, _ = series(next_cache)
        finally:
            engine.dispose()
    backend = database.backend
    org = f"{people:,} people, {counts['interactions']:,} interactions over 28 days; {windows} windows of 7 days"
    per_window = statistics.mean(cold_cache.compute_seconds)
    return [
        Result(AREA, "org metrics 7d/1d, cold (every window computed)", backend, cold, "s", windows,
               f"{cold_cache.computations} computed, {per_window:.2f} s each; {org}"),
        Result(AREA, "org metrics 7d/1d, warm (another process)", backend, warm, "s", windows,
               f"goal <= {WARM_GOAL_SECONDS:g} s; {warm_cache.computations} computed, {warm_cache.loads} loaded"),
        Result(AREA, "org metrics 7d/1d, the next day", backend, next_day, "s", windows,
               f"goal <= {WARM_GOAL_SECONDS:g} s + one window; {next_cache.computations} computed, "
               f"{next_cache.loads} loaded"),
    ]
