"""Helpers of the runbook CLI tests (imported by name: this directory is on sys.path under pytest)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from saferails.cli import main


@dataclass
class Run:
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

    def ok(self, *argv: str) -> Any:
        """Run a ``--json`` command that must succeed; its JSON result."""
        run = self(*argv, "--json")
        assert run.code == 0, run.err
        return run.json()


class Switch(ThreadingHTTPServer):
    """A service that answers 400 while ``failing`` is set, else 200 with ``{"ok": true}``; counts its calls."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SwitchHandler)
        self.failing = True
        self.calls = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/notify"


class _SwitchHandler(BaseHTTPRequestHandler):
    server: Switch

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.calls += 1
        status, body = (400, b'{"error": "down for the test"}') if self.server.failing else (200, b'{"ok": true}')
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
