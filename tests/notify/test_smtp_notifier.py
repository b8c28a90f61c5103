"""The SMTP notifier against a real local SMTP server."""

from __future__ import annotations

from typing import Any

import pytest

from saferails.actions.service import ActionService, Proposal
from saferails.approvals import ApprovalCodes, approval_notifications
from saferails.clock import ManualClock
from saferails.errors import ConfigurationError
from saferails.notify import Notification, NotificationFailed, Recipient, SmtpNotifier, SmtpSettings, load_smtp_settings
from saferails.policy import default_policy
from saferails.store.db import transaction
from saferails.store.tables import Action

SECRET = b"an-approval-secret-of-at-least-32-bytes"


def local(server: Any) -> SmtpSettings:
    return SmtpSettings(host=server.host, port=server.port, sender="saferails@example.com", starttls=False)


def test_the_approver_receives_their_code_by_mail(db: Any, clock: ManualClock, smtp_server: Any) -> None:
    codes = ApprovalCodes(SECRET, clock)
    service = ActionService(db.sessions, default_policy(), clock, code_verifier=codes.verify)
    service.upsert_principal("alice", email="alice@example.com", groups=["approvers"])
    action = service.propose(Proposal(action_type="role_change", target="emp_7", params={"new_role": "lead"},
                                      proposer="agent-1", reason="promotion"))
    with transaction(db.sessions) as session:
        row = session.get(Action, action.id)
        assert row is not None
        issued = codes.issue(session, row)
        notes = approval_notifications(session, row, issued)
    notifier = SmtpNotifier(local(smtp_server))
    for note in notes:
        notifier.send(note)

    [(rcpt, message)] = smtp_server.messages
    assert rcpt == ["alice@example.com"]
    assert "role_change on emp_7" in message["Subject"]
    body = message.get_payload(decode=True).decode()
    assert issued["alice"] in body and "promotion" in body
    assert service.approve(action.id, "alice", code=issued["alice"]).state == "approved"


def test_html_is_sent_as_an_alternative_to_the_text(smtp_server: Any) -> None:
    note = Notification(kind="alert", subject="disk full", text="plain words", html="<p>rich words</p>",
                        recipients=(Recipient("ops", "ops@example.com"), Recipient("bot")))
    SmtpNotifier(local(smtp_server)).send(note)
    [(rcpt, message)] = smtp_server.messages
    assert rcpt == ["ops@example.com"]
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in message.walk() if not p.is_multipart()}
    assert "plain words" in parts["text/plain"] and "rich words" in parts["text/html"]


def test_a_notification_nobody_can_receive_by_mail_fails_loudly(smtp_server: Any) -> None:
    note = Notification(kind="alert", subject="s", text="t", recipients=(Recipient("bot"),))
    with pytest.raises(NotificationFailed):
        SmtpNotifier(local(smtp_server)).send(note)
    assert smtp_server.messages == []


def test_an_unreachable_server_fails_loudly(smtp_server: Any) -> None:
    settings = SmtpSettings(host="127.0.0.1", port=smtp_server.port, sender="s@example.com", starttls=True)
    note = Notification(kind="alert", subject="s", text="t", recipients=(Recipient("a", "a@example.com"),))
    with pytest.raises(NotificationFailed):
        SmtpNotifier(settings).send(note)  # the test server offers no STARTTLS


def test_settings_come_from_the_environment() -> None:
    settings = load_smtp_settings({"SAFERAILS_SMTP_HOST": "mail.example.com", "SAFERAILS_SMTP_PORT": "2525",
                                   "SAFERAILS_SMTP_SENDER": "rails@example.com", "SAFERAILS_SMTP_USERNAME": "u",
                                   "SAFERAILS_SMTP_PASSWORD": "hunter2-secret"})
    assert (settings.host, settings.port, settings.starttls, settings.username) == ("mail.example.com", 2525,
                                                                                    True, "u")
    assert settings.password == "hunter2-secret"
    assert "hunter2-secret" not in repr(settings)


@pytest.mark.parametrize("env", [
    {},
    {"SAFERAILS_SMTP_HOST": "mail.example.com", "SAFERAILS_SMTP_SENDER": "nobody"},
    {"SAFERAILS_SMTP_HOST": "mail.example.com", "SAFERAILS_SMTP_SENDER": "a@example.com", "SAFERAILS_SMTP_PORT": "0"},
    {"SAFERAILS_SMTP_HOST": "mail.example.com", "SAFERAILS_SMTP_SENDER": "a@example.com",
     "SAFERAILS_SMTP_USERNAME": "u"},
    {"SAFERAILS_SMTP_HOST": "mail.example.com", "SAFERAILS_SMTP_SENDER": "a@example.com",
     "SAFERAILS_SMTP_USERNAME": "u", "SAFERAILS_SMTP_PASSWORD": "p", "SAFERAILS_SMTP_STARTTLS": "false"},
], ids=["no host", "sender not an address", "port zero", "username without password",
        "password in clear text to a remote host"])
def test_unsafe_or_incomplete_smtp_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        load_smtp_settings(env)
