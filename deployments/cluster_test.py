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
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from deployments.cluster import (
    Cluster,
    ClusterConfig,
    Interrupted,
    group_alive,
    prepare_store,
    processes_of,
    stop_signals,
)
from saferails.settings import load_settings

KINDS = ("auto", "approve", "reject", "timeout")
EXPECTED = {"auto": "completed", "approve": "completed", "reject": "rejected", "timeout": "timed_out"}
APPROVER = "approver-1"
AGENT = "agent-1"
DEPLOYMENT = "saferails-action/action"
# A run in one of these states may still reach the gate; any other (Crashed, missing...) never will.
ALIVE = {"SCHEDULED", "PENDING", "RUNNING"}
GIVE_UP = 150.0
APPROVERS = 16  # decisions in flight at once
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
    stages: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by role (:func:`account_cpu`)

    def add_cpu(self, counts: dict[str, float]) -> None:
        for role, seconds in counts.items():
            self.cpu[role] = self.cpu.get(role, 0.0) + seconds

    def note(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:7.1f}s] {text}"
        self.events.append(line)
        print(line, flush=True)


def _cpu(pid: int) -> tuple[float, float]:
    """(own CPU seconds, CPU seconds of its children that have ended and been reaped) of live process ``pid``;
    zeros when it is gone. Linux ``/proc``."""
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and everything below it, live or ended (no process counted twice: a live child's
    time is not yet in its parent's reaped-children total)."""
    return sum(sum(_cpu(p)) for p in (pid, *_descendants(pid)))


def worker_cpu(pid: int) -> dict[str, float]:
    """A worker's CPU seconds: its own, and its flow runs' (every process below it, ended or live)."""
    own = _cpu(pid)[0]
    return {"workers": own, "flow runs": tree_cpu(pid) - own}


def account_cpu(cluster: Cluster, report: Report) -> None:
    """Add the CPU seconds the cluster's processes used, by role, to ``report.cpu`` (before they are stopped):
    the flow runs of a worker killed earlier were counted when it was killed, except those it had not reaped."""
    for name, proc in cluster.workers.items():
        counts = worker_cpu(proc.pid)
        if name == "housekeeping":
            counts = {f"housekeeping {k}": v for k, v in counts.items()}
        report.add_cpu(counts)
    for role, server in (("prefect server", cluster.server), ("prefect services", cluster.services),
                         ("saferails API", cluster.api)):
        if server is not None:
            report.add_cpu({role: tree_cpu(server.pid)})
    # Its own time only: its reaped children (killed workers, the first server) were counted above.
    times = os.times()
    report.cpu["this test (submitters, approver)"] = times.user + times.system


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
    parser.add_argument("--settle-timeout", type=float, default=3600)
    parser.add_argument("--no-server-restart", action="store_true")
    parser.add_argument("--keep", action="store_true", help="leave databases and files for inspection")
    parser.add_argument("--throughput", type=int, default=0, metavar="N",
                        help="measure N auto actions with 1, 2, 3 workers and through make serve (no kills)")
    parser.add_argument("--submitters", type=int, default=8, help="threads submitting actions concurrently")
    parser.add_argument("--worker-limit", type=int, default=20,
                        help="flow runs each worker runs at once (each is a Python process of ~150 MB; a paused "
                             "approval holds one until decided or timed out)")
    parser.add_argument("--server-workers", type=int, default=ClusterConfig().server_workers,
                        help="Prefect API processes (more than 1: Redis messaging and a services process)")
    parser.add_argument("--redis-url", default=None,
                        help="default: redis://127.0.0.1:6379/<a database 1-15 picked at random>, flushed after")
    ns = parser.parse_args(argv)
    if ns.throughput:
        ns.workers = 1

    tag = f"srct_{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix=f"{tag}-"))
    files = work / "files"
    files.mkdir()
    policy = work / "policy.yaml"
    policy.write_text(POLICY.replace("TIMEOUT", f"{ns.approval_timeout}s"))
    redis_url = ns.redis_url or f"redis://127.0.0.1:6379/{random.randint(1, 15)}"
    config = ClusterConfig(prefect_database=f"{tag}_prefect", store_database=f"{tag}_store",
                           owner_role=f"{tag}_owner", app_role=f"{tag}_app", port=free_port(), workers=ns.workers,
                           api_port=free_port(), server_workers=ns.server_workers, worker_limit=ns.worker_limit,
                           redis_url=redis_url,
                           data_dir=work / "data")
    # Prefect reads its settings from the environment when first imported: point this process at the cluster
    # before anything imports it.
    os.environ.update(config.prefect_env())
    report = Report(ns.count, ns.workers)
    cluster: Cluster | None = None
    groups: list[int] = []
    try:
        with stop_signals():
            try:
                settings = prepare_store(config, load_settings({"SAFERAILS_POLICY": str(policy),
                                                                "SAFERAILS_FILE_ROOT": str(files)}))
                cluster = Cluster(config, settings)
                cluster.start()
                groups += cluster.pids()
                report.note(f"cluster up: {config.ui_url}, {len(cluster.workers)} workers, "
                            f"{config.server_workers} API process(es), store {config.store_database}")
                if ns.throughput:
                    throughput(cluster, settings, ns, report, groups)
                else:
                    run(cluster, settings, ns, report, groups)
            except Interrupted as signum:
                report.failures.append(f"interrupted by {signum}")
                report.note(f"{signum}: stopping the cluster and removing what the test created")
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - the report is printed and everything removed
                report.failures.append(f"the test itself failed: {type(exc).__name__}: {exc}")
                import traceback

                traceback.print_exc()
    finally:
        if cluster is not None:
            groups += cluster.pids()
            account_cpu(cluster, report)
            cluster.stop()
        # Killed processes of a group may outlive its leader for a moment (until init reaps them): poll.
        deadline = time.monotonic() + 30
        while (survivors := [g for g in set(groups) if group_alive(g)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        if survivors:
            report.failures.append(f"process groups still alive after stop: {survivors}")
        while (left := processes_of(config.api_url)) and time.monotonic() < deadline:
            time.sleep(0.2)
        if left:
            report.failures.append(f"processes of the cluster still running after stop: {left}")
        if not ns.keep:
            cleanup(config, work, flush_redis=ns.redis_url is None and config.uses_redis)
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
    # (after how many submissions, what): the kills and the server restart happen while submissions go on.
    events: list[tuple[int, str]] = sorted([(k, "kill") for k in kill_at]
                                           + ([] if ns.no_server_restart else [(ns.count // 2, "restart")]))
    victims = cluster.action_workers[: ns.kills]

    def submit_one(i: int) -> None:
        kind = kind_of(i)
        label = {"auto": "auto", "approve": "gated", "reject": "gated", "timeout": "expires"}[kind]
        proposal = Proposal(action_type="create_document", target=f"{label}-{i:05d}",
                            params={"path": f"{i:05d}-{kind}.md", "content": f"action {i} ({kind})\n"},
                            proposer=AGENT, reason="cluster scale test", idempotency_key=f"ct-{i}")
        started = time.monotonic()
        sub = submit(api, proposal, report)
        report.submit_seconds.append(time.monotonic() - started)
        runs[sub.action.id] = str(sub.flow_run_id)
        ids[sub.action.id] = kind
        kinds[sub.action.id] = kind

    t0 = time.monotonic()
    pool = ThreadPoolExecutor(ns.submitters, thread_name_prefix="submit")
    try:
        pending = {pool.submit(submit_one, i) for i in range(ns.count)}
        while pending:
            done, pending = wait(pending, timeout=1, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()  # a submission that failed even after its retries fails the test
            submitted = ns.count - len(pending)
            while events and submitted > events[0][0]:
                _, what = events.pop(0)
                if what == "restart":
                    report.note(f"restarting the Prefect server after {submitted} submissions")
                    for role, proc in (("prefect server", cluster.server), ("prefect services", cluster.services)):
                        if proc is not None:
                            report.add_cpu({role: tree_cpu(proc.pid)})
                    cluster.restart_server()
                    groups.extend(p.pid for p in (cluster.server, cluster.services) if p is not None)
                    report.note("Prefect server back")
                elif victims:
                    name = victims.pop(0)
                    report.note(f"SIGKILL {name} (process group and its flow runs) after {submitted} submissions")
                    report.add_cpu(worker_cpu(cluster.workers[name].pid))
                    cluster.kill_worker(name)
                    groups.append(cluster.start_worker(name).pid)
                    report.note(f"{name} restarted")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    try:
        report.submitted_at = time.monotonic() - t0
        report.note(f"{ns.count} actions submitted in {report.submitted_at:.1f}s by {ns.submitters} threads")
        settle(api, store, ids, ns, report)
        report.settled_at = time.monotonic() - t0
        stop.set()
        approver.join(30)
        pickup(store, ids, report)
        report.stages = _stages(store, list(ids), runs)
        verify(store, settings, ids, Path(str(settings.file_root)), report)
    finally:
        stop.set()
        approver.join(30)
        install_runtime(None)
        store.close()


def submit(api: Any, proposal: Any, report: Report, patience: float = 300) -> Any:
    """``flows.api.submit_action`` through the deployment, retried for up to ``patience`` seconds on a server
    error or a dropped connection (a loaded or restarting server answers 500/503, or not at all): safe, since the
    proposal's idempotency key gives the same action and the action id is the run's idempotency key, so a retry
    never makes a second action or run."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    deadline = time.monotonic() + patience
    attempt = 0
    while True:
        attempt += 1
        try:
            return api.submit_action(proposal, deployment=DEPLOYMENT, poll_interval=2)
        except (PrefectHTTPStatusError, httpx.TransportError) as exc:
            if time.monotonic() > deadline or (isinstance(exc, PrefectHTTPStatusError)
                                               and exc.response.status_code < 500):
                raise
            if attempt == 1:
                report.note(f"submission of {proposal.target} failed ({type(exc).__name__}); retrying")
            time.sleep(min(2 * attempt, 10))


def approve_loop(api: Any, store: Any, runs: dict[str, str], kinds: dict[str, str], decided: set[str],
                 stop: threading.Event, report: Report) -> None:
    """Decide every gated action through ``flows.api``: as an approver would, once its run is paused at the gate
    (the answer resumes the run); or, when its run died before pausing (killed worker) and ``GIVE_UP`` seconds
    have passed, directly (the recover sweep then re-runs an approved action whose run is gone)."""
    first_seen: dict[str, float] = {}
    # Several approvers at once, as a team of people would: a decision through a paused run returns once the run
    # has recorded it (``flows.api._settled``), seconds on a loaded machine, so one approver deciding in turn
    # was the whole test's bottleneck (3 decisions a minute while 50 paused runs held the workers' slots).
    pool = ThreadPoolExecutor(APPROVERS, thread_name_prefix="approver")
    try:
        _approve_passes(api, store, runs, kinds, decided, stop, report, first_seen, pool)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _approve_passes(api: Any, store: Any, runs: dict[str, str], kinds: dict[str, str], decided: set[str],
                    stop: threading.Event, report: Report, first_seen: dict[str, float],
                    pool: ThreadPoolExecutor) -> None:
    from saferails.actions.lifecycle import PENDING_APPROVAL
    from tasks.sweeps import prefect_run_probe

    def decide_one(action_id: str, state: str | None) -> None:
        decide = api.approve if kinds[action_id] == "approve" else api.reject
        try:
            decide(action_id, APPROVER, reason="scale test")
        except Exception as exc:  # noqa: BLE001 - a refused or racing decision is retried next pass
            report.note(f"decision on {action_id} not taken yet: {type(exc).__name__}: {exc}")
            return
        if state != "PAUSED":
            report.note(f"decided {action_id} directly: its run is {state}")
        decided.add(action_id)

    while not stop.is_set():
        todo = [a for a, k in list(kinds.items()) if k in ("approve", "reject") and a not in decided]
        batch: list[Any] = []
        try:
            paused = paused_runs()  # one request a pass, not one per action: a loaded server answers slowly
            # One query a pass too: with a backlog of hundreds of gated actions, one read each per second was
            # most of this process's CPU (and it shares the cores with the cluster it measures).
            rows = action_rows(store, todo)
        except Exception:  # noqa: BLE001 - the server is restarting, or a transient store error: next pass
            stop.wait(1)
            continue
        for action_id in todo:
            if stop.is_set():
                return
            if action_id not in rows:
                continue
            current, flow_run_id = rows[action_id]
            if current != PENDING_APPROVAL:
                decided.add(action_id)
                continue
            run_id = flow_run_id or runs[action_id]
            waited = time.monotonic() - first_seen.setdefault(action_id, time.monotonic())
            state: str | None
            if run_id in paused:
                state = "PAUSED"
            elif waited < GIVE_UP:
                continue
            else:
                try:
                    state = prefect_run_probe(run_id)
                except Exception:  # noqa: BLE001 - the server is restarting: ask again next pass
                    continue
                if state in ALIVE or state == "PAUSED":
                    continue  # alive; a run paused since the pass began is decided next pass
            batch.append(pool.submit(decide_one, action_id, state))
        wait(batch)
        stop.wait(1)


def action_rows(store: Any, ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """``{action id: (state, flow run id)}`` for ``ids``, read in a few queries (chunks of 500) instead of one
    per action."""
    from saferails.store.tables import Action

    out: dict[str, tuple[str, str | None]] = {}
    with store.sessions() as session:
        for i in range(0, len(ids), 500):
            q = sa.select(Action.id, Action.state, Action.flow_run_id).where(Action.id.in_(ids[i:i + 500]))
            out.update({r.id: (r.state, r.flow_run_id) for r in session.execute(q)})
    return out


def paused_runs() -> set[str]:
    """Ids of the flow runs in a Paused state (at most 200, the API's page; more than the cluster's slots here)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    states = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
    with get_client(sync_client=True) as client:
        return {str(run.id) for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(state=states), limit=200)}


def settle(api: Any, store: Any, ids: dict[str, str], ns: argparse.Namespace, report: Report) -> None:
    """Wait until every action is final; meanwhile run the sweeps through their deployments, as the schedules
    would (sooner, and with a short lease: nothing in this test executes for more than a second)."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    from saferails.actions.lifecycle import FINAL_STATES

    deadline = time.monotonic() + ns.settle_timeout
    last_sweep = time.monotonic()
    while True:
        states = Counter(state for state, _ in action_rows(store, list(ids)).values())
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


def throughput(cluster: Cluster, settings: Any, ns: argparse.Namespace, report: Report, groups: list[int]) -> None:
    """N auto actions per phase: 1, 2, 3 workers, then ``deployments.serve`` alone (workers stopped)."""
    from blocks.settings import install_runtime
    from flows import api
    from saferails.api import open_store

    n = ns.throughput
    store = open_store(settings, upgrade=False)
    install_runtime(store)
    store.actions.upsert_principal(AGENT, groups=["agents"])
    try:
        for workers in (1, 2, 3):
            while len(cluster.action_workers) < workers:
                groups.append(cluster.start_worker(f"worker-{len(cluster.action_workers) + 1}").pid)
            report.phases.append(_phase(f"cluster, {workers} worker(s)", api, store, n, ns.submitters, report))
        for name in list(cluster.workers):
            cluster.stop_worker(name)
        groups.append(_start_serve(cluster, report).pid)
        report.phases.append(_phase("make serve (one process)", api, store, n, ns.submitters, report))
    finally:
        install_runtime(None)
        store.close()


def _start_serve(cluster: Cluster, report: Report) -> Any:
    """``python -m deployments.serve`` against the cluster's server and store, started as ``make serve`` starts it
    (its own HTTP API and metrics on free ports); returns once its runner has registered the action deployment.
    The work-pool deployments are deleted first: the runner's upsert of a deployment of the same name would keep
    the work-pool one's pull steps, and the runner would run them."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        for deployment in client.read_deployments():
            client.delete_deployment(deployment.id)
    env = cluster.worker_env() | {"SAFERAILS_METRICS_PORT": str(free_port()), "SAFERAILS_API_PORT": str(free_port()),
                                  "SAFERAILS_SERVE_PORT": str(cluster.config.port)}
    proc = cluster.start_other("serve", [sys.executable, "-m", "deployments.serve"], env)
    deadline = time.monotonic() + 300
    while not _served(DEPLOYMENT):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"deployments.serve did not start; see {cluster.logs / 'serve.log'}")
        time.sleep(1)
    report.note("make serve's runner is serving the deployments")
    return proc


def _served(name: str) -> bool:
    """True once deployment ``name`` exists outside any work pool (a runner registered it)."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(name).work_pool_name is None
        except ObjectNotFound:
            return False


def _phase(label: str, api: Any, store: Any, n: int, submitters: int, report: Report) -> dict[str, Any]:
    from saferails.actions.lifecycle import FINAL_STATES
    from saferails.actions.models import Proposal

    tag = uuid.uuid4().hex[:6]
    report.note(f"{label}: submitting {n} auto actions from {submitters} threads")
    submits: list[float] = []
    runs: dict[str, str] = {}

    def submit_one(i: int) -> str:
        proposal = Proposal(action_type="create_document", target=f"auto-{tag}-{i:04d}",
                            params={"path": f"tp-{tag}-{i:04d}.md", "content": f"{label} {i}\n"},
                            proposer=AGENT, reason="throughput", idempotency_key=f"tp-{tag}-{i}")
        started = time.monotonic()
        sub = submit(api, proposal, report)
        submits.append(time.monotonic() - started)
        runs[sub.action.id] = str(sub.flow_run_id)
        return str(sub.action.id)

    t0 = time.monotonic()
    with ThreadPoolExecutor(submitters, thread_name_prefix="submit") as pool:
        ids = list(pool.map(submit_one, range(n)))
    submitted = time.monotonic() - t0
    while True:
        states = Counter(state for state, _ in action_rows(store, ids).values())
        if sum(c for s, c in states.items() if s in FINAL_STATES) == n:
            break
        if time.monotonic() - t0 > 1800:
            report.failures.append(f"{label}: not final after 1800 s: {dict(states)}")
            break
        time.sleep(1)
    seconds = time.monotonic() - t0
    stages = _stages(store, ids, runs)
    phase = {"label": label, "n": n, "seconds": seconds, "per_min": 60 * n / seconds, "states": dict(states),
             "submitted": submitted, "create": _pct(submits, 0.5),
             **{k: _pct(v, 0.5) for k, v in stages.items()}}
    report.note(f"{label}: {phase['per_min']:.1f} actions/min ({seconds:.0f} s, all submitted after "
                f"{submitted:.0f} s), {dict(states)}")
    return phase


STAGES = ("queued", "start", "runtime", "store")
STAGE_HELP = {
    "create": "propose + create the deployment's flow run (one submission)",
    "queued": "run Scheduled -> Pending: waiting for a worker's poll and a free slot",
    "start": "Pending -> Running: a new Python process importing Prefect and the flow",
    "runtime": "Running -> action attached: our runtime built (block, store, migration check) and attach",
    "store": "attached -> executed: policy, decision and execution in our store",
}


def _stages(store: Any, ids: list[str], runs: dict[str, str]) -> dict[str, list[float]]:
    """Per action, seconds spent in each of :data:`STAGES`: Prefect's state history of its first flow run (when
    the worker claimed it, when its process started the flow) and the store's own timestamps (attached,
    executed). Only actions that went through every stage count."""
    from datetime import UTC, datetime

    from prefect import get_client

    from saferails.store.tables import AuditRecord

    def utc(at: datetime) -> datetime:
        return at if at.tzinfo else at.replace(tzinfo=UTC)

    with store.sessions() as session:
        q = sa.select(AuditRecord.entity_id, AuditRecord.event, sa.func.min(AuditRecord.occurred_at)).where(
            AuditRecord.entity_id.in_(ids), AuditRecord.event.in_(["flow_run_attached", "executed"])).group_by(
            AuditRecord.entity_id, AuditRecord.event)
        seen = {(e, ev): utc(at) for e, ev, at in session.execute(q).tuples().all()}
    out: dict[str, list[float]] = {k: [] for k in STAGES}
    with get_client(sync_client=True) as client:
        for action_id in ids:
            if (action_id, "executed") not in seen or (action_id, "flow_run_attached") not in seen:
                continue
            history = client.read_flow_run_states(uuid.UUID(runs[action_id]))
            first: dict[str, datetime] = {}
            for state in sorted(history, key=lambda st: st.timestamp):
                first.setdefault(state.type.value, utc(state.timestamp))
            if not {"SCHEDULED", "PENDING", "RUNNING"} <= first.keys():
                continue
            attached, executed = seen[(action_id, "flow_run_attached")], seen[(action_id, "executed")]
            out["queued"].append((first["PENDING"] - first["SCHEDULED"]).total_seconds())
            out["start"].append((first["RUNNING"] - first["PENDING"]).total_seconds())
            out["runtime"].append((attached - first["RUNNING"]).total_seconds())
            out["store"].append((executed - attached).total_seconds())
    return out


def cleanup(config: ClusterConfig, work: Path, *, flush_redis: bool = False) -> None:
    """Drop the test's databases and roles, remove its directory and (``flush_redis``) empty its Redis database."""
    if flush_redis:
        import redis

        client = redis.Redis.from_url(config.redis_url)
        try:
            client.flushdb()
        finally:
            client.close()
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
    if report.submit_seconds:
        print(f"create ({STAGE_HELP['create']}): median {_pct(report.submit_seconds, 0.5):.2f}s, "
              f"p95 {_pct(report.submit_seconds, 0.95):.2f}s")
        print(f"proposal -> flow run attached: median {_pct(report.pickup_seconds, 0.5):.1f}s, "
              f"p95 {_pct(report.pickup_seconds, 0.95):.1f}s")
    for stage, values in report.stages.items():
        print(f"{stage:>8} ({STAGE_HELP[stage]}): median {_pct(values, 0.5):.2f}s, p95 {_pct(values, 0.95):.2f}s"
              f" (n={len(values)})")
    if report.phases:
        print(f"\n{'throughput phase':<26} {'act/min':>7} {'submit':>7} {'create':>7} "
              + " ".join(f"{s:>7}" for s in STAGES) + f"  (seconds; stages are medians; N={report.phases[0]['n']})")
    for p in report.phases:
        print(f"{p['label']:<26} {p['per_min']:>7.1f} {p['submitted']:>7.1f} {p['create']:>7.2f} "
              + " ".join(f"{p.get(s, float('nan')):>7.2f}" for s in STAGES) + f"  {p['states']}")
    if report.phases:
        print("submit: seconds until all N were submitted; " + "; ".join(f"{k}: {v}" for k, v in STAGE_HELP.items()))
    if report.cpu:
        total = sum(report.cpu.values())
        print(f"CPU seconds (PostgreSQL and Redis not counted, nor flow runs that outlived a killed worker): "
              f"{total:.0f} in all, {total / report.count:.2f} per action; "
              + ", ".join(f"{k} {v:.0f}" for k, v in sorted(report.cpu.items(), key=lambda kv: -kv[1])))
    print("final states by kind:", dict(sorted(report.states.items())))
    print("last flow run states:", dict(sorted(report.run_states.items())))
    for line in report.failures[:30]:
        print("FAIL:", line)
    print("RESULT:", "FAILED" if report.failures else "PASSED", f"({len(report.failures)} problems)")


if __name__ == "__main__":
    sys.exit(main())
