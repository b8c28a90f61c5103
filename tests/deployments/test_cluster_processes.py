"""Stopping or killing a cluster process leaves none of its descendants behind, also those in sessions of their
own (Prefect starts every flow-run process that way)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from deployments.cluster import Cluster, ClusterConfig, _descendant_groups, _stop_all, processes_of
from saferails.settings import Settings
from tests.support import eventually

# A "worker" that starts a "flow run" in a new session (as Prefect does), writes its pid, and waits.
WORKER = """
import subprocess, sys, time
run = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
open(sys.argv[1], "w").write(str(run.pid))
time.sleep(600)
"""


def _start(tmp_path: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], int]:
    pid_file = tmp_path / "run.pid"
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(pid_file)], start_new_session=True,
                            env=env)
    eventually(lambda: pid_file.exists() and pid_file.read_text())
    return proc, int(pid_file.read_text())


def _gone(pid: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        return state == "Z"  # killed, waiting to be reaped by init

    return check


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc")
def test_stopping_a_worker_also_stops_the_flow_runs_it_started_in_their_own_sessions(tmp_path: Path) -> None:
    proc, run = _start(tmp_path)
    assert os.getpgid(run) != proc.pid and os.getpgid(run) in _descendant_groups(proc.pid)
    _stop_all([proc])
    eventually(_gone(run))


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc")
def test_a_killed_worker_takes_its_flow_runs_with_it_and_nothing_of_the_cluster_is_left(tmp_path: Path) -> None:
    config = ClusterConfig(port=1, data_dir=tmp_path)
    proc, run = _start(tmp_path, env=dict(os.environ) | {"PREFECT_API_URL": config.api_url})
    assert run in processes_of(config.api_url)
    cluster = Cluster(config, Settings())
    cluster.workers["worker-1"] = proc
    cluster.kill_worker("worker-1")
    assert proc.returncode == -signal.SIGKILL
    eventually(_gone(run))
    eventually(lambda: not processes_of(config.api_url))


# A cluster whose processes are stand-ins: a "server" that sleeps and two "workers" that each start a "flow run" in
# a session of its own. ``run`` supervises them exactly as it supervises the real ones. With ``hang`` its start-up
# blocks after the server and the workers are up (a signal then arrives during start-up).
CLUSTER = """
import os, sys, threading, time
from pathlib import Path
from deployments.cluster import Cluster, ClusterConfig, run
from saferails.settings import Settings

WORKER = sys.argv[4]
data, port, hang = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "hang"

class Fake(Cluster):
    def start(self):
        self.logs.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ) | self.config.prefect_env()
        self.server = self.spawn("server", [sys.executable, "-c", "import time; time.sleep(600)"], env)
        for i in (1, 2):
            self.workers[f"worker-{i}"] = self.spawn(f"worker-{i}", [sys.executable, "-c", WORKER,
                                                                     str(data / f"run-{i}.pid")], env)
        while not all((data / f"run-{i}.pid").exists() for i in (1, 2)):
            time.sleep(0.05)
        if hang:
            print("starting", flush=True)
            threading.Event().wait()

run(Fake(ClusterConfig(port=port, data_dir=data), Settings()))
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize(("sig", "when"), [(signal.SIGTERM, "up"), (signal.SIGINT, "up"),
                                           (signal.SIGTERM, "hang")])
def test_a_signal_to_the_supervisor_stops_every_process_it_started_without_a_traceback(
        tmp_path: Path, sig: signal.Signals, when: str) -> None:
    config = ClusterConfig(port=2, data_dir=tmp_path)
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("wb") as o, err.open("wb") as e:
        # Its own session, as a terminal's foreground job: SIGINT goes to its group, as Ctrl-C would.
        proc = subprocess.Popen([sys.executable, "-c", CLUSTER, str(tmp_path), "2", when, WORKER],
                                cwd=Path(__file__).resolve().parents[2], stdout=o, stderr=e,
                                start_new_session=True)
    try:
        ready = "starting" if when == "hang" else "Prefect UI:"
        eventually(lambda: ready in out.read_text() or proc.poll() is not None)
        runs = [int((tmp_path / f"run-{i}.pid").read_text()) for i in (1, 2)]
        assert len(processes_of(config.api_url)) >= 5  # server, two workers, two flow runs
        os.killpg(proc.pid, sig)
        assert proc.wait(timeout=60) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in err.read_text(), err.read_text()
    assert out.read_text().rstrip().endswith("stopped")
    for run in runs:
        eventually(_gone(run))
    eventually(lambda: not processes_of(config.api_url))
