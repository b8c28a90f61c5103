"""A person's metrics over weeks: each window's snapshot is computed once and reused, by the next call, by another
process (a fresh cache) and by tomorrow's call, which adds one window (counts, not times)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from saferails.api import Store, compose
from saferails.clock import ManualClock
from saferails.orggraph.metrics import MetricParams, Window, read_window, read_windows
from saferails.orggraph.service import default_end, generate_sample_org, person_metrics
from saferails.orggraph.snapshots import SnapshotCache, snapshot_hash
from saferails.settings import Settings
from saferails.store.db import transaction

WEEK, DAY = timedelta(days=7), timedelta(days=1)


def _store(db: Any, clock: ManualClock) -> Store:
    store = compose(Settings(), db.sessions, clock=clock)
    generate_sample_org(store, 60, seed=2, days=21)
    return store


def test_each_window_is_computed_once_and_reused_by_later_calls_and_other_processes(
    db: Any, clock: ManualClock
) -> None:
    store = _store(db, clock)
    cache = SnapshotCache()
    first = person_metrics(store, "p00007", window=WEEK, step=DAY, cache=cache)
    assert len(first) == 15
    assert (cache.computations, cache.loads) == (15, 0)

    assert person_metrics(store, "p00007", window=WEEK, step=DAY, cache=cache) == first
    assert cache.computations == 15
    another_process = SnapshotCache()
    assert person_metrics(store, "p00003", window=WEEK, step=DAY, cache=another_process)[0].snapshot_hash \
        == first[0].snapshot_hash
    assert (another_process.computations, another_process.loads) == (0, 15)

    clock.advance(timedelta(hours=5))  # later the same day: the same series
    assert person_metrics(store, "p00007", window=WEEK, step=DAY, cache=another_process) == first
    assert another_process.computations == 0
    clock.advance(DAY)  # tomorrow: one new window, fourteen reused
    person_metrics(store, "p00007", window=WEEK, step=DAY, cache=another_process)
    assert another_process.computations == 1


def test_reading_a_series_of_windows_at_once_gives_what_each_read_alone_gives(db: Any, clock: ManualClock) -> None:
    store = _store(db, clock)
    end = default_end(clock.now(), DAY)
    windows = [Window.ending(end - n * DAY, WEEK) for n in range(10)] + [Window.ending(end + 30 * DAY, WEEK)]
    params = MetricParams()
    with transaction(store.sessions) as session:
        together = read_windows(session, windows)
        alone = [read_window(session, w) for w in windows]
    assert [snapshot_hash(w, params, d) for w, d in zip(windows, together, strict=True)] \
        == [snapshot_hash(w, params, d) for w, d in zip(windows, alone, strict=True)]
    assert together[-1].edges.empty and together[-1].wellbeing.empty


def test_the_default_series_ends_on_a_whole_step(clock: ManualClock) -> None:
    now = clock.now()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    assert default_end(now, DAY) == midnight
    assert default_end(now, timedelta(hours=1)) == now.replace(minute=0, second=0, microsecond=0)
