"""Notifications as signed HTTP POSTs (``httpx``), retried with exponential backoff.

Each delivery is the JSON of ``Notification.to_dict()`` sent as bytes, with headers
``X-Saferails-Delivery`` (one id for every attempt of a delivery, so receivers can drop duplicates),
``X-Saferails-Timestamp`` (unix seconds) and ``X-Saferails-Signature: sha256=<hex>`` where the hex is
HMAC-SHA256(secret, timestamp + "." + body). Receivers check it with :func:`verify_signature`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from saferails.clock import Clock, SystemClock
from saferails.errors import ConfigurationError
from saferails.notify.base import Notification, NotificationFailed

SIGNATURE_HEADER = "X-Saferails-Signature"
TIMESTAMP_HEADER = "X-Saferails-Timestamp"
DELIVERY_HEADER = "X-Saferails-Delivery"
MIN_SECRET_BYTES = 32
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, timestamp: str, signature: str, *, now: float,
                     tolerance_seconds: float = 300.0) -> bool:
    """True when ``signature`` is ours for exactly ``body`` and ``timestamp`` is within ``tolerance_seconds`` of
    ``now`` (unix seconds), which bounds replays. Constant-time comparison."""
    try:
        sent = float(timestamp)
    except ValueError:
        return False
    if abs(now - sent) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode())


class WebhookNotifier:
    """POSTs each notification to ``url``. Up to ``attempts`` tries; transport errors and 408/425/429/5xx are
    retried after ``backoff_seconds * 2**n`` (passed to ``sleeper``, so tests and the demo need not wait); any
    other non-2xx is final. Failure after the last try raises ``NotificationFailed``.

    ``secret`` must be at least 32 bytes and ``url`` http(s), else ``ConfigurationError``.
    """

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        attempts: int = 3,
        backoff_seconds: float = 0.5,
        timeout_seconds: float = 10.0,
        sleeper: Callable[[float], None] = time.sleep,
        clock: Clock | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(f"webhook URL must be http(s)://host/..., got {url!r}")
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigurationError(f"webhook secret must be at least {MIN_SECRET_BYTES} bytes")
        if attempts < 1 or backoff_seconds < 0:
            raise ConfigurationError("webhook attempts must be >= 1 and backoff >= 0")
        self.url = url
        self._secret = secret
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self._sleep = sleeper
        self.clock: Clock = clock or SystemClock()
        self._client = client

    def send(self, notification: Notification) -> None:
        body = json.dumps(notification.to_dict(), sort_keys=True, separators=(",", ":"), default=str).encode()
        delivery = str(uuid.uuid4())
        problem = ""
        for attempt in range(self.attempts):
            if attempt:
                self._sleep(self.backoff_seconds * 2 ** (attempt - 1))
            timestamp = str(int(self.clock.now().timestamp()))
            headers = {
                "Content-Type": "application/json",
                DELIVERY_HEADER: delivery,
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            }
            try:
                response = self._post(body, headers)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                continue
            if response.is_success:
                return
            problem = f"HTTP {response.status_code}"
            if response.status_code not in _RETRY_STATUSES:
                break
        raise NotificationFailed(f"webhook delivery to {self.url} failed: {problem}",
                                 kind=notification.kind, url=self.url, delivery=delivery, last_error=problem)

    def _post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        if self._client is not None:
            return self._client.post(self.url, content=body, headers=headers, timeout=self.timeout_seconds)
        with httpx.Client(timeout=self.timeout_seconds) as client:
            return client.post(self.url, content=body, headers=headers)
