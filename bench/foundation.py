"""Foundation benchmarks (issue "Foundation"): how close proposing an action comes to the disk's commit ceiling.

Per backend (a fresh SQLite file; a fresh PostgreSQL database), in one run so the numbers are comparable:

1. the durable-commit ceiling through the raw driver (sqlite3 in WAL with ``synchronous=FULL``; psycopg 3):
   one row per commit, and 1,000 rows per commit;
2. ``ActionService.propose`` one at a time (one transaction each) with the default policy, for a LOW action that
   is auto-approved (create_document) and a HIGH one that goes to pending_approval (reassign_manager), as a
   fraction of the single-row ceiling;
3. ``ActionService.propose_many`` (one transaction per batch) as a fraction of the batched ceiling, skipped with
   a note while the service has no such method.

4. on PostgreSQL, 1, 2, 4 and 8 writer processes proposing one at a time, with the share of transaction time
   spent waiting on a lock (``bench.writers``).

Then, without I/O: ``PolicyEngine.evaluate`` over a mix of action types with an in-memory counter (median, p99).
Every proposal's resulting state is checked, so a row never silently measures refusals instead of approvals.
"""

from __future__ import annotations

import gc
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

import psycopg

from bench import writers
from bench.common import (
    BenchArgs,
    BenchDatabase,
    Result,
    bench_databases,
    median,
    percentile,
    rate,
    time_each,
)
from saferails.actions.models import ActionView, Proposal
from saferails.actions.service import ActionService
from saferails.actions.types import validate_params
from saferails.clock import ManualClock
from saferails.policy import ActionRequest, PolicyEngine, Principal, default_policy
from saferails.store.db import create_engine, migrate, session_factory

AREA = "foundation"
CEILING_BATCH = 1_000
PROPOSE_MANY_BATCH = 100
START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
# The default policy allows 200 documents per proposer per day; 150 per proposer keeps every LOW proposal
# under the limit, so the LOW rows measure approvals and not rate-limit refusals.
PROPOSALS_PER_PROPOSER = 150
PAYLOAD = "x" * 200


@dataclass(frozen=True)
class Sizes:
    ceiling_rows: int  # single-row commits per repeat
    ceiling_batched_rows: int  # rows per repeat, in commits of CEILING_BATCH
    ceiling_repeats: int  # split: half before the proposal runs, half after
    proposals: int  # per proposal measurement
    evaluations: int
    writer_proposals: int  # per writer process, PostgreSQL only

    @classmethod
    def for_args(cls, args: BenchArgs) -> Sizes:
        return cls(
            ceiling_rows=args.size(2_000, 300),
            ceiling_batched_rows=max(CEILING_BATCH, args.size(30_000, 5_000)),
            ceiling_repeats=2 if args.quick else 4,
            proposals=args.size(500, 60),
            evaluations=args.size(20_000, 2_000),
            writer_proposals=args.size(600, 30),  # one writer alone runs 1-2 s: a steadier baseline than 150
        )


def run(args: BenchArgs) -> list[Result]:
    """Every foundation measurement on each backend in ``args.backends``, then the in-memory policy timing."""
    sizes = Sizes.for_args(args)
    results: list[Result] = []
    with bench_databases(args) as databases:
        for database in databases:
            results += _backend(database, sizes)
    results += policy_evaluation(sizes.evaluations)
    return results


# --- 1. the durable-commit ceiling ----------------------------------------------------------------------------
class _RawWriter(Protocol):
    """Inserts into a plain one-table schema through the raw driver; each call is one durable commit."""

    def one(self) -> None: ...

    def many(self, count: int) -> None: ...

    def close(self) -> None: ...


class _SqliteWriter:
    def __init__(self, path: str) -> None:
        # isolation_level=None: the driver opens no transactions of its own; each BEGIN below is explicit.
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("DROP TABLE IF EXISTS bench_ceiling")
        self.conn.execute("CREATE TABLE bench_ceiling (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")

    def one(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT INTO bench_ceiling (payload) VALUES (?)", (PAYLOAD,))
        self.conn.execute("COMMIT")

    def many(self, count: int) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany("INSERT INTO bench_ceiling (payload) VALUES (?)", [(PAYLOAD,)] * count)
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.execute("DROP TABLE bench_ceiling")
        self.conn.close()


class _PostgresWriter:
    def __init__(self, conninfo: str) -> None:
        self.conn = psycopg.connect(conninfo)
        self.conn.execute("DROP TABLE IF EXISTS bench_ceiling")
        self.conn.execute("CREATE TABLE bench_ceiling (id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL)")
        self.conn.commit()

    def one(self) -> None:
        self.conn.execute("INSERT INTO bench_ceiling (payload) VALUES (%s)", (PAYLOAD,))
        self.conn.commit()

    def many(self, count: int) -> None:
        with self.conn.cursor() as cur:
            cur.executemany("INSERT INTO bench_ceiling (payload) VALUES (%s)", [(PAYLOAD,)] * count)
        self.conn.commit()

    def close(self) -> None:
        self.conn.execute("DROP TABLE bench_ceiling")
        self.conn.commit()
        self.conn.close()


@dataclass(frozen=True)
class Ceiling:
    """Rows/s through the raw driver: one row per commit, and CEILING_BATCH rows per commit (each a median)."""

    single: float
    batched: float


def _ceiling_runs(database: BenchDatabase, sizes: Sizes, repeats: int) -> tuple[list[float], list[float]]:
    """``repeats`` measurements of each ceiling, in rows/s: (one row per commit, CEILING_BATCH per commit)."""
    writer: _RawWriter
    if database.backend == "sqlite":
        writer = _SqliteWriter(database.sqlite_path)
    else:
        writer = _PostgresWriter(database.libpq_conninfo)
    singles: list[float] = []
    batches: list[float] = []
    try:
        writer.one()  # warm-up: table pages and the connection's first commit
        batch_sizes = _split(sizes.ceiling_batched_rows, CEILING_BATCH)
        for _ in range(repeats):
            single = time_each(lambda _: writer.one(), range(sizes.ceiling_rows))
            singles.append(rate(sizes.ceiling_rows, single.seconds))
            batches.append(rate(sizes.ceiling_batched_rows, time_each(writer.many, batch_sizes).seconds))
    finally:
        writer.close()
    return singles, batches


def _ceiling_results(backend: str, sizes: Sizes, singles: list[float], batches: list[float]) -> list[Result]:
    driver = "sqlite3 WAL sync=FULL" if backend == "sqlite" else "psycopg 3"
    spread = f"median of {len(singles)} bracketing the proposals"
    return [
        Result(AREA, "ceiling: raw INSERT + COMMIT per row", backend, median(singles), "rows/s", sizes.ceiling_rows,
               note=f"{driver}; {spread}; range {min(singles):,.0f}-{max(singles):,.0f}",
               details={"runs_rows_per_s": singles}),
        Result(AREA, f"ceiling: raw {CEILING_BATCH:,} rows per COMMIT", backend, median(batches), "rows/s",
               sizes.ceiling_batched_rows,
               note=f"{driver}{', executemany' if backend != 'sqlite' else ''}; "
                    f"range {min(batches):,.0f}-{max(batches):,.0f}",
               details={"runs_rows_per_s": batches}),
    ]


def _split(total: int, chunk: int) -> list[int]:
    return [min(chunk, total - start) for start in range(0, total, chunk)]


# --- 2 and 3. proposals through policy + store + audit --------------------------------------------------------
@dataclass(frozen=True)
class _Kind:
    label: str
    expected_state: str
    make: Callable[[str, int], Proposal]


def _low(prefix: str, i: int) -> Proposal:
    path = f"docs/{prefix}-{i}.md"
    return Proposal(action_type="create_document", target=path, params={"path": path, "content": PAYLOAD},
                    proposer=f"bench-{prefix}-{i // PROPOSALS_PER_PROPOSER}", reason="benchmark")


def _high(prefix: str, i: int) -> Proposal:
    return Proposal(action_type="reassign_manager", target=f"emp-{prefix}-{i}",
                    params={"new_manager_id": f"mgr-{i % 50}"}, proposer=f"bench-{prefix}", reason="benchmark")


KINDS = (
    _Kind("LOW create_document -> approved", "approved", _low),
    _Kind("HIGH reassign_manager -> pending_approval", "pending_approval", _high),
)


@dataclass(frozen=True)
class _Measured:
    """A proposal measurement waiting for the ceiling it is compared with (measured around it)."""

    name: str
    per_second: float
    n: int
    batched: bool  # compared with the batched ceiling, else with the single-row one
    note: str
    details: dict[str, Any]

    def result(self, backend: str, ceiling: Ceiling) -> Result:
        ratio = self.per_second / (ceiling.batched if self.batched else ceiling.single)
        against = "batched" if self.batched else "1-row"
        return Result(AREA, self.name, backend, self.per_second, "proposals/s", self.n,
                      note=f"{_percent(ratio)} of {against} ceiling; {self.note}",
                      details=self.details | {f"ratio_to_{against}_ceiling": ratio})


def _percent(ratio: float) -> str:
    return f"{ratio:.1%}" if ratio >= 0.01 else f"{ratio:.2%}"


def _states(views: Sequence[ActionView], expected: str) -> tuple[dict[str, int], str]:
    """The states reached, and a loud prefix for the note when any proposal did not reach ``expected``."""
    states = dict(Counter(v.state for v in views))
    return states, "" if set(states) == {expected} else f"UNEXPECTED states {states} (wanted all {expected}); "


def _proposals(database: BenchDatabase, sizes: Sizes) -> list[_Measured | Result]:
    engine = create_engine(database.url)
    try:
        migrate(engine)
        service = ActionService(session_factory(engine), default_policy(), ManualClock(START))
        for kind in KINDS:
            service.propose(kind.make("warmup", 0))  # records the policy document, warms statement caches
        # As ``deployments.serve`` does after start-up: full collections then skip the long-lived heap.
        gc.collect()
        gc.freeze()
        measured: list[_Measured | Result] = [_one_at_a_time(service, kind, sizes.proposals) for kind in KINDS]
        measured += [_batched(service, kind, database.backend, sizes.proposals) for kind in KINDS]
        return measured
    finally:
        gc.unfreeze()
        engine.dispose()


def _one_at_a_time(service: ActionService, kind: _Kind, n: int) -> _Measured:
    timed = time_each(service.propose, [kind.make("single", i) for i in range(n)])
    states, warning = _states(timed.values, kind.expected_state)
    p50_ms, p99_ms = median(timed.durations) * 1e3, percentile(timed.durations, 99) * 1e3
    return _Measured(f"propose, 1 per txn: {kind.label}", rate(n, timed.seconds), n, batched=False,
                     note=f"{warning}p50 {p50_ms:.1f} ms, p99 {p99_ms:.1f} ms",
                     details={"p50_ms": p50_ms, "p99_ms": p99_ms, "states": states})


ProposeMany = Callable[[list[Proposal]], list[ActionView]]


def _batched(service: ActionService, kind: _Kind, backend: str, n: int) -> _Measured | Result:
    batch = min(PROPOSE_MANY_BATCH, n)
    name = f"propose_many, {batch} per txn: {kind.label}"
    # Looked up at run time so this module still runs (and says why a row is missing) against a service
    # that has no propose_many.
    propose_many = cast("ProposeMany | None", getattr(service, "propose_many", None))
    if propose_many is None:
        return Result(AREA, name, backend, None, "proposals/s", n,
                      note="skipped: ActionService.propose_many does not exist yet")
    proposals = [kind.make("batch", i) for i in range(n)]
    timed = time_each(propose_many, [proposals[start:start + batch] for start in range(0, n, batch)])
    states, warning = _states([view for views in timed.values for view in views], kind.expected_state)
    batch_ms = median(timed.durations) * 1e3
    return _Measured(name, rate(n, timed.seconds), n, batched=True,
                     note=f"{warning}{batch_ms:.0f} ms per batch",
                     details={"batch": batch, "median_batch_ms": batch_ms, "states": states})


def _backend(database: BenchDatabase, sizes: Sizes) -> list[Result]:
    """Ceiling runs bracket the proposal runs, so a noisy neighbour moves both sides of each ratio alike."""
    singles, batches = _ceiling_runs(database, sizes, (sizes.ceiling_repeats + 1) // 2)
    measured = _proposals(database, sizes)
    more_singles, more_batches = _ceiling_runs(database, sizes, sizes.ceiling_repeats // 2)
    singles, batches = singles + more_singles, batches + more_batches
    ceiling = Ceiling(single=median(singles), batched=median(batches))
    results = _ceiling_results(database.backend, sizes, singles, batches) + [
        m.result(database.backend, ceiling) if isinstance(m, _Measured) else m for m in measured
    ]
    if database.backend == "postgresql":
        results += writers.measure(database, sizes.writer_proposals)
    return results


# --- 4. policy decisions without I/O --------------------------------------------------------------------------
class MemoryCounter:
    """A fixed in-memory rate-limit history: (proposer, action type) -> events in any window."""

    def __init__(self, counts: dict[tuple[str, str], int]) -> None:
        self.counts = counts

    def count(self, proposer: str, action_type: str, since: datetime) -> int:
        return self.counts.get((proposer, action_type), 0)

    def oldest_since(self, proposer: str, action_type: str, since: datetime) -> datetime | None:
        return since + timedelta(minutes=1) if self.counts.get((proposer, action_type)) else None


def _request(action_type: str, target: str, params: dict[str, Any], proposer: Principal) -> ActionRequest:
    return ActionRequest(action_type=action_type, target=target, params=validate_params(action_type, params),
                         proposer=proposer)


def policy_mix() -> tuple[list[ActionRequest], MemoryCounter]:
    """One request per path through the default policy: allow, needs approval, blocked, KYC, rate-limited."""
    agent = Principal(id="agent-1", groups=frozenset({"agents"}), kyc_verified=False)
    busy = Principal(id="agent-busy", groups=frozenset({"agents"}), kyc_verified=True)
    start, end = START + timedelta(hours=1), START + timedelta(hours=2)
    requests = [
        _request("create_document", "docs/a.md", {"path": "docs/a.md", "content": "hello"}, agent),
        _request("send_email", "mbx", {"to": ["a@example.com"], "subject": "s", "body": "b"}, agent),
        _request("send_email", "mbx", {"to": ["a@example.com"], "subject": "s", "body": "b"}, busy),
        _request("create_calendar_event", "cal",
                 {"title": "sync", "start_time": start.isoformat(), "end_time": end.isoformat()}, agent),
        _request("move_file", "docs/a.md", {"source": "docs/a.md", "destination": "docs/b.md"}, agent),
        _request("make_payment", "acct", {"amount": "10", "currency": "EUR", "payee": "p"}, agent),
        _request("make_purchase", "acct",
                 {"item": "paper", "quantity": 1, "max_total": "20", "currency": "EUR", "vendor": "v"}, agent),
        _request("reassign_manager", "emp-1", {"new_manager_id": "mgr-2"}, agent),
        _request("reduce_meetings", "emp-1", {"max_weekly_meeting_hours": 10}, agent),
    ]
    counter = MemoryCounter({("agent-1", "send_email"): 12, ("agent-busy", "send_email"): 50})
    return requests, counter


def policy_evaluation(n: int) -> list[Result]:
    engine = PolicyEngine(default_policy())
    requests, counter = policy_mix()
    for request in requests * 20:  # warm-up: first-call costs (imports, caches) are not decision time
        engine.evaluate(request, now=START, counter=counter)
    samples: list[float] = []
    outcomes: Counter[str] = Counter()
    for i in range(n):
        request = requests[i % len(requests)]
        t0 = time.perf_counter_ns()
        decision = engine.evaluate(request, now=START, counter=counter)
        samples.append((time.perf_counter_ns() - t0) / 1e3)
        outcomes[decision.code.value if decision.code else decision.outcome.value] += 1
    mix = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
    details = {"outcomes": dict(outcomes), "action_types": sorted({r.action_type for r in requests}),
               "evaluations_per_s": rate(n, sum(samples) / 1e6)}
    note = f"{len(requests)} request shapes; {details['evaluations_per_s']:,.0f} evaluations/s"
    return [
        Result(AREA, "PolicyEngine.evaluate, in-memory counter: median", "memory", median(samples), "us", n,
               note=note, details=details),
        Result(AREA, "PolicyEngine.evaluate, in-memory counter: p99", "memory", percentile(samples, 99), "us", n,
               note=f"outcomes: {mix}", details=details),
    ]
