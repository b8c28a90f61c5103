"""Shared test support: real local servers (an SMTP mailbox and HTTP servers on 127.0.0.1), the clock, and polling
on a condition. The fixtures here are registered for the whole suite by ``tests/conftest.py`` (``pytest_plugins``);
the helper modules next to this one (``flowkit``, ``handlerkit``, ``sweepkit``, ``outcome_world``) are imported as
``tests.support.X``.

No test sleeps for time to pass: time is a ``ManualClock``, and what happens on another thread is awaited with
``eventually`` (a condition polled with a generous upper bound that only stops a hang; never a timing assertion).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from hypothesis import HealthCheck, settings

from saferails.clock import ManualClock

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
"""Where the ``clock`` fixture starts."""

# Hypothesis profiles, chosen with HYPOTHESIS_PROFILE. "ci" (the default, also for `make test` / `make check`):
# a bounded number of examples, the same ones on every run (derandomize) and no example database written to the
# working tree, so a run is deterministic; no deadline and no too_slow health check, as a busy machine makes
# timing meaningless. A test that sets its own suppress_health_check must list TIMING_CHECKS too (it replaces
# the profile's list). "thorough": many random examples, for a search for counterexamples by hand (replay one
# with the printed blob).
TIMING_CHECKS = [HealthCheck.too_slow]
settings.register_profile("ci", max_examples=50, deadline=None, derandomize=True, database=None, print_blob=True,
                          suppress_health_check=TIMING_CHECKS)
settings.register_profile("thorough", max_examples=1000, deadline=None, print_blob=True,
                          suppress_health_check=TIMING_CHECKS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers that cannot bind port 0 themselves)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def eventually(check: Callable[[], Any], timeout: float = 60, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy and return that. ``timeout`` is only there to turn a hang
    into a failure: it is generous on purpose and nothing may depend on how long the wait took."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@dataclass
class Mailbox:
    """An aiosmtpd handler keeping every message it accepts. It answers ``451`` (a transient refusal) to the first
    ``fail_first`` messages; ``attempts`` counts every DATA command, refused or not."""

    host: str
    port: int
    fail_first: int = 0
    attempts: int = 0
    messages: list[tuple[list[str], Message]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd calls this by name
        self.attempts += 1
        if self.attempts <= self.fail_first:
            return "451 4.3.0 Temporary failure, try again later"
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


@contextmanager
def running_mailbox() -> Iterator[Mailbox]:
    """A real SMTP server on 127.0.0.1 for the duration of the block."""
    mailbox = Mailbox("127.0.0.1", free_port())
    controller = Controller(mailbox, hostname=mailbox.host, port=mailbox.port)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 (a free port) on a thread for the duration of the block; yields the base URL
    (``http://127.0.0.1:PORT``). The server is shut down and its thread joined on the way out."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="loopback-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that does not log each request to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Receiver:
    """What the ``webhook_receiver`` server saw: each POST's headers (lower-cased names) and body, and the status
    it answered."""

    url: str
    fail_first: int
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


def _receiver_handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status = 503 if len(receiver.requests) <= receiver.fail_first else 204
            receiver.statuses.append(status)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    """A real SMTP server on 127.0.0.1 that keeps every message it accepts (set ``fail_first`` to refuse some)."""
    with running_mailbox() as mailbox:
        yield mailbox


@pytest.fixture
def webhook_receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    """A real HTTP server on 127.0.0.1 that answers 503 to the first ``fail_first`` POSTs (default 1), then 204.
    Parametrise indirectly with an int to change ``fail_first``."""
    receiver = Receiver(url="", fail_first=getattr(request, "param", 1))
    with http_server(_receiver_handler(receiver)) as base:
        receiver.url = f"{base}/hooks/saferails"
        yield receiver


@pytest.fixture
def clock() -> ManualClock:
    """The injectable clock, at ``START``; tests move it with ``advance``/``set``."""
    return ManualClock(START)
