"""Mail notifications over real SMTP (``smtplib``), configured from ``SAFERAILS_SMTP_*`` settings."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from typing import TYPE_CHECKING

from saferails.notify.base import Notification, NotificationFailed

if TYPE_CHECKING:
    from saferails.settings import Settings


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = True
    timeout_seconds: float = 30.0


def load_smtp_settings(env: Mapping[str, str] | Settings | None = None) -> SmtpSettings:
    """The mail notifier's settings from ``env``: a ``Settings`` object, or a mapping of ``SAFERAILS_SMTP_HOST`` /
    ``PORT`` (default 587) / ``SENDER`` / ``USERNAME`` / ``PASSWORD`` / ``STARTTLS`` (default true) read by
    ``saferails.settings.load_settings`` (default: the process environment).

    Refused with ``ConfigurationError``: no host or sender, a port outside 1-65535, a username without a
    password (or the reverse), and a password sent without STARTTLS to anything but this machine.
    """
    from saferails.settings import Settings, load_settings

    settings = env if isinstance(env, Settings) else load_settings(env)
    return settings.smtp_settings()


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
