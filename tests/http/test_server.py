"""``saferails.http.server``: configuration refusals, and ``serve`` with two uvicorn workers over one store."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from saferails.errors import ConfigurationError
from saferails.http import server
from tests.conftest import PgTemplates
from tests.support.http_auth import KEYS_ENV

pytestmark = pytest.mark.slow  # seconds each (a demo run, a subprocess, a wheel build, a fuzz run)

ROOT = Path(__file__).resolve().parents[2]


def test_without_a_named_authenticator_the_store_credentials_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(server.AUTHENTICATOR_ENV, raising=False)
    monkeypatch.setenv("SAFERAILS_DATABASE_URL", f"sqlite:///{tmp_path / 'api.db'}")
    app = server.build_app()
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/api/v1/actions").status_code == 401
        assert client.get("/api/v1/actions", headers={"Authorization": "Bearer sr_00_x"}).status_code == 401


@pytest.mark.parametrize("spec", ["no-colon", "tests.support.http_auth:missing", "not.a.module:factory",
                                  "tests.support.http_auth:KEYS_ENV"])
def test_a_bad_authenticator_factory_is_refused_before_serving(spec: str) -> None:
    with pytest.raises(ConfigurationError):
        server.load_authenticator_factory(spec)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_runs_two_workers_over_one_store(tmp_path: Path, _pg: PgTemplates) -> None:
    # Several workers need PostgreSQL (serve refuses them on SQLite: tests/http/test_serve_workers.py).
    database_url = _pg.fresh()
    port = _free_port()
    env = os.environ | {
        "SAFERAILS_DATA_DIR": str(tmp_path),
        "SAFERAILS_DATABASE_URL": database_url,
        "SAFERAILS_APPROVAL_SECRET": "s" * 40,
        "SAFERAILS_SMTP_HOST": "",
        KEYS_ENV: json.dumps({"agent-key": ["agent-1", ["agent"], ["default"]]}),
        "PYTHONPATH": str(ROOT),
        server.AUTHENTICATOR_ENV: "tests.support.http_auth:from_environment",
    }
    code = ("from saferails.http.server import serve; "
            f"serve(host='127.0.0.1', port={port}, workers=2, log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:  # wait for the workers to listen (readiness, not the passing of time, is what we wait for)
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"{base}/api/v1/health/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)
        ids = set()
        for target in ("emp_1", "emp_2", "emp_3", "emp_4"):
            created = httpx.post(f"{base}/api/v1/actions", headers={"Authorization": "Bearer agent-key"}, timeout=30,
                                 json={"action_type": "role_change", "target": target, "params": {"new_role": "x"}})
            assert created.status_code == 201, created.text
            ids.add(created.json()["id"])
        listed = httpx.get(f"{base}/api/v1/actions", headers={"Authorization": "Bearer agent-key"}, timeout=30)
        assert {a["id"] for a in listed.json()["items"]} == ids
        assert httpx.get(f"{base}/api/v1/actions", timeout=30).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _pg.release(database_url)
