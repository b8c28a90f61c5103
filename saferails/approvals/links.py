"""Signed approval links: what the approval e-mail carries so an approver can decide from a browser.

A link token binds one approver to one version of one action: ``action id | approver | action hash | the
approver's one-time code | expiry`` (the approval deadline), signed with HMAC-SHA256 under a key derived from the
approval secret (a key of its own, so a link signature can never stand in for a code hash). The token proves
possession of the e-mail; the one-time code inside it is what makes the decision single use: deciding spends
it through ``ActionService.approve/reject`` exactly as the CLI and the Prefect form do.

Opening a link (GET) decides nothing: mail scanners follow links. Only the POST from the confirmation page does.

:class:`ApprovalLinkNotifier` puts the link into each ``approval_requested`` message (text and ``data``) when the
API's public address is configured (``SAFERAILS_PUBLIC_URL``); ``compose`` wraps the store's notifier with it.
It lives here, not in ``saferails.http``, so the composition root can use it without importing the web app.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from saferails.errors import ApprovalLinkInvalid
from saferails.notify.base import Notification, Notifier

PUBLIC_REASON = "approval link invalid or expired"
_VERSION = 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class LinkClaims:
    """What a verified token says. ``code`` is None when the policy waived codes for the action."""

    action_id: str
    approver: str
    action_hash: str
    code: str | None
    expires_at: datetime


class ApprovalLinks:
    """Signs and verifies approval link tokens. ``secret`` is the approval secret (``SAFERAILS_APPROVAL_SECRET``)."""

    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"saferails/approval-link/v1", hashlib.sha256).digest()

    def token(self, claims: LinkClaims) -> str:
        body = json.dumps(
            {
                "v": _VERSION,
                "a": claims.action_id,
                "p": claims.approver,
                "h": claims.action_hash,
                "c": claims.code,
                "e": int(claims.expires_at.timestamp()),
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        return f"{_b64(body)}.{_b64(self._sign(body))}"

    def url(self, base_url: str, claims: LinkClaims) -> str:
        """The link to put in the approval e-mail: ``{base_url}/api/actions/approve?token=...``."""
        return f"{base_url.rstrip('/')}/api/actions/approve?{urlencode({'token': self.token(claims)})}"

    def verify(self, token: str, now: datetime) -> LinkClaims:
        """The claims of a genuine, unexpired token, or ``ApprovalLinkInvalid`` (same message for every reason)."""
        try:
            body_text, signature_text = token.split(".")
            body, signature = _unb64(body_text), _unb64(signature_text)
        except ValueError as exc:
            raise ApprovalLinkInvalid(PUBLIC_REASON, internal_reason="malformed") from exc
        if not hmac.compare_digest(signature, self._sign(body)):
            raise ApprovalLinkInvalid(PUBLIC_REASON, internal_reason="bad_signature")
        try:
            data = json.loads(body)
            claims = LinkClaims(
                action_id=str(data["a"]),
                approver=str(data["p"]),
                action_hash=str(data["h"]),
                code=None if data["c"] is None else str(data["c"]),
                expires_at=datetime.fromtimestamp(int(data["e"]), UTC),
            )
            version = data["v"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ApprovalLinkInvalid(PUBLIC_REASON, internal_reason="malformed") from exc
        if version != _VERSION:
            raise ApprovalLinkInvalid(PUBLIC_REASON, internal_reason="version")
        if now >= claims.expires_at:
            raise ApprovalLinkInvalid(PUBLIC_REASON, internal_reason="expired", action_id=claims.action_id)
        return claims

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()

    def url_for_request(self, base_url: str, data: Mapping[str, Any]) -> str:
        """The link for one ``approval_requested`` notification, from its ``data`` (``action_id``, ``approver``,
        ``action_hash``, ``code``, ``deadline``): what a notifier appends to the message it sends."""
        claims = LinkClaims(
            action_id=str(data["action_id"]),
            approver=str(data["approver"]),
            action_hash=str(data["action_hash"]),
            code=None if data.get("code") is None else str(data["code"]),
            expires_at=datetime.fromisoformat(str(data["deadline"])),
        )
        return self.url(base_url, claims)


class ApprovalLinkNotifier:
    """A :class:`~saferails.notify.base.Notifier` that adds the approver's one-time link to every
    ``approval_requested`` notification, then hands it to ``inner``. Other notifications pass unchanged. The link
    is bound to the recipient approver (``data["approver"]``), so each approver's message carries their own."""

    def __init__(self, inner: Notifier, links: ApprovalLinks, base_url: str) -> None:
        self.inner = inner
        self.links = links
        self.base_url = base_url.rstrip("/")

    def send(self, notification: Notification) -> None:
        self.inner.send(self.with_link(notification))

    def with_link(self, notification: Notification) -> Notification:
        data = dict(notification.data)
        if notification.kind != "approval_requested" or "approver" not in data or "deadline" not in data:
            return notification
        url = self.links.url_for_request(self.base_url, data)
        text = (f"{notification.text}\nDecide in your browser (the page shows the request; nothing is decided "
                f"until you press Approve or Reject):\n{url}\n")
        return replace(notification, text=text, data=data | {"approval_url": url})


__all__ = ["ApprovalLinkNotifier", "ApprovalLinks", "LinkClaims"]
