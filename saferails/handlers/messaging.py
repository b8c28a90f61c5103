"""``send_email`` over real SMTP to the configured server (external handler).

The Message-ID is derived from the action's idempotency key, so a send retried after a crash carries the same
Message-ID and the receiving side (or a person) can recognise the duplicate. SMTP 4xx replies and connection
errors are transient (the executor retries them); 5xx replies are permanent (``PermanentEffectError``).

A sent email cannot be unsent. ``rollback`` therefore sends a correction notice to the same recipients,
referring to the original by Message-ID (``In-Reply-To`` / ``References``) and saying that the message is
withdrawn and why; the rollback result records the notice's Message-ID. ``capture`` records nothing, because
there is no pre-state to restore.
"""

from __future__ import annotations

import hashlib
import smtplib
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from saferails.actions.types import SendEmailParams
from saferails.errors import InvalidParams
from saferails.handlers.base import (
    UNKNOWN,
    ExecutionOutcome,
    HandlerContext,
    HandlerSettings,
    PermanentEffectError,
    Reconciliation,
    parse_params,
)


def message_id_for(idempotency_key: str, suffix: str = "") -> str:
    digest = hashlib.sha256(f"{idempotency_key}{suffix}".encode()).hexdigest()[:32]
    return f"<{digest}@saferails>"


def deliver(settings: HandlerSettings, message: EmailMessage) -> None:
    """Send ``message`` to the configured SMTP server; 5xx -> ``PermanentEffectError``, others propagate."""
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_username is not None and settings.smtp_password is not None:
                smtp.login(settings.smtp_username, settings.smtp_password)
            smtp.send_message(message)
    except smtplib.SMTPNotSupportedError as exc:
        # e.g. an internationalised address to a server without SMTPUTF8: the same message fails every time.
        raise PermanentEffectError(f"SMTP server cannot carry this message: {exc}") from exc
    except (UnicodeError, ValueError) as exc:
        raise PermanentEffectError(f"message cannot be encoded for SMTP: {exc}") from exc
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        if all(code >= 500 for code in codes):
            raise PermanentEffectError(f"SMTP refused every recipient: {exc.recipients}") from exc
        raise
    except smtplib.SMTPResponseException as exc:
        if exc.smtp_code >= 500:
            raise PermanentEffectError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", smtp_code=exc.smtp_code) from exc
        raise


class SendEmailHandler:
    """``target`` names the mailbox the agent acts for; the From address is the configured sender."""

    action_type = "send_email"
    external = True

    def validate(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> None:
        parse_params(self.action_type, SendEmailParams, params)
        ctx.settings.require_sender()

    def capture(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    def preview(
        self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any]
    ) -> dict[str, Any]:
        p = parse_params(self.action_type, SendEmailParams, params)
        return {
            "summary": f"send {p.subject!r} to {', '.join(p.to)}",
            "cc": list(p.cc),
            "body_excerpt": p.body[:500],
            "irreversible": "a sent email cannot be unsent; rollback sends a correction notice",
        }

    def execute(
        self,
        ctx: HandlerContext,
        target: str,
        params: dict[str, Any],
        pre_state: dict[str, Any],
        idempotency_key: str,
    ) -> ExecutionOutcome:
        p = parse_params(self.action_type, SendEmailParams, params)
        msg = EmailMessage()
        try:
            msg["From"] = ctx.settings.require_sender()
            msg["To"] = ", ".join(p.to)
            if p.cc:
                msg["Cc"] = ", ".join(p.cc)
            msg["Subject"] = p.subject
            msg["Date"] = format_datetime(ctx.clock.now())
            msg["Message-ID"] = message_id_for(idempotency_key)
            msg["X-Saferails-Action"] = ctx.action_id
            msg.set_content(p.body)
            if p.html is not None:
                msg.add_alternative(p.html, subtype="html")
        except (ValueError, TypeError, LookupError) as exc:
            # A malformed message is the request's fault, not the server's: refused for good, never retried.
            raise InvalidParams(self.action_type, [f"message cannot be built: {exc}"]) from None
        deliver(ctx.settings, msg)
        recipients = [*p.to, *p.cc]
        data = {"message_id": msg["Message-ID"], "recipients": recipients, "subject": p.subject}
        return ExecutionOutcome(result=dict(data), rollback_data=data | {"idempotency_key": idempotency_key})

    def reconcile(
        self,
        ctx: HandlerContext,
        target: str,
        params: dict[str, Any],
        pre_state: dict[str, Any],
        idempotency_key: str,
    ) -> Reconciliation:
        """Always unknown: whether the SMTP server accepted the message cannot be observed from here (the
        Message-ID derived from the idempotency key lets a person find it in the recipients' mail)."""
        return Reconciliation(UNKNOWN, f"delivery of {message_id_for(idempotency_key)} cannot be checked")

    def rollback(self, ctx: HandlerContext, target: str, rollback_data: dict[str, Any]) -> dict[str, Any]:
        original = rollback_data["message_id"]
        msg = EmailMessage()
        msg["From"] = ctx.settings.require_sender()
        msg["To"] = ", ".join(rollback_data["recipients"])
        msg["Subject"] = f"Correction: {rollback_data['subject']}"
        msg["Date"] = format_datetime(ctx.clock.now())
        msg["Message-ID"] = message_id_for(rollback_data["idempotency_key"], ":correction")
        msg["In-Reply-To"] = original
        msg["References"] = original
        msg["X-Saferails-Action"] = ctx.action_id
        msg.set_content(
            f"Please disregard the message {original} with the subject {rollback_data['subject']!r}: "
            f"it has been withdrawn.\n\nReason: {ctx.reason or 'not given'}\n"
        )
        deliver(ctx.settings, msg)
        return {"correction_message_id": msg["Message-ID"], "recalled": original, "unsent": False}
