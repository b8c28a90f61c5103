"""Approvals with real one-time codes, for tests that are not about codes.

Approval codes are always required (unless a policy rule waives them), so a test that approves must hold the
approver's code. ``coded_service`` builds an ``ActionService`` wired like ``open_store``: real ``ApprovalCodes``
(issued, stored hashed, verified and spent), delivered to an in-memory ``CodeInbox``. Its ``approve`` and
``reject`` type in the code the approver received when the caller passes none, as an approver reading its inbox
would; a caller that passes a code (or an approver that received none) gets exactly the production checks.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from saferails.actions.models import ActionView
from saferails.actions.service import ActionService
from saferails.approvals import ApprovalCodes, approval_notifications
from saferails.clock import Clock, SystemClock
from saferails.notify.base import Notification
from saferails.policy import Policy
from saferails.store.db import transaction
from saferails.store.tables import Action

SECRET = b"test-approval-secret-0123456789abcdef"


class CodeInbox:
    """A notifier keeping every notification; ``code_for`` is the latest code an approver got for an action."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []
        self._codes: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def send(self, notification: Notification) -> None:
        with self._lock:
            self.sent.append(notification)
            code = notification.data.get("code")
            if code and notification.entity_id:
                self._codes[(notification.entity_id, str(notification.data["approver"]))] = str(code)

    def remember(self, action_id: str, approver: str, code: str) -> None:
        with self._lock:
            self._codes[(action_id, approver)] = code

    def code_for(self, action_id: str, approver: str) -> str | None:
        with self._lock:
            return self._codes.get((action_id, approver))


class CodedActionService(ActionService):
    """An ActionService whose approvers use the codes they were sent (see the module docstring)."""

    inbox: CodeInbox
    codes: ApprovalCodes

    def approve(self, action_id: str, approver: str, *, code: str | None = None, **kwargs: Any) -> ActionView:
        return super().approve(action_id, approver, code=code or self.inbox.code_for(action_id, approver), **kwargs)

    def reject(self, action_id: str, approver: str, *, code: str | None = None, **kwargs: Any) -> ActionView:
        return super().reject(action_id, approver, code=code or self.inbox.code_for(action_id, approver), **kwargs)


def coded_service(
    sessions: sessionmaker[Session], policy: Policy, clock: Clock | None = None, **kwargs: Any
) -> CodedActionService:
    """An ``ActionService`` with real approval codes delivered to ``service.inbox`` (a ``CodeInbox``)."""
    clock = clock or SystemClock()
    codes = ApprovalCodes(SECRET, clock)
    inbox = CodeInbox()

    def hook(session: Session, row: Action) -> list[Notification]:
        return approval_notifications(session, row, codes.issue(session, row))

    service = CodedActionService(
        sessions, policy, clock, code_verifier=codes.verify, on_approval_requested=hook, notifier=inbox, **kwargs
    )
    service.inbox = inbox
    service.codes = codes
    return service


def reissue(service: CodedActionService, action_id: str, approver: str) -> str:
    """Issue ``approver`` a fresh code for ``action_id`` (the old one stops working) and return it."""
    with transaction(service.sessions) as session:
        code = service.codes.issue_for(session, action_id, [approver])[approver]
    service.inbox.remember(action_id, approver, code)
    return code
