"""Outcome-monitoring benchmarks (issue 4).

1. The outcome sweep on a generated organisation (default 20,000 people, 14 days of interactions) with 1,000
   completed interventions executed on one day through the real ActionService and ExecutionService: the time to
   schedule the checks (capturing baselines from one shared snapshot), the time to decide all of them once due
   (one shared current snapshot), and the compute time per snapshot (metrics of every person). Runs on the first
   requested backend only: its cost is the graph computation, not the store.
2. The betweenness method's error: on a generated graph small enough for exact betweenness (default 1,000
   people), the Riondato-Kornaropoulos estimate (the method used above ``exact_limit`` nodes) against networkx's
   exact Brandes, with the stated bound: max absolute error over all nodes, and the median relative error on the
   ten most central nodes.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta

import networkx as nx
import sqlalchemy as sa

from bench.common import BenchArgs, BenchDatabase, Result, bench_databases
from saferails.actions.service import ActionService, Proposal
from saferails.clock import ManualClock
from saferails.execution import ExecutionService
from saferails.handlers import HandlerSettings
from saferails.orggraph import MetricParams, SnapshotCache, generate_org, insert_sample
from saferails.orggraph.betweenness import rk_betweenness
from saferails.orggraph.tables import SNAPSHOT_HEADER, MetricSnapshotRow
from saferails.outcomes import OutcomeMonitor
from saferails.policy import load_policy_text
from saferails.store.db import create_engine, migrate, session_factory, transaction

AREA = "outcomes"
EXECUTED_AT = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
OPEN_POLICY = 'version: "bench-outcomes"\nimpact: {default: low}\nrules: []\n'


def run(args: BenchArgs) -> list[Result]:
    people = min(20_000, max(50, args.size(20_000, 2_000)))
    checks = min(people // 2, args.size(1_000, 100))
    exact_people = min(20_000, max(50, args.size(1_000, 300)))
    results: list[Result] = []
    with bench_databases(args) as databases:
        results += _sweep(databases[0], people, checks)
    results += _betweenness_error(exact_people)
    return results


def _sweep(database: BenchDatabase, people: int, checks: int) -> list[Result]:
    engine = create_engine(database.url)
    try:
        migrate(engine)
        sessions = session_factory(engine)
        clock = ManualClock(EXECUTED_AT)
        org = generate_org(people, seed=11, start=EXECUTED_AT.replace(hour=0) - timedelta(days=7), days=14)
        started = time.perf_counter()
        with transaction(sessions) as session:
            counts = insert_sample(session, org)
        load_seconds = time.perf_counter() - started
        actions = ActionService(sessions, load_policy_text(OPEN_POLICY), clock)
        executor = ExecutionService(sessions, clock, HandlerSettings(), sleeper=lambda _s: None)
        members = org.employees.loc[org.employees["role"] == "member", "id"].tolist()[:checks]
        started = time.perf_counter()
        for person in members:
            action = actions.propose(Proposal(action_type="role_change", target=person,
                                              params={"new_role": "lead"}, proposer="bench"))
            executor.execute(action.id)
        execute_seconds = time.perf_counter() - started

        cache = SnapshotCache()
        monitor = OutcomeMonitor(sessions, clock, executor, cache=cache, params=MetricParams())
        started = time.perf_counter()
        scheduled = monitor.schedule(limit=checks)
        schedule_seconds = time.perf_counter() - started
        clock.advance(timedelta(days=7))
        started = time.perf_counter()
        report = monitor.run_due(worker_id="bench", limit=checks)
        decide_seconds = time.perf_counter() - started
        if scheduled != checks or report.claimed != checks:
            raise RuntimeError(f"expected {checks} checks, scheduled {scheduled}, decided {report.claimed}")
        with transaction(sessions) as session:
            header = session.execute(sa.select(MetricSnapshotRow.metrics).where(
                MetricSnapshotRow.person == SNAPSHOT_HEADER).limit(1)).scalar_one()
    finally:
        engine.dispose()
    backend, total = database.backend, schedule_seconds + decide_seconds
    snapshot_total = sum(cache.compute_seconds)
    algorithm = str(header["algorithm"])
    org_note = f"{people:,} people, {counts['interactions']:,} interactions"
    verdicts = f"ok {report.count('ok')}, negative {report.count('negative')}, error {report.count('error')}"
    return [
        Result(AREA, "load generated org", backend, load_seconds, "s", people, org_note, counts),
        Result(AREA, "execute interventions (setup)", backend, execute_seconds, "s", checks),
        Result(AREA, "sweep: schedule checks + baselines", backend, schedule_seconds, "s", checks),
        Result(AREA, "sweep: decide due checks", backend, decide_seconds, "s", checks, verdicts),
        Result(AREA, "sweep: total", backend, total, "s", checks,
               f"{cache.computations} snapshots computed; {_goal(people, checks, total)}"),
        Result(AREA, "time per snapshot", backend, statistics.mean(cache.compute_seconds), "s/snapshot",
               cache.computations, algorithm, {"compute_seconds": cache.compute_seconds}),
        Result(AREA, "time per check excl. snapshots", backend, 1000 * (total - snapshot_total) / checks,
               "ms/check", checks),
    ]


def _goal(people: int, checks: int, seconds: float) -> str:
    """Issue 15's goal for the outcome sweep: 20,000 people and 1,000 due checks in under 20 s."""
    if (people, checks) != (20_000, 1000):
        return "goal (20,000 people, 1,000 checks) < 20 s: not measured at this size"
    return f"goal < 20 s: {'MET' if seconds < 20 else 'NOT MET'} ({seconds / 20:.2f}x the goal)"


def _betweenness_error(people: int) -> list[Result]:
    org = generate_org(people, seed=5, days=7)
    graph = nx.Graph()
    graph.add_edges_from(org.interactions[["person_a", "person_b"]].itertuples(index=False))
    params = MetricParams()
    started = time.perf_counter()
    exact = nx.betweenness_centrality(graph, normalized=True)
    exact_seconds = time.perf_counter() - started
    started = time.perf_counter()
    estimate = rk_betweenness(graph, epsilon=params.epsilon, delta=params.delta, seed=params.seed)
    rk_seconds = time.perf_counter() - started
    errors = [abs(exact[v] - estimate.values[v]) for v in exact]
    top = sorted(exact, key=lambda v: -exact[v])[:10]
    top_relative = statistics.median(abs(exact[v] - estimate.values[v]) / exact[v] for v in top)
    bound = float(estimate.params["bound_networkx_scale"])
    n = graph.number_of_nodes()
    within = "within" if max(errors) <= bound else "OUTSIDE"
    note = f"bound {bound:.4f} (eps {params.epsilon}, delta {params.delta}): {within}"
    return [
        Result(AREA, "betweenness RK: max abs error vs exact", "memory", max(errors), "", n, note, estimate.params),
        Result(AREA, "betweenness RK: median rel error, top 10", "memory", 100 * top_relative, "%", n),
        Result(AREA, "betweenness exact (networkx Brandes)", "memory", exact_seconds, "s", n),
        Result(AREA, "betweenness RK estimate", "memory", rk_seconds, "s", n,
               f"{estimate.params['samples']:,} sampled paths"),
    ]
