"""The webhook notifier against a real local HTTP server; backoff goes through a recording sleeper."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from saferails.clock import ManualClock
from saferails.errors import ConfigurationError
from saferails.notify import Notification, NotificationFailed, Recipient, WebhookNotifier, verify_signature
from saferails.notify.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER

SECRET = b"webhook-secret-with-at-least-32-bytes!"
NOTE = Notification(kind="sla_breach", subject="SLA breached", text="task T-1 is late",
                    recipients=(Recipient("ops", "ops@example.com"),), entity_type="task", entity_id="T-1",
                    data={"late_by_seconds": 900})


def notifier(url: str, sleeps: list[float], clock: ManualClock) -> WebhookNotifier:
    return WebhookNotifier(url, SECRET, sleeper=sleeps.append, clock=clock)


def test_a_failed_delivery_is_retried_after_a_backoff_and_then_succeeds(webhook_receiver: Any,
                                                                        clock: ManualClock) -> None:
    sleeps: list[float] = []
    notifier(webhook_receiver.url, sleeps, clock).send(NOTE)
    assert webhook_receiver.statuses == [503, 204]
    assert sleeps == [0.5]
    first, second = (headers[DELIVERY_HEADER.lower()] for headers, _ in webhook_receiver.requests)
    assert first == second  # one delivery id, so the receiver can drop a duplicate


def test_the_receiver_can_verify_the_signature(webhook_receiver: Any, clock: ManualClock) -> None:
    notifier(webhook_receiver.url, [], clock).send(NOTE)
    headers, body = webhook_receiver.requests[-1]
    now = clock.now().timestamp()
    ts, sig = headers[TIMESTAMP_HEADER.lower()], headers[SIGNATURE_HEADER.lower()]
    assert verify_signature(SECRET, body, ts, sig, now=now)
    assert json.loads(body)["data"] == {"late_by_seconds": 900}
    assert not verify_signature(SECRET, body.replace(b"900", b"901"), ts, sig, now=now)
    assert not verify_signature(b"another-secret-of-at-least-32-bytes!!", body, ts, sig, now=now)
    assert not verify_signature(SECRET, body, ts, sig, now=now + 3600)  # a replay an hour later


@pytest.mark.parametrize("webhook_receiver", [5], indirect=True)
def test_delivery_gives_up_after_the_last_attempt(webhook_receiver: Any, clock: ManualClock) -> None:
    sleeps: list[float] = []
    with pytest.raises(NotificationFailed) as excinfo:
        notifier(webhook_receiver.url, sleeps, clock).send(NOTE)
    assert webhook_receiver.statuses == [503, 503, 503]
    assert sleeps == [0.5, 1.0]
    assert excinfo.value.details["last_error"] == "HTTP 503"


def test_an_unreachable_receiver_fails_after_retrying(clock: ManualClock) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    sleeps: list[float] = []
    with pytest.raises(NotificationFailed) as excinfo:
        notifier(f"http://127.0.0.1:{port}/hooks", sleeps, clock).send(NOTE)
    assert sleeps == [0.5, 1.0]
    assert "ConnectError" in excinfo.value.details["last_error"]


@pytest.mark.parametrize(("url", "secret"), [("ftp://example.com/x", SECRET), ("http://example.com/x", b"short")],
                         ids=["not http", "short secret"])
def test_unsafe_webhook_settings_are_refused(url: str, secret: bytes) -> None:
    with pytest.raises(ConfigurationError):
        WebhookNotifier(url, secret)
