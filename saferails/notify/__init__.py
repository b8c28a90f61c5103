"""Notifiers: deliver notifications (approval requests with codes, outcomes, SLA breaches, alerts)."""

from saferails.notify.base import (
    ApprovalRequest,
    Notification,
    NotificationFailed,
    NotificationKind,
    Notifier,
    Recipient,
    approval_requested,
)
from saferails.notify.outbox_log import InboxNotifier, JsonLinesNotifier
from saferails.notify.signing import WebhookSigner, new_secret, verify_webhook
from saferails.notify.smtp import SmtpNotifier, SmtpSettings, load_smtp_settings
from saferails.notify.webhook import WebhookNotifier

__all__ = [
    "ApprovalRequest",
    "InboxNotifier",
    "JsonLinesNotifier",
    "Notification",
    "NotificationFailed",
    "NotificationKind",
    "Notifier",
    "Recipient",
    "SmtpNotifier",
    "SmtpSettings",
    "WebhookNotifier",
    "WebhookSigner",
    "approval_requested",
    "load_smtp_settings",
    "new_secret",
    "verify_webhook",
]
