"""Graph snapshots: the metrics of one window, computed once and shared.

A snapshot is identified by ``hash`` = SHA-256 over the window, the metric parameters and the canonical content
the metrics depend on (active people, the window's aggregated edges, its wellbeing observations). Metrics are
computed at most once per hash: :class:`SnapshotCache` keeps recent snapshots in memory (per process) and
persists each one in ``metric_snapshots`` (one JSON row per person plus a header row), so other processes and
later sweeps load it instead of recomputing. ``computations`` / ``loads`` / ``hits`` count what happened;
``read_seconds`` times each read of window data (with hashing), ``compute_seconds`` each computation and
``persist_seconds`` each write of a computed snapshot: the instruments tests and benchmarks read.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from saferails.orggraph.metrics import (
    MetricParams,
    Window,
    WindowData,
    compute_metrics,
    empty_metrics,
    library_versions,
    read_windows,
)
from saferails.orggraph.tables import SNAPSHOT_HEADER, MetricSnapshotRow
from saferails.store.db import transaction

_BATCH = 2000


@dataclass(frozen=True)
class Snapshot:
    """``header``: window, algorithm, library versions, parameters, node and edge counts."""

    hash: str
    header: dict[str, Any]
    persons: dict[str, dict[str, Any]] = field(repr=False)

    def metrics(self, person: str) -> dict[str, Any]:
        """The person's metrics; someone absent from the window has no ties and no burnout reading."""
        return self.persons.get(person) or empty_metrics()

    @property
    def algorithm(self) -> str:
        return str(self.header["algorithm"])


def snapshot_hash(window: Window, params: MetricParams, data: WindowData) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"window": window.as_dict(), "params": params.as_dict()}, sort_keys=True).encode())
    digest.update("\x1e".join(data.people).encode())
    # One update of the joined text: the digest is that of the concatenation, and a call per row costs more.
    digest.update("".join(f"\x1e{a}\x1f{b}\x1f{float(weight):.9g}\x1f{int(count)}"
                          for a, b, weight, count in data.edges.itertuples(index=False)).encode())
    digest.update("".join(f"\x1d{person}\x1f{_iso(observed_at)}\x1f{float(score):.9g}"
                          for person, observed_at, score in data.wellbeing.itertuples(index=False)).encode())
    return digest.hexdigest()


def _iso(value: Any) -> str:
    return value.replace(tzinfo=None).isoformat() if isinstance(value, datetime) else str(value)


class SnapshotCache:
    """Thread-safe; at most ``capacity`` snapshots kept in memory (least recently used dropped first)."""

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self.computations = 0
        self.loads = 0
        self.hits = 0
        self.compute_seconds: list[float] = []
        self.read_seconds: list[float] = []
        self.persist_seconds: list[float] = []
        self._memory: OrderedDict[str, Snapshot] = OrderedDict()
        self._lock = threading.Lock()
        self._per_hash: dict[str, threading.Lock] = {}

    def get(self, sessions: sessionmaker[Session], window: Window, params: MetricParams, now: datetime) -> Snapshot:
        """The snapshot of ``window`` as the store holds it now (see the module docstring)."""
        return self.get_many(sessions, [window], params, now)[0]

    def get_many(self, sessions: sessionmaker[Session], windows: Sequence[Window], params: MetricParams,
                 now: datetime) -> list[Snapshot]:
        """:meth:`get` of each window, in order, their data read in one transaction (``read_windows``): what a
        series of overlapping windows (a person's metrics over weeks) needs. A window is computed at most once
        whatever the series; one whose content recurs is the same snapshot."""
        started = time.perf_counter()
        with transaction(sessions) as session:
            found = read_windows(session, windows)
        digests = [snapshot_hash(window, params, data) for window, data in zip(windows, found, strict=True)]
        with self._lock:
            self.read_seconds.append(time.perf_counter() - started)
        return [self._resolve(sessions, digest, window, params, data, now)
                for digest, window, data in zip(digests, windows, found, strict=True)]

    def _resolve(self, sessions: sessionmaker[Session], digest: str, window: Window, params: MetricParams,
                 data: WindowData, now: datetime) -> Snapshot:
        with self._lock:
            lock = self._per_hash.setdefault(digest, threading.Lock())
        with lock:
            with self._lock:
                cached = self._memory.get(digest)
                if cached is not None:
                    self._memory.move_to_end(digest)
                    self.hits += 1
                    return cached
            snapshot = self._load(sessions, digest)
            if snapshot is None:
                snapshot = self._compute(sessions, digest, window, params, data, now)
            with self._lock:
                self._memory[digest] = snapshot
                while len(self._memory) > self.capacity:
                    self._memory.popitem(last=False)
            return snapshot

    def _load(self, sessions: sessionmaker[Session], digest: str) -> Snapshot | None:
        with transaction(sessions) as session:
            header = session.get(MetricSnapshotRow, (digest, SNAPSHOT_HEADER))
            if header is None:
                return None
            rows = session.execute(
                sa.select(MetricSnapshotRow.person, MetricSnapshotRow.metrics).where(
                    MetricSnapshotRow.snapshot_hash == digest, MetricSnapshotRow.person != SNAPSHOT_HEADER
                )
            ).all()
        with self._lock:
            self.loads += 1
        return Snapshot(digest, dict(header.metrics), {person: dict(m) for person, m in rows})

    def _compute(
        self,
        sessions: sessionmaker[Session],
        digest: str,
        window: Window,
        params: MetricParams,
        data: WindowData,
        now: datetime,
    ) -> Snapshot:
        started = time.perf_counter()
        computed = compute_metrics(data, params)
        with self._lock:
            self.computations += 1
            self.compute_seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        header = {"window": window.as_dict(), "algorithm": computed.algorithm, "params": computed.params,
                  "library_versions": library_versions(), "nodes": computed.nodes, "edges": computed.edges}
        rows = [{"snapshot_hash": digest, "person": SNAPSHOT_HEADER, "metrics": header, "created_at": now}]
        rows += [{"snapshot_hash": digest, "person": p, "metrics": m, "created_at": now}
                 for p, m in computed.persons.items()]
        with transaction(sessions) as session:
            insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
            for begin in range(0, len(rows), _BATCH):
                # Another process may have persisted the same snapshot meanwhile: identical content, keep theirs.
                session.execute(insert(MetricSnapshotRow).on_conflict_do_nothing(), rows[begin:begin + _BATCH])
        with self._lock:
            self.persist_seconds.append(time.perf_counter() - started)
        return Snapshot(digest, header, computed.persons)


_DEFAULT = SnapshotCache()


def default_cache() -> SnapshotCache:
    """The process-wide cache (what the scheduled flow shares between its hourly runs)."""
    return _DEFAULT
