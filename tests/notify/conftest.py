"""Real local servers for notifier tests: an aiosmtpd SMTP server and an http.server webhook receiver."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Mailbox:
    host: str
    port: int
    messages: list[tuple[list[str], Message]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd calls this hook by name
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    """A real SMTP server on 127.0.0.1 that keeps every message it accepts."""
    mailbox = Mailbox("127.0.0.1", _free_port())
    controller = Controller(mailbox, hostname=mailbox.host, port=mailbox.port)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


@dataclass
class Receiver:
    url: str
    fail_first: int
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status = 503 if len(receiver.requests) <= receiver.fail_first else 204
            receiver.statuses.append(status)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # silence per-request logging
            pass

    return Handler


@pytest.fixture
def webhook_receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    """A real HTTP server on 127.0.0.1 that answers 503 to the first ``fail_first`` POSTs (default 1), then 204.
    Parametrise indirectly with an int to change ``fail_first``."""
    fail_first = getattr(request, "param", 1)
    receiver = Receiver(url="", fail_first=fail_first)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/saferails"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
