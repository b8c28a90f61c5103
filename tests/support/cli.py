"""The one in-process runner of the ``saferails`` CLI for tests: ``saferails.cli.main`` with its output captured."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from saferails.cli import main
from saferails.notify.outbox_log import InboxNotifier


@dataclass
class Run:
    """One command's exit code, stdout and stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def error(self) -> Any:
        return json.loads(self.err)


class Cli:
    """``cli(*argv)`` runs one ``saferails`` command and returns its exit code and output."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> Run:
        self.capsys.readouterr()
        code = main(list(argv))
        captured = self.capsys.readouterr()
        return Run(code, captured.out, captured.err)

    def code(self, approver: str, action_id: str) -> str:
        """The one-time code ``approver`` was sent for ``action_id``, from its own 0600 inbox in the data directory
        the command ran with (``SAFERAILS_DATA_DIR``: every test gets its own, see tests/conftest.py)."""
        found = InboxNotifier(Path(os.environ["SAFERAILS_DATA_DIR"]) / "inbox").latest_code(approver, action_id)
        assert found is not None, f"{approver} got no code for {action_id}"
        return found

    def ok(self, *argv: str) -> Any:
        """Run a ``--json`` command that must succeed; its JSON result."""
        run = self(*argv, "--json")
        assert run.code == 0, run.err
        return run.json()


def use_database(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Point the CLI at ``url`` with the bundled policy and no approval secret (codes unchecked)."""
    monkeypatch.setenv("SAFERAILS_DATABASE_URL", url)
    monkeypatch.delenv("SAFERAILS_POLICY", raising=False)
    monkeypatch.delenv("SAFERAILS_APPROVAL_SECRET", raising=False)
    # The tests' local services (runbook call-service targets, webhook receivers) listen on loopback, which the
    # egress guard refuses unless allowed.
    monkeypatch.setenv("SAFERAILS_EGRESS_ALLOWED_HOSTS", "127.0.0.1")
