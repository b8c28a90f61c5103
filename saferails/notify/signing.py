"""Webhook signatures: Standard Webhooks (https://www.standardwebhooks.com), the one scheme for every webhook
saferails sends (the notifier's and the workflow dispatcher's trigger webhooks).

Each request carries three headers:

* ``webhook-id``: the message id, the same on every retry of one message: receivers dedupe on it;
* ``webhook-timestamp``: unix seconds when this attempt was signed;
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`` (a receiver accepts any of
  several space-separated signatures, which is how keys are rotated).

The secret is written ``whsec_<base64 key>`` (:func:`new_secret` makes one), so any Standard Webhooks library
verifies our calls with the same string; raw ``bytes`` are taken as the key itself. Keys are 24 to 64 bytes.
Signing uses the ``standardwebhooks`` reference package; :func:`verify_webhook` does its own header parsing and
clock check so that time is injectable and malformed headers are a typed refusal, never a crash.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from standardwebhooks import Webhook

from saferails.clock import Clock, SystemClock
from saferails.errors import ConfigurationError, WebhookSignatureInvalid

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
DEFAULT_TOLERANCE = timedelta(minutes=5)


def new_secret(key_bytes: int = 32) -> str:
    """A fresh random secret in the ``whsec_<base64>`` form."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(key_bytes)).decode("ascii")


def webhook_key(secret: str | bytes) -> bytes:
    """The HMAC key of ``secret`` (``whsec_<base64>`` or raw bytes); ``ConfigurationError`` when malformed or
    outside 24-64 bytes. Never echoes the secret."""
    if isinstance(secret, str):
        if not secret.startswith(SECRET_PREFIX):
            raise ConfigurationError(f"a webhook secret must be written {SECRET_PREFIX}<base64 of 24-64 random bytes>")
        try:
            key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigurationError(f"the webhook secret after {SECRET_PREFIX} is not valid base64") from exc
    else:
        key = bytes(secret)
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ConfigurationError(f"a webhook key must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, got {len(key)}",
                                 min_bytes=MIN_KEY_BYTES, max_bytes=MAX_KEY_BYTES)
    return key


class WebhookSigner:
    """Signs outgoing webhook bodies under one secret."""

    def __init__(self, secret: str | bytes) -> None:
        self._webhook = Webhook(webhook_key(secret))

    def signature(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """``v1,<base64>`` for ``body`` sent as message ``msg_id`` at unix second ``timestamp``."""
        when = datetime.fromtimestamp(timestamp, UTC)
        return self._webhook.sign(msg_id=msg_id, timestamp=when, data=body.decode("utf-8"))

    def headers(self, msg_id: str, body: bytes, now: datetime) -> dict[str, str]:
        """The three Standard Webhooks headers for one attempt of message ``msg_id`` made at ``now``."""
        timestamp = int(now.timestamp())
        return {ID_HEADER: msg_id, TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: self.signature(msg_id, timestamp, body)}


def verify_webhook(
    secret: str | bytes,
    body: bytes,
    headers: Mapping[str, str],
    *,
    clock: Clock | None = None,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> str:
    """Check a received webhook; returns its ``webhook-id`` (the dedupe key) or raises ``WebhookSignatureInvalid``
    with ``details["reason"]`` one of ``missing_headers``, ``bad_timestamp``, ``timestamp_too_old``,
    ``timestamp_too_new``, ``bad_body`` or ``signature_mismatch``.

    ``body`` must be the exact bytes received. The timestamp must lie within ``tolerance`` of ``clock.now()``
    (a replay of a captured call is refused once it is older); the signature comparison is constant-time.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (lowered.get(h, "") for h in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    if not (msg_id and stamp and signatures):
        raise _invalid("missing_headers", "the webhook-id, webhook-timestamp and webhook-signature headers are "
                                          "required")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise _invalid("bad_timestamp", "webhook-timestamp is not unix seconds") from None
    now = (clock or SystemClock()).now().timestamp()
    if timestamp < now - tolerance.total_seconds():
        raise _invalid("timestamp_too_old", "the webhook timestamp is too old (a replay?)", msg_id=msg_id)
    if timestamp > now + tolerance.total_seconds():
        raise _invalid("timestamp_too_new", "the webhook timestamp is in the future", msg_id=msg_id)
    try:
        expected = WebhookSigner(secret).signature(msg_id, timestamp, body).encode("ascii")
    except UnicodeDecodeError:
        raise _invalid("bad_body", "the webhook body is not UTF-8", msg_id=msg_id) from None
    # Compare every candidate (no early exit on the first match) so timing says nothing about which matched.
    matched = False
    for candidate in signatures.split(" "):
        matched |= hmac.compare_digest(expected, candidate.strip().encode("ascii", errors="replace"))
    if not matched:
        raise _invalid("signature_mismatch", "no webhook signature matches", msg_id=msg_id)
    return msg_id


def _invalid(reason: str, message: str, **details: str) -> WebhookSignatureInvalid:
    return WebhookSignatureInvalid(f"webhook refused: {message}", reason=reason, **details)


__all__ = [
    "DEFAULT_TOLERANCE",
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookSigner",
    "new_secret",
    "verify_webhook",
    "webhook_key",
]
