"""The call_webhook action against a real HTTP server on 127.0.0.1: signed, retried with backoff."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import sqlalchemy as sa

from saferails.clock import ManualClock
from saferails.workflow.dispatcher import EVENT_ID_HEADER, SIGNATURE_HEADER, OutboxDispatcher
from saferails.workflow.permissions import WorkflowActor
from saferails.workflow.service import WorkflowService
from saferails.workflow.tables import TriggerEffect

ADMIN = WorkflowActor("ada", frozenset({"admin"}))
SECRET = "test-webhook-secret"


class Receiver:
    """Answers the queued statuses in order (then 200) and keeps every request it got."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _hook(svc: WorkflowService, url: str) -> None:
    svc.create_trigger(ADMIN, {"id": "hook", "event_type": "TaskCreated",
                               "actions": [{"type": "call_webhook", "url": url, "max_attempts": 3}]})


def test_a_webhook_that_fails_once_is_retried_and_delivered_signed(
    db: Any, svc: WorkflowService, clock: ManualClock
) -> None:
    sleeps: list[float] = []
    with Receiver([503]) as receiver:
        _hook(svc, receiver.url)
        task = svc.create_task(ADMIN, title="t")
        report = OutboxDispatcher(db.sessions, clock, "w1", webhook_secret=SECRET, sleeper=sleeps.append).run_once()
    assert report.processed == 1 and report.effects == 1
    assert len(receiver.requests) == 2
    assert sleeps == [0.5]
    headers, body = receiver.requests[-1]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected
    sent = json.loads(body)
    assert sent["aggregate_id"] == task.id and sent["event_type"] == "TaskCreated"
    assert headers[EVENT_ID_HEADER] == sent["event_id"]
    with db.sessions() as s:
        [effect] = s.execute(sa.select(TriggerEffect)).scalars().all()
    assert effect.result["attempts"] == 2


def test_a_webhook_that_keeps_failing_fails_the_event_for_a_later_retry(
    db: Any, svc: WorkflowService, clock: ManualClock
) -> None:
    sleeps: list[float] = []
    with Receiver([500, 500, 500]) as receiver:
        _hook(svc, receiver.url)
        svc.create_task(ADMIN, title="t")
        dispatcher = OutboxDispatcher(db.sessions, clock, "w1", webhook_secret=SECRET, sleeper=sleeps.append)
        report = dispatcher.run_once()
    assert report.failed == 1
    assert len(receiver.requests) == 3
    assert sleeps == [0.5, 1.0]


def test_a_webhook_refused_with_a_client_error_is_not_retried(
    db: Any, svc: WorkflowService, clock: ManualClock
) -> None:
    with Receiver([400]) as receiver:
        _hook(svc, receiver.url)
        svc.create_task(ADMIN, title="t")
        report = OutboxDispatcher(db.sessions, clock, "w1", webhook_secret=SECRET, sleeper=lambda _: None).run_once()
    assert report.failed == 1 and len(receiver.requests) == 1


def test_a_webhook_without_a_configured_secret_is_never_sent_unsigned(
    db: Any, svc: WorkflowService, clock: ManualClock
) -> None:
    with Receiver([]) as receiver:
        _hook(svc, receiver.url)
        svc.create_task(ADMIN, title="t")
        dispatcher = OutboxDispatcher(db.sessions, clock, "w1", max_attempts=1)
        report = dispatcher.run_once()
    assert report.dead_lettered == 1 and receiver.requests == []
    assert "webhook_secret" in (dispatcher.dead_letters()[0].last_error or "")
