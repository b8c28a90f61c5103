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
