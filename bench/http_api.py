"""HTTP API benchmark (issue 11): proposals through ``POST /api/v1/actions`` at 1, 8 and 32 concurrent clients,
beside in-process proposals on the same store in the same run.

Per backend: a fresh store, an agent principal with a real API key (``IdentityAuthenticator``: every request is
authenticated against the store), the app served by uvicorn on loopback in this process, and the load generated
by ``bench.http_load`` in another process (``saferails.client.AsyncClient``, one connection per client, each
waiting for its answer). The in-process row is ``store.actions.propose`` one at a time in one thread: the store's
own rate, the ceiling the edge is compared with. Every proposal is a HIGH ``reassign_manager`` (policy, audit,
outbox, approval rows); every answer is checked to be ``pending_approval``, so a row never measures failures.

The goal (issue 11): at 8 clients at least 80% of the in-process rate, and p99 under 50 ms.
"""

from __future__ import annotations

import multiprocessing
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from bench.common import BenchArgs, BenchDatabase, Result, bench_databases, median, percentile, rate
from bench.http_load import generate
from saferails.actions.models import Proposal
from saferails.api import Store, open_store
from saferails.http import create_app
from saferails.http.auth import IdentityAuthenticator
from saferails.notify.base import Notification
from saferails.settings import Settings

AREA = "http"
CLIENTS = (1, 8, 32)
GOAL_CLIENTS = 8
GOAL_RATIO = 0.8
GOAL_P99_MS = 50.0


class _Quiet:
    """A notifier that drops messages: the benchmark measures proposing, not delivery."""

    def send(self, notification: Notification) -> None:
        return None


def run(args: BenchArgs) -> list[Result]:
    total = args.size(600, 96)
    results: list[Result] = []
    with bench_databases(args) as databases:
        for database in databases:
            results += _measure(database, total)
    return results


@contextmanager
def _served(store: Store) -> Iterator[str]:
    """The app on a free loopback port, in a thread; the socket listens before the thread starts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit TCP_NODELAY from the listening socket. Without it a socket handed to uvicorn
    # (it sets the option only on sockets it binds itself) answers each request ~40 ms late: Nagle's algorithm
    # holding the response's second write until the client's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    app = create_app(store, IdentityAuthenticator(store.identity))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _agent_token(store: Store) -> str:
    identity = store.identity
    admin_token = identity.bootstrap_admin("bench-admin").token
    admin = identity.authenticate(admin_token)
    identity.add_principal(admin, "bench-agent", roles=["agent"])
    return identity.issue_credential(admin, "bench-agent").token


def _in_process(store: Store, total: int) -> tuple[float, list[float], dict[str, int]]:
    durations: list[float] = []
    states: dict[str, int] = {}
    start = time.perf_counter()
    for i in range(total):
        t0 = time.perf_counter()
        view = store.actions.propose(Proposal(action_type="reassign_manager", target=f"emp-inproc-{i}",
                                              params={"new_manager_id": f"mgr-{i % 50}"}, proposer="bench-agent",
                                              reason="benchmark", tenant="default"))
        durations.append(time.perf_counter() - t0)
        states[view.state] = states.get(view.state, 0) + 1
    return rate(total, time.perf_counter() - start), durations, states


def _load(url: str, token: str, clients: int, total: int, tag: str) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=generate, args=(url, token, clients, total, tag, queue), daemon=True)
    process.start()
    try:
        outcome: dict[str, Any] = queue.get(timeout=600)
    finally:
        process.join(timeout=60)
    if "error" in outcome:
        raise RuntimeError(f"the load generator failed: {outcome['error']}")
    return outcome


def _unexpected(states: dict[str, int]) -> str:
    return "" if set(states) == {"pending_approval"} else f"UNEXPECTED states {states}; "


def _measure(database: BenchDatabase, total: int) -> list[Result]:
    backend = database.backend
    with tempfile.TemporaryDirectory(prefix="saferails-bench-http-") as tmp:
        settings = Settings(database_url=database.url, policy_path=None, approval_secret=b"b" * 48,
                            data_dir=Path(tmp))
        store = open_store(settings, notifier=_Quiet())
        try:
            token = _agent_token(store)
            _in_process(store, 5)  # warm-up: statement caches, the policy document row
            inproc_rate, inproc_durations, inproc_states = _in_process(store, total)
            results = [Result(
                AREA, "in-process propose, 1 thread (the ceiling)", backend, inproc_rate, "proposals/s", total,
                f"{_unexpected(inproc_states)}p50 {median(inproc_durations) * 1000:.1f} ms, "
                f"p99 {percentile(inproc_durations, 99) * 1000:.1f} ms",
                details={"p50_s": median(inproc_durations), "p99_s": percentile(inproc_durations, 99)})]
            goal: dict[str, float] = {}
            with _served(store) as url:
                for clients in CLIENTS:
                    outcome = _load(url, token, clients, total, f"c{clients}")
                    latencies = outcome["latencies"]
                    per_second = rate(len(latencies), outcome["seconds"])
                    ratio = per_second / inproc_rate
                    p50, p99 = median(latencies) * 1000, percentile(latencies, 99) * 1000
                    if clients == GOAL_CLIENTS:
                        goal = {"ratio": ratio, "p99_ms": p99}
                    results.append(Result(
                        AREA, f"HTTP propose, {clients} concurrent client(s)", backend, per_second, "proposals/s",
                        len(latencies), f"{_unexpected(outcome['states'])}{ratio:.0%} of in-process; "
                        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms",
                        details={"ratio_to_in_process": ratio, "p50_ms": p50, "p99_ms": p99,
                                 "states": outcome["states"]}))
            met = goal["ratio"] >= GOAL_RATIO and goal["p99_ms"] < GOAL_P99_MS
            results.append(Result(
                AREA, f"goal: {GOAL_CLIENTS} clients >= {GOAL_RATIO:.0%} of in-process, p99 < {GOAL_P99_MS:.0f} ms",
                backend, goal["ratio"] * 100, "%", total,
                f"{'MET' if met else 'NOT MET'}: {goal['ratio']:.0%} of in-process, p99 {goal['p99_ms']:.1f} ms"))
            return results
        finally:
            store.close()
