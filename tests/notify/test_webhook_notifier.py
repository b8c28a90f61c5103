"""The webhook notifier against a real local HTTP server; backoff goes through a recording sleeper."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from saferails.clock import ManualClock
from saferails.errors import ConfigurationError, EgressRefused, WebhookSignatureInvalid
from saferails.net.egress import EgressPolicy
from saferails.notify import Notification, NotificationFailed, Recipient, WebhookNotifier, new_secret, verify_webhook
from saferails.notify.signing import ID_HEADER

SECRET = new_secret()
# The receiver listens on loopback, which the egress guard refuses unless allowed by name.
LOOPBACK = EgressPolicy(allowed_hosts=frozenset({"127.0.0.1"}))
NOTE = Notification(kind="sla_breach", subject="SLA breached", text="task T-1 is late",
                    recipients=(Recipient("ops", "ops@example.com"),), entity_type="task", entity_id="T-1",
                    data={"late_by_seconds": 900})


def notifier(url: str, sleeps: list[float], clock: ManualClock) -> WebhookNotifier:
    return WebhookNotifier(url, SECRET, sleeper=sleeps.append, clock=clock, egress=LOOPBACK)


def test_a_failed_delivery_is_retried_after_a_backoff_and_then_succeeds(webhook_receiver: Any,
                                                                        clock: ManualClock) -> None:
    sleeps: list[float] = []
    notifier(webhook_receiver.url, sleeps, clock).send(NOTE)
    assert webhook_receiver.statuses == [503, 204]
    assert sleeps == [0.5]
    first, second = (headers[ID_HEADER] for headers, _ in webhook_receiver.requests)
    assert first == second  # one delivery id, so the receiver can drop a duplicate


def test_the_receiver_can_verify_the_signature(webhook_receiver: Any, clock: ManualClock) -> None:
    notifier(webhook_receiver.url, [], clock).send(NOTE)
    headers, body = webhook_receiver.requests[-1]
    assert verify_webhook(SECRET, body, headers, clock=clock) == headers[ID_HEADER]
    assert json.loads(body)["data"] == {"late_by_seconds": 900}
    refusals: dict[str, Callable[[], object]] = {
        "tampered": lambda: verify_webhook(SECRET, body.replace(b"900", b"901"), headers, clock=clock),
        "wrong secret": lambda: verify_webhook(new_secret(), body, headers, clock=clock),
        "replayed an hour later": lambda: verify_webhook(SECRET, body, headers,
                                                          clock=ManualClock(clock.now() + timedelta(hours=1))),
    }
    for name, check in refusals.items():
        with pytest.raises(WebhookSignatureInvalid):
            check()
            pytest.fail(f"{name} verified")


def test_a_loopback_url_is_refused_by_the_default_egress_policy_and_nothing_is_sent(
    webhook_receiver: Any, clock: ManualClock
) -> None:
    closed = WebhookNotifier(webhook_receiver.url, SECRET, sleeper=lambda _: None, clock=clock)
    with pytest.raises(EgressRefused) as excinfo:
        closed.send(NOTE)
    assert excinfo.value.details["reason"] == "loopback"
    assert webhook_receiver.requests == []


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


@pytest.mark.parametrize(("url", "secret"), [("ftp://example.com/x", SECRET), ("http://example.com/x", b"short"),
                                             ("http://example.com/x", "not-a-whsec-secret-but-long-enough-anyway")],
                         ids=["not http", "short secret", "secret not in whsec_ form"])
def test_unsafe_webhook_settings_are_refused(url: str, secret: str | bytes) -> None:
    with pytest.raises(ConfigurationError):
        WebhookNotifier(url, secret)
