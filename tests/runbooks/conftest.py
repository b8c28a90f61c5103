"""A real local HTTP service for call-service steps, and a runbook service on the ``db`` fixture."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from saferails.actions.service import ActionService
from saferails.clock import ManualClock
from saferails.net.egress import EgressPolicy
from saferails.policy import default_policy
from saferails.runbooks import ExecutionContext, RunbookService
from tests.support.approvals import coded_service

# The test services listen on loopback, which the egress guard refuses unless allowed by name.
LOOPBACK_ALLOWED = EgressPolicy(allowed_hosts=frozenset({"127.0.0.1"}))


@dataclass
class Service:
    """Scripted answers per path; dedups POSTs by Idempotency-Key like a well-behaved service."""

    url: str = ""
    calls: Counter[str] = field(default_factory=Counter)
    failures: dict[str, int] = field(default_factory=dict)  # path -> remaining 503 answers
    answers: dict[str, Any] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    seen: dict[str, Any] = field(default_factory=dict)
    executed: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def service() -> Iterator[Service]:
    state = Service()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
            key = self.headers.get("Idempotency-Key", "")
            answer: Any
            with state.lock:
                state.calls[self.path] += 1
                state.keys.append(key)
                if state.failures.get(self.path, 0) > 0:
                    state.failures[self.path] -= 1
                    code, answer = 503, {"error": "busy"}
                elif key in state.seen:
                    code, answer = 200, state.seen[key]
                else:
                    state.executed[self.path] += 1
                    answer = state.answers.get(self.path, {"ok": True, "echo": body})
                    if callable(answer):
                        answer = answer(body)
                    code = int(answer.pop("_status", 200)) if isinstance(answer, dict) else 200
                    if code < 400:
                        answer = {**answer, "n": state.executed[self.path]}
                        state.seen[key] = answer
            raw = json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@dataclass
class Kit:
    runbooks: RunbookService
    actions: ActionService
    clock: ManualClock
    delays: list[float]
    ctx: ExecutionContext


@pytest.fixture
def kit(db: Any, clock: ManualClock) -> Iterator[Kit]:
    actions = coded_service(db.sessions, default_policy(), clock)
    for who in ("soc-manager-1", "soc-manager-2", "soc-manager-3"):
        actions.upsert_principal(who)
    delays: list[float] = []
    with httpx.Client(timeout=5.0) as http:
        runbooks = RunbookService(db.sessions, clock, actions, http=http, sleeper=delays.append,
                                  egress=LOOPBACK_ALLOWED)
        yield Kit(runbooks, actions, clock, delays, ExecutionContext(tenant="acme", initiated_by="analyst-1"))
