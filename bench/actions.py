"""Action-flow benchmarks (issue 3), under one ``prefect_test_harness`` (heartbeats off), per store backend:

1. wall time of the action flow carrying an auto-executed LOW action (``create_document``: propose, attach the
   run, execute through the handler, record) against a bare Prefect flow with one trivial task, interleaved in
   the same run; the ratio of the medians is the number to watch (absolute times are noisy on 2 cores);
2. resume-to-execution latency: a ``move_file`` action paused at the approval gate is resumed with
   ``resume_flow_run`` and a valid one-time code; measured until the store shows it ``completed`` (polled every
   10 ms). The paused run looks at Prefect (and the store) every ``poll_interval`` seconds (stated in the row), so
   expect a spread of [0, poll_interval] plus the execution.

Goals (issue 15, item 4), printed beside each figure with a verdict: the action flow at most
:data:`RATIO_CEILING` times the bare flow; resume to completed under :data:`LATENCY_CEILING_S` (median).

The ManualClock moves one hour per LOW action so the document rate limit (200 a day) never refuses one. Every
measured action is checked to have completed, so a row never silently measures failures.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import BenchArgs, BenchDatabase, Result, bench_databases, median, percentile
from saferails.actions.models import Proposal
from saferails.clock import ManualClock
from saferails.handlers import HandlerSettings
from saferails.notify.base import Notification
from saferails.settings import load_settings
from saferails.store.db import create_engine, migrate, session_factory

AREA = "actions"
POLL_INTERVAL = 0.5
RATIO_CEILING = 1.15
LATENCY_CEILING_S = 1.0
START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


class _Codes:
    """Keeps the approval notifications so the benchmark can answer with a valid code."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> None:
        self.sent.append(notification)

    def code(self, action_id: str, approver: str) -> str:
        for n in reversed(self.sent):
            if n.entity_id == action_id and n.data.get("approver") == approver and n.data.get("code"):
                return str(n.data["code"])
        raise LookupError(f"no code for {approver} on {action_id}")


def run(args: BenchArgs) -> list[Result]:
    runs = args.size(60, 5)  # the ratio of two medians moved by 0.06 between runs of 20
    resumes = args.size(6, 2)
    results: list[Result] = []
    with _harness(), bench_databases(args) as databases:
        for database in databases:
            results += _measure(database, runs, resumes)
    return results


@contextmanager
def _harness() -> Iterator[None]:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, PREFECT_LOGGING_LEVEL, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180), temporary_settings(
        {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None, PREFECT_LOGGING_LEVEL: "WARNING"}
    ):
        yield


def _measure(database: BenchDatabase, runs: int, resumes: int) -> list[Result]:
    from prefect import flow, task

    from blocks.settings import build_runtime, install_runtime
    from flows.action_flow import action_flow

    @task
    def one_step() -> int:
        return 1

    @flow
    def bare_flow() -> int:
        return one_step()

    engine = create_engine(database.url)
    migrate(engine)
    clock = ManualClock(START)
    codes = _Codes()
    with tempfile.TemporaryDirectory(prefix="saferails-bench-files-") as tmp:
        root = Path(tmp)
        settings = load_settings({"SAFERAILS_APPROVAL_SECRET": "b" * 48})
        rt = build_runtime(session_factory(engine), clock=clock, settings=settings, notifier=codes,
                           handler_settings=HandlerSettings(file_root=root), sleeper=lambda _s: None)
        rt.actions.upsert_principal("alice", groups=["approvers"])
        install_runtime(rt)
        try:
            bare_flow()  # warm-up: the first run of each flow pays for registration
            action_flow(proposal=_document(0))
            bare: list[float] = []
            full: list[float] = []
            for i in range(1, runs + 1):
                clock.advance(timedelta(hours=1))
                bare.append(_timed(bare_flow))
                start = time.perf_counter()
                result = action_flow(proposal=_document(i))
                full.append(time.perf_counter() - start)
                if result.get("state") != "completed":
                    raise RuntimeError(f"benchmark action did not complete: {result}")
            latencies = [_resume_latency(rt, codes, root, i) for i in range(resumes)]
        finally:
            install_runtime(None)
            engine.dispose()
    ratio = median(full) / median(bare)
    latency = median(latencies)
    return [
        Result(AREA, "bare flow, one task", database.backend, median(bare) * 1000, "ms", runs, "median wall time"),
        Result(AREA, "action flow, auto-executed LOW", database.backend, median(full) * 1000, "ms", runs,
               "median wall time: create_document written", details={"samples_s": full}),
        Result(AREA, "action flow / bare flow", database.backend, ratio, "x", runs,
               f"ratio of medians; ceiling {RATIO_CEILING:.2f}x: {_verdict(ratio <= RATIO_CEILING)}",
               details={"ceiling": RATIO_CEILING, "met": ratio <= RATIO_CEILING}),
        Result(AREA, "resume -> completed", database.backend, latency * 1000, "ms", resumes,
               f"median; ceiling {LATENCY_CEILING_S * 1000:.0f} ms: {_verdict(latency < LATENCY_CEILING_S)}; "
               f"poll_interval={POLL_INTERVAL} s, max {max(latencies) * 1000:.0f} ms",
               details={"samples_s": latencies, "p90_s": percentile(latencies, 90),
                        "ceiling_s": LATENCY_CEILING_S, "met": latency < LATENCY_CEILING_S}),
    ]


def _verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def _timed(call: Any) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _document(i: int) -> dict[str, Any]:
    return {"action_type": "create_document", "target": f"bench/{i}.md", "proposer": "bench-agent",
            "params": {"path": f"doc-{i}.md", "content": f"# {i}\n"}}


def _resume_latency(rt: Any, codes: _Codes, root: Path, i: int) -> float:
    from prefect.flow_runs import resume_flow_run

    from flows import api

    (root / f"in-{i}.txt").write_text("x")
    sub = api.submit_action(Proposal(action_type="move_file", target=f"in-{i}.txt", proposer="bench-agent",
                                     params={"source": f"in-{i}.txt", "destination": f"out-{i}.txt"}),
                            poll_interval=POLL_INTERVAL)
    api.wait_until_paused(sub.action.id, timeout=120)
    answer = {"decision": "approve", "approver": "alice", "code": codes.code(sub.action.id, "alice"), "reason": "b"}
    start = time.perf_counter()
    resume_flow_run(sub.flow_run_id, run_input=answer)
    while rt.actions.get(sub.action.id).state != "completed":
        if time.perf_counter() - start > 120:
            raise RuntimeError(f"action {sub.action.id} did not complete after resume")
        time.sleep(0.01)
    return time.perf_counter() - start
