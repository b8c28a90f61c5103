"""``python -m bench [--only AREA[,AREA]] [--quick] [--full] [--n N] [--backend sqlite|postgresql] [--pg-url URL]``.

Runs the benchmark areas in :data:`AREAS` (each a module with ``run(args: BenchArgs) -> list[Result]``), prints
one table on stdout and writes the run as JSON under ``bench/results/``. When PostgreSQL cannot be reached it
says so and carries on with SQLite. Exit status 0 after a completed run, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from bench.common import (
    BACKENDS,
    DEFAULT_PG_ADMIN_URL,
    RESULTS_DIR,
    BenchArgs,
    Result,
    describe_machine,
    format_table,
    machine_info,
    postgres_problem,
    write_json,
)
from bench.goals import format_verdicts, judge

# Area name -> module. A new area (bench/<area>.py from a later issue) is one line here, in run order.
AREAS: dict[str, str] = {
    "foundation": "bench.foundation",
    "actions": "bench.actions",
    "sweeps": "bench.sweeps",
    "outcomes": "bench.outcomes",
    "outcomes_quality": "bench.outcomes_quality",
    "workflow": "bench.workflow",
    "http": "bench.http_api",
    "org_metrics": "bench.org_metrics",
    "audit_tamper": "bench.audit_tamper",
}

Runner = Callable[[BenchArgs], list[Result]]


def _areas(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in AREAS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown area {', '.join(unknown) or text!r}; known: {', '.join(AREAS)}")
    return names


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: Sequence[str] | None) -> tuple[BenchArgs, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m bench", description="saferails benchmarks (measure only)")
    parser.add_argument("--only", type=_areas, action="extend", metavar="AREA[,AREA]",
                        help=f"run only these areas (known: {', '.join(AREAS)})")
    parser.add_argument("--quick", action="store_true", help="short run (seconds, for a quick look)")
    parser.add_argument("--full", action="store_true",
                        help="add the largest sizes (outcomes_quality: 20,000 people and the 1,000-check timing)")
    parser.add_argument("--n", type=_positive, help="operations per measurement, overriding every size (smoke runs)")
    parser.add_argument("--backend", choices=BACKENDS, action="append", dest="backends",
                        help="database backend(s) to measure (default: both)")
    parser.add_argument("--pg-url", default=DEFAULT_PG_ADMIN_URL,
                        help="PostgreSQL admin URL used to create and drop the benchmark database "
                             "(default: $SAFERAILS_BENCH_PG_URL or the local server)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON result goes")
    ns = parser.parse_args(argv)
    args = BenchArgs(
        quick=ns.quick,
        n=ns.n,
        backends=tuple(dict.fromkeys(ns.backends or BACKENDS)),
        pg_admin_url=ns.pg_url,
        results_dir=ns.results_dir,
        full=ns.full,
    )
    return args, ns.only or list(AREAS)


def main(argv: Sequence[str] | None = None) -> int:
    args, areas = parse_args(argv)
    started_at, start = datetime.now(UTC), time.perf_counter()
    problem = postgres_problem(args.pg_admin_url) if "postgresql" in args.backends else None
    machine = machine_info(args, problem)
    if problem is not None:
        print(f"PostgreSQL is unreachable at {args.pg_admin_url} ({problem}): continuing with SQLite only.")
        args = replace(args, backends=tuple(b for b in args.backends if b != "postgresql"))
    print(f"saferails benchmarks ({'quick' if args.quick else 'full'}): {describe_machine(machine)}", flush=True)
    results: list[Result] = []
    for area in areas:
        area_start = time.perf_counter()
        run = cast(Runner, importlib.import_module(AREAS[area]).run)
        results += run(args)
        print(f"  {area}: done in {time.perf_counter() - area_start:.1f} s", flush=True)
    seconds = time.perf_counter() - start
    print()
    print(format_table(results))
    print()
    print(format_verdicts(judge(results)))
    path = write_json(results, machine=machine, args=args, areas=areas, started_at=started_at, seconds=seconds)
    print(f"\n{len(results)} results in {seconds:.1f} s; written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
