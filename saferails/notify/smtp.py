"""Mail notifications over real SMTP (``smtplib``), configured from ``SAFERAILS_SMTP_*`` settings."""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid

from saferails.errors import ConfigurationError
from saferails.notify.base import Notification, NotificationFailed

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = True
    timeout_seconds: float = 30.0


def load_smtp_settings(env: Mapping[str, str] | None = None) -> SmtpSettings:
    """Read and validate ``SAFERAILS_SMTP_HOST`` / ``PORT`` (default 587) / ``SENDER`` / ``USERNAME`` /
    ``PASSWORD`` / ``STARTTLS`` (default true).

    Refused with ``ConfigurationError``: no host or sender, a port outside 1-65535, a username without a
    password (or the reverse), and a password sent without STARTTLS to anything but this machine.
    """
    env = os.environ if env is None else env
    host = env.get("SAFERAILS_SMTP_HOST", "").strip()
    sender = env.get("SAFERAILS_SMTP_SENDER", "").strip()
    if not host:
        raise ConfigurationError("SAFERAILS_SMTP_HOST is not set")
    if "@" not in sender:
        raise ConfigurationError("SAFERAILS_SMTP_SENDER must be an email address", sender=sender)
    port_text = env.get("SAFERAILS_SMTP_PORT", "587").strip()
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigurationError(f"SAFERAILS_SMTP_PORT must be 1-65535, got {port_text!r}")
    tls_text = env.get("SAFERAILS_SMTP_STARTTLS", "true").strip().lower()
    if tls_text not in _TRUE | _FALSE:
        raise ConfigurationError(f"SAFERAILS_SMTP_STARTTLS must be true or false, got {tls_text!r}")
    username = env.get("SAFERAILS_SMTP_USERNAME") or None
    password = env.get("SAFERAILS_SMTP_PASSWORD") or None
    if (username is None) != (password is None):
        raise ConfigurationError("set both SAFERAILS_SMTP_USERNAME and SAFERAILS_SMTP_PASSWORD, or neither")
    starttls = tls_text in _TRUE
    if password is not None and not starttls and host not in _LOCAL_HOSTS:
        raise ConfigurationError("refusing to send SMTP credentials in clear text: enable SAFERAILS_SMTP_STARTTLS")
    return SmtpSettings(host=host, port=int(port_text), sender=sender, username=username, password=password,
                        starttls=starttls)


class SmtpNotifier:
    """Sends each notification as one message to every recipient that has an email address."""

    def __init__(self, settings: SmtpSettings, *, tls_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self._tls = tls_context or ssl.create_default_context()

    def message(self, notification: Notification) -> EmailMessage:
        """The message ``send`` would deliver (text, plus an HTML alternative when given)."""
        to = [r.email for r in notification.recipients if r.email]
        if not to:
            raise NotificationFailed(
                "no recipient of this notification has an email address",
                kind=notification.kind, recipients=[r.principal_id for r in notification.recipients],
            )
        msg = EmailMessage()
        msg["From"] = self.settings.sender
        msg["To"] = ", ".join(to)
        msg["Subject"] = notification.subject
        msg["Message-ID"] = make_msgid(domain=self.settings.sender.rsplit("@", 1)[1])
        if notification.entity_id is not None:
            msg["X-Saferails-Entity"] = f"{notification.entity_type}/{notification.entity_id}"
        msg["X-Saferails-Kind"] = notification.kind
        msg.set_content(notification.text)
        if notification.html is not None:
            msg.add_alternative(notification.html, subtype="html")
        return msg

    def send(self, notification: Notification) -> None:
        """Deliver over SMTP; any refusal or connection failure raises ``NotificationFailed``."""
        msg = self.message(notification)
        s = self.settings
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds) as client:
                if s.starttls:
                    client.starttls(context=self._tls)
                if s.username is not None and s.password is not None:
                    client.login(s.username, s.password)
                refused = client.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            raise NotificationFailed(f"SMTP delivery via {s.host}:{s.port} failed: {exc}",
                                     kind=notification.kind, host=s.host, port=s.port) from exc
        if refused:
            raise NotificationFailed(f"the SMTP server refused {len(refused)} recipient(s)",
                                     kind=notification.kind, refused=sorted(refused))
