"""Notifications as signed HTTP POSTs, retried with exponential backoff.

Each delivery is the JSON of ``Notification.to_dict()`` sent as bytes and signed per Standard Webhooks
(:mod:`saferails.notify.signing`): ``webhook-id`` is one id for every attempt of a delivery (receivers drop
duplicates on it), ``webhook-timestamp`` the attempt's unix seconds, ``webhook-signature`` the ``v1,`` HMAC of
``id.timestamp.body``. Receivers check it with :func:`saferails.notify.signing.verify_webhook`.

Every request goes through the egress guard (:mod:`saferails.net.egress`): a URL that resolves to a private,
loopback or link-local address is refused with ``EgressRefused`` unless the ``egress`` policy allows its host.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from saferails.clock import Clock, SystemClock
from saferails.errors import ConfigurationError
from saferails.net.egress import EgressPolicy, EgressResponse, send
from saferails.notify.base import Notification, NotificationFailed
from saferails.notify.signing import WebhookSigner

_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class WebhookNotifier:
    """POSTs each notification to ``url``. Up to ``attempts`` tries; transport errors and 408/425/429/5xx are
    retried after ``backoff_seconds * 2**n`` (passed to ``sleeper``, so tests and the demo need not wait); any
    other non-2xx is final. Failure after the last try raises ``NotificationFailed``; a URL the ``egress`` policy
    forbids raises ``EgressRefused`` before anything is sent (the default policy refuses every non-public address).

    ``secret`` is ``whsec_<base64 of 24-64 bytes>`` or the raw key bytes, and ``url`` http(s), else
    ``ConfigurationError``.
    """

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        *,
        attempts: int = 3,
        backoff_seconds: float = 0.5,
        timeout_seconds: float = 10.0,
        sleeper: Callable[[float], None] = time.sleep,
        clock: Clock | None = None,
        client: httpx.Client | None = None,
        egress: EgressPolicy | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(f"webhook URL must be http(s)://host/..., got {url!r}")
        if attempts < 1 or backoff_seconds < 0:
            raise ConfigurationError("webhook attempts must be >= 1 and backoff >= 0")
        self.url = url
        self._signer = WebhookSigner(secret)
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self._sleep = sleeper
        self.clock: Clock = clock or SystemClock()
        self._client = client
        self.egress = egress or EgressPolicy()

    def send(self, notification: Notification) -> None:
        body = json.dumps(notification.to_dict(), sort_keys=True, separators=(",", ":"), default=str).encode()
        delivery = f"msg_{uuid.uuid4().hex}"
        problem = ""
        for attempt in range(self.attempts):
            if attempt:
                self._sleep(self.backoff_seconds * 2 ** (attempt - 1))
            headers = {"Content-Type": "application/json", **self._signer.headers(delivery, body, self.clock.now())}
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

    def _post(self, body: bytes, headers: dict[str, str]) -> EgressResponse:
        if self._client is not None:
            return send(self._client, "POST", self.url, policy=self.egress, content=body, headers=headers,
                        timeout=self.timeout_seconds)
        with httpx.Client(timeout=self.timeout_seconds) as client:
            return send(client, "POST", self.url, policy=self.egress, content=body, headers=headers)
