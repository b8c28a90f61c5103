"""Concurrent writers on PostgreSQL (issue 15): do N writer PROCESSES proposing one action per transaction scale
with N, or queue behind the audit chain's head row?

For N in 1, 2, 4, 8: N processes (spawned, each with its own engine and ``ActionService``) propose ``per_writer``
LOW actions each, one per transaction, starting together at a barrier. Reported: proposals/s of all writers
together, the ratio to one writer, and the share of in-transaction time spent waiting for a lock: a sampler
polls ``pg_stat_activity`` every 10 ms for the writers' backends (``application_name``) and counts
samples in a transaction (``active`` or ``idle in transaction``) and, of those, samples waiting on a heavyweight
lock (``wait_event_type = 'Lock'``: the chain head's row lock is the only one writers of distinct actions share),
and where the rest went: ``client`` (idle in transaction: the writer's own Python between statements), ``cpu``
(running, no wait event) or the wait event type (``IO`` for WAL flushes, ``LWLock``, ``Client``...). Beside it:
how busy the machine's cores were (``/proc/stat``) and the CPU time each proposal cost its writer process and
that writer's PostgreSQL backend (``/proc/<pid>/stat``, when the server runs on this machine): when the cores are
full, this is what limits the writers, not the chain head.

The writers append their audit records unchained (``audit_sequencer``, ``saferails.audit.sequencer``): a
sequencer thread in this process chains them every ``SEQUENCE_INTERVAL`` seconds meanwhile (as the sweeps would,
more often), with a signer installed so each pass checks the records' MACs and signs its checkpoint (the
writers hold the same key, as they would in production: they MAC each record, one HMAC, and sign nothing); its
brief exclusive take of the writers' advisory lock shows up in the writers' lock-wait share. After each run the
chain is sequenced once more and verified with the public key (the note says so when it is not intact or
anything is left unchained).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bench.common import BenchDatabase, Result, rate

AREA = "foundation"
APP_NAME = "saferails-bench-writer"
WRITERS = (1, 2, 4, 8)
START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
SEQUENCE_INTERVAL = 0.2


@dataclass(frozen=True)
class Sampled:
    in_transaction: int
    # In-transaction samples by what the backend was doing: "client" (idle in transaction: the writer's Python
    # between statements), "cpu" (active, no wait event), or the wait event type (Lock, LWLock, IO, ...).
    doing: dict[str, int]

    @property
    def waiting(self) -> float:
        return self.doing.get("Lock", 0) / self.in_transaction if self.in_transaction else 0.0

    def shares(self) -> str:
        """``client 55%, cpu 30%, IO 10%, ...``: where the writers' in-transaction time went."""
        total = max(self.in_transaction, 1)
        return ", ".join(f"{what} {n / total:.0%}" for what, n in sorted(self.doing.items(), key=lambda x: -x[1]))


def _writer(url: str, key_file: str, index: int, count: int, barrier: Any, done: Any) -> None:
    from bench.foundation import PAYLOAD
    from saferails.actions.models import Proposal
    from saferails.actions.service import ActionService
    from saferails.audit.signing import AuditSigner
    from saferails.clock import ManualClock
    from saferails.policy import default_policy
    from saferails.store.db import create_engine, session_factory

    engine = create_engine(url)
    sessions = session_factory(engine, audit_signer=AuditSigner.load_or_create(key_file), audit_sequencer=True)
    service = ActionService(sessions, default_policy(),
                            ManualClock(START + timedelta(days=index)))

    def proposal(i: int) -> Proposal:
        path = f"docs/w{index}-{i}.md"
        return Proposal(action_type="create_document", target=path, params={"path": path, "content": PAYLOAD},
                        proposer=f"writer-{index}-{i // 150}", reason="benchmark")

    service.propose(proposal(-1))  # warm-up: connection, statement caches, the policy document
    with engine.connect() as conn:  # the pooled connection the proposals use
        backend = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
    barrier.wait()
    own, server = time.process_time(), _backend_cpu(backend)
    states = {service.propose(proposal(i)).state for i in range(count)}
    own, after = time.process_time() - own, _backend_cpu(backend)
    done.put((states, own, None if server is None or after is None else after - server))
    engine.dispose()


def _backend_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of the PostgreSQL backend ``pid``, or None when it is not on this machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _busy_ticks() -> tuple[int, int]:
    """(all, busy) CPU ticks of this machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values), sum(values) - values[3] - values[4]  # idle and iowait are not busy


def _sample(conninfo: str, database: str, stop: threading.Event, out: list[Sampled]) -> None:
    in_txn = 0
    doing: dict[str, int] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        while not stop.is_set():
            for state, wait_type in conn.execute(
                "SELECT state, wait_event_type FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                (database, APP_NAME),
            ).fetchall():
                if state in ("active", "idle in transaction"):
                    in_txn += 1
                    what = "client" if state == "idle in transaction" else wait_type or "cpu"
                    doing[what] = doing.get(what, 0) + 1
            # Not faster: at 2 ms the sampler and its backend took enough of a 2-core machine's CPU to hide the
            # writers' scaling (2 writers measured 1.28x one writer with it, 1.96x at 10 ms).
            time.sleep(0.01)
    out.append(Sampled(in_txn, doing))


def _sequence(sessions: Any, stop: threading.Event, passes: list[int]) -> None:
    from saferails.audit.sequencer import sequence_pending

    while not stop.wait(SEQUENCE_INTERVAL):
        passes.append(sequence_pending(sessions).chained)


def _verified(sessions: Any, signer: Any) -> str:
    """Sequence what is left, verify with the public key; "" when intact and fully chained."""
    from saferails.audit.sequencer import sequence_pending
    from saferails.audit.verify import verify_chain
    from saferails.store.db import read_transaction

    sequence_pending(sessions)
    with read_transaction(sessions) as session:
        report = verify_chain(session, key=signer.verifier)
    if report.ok and report.unchained_records == 0:
        return ""
    return f"CHAIN NOT INTACT ({report.problem}, {report.unchained_records} unchained); "


def measure(database: BenchDatabase, per_writer: int, counts: tuple[int, ...] = WRITERS) -> list[Result]:
    """One Result per writer count (PostgreSQL only). The writers get a database of their own beside
    ``database`` (created, migrated and dropped here): the earlier measurements append inline and unsigned, and the
    chain the writers leave is verified with the signing key's public half from its first record."""
    own = make_url(database.url).set(database=f"{make_url(database.url).database}_writers")
    admin = sa.create_engine(make_url(database.url).set(database="postgres"), isolation_level="AUTOCOMMIT",
                             poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{own.database}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{own.database}"')
    try:
        return _measure(BenchDatabase("postgresql", own.render_as_string(hide_password=False)), per_writer, counts)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{own.database}" WITH (FORCE)')
        admin.dispose()


def _measure(database: BenchDatabase, per_writer: int, counts: tuple[int, ...]) -> list[Result]:
    url = make_url(database.url).update_query_dict({"application_name": APP_NAME}).render_as_string(
        hide_password=False)
    name = str(make_url(database.url).database)
    context = multiprocessing.get_context("spawn")
    from saferails.audit.signing import AuditSigner
    from saferails.store.db import create_engine, migrate, session_factory

    key_file = str(Path(tempfile.mkdtemp(prefix="saferails-bench-key-")) / "audit.key")
    signer = AuditSigner.load_or_create(key_file)  # the writers load it too: their records carry its MAC
    engine = create_engine(database.url)
    migrate(engine)
    sessions = session_factory(engine, audit_signer=signer)
    results: list[Result] = []
    base: float | None = None
    for n in counts:
        barrier, done = context.Barrier(n + 1), context.Queue()
        procs = [context.Process(target=_writer,
                                 args=(url, key_file, 100 * len(results) + i, per_writer, barrier, done))
                 for i in range(n)]
        for proc in procs:
            proc.start()
        barrier.wait(timeout=300)
        stop, sampled = threading.Event(), cast(list[Sampled], [])
        sampler = threading.Thread(target=_sample, args=(database.libpq_conninfo, name, stop, sampled))
        passes: list[int] = []
        sequencer = threading.Thread(target=_sequence, args=(sessions, stop, passes))
        sampler.start()
        sequencer.start()
        start, ticks = time.perf_counter(), _busy_ticks()
        reports = [done.get(timeout=600) for _ in procs]
        seconds, ticks_after = time.perf_counter() - start, _busy_ticks()
        states = set().union(*(report[0] for report in reports))
        busy = (ticks_after[1] - ticks[1]) / max(ticks_after[0] - ticks[0], 1)
        writer_ms = sum(report[1] for report in reports) / (n * per_writer) * 1e3
        server = [report[2] for report in reports]
        server_ms = None if None in server else sum(cast(list[float], server)) / (n * per_writer) * 1e3
        stop.set()
        sampler.join()
        sequencer.join()
        for proc in procs:
            proc.join()
        chain = _verified(sessions, signer)
        per_second = rate(n * per_writer, seconds)
        base = base or per_second
        warning = chain + ("" if states == {"approved"} else f"UNEXPECTED states {sorted(states)}; ")
        results.append(Result(
            AREA, f"PostgreSQL, {n} writer process{'es' if n > 1 else ''}, 1 proposal per txn", "postgresql",
            per_second, "proposals/s", n * per_writer,
            note=f"{warning}{per_second / base:.2f}x one writer; {sampled[0].waiting:.1%} of in-transaction "
                 f"samples waiting on a lock ({sampled[0].in_transaction:,} samples: {sampled[0].shares()}); "
                 f"machine {busy:.0%} busy; CPU per proposal: writer {writer_ms:.2f} ms"
                 + ("" if server_ms is None else f", its PostgreSQL backend {server_ms:.2f} ms"),
            details={"writers": n, "ratio_to_one_writer": per_second / base, "lock_wait_share": sampled[0].waiting,
                     "samples_in_transaction": sampled[0].in_transaction, "seconds": seconds,
                     "in_transaction_by_activity": sampled[0].doing,
                     "sequencer_passes": len(passes), "chain_intact": not chain, "machine_busy": busy,
                     "writer_cpu_ms_per_proposal": writer_ms, "backend_cpu_ms_per_proposal": server_ms},
        ))
    engine.dispose()
    shutil.rmtree(Path(key_file).parent, ignore_errors=True)
    return results
