"""CLI tests for ``saferails runbook ...``: in-process ``saferails.cli.main`` against the ``db`` fixture's
database (SQLite and PostgreSQL), with the example threat service on a free 127.0.0.1 port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rbcli import Cli, Switch

from examples.threat_service import ThreatService, serve


@pytest.fixture
def cli(db: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    monkeypatch.setenv("SAFERAILS_DATABASE_URL", db.url)
    monkeypatch.setenv("SAFERAILS_DATA_DIR", str(tmp_path / "data"))  # approval codes land in data/inbox/
    monkeypatch.delenv("SAFERAILS_POLICY", raising=False)
    monkeypatch.delenv("SAFERAILS_APPROVAL_SECRET", raising=False)
    run = Cli(capsys)
    for manager in ("soc-manager-1", "soc-manager-2"):
        assert run("principal", "add", manager, "--group", "soc-managers").code == 0
    return run


@pytest.fixture
def threat_service() -> Iterator[ThreatService]:
    server = serve(0)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def switch() -> Iterator[Switch]:
    server = Switch()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()
