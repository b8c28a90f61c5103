"""The production shape on one machine: a Prefect server on PostgreSQL, a process work pool, several workers.

``make cluster`` (or ``python -m deployments.cluster`` from the project directory) does, in order:

1. creates the Prefect server's database and the saferails store's database on the local PostgreSQL if they are
   missing (``--pg-admin-url``, default ``postgresql://postgres@127.0.0.1:5432/postgres``);
2. runs ``saferails.store.roles.init_roles`` on the store database: an owner role migrates the schema, an
   application role (no DDL, append-only audit tables) is what every worker connects as;
3. starts the Prefect server on 127.0.0.1 with ``PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://...``:
   with ``--server-workers`` N > 1 (default 2) as Prefect's self-hosting guide runs it, ``prefect server start
   --workers N`` (N API processes, no background services) plus ONE ``prefect server services start`` process,
   all sharing messaging, cache, event ordering and concurrency leases through Redis (``prefect-redis``,
   ``--redis-url``); with ``--server-workers 1``, one ``prefect server start`` process with in-memory messaging
   and no Redis;
4. creates (or updates) the process work pools ``saferails`` (actions, runbooks, fleet controls) and
   ``saferails-housekeeping`` (sweeps, consumers), both starting flow runs with ``python -m prefect.engine``
   (:func:`process_pool_template`), and runs ``prefect --no-prompt deploy --all`` from ``prefect.yaml``;
5. starts ``--workers`` (3) ``prefect worker start --pool saferails`` processes and one ``--pool
   saferails-housekeeping`` worker (the sweeps and consumers), each in its own process group;
6. starts the saferails HTTP API (``saferails api serve``, ``--api-port`` 8000, 0 for none) as the application role;
7. prints the UI address and waits. Ctrl-C or SIGTERM stops the workers together (SIGTERM, then SIGKILL to the whole
   group after ``STOP_GRACE`` seconds; its flow runs are found through ``/proc`` and die with it) and the API, then
   the server and its services; a signal during start-up stops what was started so far.

Settings: the saferails part of every process's environment comes from the one settings model
(``saferails.settings.load_settings`` reads ``SAFERAILS_*`` here, once); :func:`store_env` writes it back as the
variables the workers' flow runs read, with ``SAFERAILS_DATABASE_URL`` replaced by the application role's URL.
The Prefect part (API URL, server database, analytics off) comes from :class:`ClusterConfig`. The workers'
flow runs build their runtime from those variables (``blocks.settings.current_runtime``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, cast

import httpx
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from saferails.settings import Settings, load_settings
from saferails.store.roles import init_roles

PROJECT_DIR = Path(__file__).resolve().parent.parent
POOL = "saferails"
# The sweeps and the long-lived consumers (prefect.yaml) run in a pool of their own, served by one worker, so a
# backlog of action runs (each holding an action worker's slot, a paused approval too) never delays them.
HOUSEKEEPING_POOL = "saferails-housekeeping"
HOUSEKEEPING_WORKER = "housekeeping"
HOUSEKEEPING_LIMIT = 8  # the two hour-long consumers, plus room for every sweep at once
STOP_GRACE = 20.0
HEARTBEAT_SECONDS = 30  # the smallest value Prefect accepts
ZOMBIE_AUTOMATION = "saferails-crash-zombie-flow-runs"
STUCK_PENDING_AUTOMATION = "saferails-crash-stuck-pending-flow-runs"
PENDING_SECONDS = 300  # generous: on a loaded machine a flow-run process can take a minute to start
SERVER_SETTLE_SECONDS = 20.0  # a multi-process server that stays up this long after answering is up
PREFETCH_SECONDS = 10  # how far ahead a worker claims scheduled runs (Prefect's default)
# The Redis-backed implementations Prefect's multi-process server needs (prefect/cli/_server_utils.py checks all four).
REDIS_SETTINGS = {
    "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
    "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
    "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
    "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
}


def _default_sigint() -> None:
    """In a child before exec: SIGINT handled by default (an ignored signal is inherited across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# The long-lived consumers of prefect.yaml (flow name/deployment name), run once when the cluster starts.
CONSUMER_DEPLOYMENTS = ("saferails-dispatch-outbox/dispatch-outbox", "saferails-relay-audit-events/relay")


@dataclass(frozen=True)
class ClusterConfig:
    """Everything about the cluster that is not a saferails setting. Every address is on 127.0.0.1."""

    pg_admin_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    prefect_database: str = "saferails_prefect"
    store_database: str = "saferails_store"
    owner_role: str = "saferails_owner"
    app_role: str = "saferails_app"
    host: str = "127.0.0.1"
    port: int = 4200
    workers: int = 3
    worker_limit: int = 50
    housekeeping_limit: int = HOUSEKEEPING_LIMIT  # slots of the housekeeping pool's worker
    worker_poll_seconds: float = 1.0  # PREFECT_WORKER_QUERY_SECONDS (Prefect's default: 10)
    server_workers: int = 2  # API processes; more than one needs Redis
    redis_url: str = "redis://127.0.0.1:6379/0"
    api_port: int = 8000  # the saferails HTTP API; 0: not started
    start_consumers: bool = True  # one run of the relay and dispatch-outbox deployments at start-up
    data_dir: Path = field(default_factory=lambda: PROJECT_DIR / ".saferails" / "cluster")

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def database_url(self, database: str, *, driver: str = "postgresql") -> str:
        url = make_url(self.pg_admin_url).set(drivername=driver, database=database)
        return url.render_as_string(hide_password=False)

    @property
    def prefect_database_url(self) -> str:
        return self.database_url(self.prefect_database, driver="postgresql+asyncpg")

    def prefect_env(self) -> dict[str, str]:
        """What every Prefect process (server, CLI, workers, flow runs) of this cluster reads."""
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.data_dir / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_UI_API_URL": self.api_url,
            # Heartbeats let the server notice a flow run whose process died (ZOMBIE_AUTOMATION).
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
        }

    @property
    def uses_redis(self) -> bool:
        return self.server_workers > 1

    def server_env(self) -> dict[str, str]:
        """The server's API processes and its services process: the same database, and Redis when several."""
        env = self.prefect_env() | {"PREFECT_SERVER_DATABASE_CONNECTION_URL": self.prefect_database_url}
        if self.uses_redis:
            env |= REDIS_SETTINGS | {"PREFECT_REDIS_MESSAGING_URL": self.redis_url}
        return env

    def worker_prefect_env(self) -> dict[str, str]:
        """What workers (and the flow runs they start) read on top of :meth:`prefect_env`."""
        return self.prefect_env() | {"PREFECT_WORKER_QUERY_SECONDS": str(self.worker_poll_seconds)}


def process_pool_template() -> dict[str, Any]:
    """Prefect's process work-pool template with the flow-run command set to ``<this interpreter> -m
    prefect.engine``. With no command, Prefect 3.8's process worker starts each flow run through a workspace
    supervisor (``prefect.runner._workspace_supervisor``: a second Python process per run that imports Prefect,
    runs the deployment's pull steps and then starts the engine, about 2-3 s of CPU per run here); with a
    command it starts the engine directly, which runs the pull steps itself. The deployments here have no
    dependencies to install and no run hooks, which is all the supervisor adds."""
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    template["variables"]["properties"]["command"]["default"] = f"{sys.executable} -m prefect.engine"
    return template


def store_env(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``SAFERAILS_*`` variables ``load_settings`` reads back (unset fields are omitted)."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None or value == []:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, list):
            value = ",".join(value)
        if isinstance(value, bool):
            value = "true" if value else "false"
        env[f"SAFERAILS_{'POLICY' if name == 'policy_path' else name.upper()}"] = str(value)
    return env


def ensure_database(admin_url: str, database: str) -> bool:
    """Create ``database`` if it does not exist; True when it was created."""
    engine = sa.create_engine(make_url(admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT",
                              poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            if conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database}).first():
                return False
            conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
            return True
    finally:
        engine.dispose()


def prepare_store(config: ClusterConfig, settings: Settings) -> Settings:
    """Create the store database and its roles (schema migrated by the owner); ``settings`` pointing at it as the
    application role, with the data directory under the cluster's."""
    ensure_database(config.pg_admin_url, config.store_database)
    admin = config.database_url(config.store_database, driver="postgresql+psycopg")
    urls = init_roles(admin, owner=config.owner_role, app=config.app_role)
    return settings.with_changes(database_url=urls.app_url, data_dir=config.data_dir)


def ensure_zombie_automation(config: ClusterConfig, missing_for: int = 3 * HEARTBEAT_SECONDS,
                             pending_for: int = PENDING_SECONDS) -> None:
    """Prefect's documented zombie detection, twice: a flow run that sent a heartbeat and then neither another
    one nor a final state for ``missing_for`` seconds is marked Crashed; so is a run that went Pending (a worker
    claimed it) and neither started nor ended within ``pending_for`` seconds (its worker died while submitting
    it: it never sends a heartbeat). Without them such runs stay Running, Paused or Pending for ever and the
    recover sweep's probe takes them for alive."""
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    final = {"prefect.flow-run.Completed", "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
             "prefect.flow-run.Crashed"}
    rules = (
        (ZOMBIE_AUTOMATION, "prefect.flow-run.heartbeat", {"prefect.flow-run.heartbeat", *final}, missing_for,
         "no heartbeat: the worker is gone"),
        (STUCK_PENDING_AUTOMATION, "prefect.flow-run.Pending", {"prefect.flow-run.Running", *final}, pending_for,
         "never started: the worker died while submitting it"),
    )
    with temporary_settings({PREFECT_API_URL: config.api_url}):
        for name, after, expect, seconds, message in rules:
            try:
                if cast(Automation, Automation.read(name=name)) is not None:
                    continue
            except (ValueError, ObjectNotFound):
                pass
            automation = Automation(
                name=name,
                trigger=EventTrigger(after={after}, expect=expect,
                                     match={"prefect.resource.id": ["prefect.flow-run.*"]},
                                     for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
                                     within=timedelta(seconds=seconds)),
                actions=[ChangeFlowRunState(state=StateType.CRASHED, message=message)],
            )
            # Automation.create is typed sync-or-async; called outside an event loop it returns the automation.
            created = cast(Automation, automation.create())
            print(f"automation {created.name}: {message} after {seconds} s -> Crashed", flush=True)


def _healthy(url: str, path: str = "/health") -> bool:
    try:
        return httpx.get(f"{url}{path}", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Cluster:
    """The running processes; :meth:`stop` leaves none behind (each is the leader of its own process group, and
    the flow runs the workers started are found through ``/proc``)."""

    def __init__(self, config: ClusterConfig, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.server: subprocess.Popen[bytes] | None = None
        self.services: subprocess.Popen[bytes] | None = None
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.others: dict[str, subprocess.Popen[bytes]] = {}  # started by callers through :meth:`spawn`
        self.logs = config.data_dir / "logs"

    # --- environments -----------------------------------------------------------------------------------------
    def worker_env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SAFERAILS_", "PREFECT_"))}
        return base | store_env(self.settings) | self.config.worker_prefect_env()

    def cli_env(self) -> dict[str, str]:
        return self.worker_env()

    def server_env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | self.config.server_env()

    # --- start ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        print(f"starting the Prefect server on {self.config.ui_url} (database {self.config.prefect_database}; "
              f"output in {self.logs})", flush=True)
        self.start_server()
        print(f"registering prefect.yaml's deployments in work pools {POOL} and {HOUSEKEEPING_POOL} "
              "(prefect deploy --all)", flush=True)
        template = self.logs / "process-pool.json"
        template.write_text(json.dumps(process_pool_template()))
        for pool in (POOL, HOUSEKEEPING_POOL):
            # --overwrite: a pool made by an earlier version (or by hand) gets the engine command too.
            self.prefect("work-pool", "create", "--type", "process", "--base-job-template", str(template),
                         "--overwrite", pool)
        self.prefect("--no-prompt", "deploy", "--all")
        ensure_zombie_automation(self.config)
        print(f"starting {self.config.workers} workers and the housekeeping worker", flush=True)
        for i in range(1, self.config.workers + 1):
            self.start_worker(f"worker-{i}")
        self.start_worker(HOUSEKEEPING_WORKER)
        if self.config.start_consumers:
            # The consumers' schedules are hourly (each run lasts the hour): without a run now nothing would
            # dispatch or relay during the cluster's first hour (as ``make serve``'s start_consumers).
            for deployment in CONSUMER_DEPLOYMENTS:
                self.prefect("deployment", "run", deployment, check=False)
        if self.config.api_port:
            self.start_api()

    def spawn(self, log: str, argv: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        """Start ``argv`` in a process group (and session) of its own, output appended to ``logs/<log>.log``."""
        with (self.logs / f"{log}.log").open("ab") as out:
            # SIGINT back to its default: a shell starting ``make cluster &`` ignores it for its children, and a
            # Prefect worker stops by sending itself SIGINT (it would then wait out the grace period).
            return subprocess.Popen(argv, env=dict(env), cwd=PROJECT_DIR, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=_default_sigint)

    def start_other(self, name: str, argv: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        """A process of the caller's (a comparison runner, say) that :meth:`stop` stops with the rest."""
        self.others[name] = proc = self.spawn(name, argv, env)
        return proc

    def start_api(self) -> None:
        """``saferails api serve`` on the store, as the application role (submitting and deciding from outside)."""
        url = f"http://{self.config.host}:{self.config.api_port}"
        if _healthy(url):
            raise SystemExit(f"something already answers on {url}; stop it or pick --api-port")
        self.api = self.spawn("api", [sys.executable, "-m", "saferails.cli", "api", "serve", "--host",
                                      self.config.host, "--port", str(self.config.api_port)], self.worker_env())
        _await(lambda: _healthy(url, "/health/live"), self.api, 120, f"the HTTP API (see {self.logs / 'api.log'})")

    def start_server(self) -> None:
        """The API process(es) and, when they are several, the services process; returns once healthy."""
        if _healthy(self.config.api_url):
            raise SystemExit(f"something already answers on {self.config.ui_url}; stop it or pick --port")
        ensure_database(self.config.pg_admin_url, self.config.prefect_database)
        if self.config.uses_redis:
            # Migrated once beforehand: the API processes would otherwise all migrate a fresh database at once.
            self.prefect("server", "database", "upgrade", "-y", env=self.server_env())
        argv = [sys.executable, "-m", "prefect", "server", "start", "--host", self.config.host,
                "--port", str(self.config.port)]
        if self.config.uses_redis:
            # --workers > 1 runs the API processes without the background services (scheduler, automations,
            # zombie detection...): they run once, in a process of their own, as the self-hosting guide does.
            argv += ["--workers", str(self.config.server_workers)]
        for attempt in range(1, 4):
            self.server = self.spawn("server", argv, self.server_env())
            try:
                _await(lambda: _healthy(self.config.api_url), self.server, 240,
                       f"prefect server (see {self.logs / 'server.log'})")
            except SystemExit:
                if self.server.poll() is None or attempt == 3 or not self.config.uses_redis:
                    raise
            # On a fresh database every API process registers Prefect's block types at start-up and all but
            # one may die on the unique key (uvicorn then stops them all) after the first answered: watch for that.
            settled = time.monotonic() + (SERVER_SETTLE_SECONDS if self.config.uses_redis else 0)
            while self.server.poll() is None and time.monotonic() < settled:
                time.sleep(0.5)
            if self.server.poll() is None:
                break
            print(f"prefect server exited during start-up ({self.server.returncode}); starting it again "
                  f"(attempt {attempt + 1})", flush=True)
            _stop(self.server)
        else:
            raise SystemExit(f"prefect server kept exiting during start-up; see {self.logs / 'server.log'}")
        if self.config.uses_redis:
            self.services = self.spawn("services", [sys.executable, "-m", "prefect", "server", "services", "start"],
                                       self.server_env())

    def restart_server(self) -> None:
        """Stop the server's processes (SIGTERM, then SIGKILL to their groups) and start them on the same database."""
        _stop_all([p for p in (self.services, self.server) if p is not None])
        self.server = self.services = None
        self.start_server()

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        """Worker ``name``: :data:`HOUSEKEEPING_WORKER` serves the housekeeping pool, any other name the action
        pool."""
        pool, limit = ((HOUSEKEEPING_POOL, self.config.housekeeping_limit) if name == HOUSEKEEPING_WORKER
                       else (POOL, self.config.worker_limit))
        self.workers[name] = proc = self.spawn(name, [
            sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process", "--name", name,
            "--limit", str(limit), "--prefetch-seconds", str(PREFETCH_SECONDS)],
            self.worker_env())
        return proc

    @property
    def action_workers(self) -> list[str]:
        """The names of the running workers of the action pool (every worker but the housekeeping one)."""
        return [name for name in self.workers if name != HOUSEKEEPING_WORKER]

    def prefect(self, *args: str, check: bool = True, env: Mapping[str, str] | None = None) -> bool:
        """Run one ``prefect`` CLI command against this cluster's server; its output goes to ``cli.log``. The
        command runs in a session of its own, so :meth:`stop` finds it like any other process."""
        with (self.logs / "cli.log").open("ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "prefect", *args], env=dict(env or self.cli_env()),
                                    cwd=PROJECT_DIR,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            self.others["cli"] = proc
            rc = proc.wait(timeout=600)
            self.others.pop("cli", None)
        if check and rc != 0:
            raise SystemExit(f"prefect {' '.join(args)} failed ({rc}); see {self.logs / 'cli.log'}")
        return rc == 0

    # --- stop -------------------------------------------------------------------------------------------------
    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker and every flow run it started (a lost machine). Prefect may start a flow-run process
        in a session of its own (it does without a pool command: the workspace supervisor), so the worker's
        process group alone could leave them running: the worker's group
        is frozen (SIGSTOP: it starts nothing more), its descendants are found through ``/proc``, then every
        group is killed."""
        proc = self.workers.pop(name)
        _signal_group(proc, signal.SIGSTOP)
        groups = {proc.pid, *_descendant_groups(proc.pid)}
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        proc.wait()

    def stop_worker(self, name: str) -> None:
        _stop(self.workers.pop(name))

    def stop(self) -> None:
        """Workers, the API and the caller's processes first, all at once (their runs report to the server while
        it is up), then the server and its services. Idempotent."""
        _stop_all([*self.workers.values(), *([self.api] if self.api else []), *self.others.values()])
        self.workers.clear()
        self.others.clear()
        self.api = None
        _stop_all([p for p in (self.services, self.server) if p is not None])
        self.server = self.services = None

    def pids(self) -> list[int]:
        procs = [*self.workers.values(), *self.others.values(),
                 *(p for p in (self.server, self.services, self.api) if p is not None)]
        return [p.pid for p in procs]


def _await(ready: Callable[[], bool], proc: subprocess.Popen[bytes], seconds: float, what: str) -> None:
    """Poll ``ready`` until true; ``SystemExit`` if ``proc`` exits first or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while not ready():
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited ({proc.returncode})")
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not ready after {seconds:.0f} s")
        time.sleep(0.5)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the group, SIGKILL to the group after ``STOP_GRACE`` s; the group is gone either way."""
    _stop_all([proc])


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """:func:`_stop` for several groups at once: one grace period in all, not one each. The flow runs a worker
    started may live in sessions of their own (Prefect isolates them when its workspace supervisor starts them):
    they are found before the worker exits (once it has, they belong to init) and get the same signals."""
    groups = {pgid for proc in procs for pgid in (proc.pid, *_descendant_groups(proc.pid))}
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    # Children (flow-run subprocesses, uvicorn) may outlive their leader: every group gets SIGKILL regardless.
    groups |= {pgid for proc in procs for pgid in _descendant_groups(proc.pid)}
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for proc in procs:
        proc.wait()


def _descendant_groups(pid: int) -> set[int]:
    """The process groups of every live descendant of ``pid`` (read from ``/proc``; Linux)."""
    children: dict[int, list[int]] = {}
    groups: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Fields after the command name (which may contain spaces) start after the last ")".
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        groups[int(entry.name)] = int(fields[2])
    found: set[int] = set()
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        if child in groups:
            found.add(groups[child])
        todo.extend(children.get(child, []))
    return found


def processes_of(api_url: str) -> list[int]:
    """Live processes (not zombies) whose environment points at ``api_url``: anything of a cluster still running,
    flow runs in their own sessions included. Linux ``/proc``; processes of other users are not readable."""
    needle = f"PREFECT_API_URL={api_url}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found


def group_alive(pgid: int) -> bool:
    """True while any process of group ``pgid`` exists that is not a zombie (a killed process not yet reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def parse_args(argv: list[str] | None = None) -> ClusterConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    defaults = ClusterConfig()
    parser.add_argument("--pg-admin-url", default=defaults.pg_admin_url,
                        help="a PostgreSQL superuser's URL; creates the databases and roles (%(default)s)")
    parser.add_argument("--prefect-database", default=defaults.prefect_database,
                        help="the Prefect server's database (%(default)s)")
    parser.add_argument("--store-database", default=defaults.store_database,
                        help="the saferails store's database (%(default)s)")
    parser.add_argument("--owner-role", default=defaults.owner_role,
                        help="the store's owner role, migrates the schema (%(default)s)")
    parser.add_argument("--app-role", default=defaults.app_role,
                        help="the role the workers and the HTTP API connect as (%(default)s)")
    parser.add_argument("--port", type=int, default=defaults.port, help="the Prefect server and UI (%(default)s)")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="worker processes (%(default)s)")
    parser.add_argument("--worker-limit", type=int, default=defaults.worker_limit,
                        help="flow runs per worker at once; a paused approval holds one (%(default)s)")
    parser.add_argument("--worker-poll", type=float, default=defaults.worker_poll_seconds,
                        help="seconds between a worker's polls for runs (PREFECT_WORKER_QUERY_SECONDS, %(default)s)")
    parser.add_argument("--server-workers", type=int, default=defaults.server_workers,
                        help="Prefect API processes; more than 1 uses Redis (--redis-url) and a services process "
                        "(%(default)s)")
    parser.add_argument("--redis-url", default=defaults.redis_url,
                        help="Redis for Prefect's messaging with several API processes (%(default)s)")
    parser.add_argument("--api-port", type=int, default=defaults.api_port,
                        help="the saferails HTTP API; 0: none (%(default)s)")
    parser.add_argument("--data-dir", type=Path, default=defaults.data_dir,
                        help="keys, approval inboxes, Prefect home and logs (.saferails/cluster)")
    ns = parser.parse_args(argv)
    return ClusterConfig(pg_admin_url=ns.pg_admin_url, prefect_database=ns.prefect_database,
                         store_database=ns.store_database, owner_role=ns.owner_role, app_role=ns.app_role,
                         port=ns.port, workers=ns.workers, api_port=ns.api_port, worker_limit=ns.worker_limit,
                         worker_poll_seconds=ns.worker_poll, server_workers=ns.server_workers,
                         redis_url=ns.redis_url, data_dir=ns.data_dir.resolve())


class Interrupted(Exception):
    """SIGTERM or SIGINT arrived: unwind to the ``finally`` that stops the cluster."""


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`Interrupted` in the main thread inside the block (so a signal during
    start-up unwinds to the caller's cleanup like one later); leaving the block ignores both, so a second Ctrl-C
    cannot interrupt that cleanup. Process groups of their own do not see the terminal's Ctrl-C: only we stop them."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)


def run(cluster: Cluster) -> None:
    """Start ``cluster``, print where it is, restart a worker that exits, and stop everything on SIGTERM/Ctrl-C
    (also during start-up); returns once nothing is left running."""
    config = cluster.config
    try:
        with stop_signals():
            try:
                cluster.start()
                print(f"Prefect UI: {config.ui_url}", flush=True)
                print(f"Workers: {', '.join(cluster.action_workers)} (pool {POOL}), {HOUSEKEEPING_WORKER} "
                      f"(pool {HOUSEKEEPING_POOL}); logs in {cluster.logs}", flush=True)
                if cluster.api is not None:
                    print(f"HTTP API: http://{config.host}:{config.api_port}/api/v1 (saferails api serve)",
                          flush=True)
                print(f"Store: {config.store_database} as role {config.app_role}; Ctrl-C stops everything",
                      flush=True)
                store_url = make_url(cluster.settings.database_url).render_as_string(hide_password=True)
                links = (f" SAFERAILS_PUBLIC_URL='http://{config.host}:{config.api_port}'"
                         if cluster.api is not None else "")
                print(f"To propose and approve from another shell (README, Production):\n  export "
                      f"SAFERAILS_DATABASE_URL='{store_url}' SAFERAILS_DATA_DIR='{config.data_dir}' "
                      f"PREFECT_API_URL='{config.api_url}'{links}", flush=True)
                while True:
                    for name, proc in list(cluster.workers.items()):
                        if proc.poll() is not None:
                            print(f"{name} exited ({proc.returncode}); restarting it", flush=True)
                            cluster.start_worker(name)
                    time.sleep(2)
            except Interrupted as signum:
                print(f"{signum}: stopping", flush=True)
    finally:
        cluster.stop()
        print("stopped", flush=True)


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> None:
    config = parse_args(argv)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    print(f"preparing the store: database {config.store_database}, roles {config.owner_role} (schema) and "
          f"{config.app_role}", flush=True)
    with stop_signals():
        try:
            settings = prepare_store(config, load_settings(env))
        except Interrupted:
            return
    run(Cluster(config, settings))


if __name__ == "__main__":
    main()
