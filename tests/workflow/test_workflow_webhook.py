"""The call_webhook action against a real HTTP server on 127.0.0.1: signed (Standard Webhooks), retried with
backoff, sent only where the egress policy allows; and one verifying receiver that accepts the calls of both
senders (the notifier and the dispatcher) and refuses tampered, replayed and wrongly keyed ones."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from saferails.clock import ManualClock
from saferails.errors import WebhookSignatureInvalid
from saferails.net.egress import EgressPolicy
from saferails.notify import Notification, NotificationFailed, Recipient, WebhookNotifier
from saferails.notify.signing import ID_HEADER, new_secret, verify_webhook
from saferails.workflow.dispatcher import OutboxDispatcher
from saferails.workflow.permissions import WorkflowActor
from saferails.workflow.service import WorkflowService
from saferails.workflow.tables import TriggerEffect

ADMIN = WorkflowActor("ada", frozenset({"admin"}))
SECRET = new_secret()
# The receivers listen on loopback, which the egress guard refuses unless allowed by name.
LOOPBACK = EgressPolicy(allowed_hosts=frozenset({"127.0.0.1"}))


class Receiver:
    """Answers the queued statuses in order (then 200) and keeps every request it got."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
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
        report = OutboxDispatcher(db.sessions, clock, "w1", webhook_secret=SECRET, sleeper=sleeps.append,
                                  egress=LOOPBACK).run_once()
    assert report.processed == 1 and report.effects == 1
    assert len(receiver.requests) == 2
    assert sleeps == [0.5]
    (first_headers, _), (headers, body) = receiver.requests
    assert verify_webhook(SECRET, body, headers, clock=clock) == headers[ID_HEADER]
    sent = json.loads(body)
    assert sent["aggregate_id"] == task.id and sent["event_type"] == "TaskCreated"
    assert first_headers[ID_HEADER] == headers[ID_HEADER]  # one id across retries: receivers dedupe on it
    assert headers[ID_HEADER].startswith(sent["event_id"] + ":hook:")
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
        dispatcher = OutboxDispatcher(db.sessions, clock, "w1", webhook_secret=SECRET, sleeper=sleeps.append,
                                  egress=LOOPBACK)
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
        report = OutboxDispatcher(db.sessions, clock, "w1", webhook_secret=SECRET, sleeper=lambda _: None,
                                  egress=LOOPBACK).run_once()
    assert report.failed == 1 and len(receiver.requests) == 1


def test_a_webhook_without_a_configured_secret_is_never_sent_unsigned(
    db: Any, svc: WorkflowService, clock: ManualClock
) -> None:
    with Receiver([]) as receiver:
        _hook(svc, receiver.url)
        svc.create_task(ADMIN, title="t")
        dispatcher = OutboxDispatcher(db.sessions, clock, "w1", max_attempts=1, egress=LOOPBACK)
        report = dispatcher.run_once()
    assert report.dead_lettered == 1 and receiver.requests == []
    assert "webhook_secret" in (dispatcher.dead_letters()[0].last_error or "")


class VerifyingReceiver:
    """A real receiver on 127.0.0.1 that verifies every call with ``verify_webhook`` under ``secret`` and the
    test's clock: 204 when it verifies, 401 with the refusal reason otherwise. Keeps what it got and decided."""

    def __init__(self, secret: str, clock: ManualClock) -> None:
        self.calls: list[tuple[dict[str, str], bytes, int, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    verify_webhook(secret, body, headers, clock=clock)
                    status, why = 204, "ok"
                except WebhookSignatureInvalid as exc:
                    status, why = 401, str(exc.details["reason"])
                receiver.calls.append((headers, body, status, why))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def __enter__(self) -> VerifyingReceiver:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def replay(self, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        """POST ``body`` with ``headers`` again, as an attacker holding a captured call would."""
        sent = {k: v for k, v in headers.items() if k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
        response = httpx.post(self.url, content=body, headers=sent)
        return response.status_code, self.calls[-1][3]


NOTE = Notification(kind="sla_breach", subject="SLA breached", text="task T-1 is late",
                    recipients=(Recipient("ops", "ops@example.com"),), entity_type="task", entity_id="T-1",
                    data={"late_by_seconds": 900})


def test_one_verifier_accepts_the_calls_of_both_senders_and_refuses_tampered_replayed_and_foreign_ones(
    db: Any, svc: WorkflowService, clock: ManualClock
) -> None:
    with VerifyingReceiver(SECRET, clock) as receiver:
        WebhookNotifier(receiver.url, SECRET, clock=clock, sleeper=lambda _: None, egress=LOOPBACK).send(NOTE)
        _hook(svc, receiver.url)
        svc.create_task(ADMIN, title="t")
        report = OutboxDispatcher(db.sessions, clock, "w1", webhook_secret=SECRET, sleeper=lambda _: None,
                                  egress=LOOPBACK).run_once()
        assert report.processed == 1 and report.effects == 1
        assert [(status, why) for _, _, status, why in receiver.calls] == [(204, "ok"), (204, "ok")]
        notifier_call, dispatcher_call = receiver.calls[0][:2], receiver.calls[1][:2]
        assert json.loads(notifier_call[1])["kind"] == "sla_breach"
        assert json.loads(dispatcher_call[1])["event_type"] == "TaskCreated"

        for headers, body in (notifier_call, dispatcher_call):
            assert receiver.replay(headers, body.replace(b"}", b',"x":1}', 1)) == (401, "signature_mismatch")
        clock.advance(timedelta(minutes=6))
        for headers, body in (notifier_call, dispatcher_call):
            assert receiver.replay(headers, body) == (401, "timestamp_too_old")

        svc.create_task(ADMIN, title="t2")
        foreign = OutboxDispatcher(db.sessions, clock, "w2", webhook_secret=new_secret(), sleeper=lambda _: None,
                                   egress=LOOPBACK).run_once()
        with pytest.raises(NotificationFailed):
            WebhookNotifier(receiver.url, new_secret(), clock=clock, sleeper=lambda _: None, egress=LOOPBACK).send(NOTE)
    assert foreign.failed == 1
    assert [why for *_, why in receiver.calls[-2:]] == ["signature_mismatch", "signature_mismatch"]


def test_the_default_egress_policy_refuses_a_loopback_webhook_and_sends_nothing(
    db: Any, svc: WorkflowService, clock: ManualClock
) -> None:
    with Receiver([]) as receiver:
        _hook(svc, receiver.url)
        svc.create_task(ADMIN, title="t")
        dispatcher = OutboxDispatcher(db.sessions, clock, "w1", webhook_secret=SECRET, max_attempts=1)
        report = dispatcher.run_once()
    assert report.dead_lettered == 1 and receiver.requests == []
    last_error = dispatcher.dead_letters()[0].last_error or ""
    assert "EgressRefused" in last_error and "loopback" in last_error
