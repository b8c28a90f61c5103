"""What a notifier is and what it sends. Notifiers deliver; they decide nothing and read no store.

A :class:`Notification` is a frozen value: the recipients (principal id plus email where known), a subject,
a plain-text body (always; HTML is optional), its ``kind``, the entity it is about and a JSON-serialisable
``data`` dict for machine consumers (webhooks, the demo log). ``send`` either delivers or raises
:class:`NotificationFailed`; it never swallows a failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from saferails.errors import SaferailsError

NotificationKind = Literal["approval_requested", "approval_outcome", "negative_outcome", "sla_breach", "alert"]
KINDS: tuple[NotificationKind, ...] = ("approval_requested", "approval_outcome", "negative_outcome", "sla_breach",
                                       "alert")


class NotificationFailed(SaferailsError):
    """A notifier could not deliver (server refused, unreachable after retries, no usable recipient)."""

    code = "NOTIFICATION_FAILED"
    exit_code = 10
    http_status = 502


@dataclass(frozen=True)
class Recipient:
    """Who a notification is for: a principal id and, when known, the address mail notifiers deliver to."""

    principal_id: str
    email: str | None = None


@dataclass(frozen=True)
class Notification:
    kind: NotificationKind
    subject: str
    text: str
    recipients: tuple[Recipient, ...]
    html: str | None = None
    entity_type: str = "action"
    entity_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown notification kind {self.kind!r}; one of {', '.join(KINDS)}")
        if not self.subject.strip():
            raise ValueError("a notification needs a subject")

    @property
    def action_id(self) -> str | None:
        return self.entity_id if self.entity_type == "action" else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (webhook body, JSON-lines log)."""
        return {
            "kind": self.kind,
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "recipients": [{"principal_id": r.principal_id, "email": r.email} for r in self.recipients],
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "data": dict(self.data),
        }


class Notifier(Protocol):
    def send(self, notification: Notification) -> None:
        """Deliver ``notification`` or raise ``NotificationFailed``."""
        ...


@dataclass(frozen=True)
class ApprovalRequest:
    """Everything an approver needs to decide, independent of the store row it came from."""

    action_id: str
    action_type: str
    target: str
    params: Mapping[str, Any]
    proposer: str
    reason: str
    impact: str
    rules: Sequence[str]
    deadline: datetime
    min_approvals: int
    action_hash: str


def approval_requested(request: ApprovalRequest, recipient: Recipient, code: str | None) -> Notification:
    """The message one approver gets: what, on whom, who asked and why, impact, rules fired, the deadline and
    (unless the policy waived codes) the approver's own one-time code."""
    params = "\n".join(f"    {k}: {v}" for k, v in sorted(request.params.items())) or "    (none)"
    code_line = (f"Your one-time approval code: {code}\n(single use, for you only, valid until the deadline)"
                 if code is not None else "No approval code is required for this action.")
    text = (
        f"Approval requested for action {request.action_id}\n\n"
        f"What:      {request.action_type}\n"
        f"On:        {request.target}\n"
        f"Params:\n{params}\n"
        f"Asked by:  {request.proposer}\n"
        f"Why:       {request.reason or '(no reason given)'}\n"
        f"Impact:    {request.impact}\n"
        f"Rules:     {', '.join(request.rules) or '-'}\n"
        f"Approvals: {request.min_approvals} needed\n"
        f"Deadline:  {request.deadline.isoformat()}\n\n"
        f"{code_line}\n"
    )
    return Notification(
        kind="approval_requested",
        subject=f"[saferails] approval needed: {request.action_type} on {request.target}",
        text=text,
        recipients=(recipient,),
        entity_type="action",
        entity_id=request.action_id,
        data={
            "action_id": request.action_id,
            "action_type": request.action_type,
            "target": request.target,
            "params": dict(request.params),
            "proposer": request.proposer,
            "reason": request.reason,
            "impact": request.impact,
            "rules": list(request.rules),
            "deadline": request.deadline.isoformat(),
            "min_approvals": request.min_approvals,
            "action_hash": request.action_hash,
            "approver": recipient.principal_id,
            "code": code,
        },
    )
