"""What every benchmark area shares: arguments, results, timing, throwaway databases, machine info and output.

Contracts:

* A :class:`Result` is one measured number (or a skipped measurement with ``value=None`` and a ``note`` saying
  why). ``details`` holds extra numbers for the JSON file only; ``note`` is the short text shown in the table.
* :func:`bench_databases` yields one fresh, empty database per requested backend and removes them all on exit:
  a temporary SQLite file, and on PostgreSQL a database ``saferails_bench_<pid>`` created through the admin URL
  and dropped (``WITH (FORCE)``) even when the benchmark fails. It never touches any other database.
* :func:`write_json` writes under ``bench/results/`` (gitignored) unless told otherwise, and returns the path.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import make_url

RESULTS_DIR = Path(__file__).with_name("results")
DEFAULT_PG_ADMIN_URL = os.environ.get(
    "SAFERAILS_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ("sqlite", "postgresql")
T = TypeVar("T")
R = TypeVar("R")


# --- arguments and results ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchArgs:
    """How to run: ``quick`` picks the short sizes, ``n`` (when set) overrides every size of every area."""

    quick: bool = False
    n: int | None = None
    backends: tuple[str, ...] = BACKENDS
    pg_admin_url: str = DEFAULT_PG_ADMIN_URL
    results_dir: Path = RESULTS_DIR
    full: bool = False  # the largest sizes too (outcomes_quality: 20,000-person organisations and timing)

    def size(self, default: int, quick: int) -> int:
        """The number of operations for one measurement under these arguments."""
        if self.n is not None:
            return self.n
        return quick if self.quick else default


@dataclass(frozen=True)
class Result:
    area: str
    name: str
    backend: str  # sqlite | postgresql | memory
    value: float | None  # None: the measurement was skipped (see note)
    unit: str
    n: int
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        return self.value is None


# --- timing -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timed(Generic[R]):
    """The outcome of :func:`time_each`: total wall time, each call's time (seconds) and each return value."""

    seconds: float
    durations: list[float]
    values: list[R]


def time_each(call: Callable[[T], R], items: Sequence[T]) -> Timed[R]:
    """Call ``call(item)`` for each item in order, timing every call and the whole run."""
    durations: list[float] = []
    values: list[R] = []
    start = time.perf_counter()
    for item in items:
        t0 = time.perf_counter()
        values.append(call(item))
        durations.append(time.perf_counter() - t0)
    return Timed(time.perf_counter() - start, durations, values)


def time_once(call: Callable[[], object]) -> float:
    """Seconds taken by one call."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def rate(count: int, seconds: float) -> float:
    """Operations per second; a zero duration (clock resolution) counts as one nanosecond."""
    return count / max(seconds, 1e-9)


def percentile(samples: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of a non-empty sample."""
    if not samples:
        raise ValueError("percentile of an empty sample")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float:
    ordered = sorted(samples)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# --- databases --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchDatabase:
    """A throwaway, empty database. ``url`` is for SQLAlchemy; the raw-driver forms are derived from it."""

    backend: str
    url: str

    @property
    def sqlite_path(self) -> str:
        return self.url.split(":///", 1)[1]

    @property
    def libpq_conninfo(self) -> str:
        """The URL without the SQLAlchemy driver suffix, as ``psycopg.connect`` takes it."""
        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)


def pg_database_name() -> str:
    return f"saferails_bench_{os.getpid()}"


def _with_database(admin_url: str, name: str) -> str:
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


@contextmanager
def bench_databases(args: BenchArgs) -> Iterator[list[BenchDatabase]]:
    """Fresh databases for ``args.backends`` (see the module docstring); callers dispose their engines first."""
    admin: sa.Engine | None = None
    name = pg_database_name()
    with tempfile.TemporaryDirectory(prefix="saferails-bench-") as tmp:
        databases: list[BenchDatabase] = []
        try:
            for backend in args.backends:
                if backend == "sqlite":
                    databases.append(BenchDatabase("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}"))
                elif backend == "postgresql":
                    admin = sa.create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
                    with admin.connect() as conn:
                        # A crashed earlier run with the same pid may have left it behind.
                        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
                    databases.append(BenchDatabase("postgresql", _with_database(args.pg_admin_url, name)))
                else:
                    raise ValueError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
            yield databases
        finally:
            if admin is not None:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.dispose()


def postgres_problem(admin_url: str) -> str | None:
    """None when PostgreSQL answers at ``admin_url``, else why not (one line)."""
    engine = sa.create_engine(admin_url, poolclass=sa.NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"; the reason is reported
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    finally:
        engine.dispose()


# --- machine info -----------------------------------------------------------------------------------------------
def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _postgres_info(admin_url: str) -> dict[str, str]:
    engine = sa.create_engine(admin_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return {
                setting: str(conn.exec_driver_sql(f"SHOW {setting}").scalar_one())
                for setting in ("server_version", "fsync", "synchronous_commit", "wal_sync_method")
            }
    finally:
        engine.dispose()


def machine_info(args: BenchArgs, pg_problem: str | None) -> dict[str, Any]:
    """Where the numbers were taken: cores, Python, SQLite and PostgreSQL versions, library versions, commit."""
    affinity = getattr(os, "sched_getaffinity", None)
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "usable_cores": len(affinity(0)) if affinity is not None else os.cpu_count(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": _version("sqlalchemy"),
        "psycopg": _version("psycopg"),
        "git_commit": _git_commit(),
    }
    if "postgresql" not in args.backends:
        info["postgresql"] = "not requested"
    elif pg_problem is not None:
        info["postgresql"] = f"unreachable: {pg_problem}"
    else:
        info["postgresql"] = _postgres_info(args.pg_admin_url)
    return info


def describe_machine(info: dict[str, Any]) -> str:
    pg = info["postgresql"]
    pg_text = f"PostgreSQL {pg['server_version']}" if isinstance(pg, dict) else f"PostgreSQL {pg}"
    return (
        f"{info['cores']} cores, {info['python']}, SQLite {info['sqlite']}, {pg_text}, "
        f"SQLAlchemy {info['sqlalchemy']}, psycopg {info['psycopg']}, commit {info['git_commit'] or '?'}"
    )


# --- output -----------------------------------------------------------------------------------------------------
def format_value(value: float | None) -> str:
    if value is None:
        return "skipped"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_table(results: Sequence[Result]) -> str:
    """A plain-text table, one row per result, values right-aligned."""
    header = ("area", "measurement", "backend", "value", "unit", "n", "notes")
    rows = [(r.area, r.name, r.backend, format_value(r.value), r.unit, f"{r.n:,}", r.note) for r in results]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    right = {3, 5}

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def write_json(
    results: Sequence[Result],
    *,
    machine: dict[str, Any],
    args: BenchArgs,
    areas: Sequence[str],
    started_at: datetime,
    seconds: float,
) -> Path:
    """Write one run to ``<results_dir>/<UTC start>_<areas>.json`` and return the path."""
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.results_dir / f"{stamp}_{'-'.join(areas)}.json"
    document = {
        "started_at": started_at.astimezone(UTC).isoformat(),
        "seconds": round(seconds, 3),
        "areas": list(areas),
        "args": {"quick": args.quick, "n": args.n, "backends": list(args.backends)},
        "machine": machine,
        "results": [asdict(r) for r in results],
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path
