"""Scale test of the production shape: ``make cluster-test`` (``python -m deployments.cluster_test --count 50``).

Starts a whole cluster (``deployments.cluster``) on throw-away databases, roles, port and directories, submits
``--count`` actions through the ``saferails-action/action`` deployment with a mix of four kinds (auto-executed,
approved, rejected, timed out; approvals and rejections through ``flows.api`` while the workers run), kills two
of the three workers with SIGKILL to their whole process group (the worker and every flow run it started: paused
ones and executing ones) and restarts them, restarts the Prefect server once, then lets the sweeps recover what
the killed workers held. It then checks, from the real effects rather than the store's word:

- every action is in exactly one final state, the one its kind calls for (``completed`` for auto and approved,
  ``rejected``, ``timed_out``); an action whose execution was interrupted may end ``failed`` by the recover
  rules (``recovered: execution interrupted``) but then its document must not exist;
- every ``create_document`` file exists exactly for the completed actions, with the content of that action;
- no action was executed twice (at most one ``executed``-kind audit record per action);
- the audit chain verifies (signed checkpoints included);
- every action's last flow run is in a final Prefect state (Completed, Failed, Cancelled or Crashed), never left
  Running, Paused or Scheduled.

It prints a report with the throughput (actions per minute, end to end) and where the time went, then removes
every process, database, role and directory it created. Exit status 0 only when every check passed.

``--throughput N`` measures instead (no kills): N auto-executed actions through the deployment with 1, then 2,
then 3 workers, then the same N through ``make serve``'s single process (``deployments.serve``: one runner serving
the deployments, against the same server and store), each phase's actions per minute end to end and where the
time went: submission (propose + Prefect run creation), pickup (proposal to the flow run attaching the action:
Prefect scheduling, worker polling, a new Python process per run, the runtime built), and our store (attached to
completed: the decide-and-execute task).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from deployments.cluster import Cluster, ClusterConfig, group_alive, prepare_store, processes_of
from saferails.settings import load_settings

KINDS = ("auto", "approve", "reject", "timeout")
EXPECTED = {"auto": "completed", "approve": "completed", "reject": "rejected", "timeout": "timed_out"}
APPROVER = "approver-1"
AGENT = "agent-1"
DEPLOYMENT = "saferails-action/action"
# A run in one of these states may still reach the gate; any other (Crashed, missing...) never will.
ALIVE = {"SCHEDULED", "PENDING", "RUNNING"}
GIVE_UP = 150.0
POLICY = """\
version: "cluster-test"
on_rate_limit_store_error: deny
impact: {default: low}
approval_defaults:
  approvers: {users: [approver-1], groups: []}
  min_approvals: 1
  timeout: 24h
  timeout_action: fail
  require_codes: false
  codes_waiver_reason: "scale test: the approver is a script with no mailbox"
rules:
  - id: gated-documents
    kind: requires_approval
    action_types: [create_document]
    when: {field: target, operator: contains, value: "gated"}
  - id: short-fuse
    kind: requires_approval
    action_types: [create_document]
    when: {field: target, operator: contains, value: "expires"}
    approval: {timeout: TIMEOUT}
"""


@dataclass
class Report:
    count: int
    workers: int
    started: float = field(default_factory=time.monotonic)
    submitted_at: float = 0.0
    settled_at: float = 0.0
    submit_seconds: list[float] = field(default_factory=list)
    pickup_seconds: list[float] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    states: Counter[str] = field(default_factory=Counter)
    run_states: Counter[str] = field(default_factory=Counter)
    sweeps: list[dict[str, Any]] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)

    def note(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:7.1f}s] {text}"
        self.events.append(line)
        print(line, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kind_of(i: int) -> str:
    return KINDS[i % len(KINDS)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="saferails cluster scale test")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kills", type=int, default=2, help="workers SIGKILLed (and restarted) during the run")
    parser.add_argument("--approval-timeout", type=int, default=40, help="seconds before 'expires' actions time out")
    parser.add_argument("--settle-timeout", type=float, default=1800)
    parser.add_argument("--no-server-restart", action="store_true")
    parser.add_argument("--keep", action="store_true", help="leave databases and files for inspection")
    parser.add_argument("--throughput", type=int, default=0, metavar="N",
                        help="measure N auto actions with 1, 2, 3 workers and through make serve (no kills)")
    ns = parser.parse_args(argv)
    if ns.throughput:
        ns.workers = 1

    tag = f"srct_{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix=f"{tag}-"))
    files = work / "files"
    files.mkdir()
    policy = work / "policy.yaml"
    policy.write_text(POLICY.replace("TIMEOUT", f"{ns.approval_timeout}s"))
    config = ClusterConfig(prefect_database=f"{tag}_prefect", store_database=f"{tag}_store",
                           owner_role=f"{tag}_owner", app_role=f"{tag}_app", port=free_port(), workers=ns.workers,
                           api_port=free_port(),
                           data_dir=work / "data")
    # Prefect reads its settings from the environment when first imported: point this process at the cluster
    # before anything imports it.
    os.environ.update(config.prefect_env())
    report = Report(ns.count, ns.workers)
    cluster: Cluster | None = None
    groups: list[int] = []
    try:
        settings = prepare_store(config, load_settings({"SAFERAILS_POLICY": str(policy),
                                                        "SAFERAILS_FILE_ROOT": str(files)}))
        cluster = Cluster(config, settings)
        cluster.start()
        groups += cluster.pids()
        report.note(f"cluster up: {config.ui_url}, {len(cluster.workers)} workers, store {config.store_database}")
        if ns.throughput:
            throughput(cluster, settings, ns.throughput, report, groups)
        else:
            run(cluster, settings, ns, report, groups)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the report is printed and everything removed
        report.failures.append(f"the test itself failed: {type(exc).__name__}: {exc}")
        import traceback

        traceback.print_exc()
    finally:
        if cluster is not None:
            groups += cluster.pids()
            cluster.stop()
        survivors = [g for g in set(groups) if group_alive(g)]
        if survivors:
            report.failures.append(f"process groups still alive after stop: {survivors}")
        time.sleep(1)  # killed processes are reaped by init
        left = processes_of(config.api_url)
        if left:
            report.failures.append(f"processes of the cluster still running after stop: {left}")
        if not ns.keep:
            cleanup(config, work)
    print_report(report)
    return 1 if report.failures else 0


def run(cluster: Cluster, settings: Any, ns: argparse.Namespace, report: Report, groups: list[int]) -> None:
    from blocks.settings import install_runtime
    from flows import api
    from saferails.actions.models import Proposal
    from saferails.api import open_store

    store = open_store(settings, upgrade=False)
    install_runtime(store)
    store.actions.upsert_principal(AGENT, groups=["agents"])
    store.actions.upsert_principal(APPROVER, groups=["approvers"])

    ids: dict[str, str] = {}
    kinds: dict[str, str] = {}
    runs: dict[str, str] = {}
    stop = threading.Event()
    decided: set[str] = set()
    approver = threading.Thread(target=approve_loop, args=(api, store, runs, kinds, decided, stop, report), daemon=True)
    approver.start()
    kill_at = sorted(random.Random(7).sample(range(ns.count // 5, max(ns.count // 5 + 1, 4 * ns.count // 5)),
                                             k=min(ns.kills, max(1, ns.count // 5))))
    restart_server_at = ns.count // 2 if not ns.no_server_restart else -1
    victims = list(cluster.workers)[: ns.kills]
    t0 = time.monotonic()
    for i in range(ns.count):
        kind = kind_of(i)
        label = {"auto": "auto", "approve": "gated", "reject": "gated", "timeout": "expires"}[kind]
        proposal = Proposal(action_type="create_document", target=f"{label}-{i:05d}",
                            params={"path": f"{i:05d}-{kind}.md", "content": f"action {i} ({kind})\n"},
                            proposer=AGENT, reason="cluster scale test", idempotency_key=f"ct-{i}")
        started = time.monotonic()
        sub = submit(api, proposal, report)
        report.submit_seconds.append(time.monotonic() - started)
        ids[sub.action.id] = kind
        runs[sub.action.id] = str(sub.flow_run_id)
        kinds[sub.action.id] = kind
        if i in kill_at and victims:
            name = victims.pop(0)
            report.note(f"SIGKILL {name} (process group) after {i + 1} submissions")
            cluster.kill_worker(name)
            time.sleep(3)
            groups.append(cluster.start_worker(name).pid)
            report.note(f"{name} restarted")
        if i == restart_server_at:
            restart_server(cluster, report, groups)
    try:
        report.submitted_at = time.monotonic() - t0
        report.note(f"{ns.count} actions submitted in {report.submitted_at:.1f}s")
        settle(api, store, ids, ns, report)
        report.settled_at = time.monotonic() - t0
        stop.set()
        approver.join(30)
        pickup(store, ids, report)
        verify(store, settings, ids, Path(str(settings.file_root)), report)
    finally:
        stop.set()
        approver.join(30)
        install_runtime(None)
        store.close()


def submit(api: Any, proposal: Any, report: Report, attempts: int = 5) -> Any:
    """``flows.api.submit_action`` through the deployment, retried on a server error or a dropped connection (a
    loaded or restarting server answers 500/503): safe, since the proposal's idempotency key gives the same action
    and the action id is the run's idempotency key, so a retry never makes a second action or run."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    for attempt in range(1, attempts + 1):
        try:
            return api.submit_action(proposal, deployment=DEPLOYMENT, poll_interval=2)
        except (PrefectHTTPStatusError, httpx.TransportError) as exc:
            if attempt == attempts or (isinstance(exc, PrefectHTTPStatusError)
                                       and exc.response.status_code < 500):
                raise
            report.note(f"submission of {proposal.target} failed ({type(exc).__name__}); retrying")
            time.sleep(2 * attempt)
    raise AssertionError("unreachable")


def restart_server(cluster: Cluster, report: Report, groups: list[int]) -> None:
    """Stop the server (SIGTERM, then SIGKILL to its group) and start it again on the same database."""
    report.note("restarting the Prefect server")
    assert cluster.server is not None
    from deployments.cluster import _stop

    _stop(cluster.server)
    cluster.start_server()
    assert cluster.server is not None
    groups.append(cluster.server.pid)
    report.note("Prefect server back")


def approve_loop(api: Any, store: Any, runs: dict[str, str], kinds: dict[str, str], decided: set[str],
                 stop: threading.Event, report: Report) -> None:
    """Decide every gated action through ``flows.api``: as an approver would, once its run is paused at the gate
    (the answer resumes the run); or, when its run died before pausing (killed worker) and ``GIVE_UP`` seconds
    have passed, directly (the recover sweep then re-runs an approved action whose run is gone)."""
    from saferails.actions.lifecycle import PENDING_APPROVAL
    from tasks.sweeps import prefect_run_probe

    first_seen: dict[str, float] = {}
    while not stop.is_set():
        todo = [a for a, k in list(kinds.items()) if k in ("approve", "reject") and a not in decided]
        for action_id in todo:
            try:
                view = store.actions.get(action_id)
            except Exception:  # noqa: BLE001 - a transient store error: ask again next pass
                continue
            if view.state != PENDING_APPROVAL:
                decided.add(action_id)
                continue
            run_id = view.flow_run_id or runs[action_id]
            try:
                state = prefect_run_probe(run_id)
            except Exception:  # noqa: BLE001 - the server is restarting: ask again next pass
                continue
            waited = time.monotonic() - first_seen.setdefault(action_id, time.monotonic())
            if state != "PAUSED" and (state in ALIVE or waited < GIVE_UP):
                continue
            decide = api.approve if kinds[action_id] == "approve" else api.reject
            try:
                decide(action_id, APPROVER, reason="scale test")
            except Exception as exc:  # noqa: BLE001 - a refused or racing decision is retried next pass
                report.note(f"decision on {action_id} not taken yet: {type(exc).__name__}: {exc}")
                continue
            if state != "PAUSED":
                report.note(f"decided {action_id} directly: its run is {state}")
            decided.add(action_id)
        stop.wait(1)


def settle(api: Any, store: Any, ids: dict[str, str], ns: argparse.Namespace, report: Report) -> None:
    """Wait until every action is final; meanwhile run the sweeps through their deployments, as the schedules
    would (sooner, and with a short lease: nothing in this test executes for more than a second)."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    from saferails.actions.lifecycle import FINAL_STATES

    deadline = time.monotonic() + ns.settle_timeout
    last_sweep = time.monotonic()
    while True:
        states = Counter(store.actions.get(a).state for a in ids)
        open_ = sum(n for s, n in states.items() if s not in FINAL_STATES)
        if open_ == 0:
            report.note(f"all {len(ids)} actions final")
            return
        if time.monotonic() > deadline:
            report.failures.append(f"{open_} actions not final after {ns.settle_timeout}s: {dict(states)}")
            return
        if time.monotonic() - last_sweep > 60:
            report.note(f"open: {open_} {dict(states)}; running the sweeps")
            for name, params in (("saferails-recover-actions/recover-actions", {"lease_minutes": 0.5}),
                                 ("saferails-expire-approvals/expire-approvals", {})):
                fr = cast(FlowRun, run_deployment(name, parameters=params, timeout=300))
                # Results are not persisted: the sweep's report is in its flow run's logs and artifacts.
                report.sweeps.append({"sweep": name, "state": fr.state.name if fr.state else None})
                report.note(f"  {name}: {fr.state.name if fr.state else None}")
            last_sweep = time.monotonic()
        time.sleep(5)


def pickup(store: Any, ids: dict[str, str], report: Report) -> None:
    """Per action: seconds from its proposal to its flow run attaching it (submit + Prefect + worker pickup)."""
    from saferails.store.tables import Action

    with store.sessions() as session:
        rows = session.execute(sa.select(Action.id, Action.created_at)).all()
        created = {r.id: r.created_at for r in rows}
    from saferails.store.tables import AuditRecord

    with store.sessions() as session:
        q = sa.select(AuditRecord.entity_id, sa.func.min(AuditRecord.occurred_at)).where(
            AuditRecord.event == "flow_run_attached").group_by(AuditRecord.entity_id)
        attached = dict(session.execute(q).tuples().all())
    for action_id in ids:
        if action_id in attached and action_id in created:
            report.pickup_seconds.append((attached[action_id] - created[action_id]).total_seconds())


def verify(store: Any, settings: Any, ids: dict[str, str], files: Path, report: Report) -> None:
    from prefect import get_client

    from saferails.actions.lifecycle import FINAL_STATES
    from saferails.audit.signing import AuditVerifierKey, public_key_path_for
    from saferails.audit.verify import verify_chain
    from saferails.store.tables import AuditRecord

    with store.sessions() as session:
        executed = Counter(session.execute(sa.select(AuditRecord.entity_id).where(
            AuditRecord.event == "executed")).scalars().all())
    final_run_types = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}
    with get_client(sync_client=True) as client:
        for action_id, kind in ids.items():
            view = store.actions.get(action_id)
            report.states[f"{kind}->{view.state}"] += 1
            if view.state not in FINAL_STATES:
                report.failures.append(f"{action_id} ({kind}) is not final: {view.state}")
                continue
            path = files / view.params["path"]
            interrupted = view.state == "failed" and "interrupted" in str(view.error)
            if view.state != EXPECTED[kind] and not interrupted:
                report.failures.append(f"{action_id} ({kind}) ended {view.state}, expected {EXPECTED[kind]}")
            if view.state == "completed":
                if not path.is_file() or path.read_text() != view.params["content"]:
                    report.failures.append(f"{action_id} completed but {path.name} is missing or wrong")
            elif path.exists():
                report.failures.append(f"{action_id} is {view.state} but {path.name} exists")
            if executed[action_id] > 1:
                report.failures.append(f"{action_id} executed {executed[action_id]} times")
            if view.flow_run_id is None:
                report.run_states["(none)"] += 1
                continue
            run = client.read_flow_run(uuid.UUID(view.flow_run_id))
            state = run.state.type.value if run.state else "NONE"
            report.run_states[state] += 1
            if state not in final_run_types:
                report.failures.append(f"{action_id} is {view.state} but its flow run is {state}")
    stray = {p.name for p in files.iterdir()} - {store.actions.get(a).params["path"] for a in ids}
    if stray:
        report.failures.append(f"files nobody asked for: {sorted(stray)[:5]}")
    # With the signing key's public half: every record must lie under a validly signed checkpoint.
    key = AuditVerifierKey.from_file(public_key_path_for(settings.audit_key_path))
    with store.sessions() as session:
        result = verify_chain(session, key=key, published=settings.audit_published_path)
    report.note(f"audit chain: {result}")
    if not getattr(result, "ok", False):
        report.failures.append(f"audit chain does not verify: {result}")


def throughput(cluster: Cluster, settings: Any, n: int, report: Report, groups: list[int]) -> None:
    """N auto actions per phase: 1, 2, 3 workers, then ``deployments.serve`` alone (workers stopped)."""
    from blocks.settings import install_runtime
    from flows import api
    from saferails.api import open_store

    store = open_store(settings, upgrade=False)
    install_runtime(store)
    store.actions.upsert_principal(AGENT, groups=["agents"])
    try:
        for workers in (1, 2, 3):
            while len(cluster.workers) < workers:
                groups.append(cluster.start_worker(f"worker-{len(cluster.workers) + 1}").pid)
            report.phases.append(_phase(f"cluster, {workers} worker(s)", api, store, n, report))
        for name in list(cluster.workers):
            cluster.stop_worker(name)
        serve = _start_serve(cluster, report)
        groups.append(serve.pid)
        try:
            report.phases.append(_phase("make serve (one process)", api, store, n, report))
        finally:
            from deployments.cluster import _stop

            _stop(serve)
    finally:
        install_runtime(None)
        store.close()


def _start_serve(cluster: Cluster, report: Report) -> Any:
    """``python -m deployments.serve`` against the cluster's server and store (its deployments replace the
    work-pool ones of the same name), started as ``make serve`` starts it; returns once it serves."""
    import subprocess

    env = cluster.worker_env() | {"SAFERAILS_METRICS_PORT": str(free_port()),
                                  "SAFERAILS_SERVE_PORT": str(cluster.config.port)}
    log = (cluster.logs / "serve.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "deployments.serve"], env=env, cwd=str(Path.cwd()), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while b"Serving:" not in (cluster.logs / "serve.log").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"deployments.serve did not start; see {cluster.logs / 'serve.log'}")
        time.sleep(1)
    time.sleep(5)  # the runner registers its deployments right after printing them
    report.note("make serve's runner is serving the deployments")
    return proc


def _phase(label: str, api: Any, store: Any, n: int, report: Report) -> dict[str, Any]:
    from saferails.actions.lifecycle import FINAL_STATES
    from saferails.actions.models import Proposal

    tag = uuid.uuid4().hex[:6]
    report.note(f"{label}: submitting {n} auto actions")
    ids: list[str] = []
    submits: list[float] = []
    t0 = time.monotonic()
    for i in range(n):
        proposal = Proposal(action_type="create_document", target=f"auto-{tag}-{i:04d}",
                            params={"path": f"tp-{tag}-{i:04d}.md", "content": f"{label} {i}\n"},
                            proposer=AGENT, reason="throughput", idempotency_key=f"tp-{tag}-{i}")
        started = time.monotonic()
        ids.append(submit(api, proposal, report).action.id)
        submits.append(time.monotonic() - started)
    while True:
        states = Counter(store.actions.get(a).state for a in ids)
        if sum(c for s, c in states.items() if s in FINAL_STATES) == n:
            break
        if time.monotonic() - t0 > 1800:
            report.failures.append(f"{label}: not final after 1800 s: {dict(states)}")
            break
        time.sleep(1)
    seconds = time.monotonic() - t0
    pickups, stores = _timings(store, ids)
    phase = {"label": label, "n": n, "seconds": seconds, "per_min": 60 * n / seconds, "states": dict(states),
             "submit_median": _pct(submits, 0.5), "pickup_median": _pct(pickups, 0.5),
             "pickup_p95": _pct(pickups, 0.95), "store_median": _pct(stores, 0.5)}
    report.note(f"{label}: {phase['per_min']:.1f} actions/min ({seconds:.0f} s), {dict(states)}")
    return phase


def _timings(store: Any, ids: list[str]) -> tuple[list[float], list[float]]:
    """Per action, from the store's own timestamps: proposal -> flow run attached, attached -> completed."""
    from saferails.store.tables import Action, AuditRecord

    with store.sessions() as session:
        rows = session.execute(sa.select(Action.id, Action.created_at).where(Action.id.in_(ids))).tuples().all()
        created = dict(rows)
        q = sa.select(AuditRecord.entity_id, AuditRecord.event, sa.func.min(AuditRecord.occurred_at)).where(
            AuditRecord.entity_id.in_(ids), AuditRecord.event.in_(["flow_run_attached", "executed"])).group_by(
            AuditRecord.entity_id, AuditRecord.event)
        seen: dict[tuple[str, str], Any] = {(e, ev): at for e, ev, at in session.execute(q).tuples().all()}
    pickups = [(seen[(a, "flow_run_attached")] - created[a]).total_seconds() for a in ids
               if (a, "flow_run_attached") in seen]
    stores = [(seen[(a, "executed")] - seen[(a, "flow_run_attached")]).total_seconds() for a in ids
              if (a, "executed") in seen and (a, "flow_run_attached") in seen]
    return pickups, stores


def cleanup(config: ClusterConfig, work: Path) -> None:
    """Drop the test's databases and roles and remove its directory."""
    admin = make_url(config.pg_admin_url).set(drivername="postgresql+psycopg")
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            for db in (config.prefect_database, config.store_database):
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            for role in (config.app_role, config.owner_role):
                conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
    finally:
        engine.dispose()
    shutil.rmtree(work, ignore_errors=True)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def print_report(report: Report) -> None:
    print("\n=== cluster scale test ===")
    print(f"actions: {report.count}, workers: {report.workers}")
    if report.settled_at:
        print(f"submitted in {report.submitted_at:.1f}s, all final after {report.settled_at:.1f}s: "
              f"{60 * report.count / report.settled_at:.0f} actions/min end to end")
    print(f"submit (propose + create the deployment run): median {_pct(report.submit_seconds, 0.5) * 1000:.0f} ms, "
          f"p95 {_pct(report.submit_seconds, 0.95) * 1000:.0f} ms")
    print(f"proposal -> flow run attached (Prefect scheduling + worker pickup + process start): median "
          f"{_pct(report.pickup_seconds, 0.5):.1f}s, p95 {_pct(report.pickup_seconds, 0.95):.1f}s")
    if report.phases:
        print(f"{'throughput phase':<28} {'actions/min':>11} {'submit':>8} {'pickup':>8} {'pickup95':>9} "
              f"{'store':>7}  (medians, seconds; N={report.phases[0]['n']} each)")
    for p in report.phases:
        print(f"{p['label']:<28} {p['per_min']:>11.1f} {p['submit_median']:>8.2f} {p['pickup_median']:>8.1f} "
              f"{p['pickup_p95']:>9.1f} {p['store_median']:>7.2f}  {p['states']}")
    print("final states by kind:", dict(sorted(report.states.items())))
    print("last flow run states:", dict(sorted(report.run_states.items())))
    for line in report.failures[:30]:
        print("FAIL:", line)
    print("RESULT:", "FAILED" if report.failures else "PASSED", f"({len(report.failures)} problems)")


if __name__ == "__main__":
    sys.exit(main())
