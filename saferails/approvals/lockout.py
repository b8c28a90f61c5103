"""Refused approval attempts: audited, counted, and after too many, locked out for a while.

A one-time code has 60 bits, so guessing is hopeless, but a refused attempt is still a signal (someone is
trying codes, or approving as somebody else) and must leave a trace even though it changes nothing. Each
refusal of an approve/reject is recorded as an ``approval_refused`` audit event on the action (actor = the
approver the attempt claimed to be, with the channel and the internal reason). The audit log is also the
counter: when ``threshold`` refusals for one (approver, action) fall within ``window``, further attempts are
refused with ``ApprovalLockedOut`` until the oldest of them leaves the window. Attempts refused because of the
lockout are audited as ``approval_locked_out`` and do not extend it, so a locked-out approver can try again once
the window has passed.

Edges must pass the AUTHENTICATED principal's id as the approver; on the Prefect UI channel (where anyone who
reaches the server can type a name) a stranger can lock an approver out of one action for one window, which is
the price of refusing guesses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from saferails import transitions
from saferails.clock import as_utc
from saferails.errors import ApprovalLockedOut, SaferailsError
from saferails.store.tables import AuditRecord

__all__ = ["LOCKED_OUT_EVENT", "REFUSED_EVENT", "Lockout", "check_lockout", "record_refusal"]

REFUSED_EVENT = "approval_refused"
LOCKED_OUT_EVENT = "approval_locked_out"
ENTITY = "action"


@dataclass(frozen=True)
class Lockout:
    """``threshold`` refused attempts within ``window`` lock an approver out of one action."""

    threshold: int = 5
    window: timedelta = timedelta(minutes=15)

    def __post_init__(self) -> None:
        if self.threshold < 1 or self.window <= timedelta(0):
            raise ValueError("a lockout needs a threshold >= 1 and a positive window")


def locked_until(session: Session, lockout: Lockout, action_id: str, approver: str, now: datetime) -> datetime | None:
    """When the lockout of ``approver`` on ``action_id`` ends, or None if attempts are allowed at ``now``."""
    times = session.scalars(
        sa.select(AuditRecord.occurred_at)
        .where(
            AuditRecord.entity_id == action_id,
            AuditRecord.entity_type == ENTITY,
            AuditRecord.event == REFUSED_EVENT,
            AuditRecord.actor == approver,
            AuditRecord.occurred_at > now - lockout.window,
        )
        .order_by(AuditRecord.sequence.desc())
        .limit(lockout.threshold)
    ).all()
    if len(times) < lockout.threshold:
        return None
    until = min(as_utc(t) for t in times) + lockout.window
    return until if until > now else None


def check_lockout(session: Session, lockout: Lockout, action_id: str, approver: str, now: datetime) -> None:
    """Raise ``ApprovalLockedOut`` while ``approver`` is locked out of ``action_id``."""
    until = locked_until(session, lockout, action_id, approver, now)
    if until is not None:
        raise ApprovalLockedOut(
            f"too many refused approval attempts by {approver} on action {action_id}; try again after "
            f"{until.isoformat()}",
            action_id=action_id,
            approver=approver,
            locked_until=until.isoformat(),
            internal_reason="locked_out",
        )


def record_refusal(
    session: Session,
    row: Any,
    *,
    approver: str,
    decision: str,
    channel: str,
    error: SaferailsError,
    now: datetime,
) -> None:
    """Audit one refused approve/reject of the action ``row`` (locked by the caller) without changing it."""
    details: Mapping[str, Any] = error.details
    transitions.record_event(
        session,
        ENTITY,
        row,
        actor=approver,
        event=LOCKED_OUT_EVENT if isinstance(error, ApprovalLockedOut) else REFUSED_EVENT,
        now=now,
        details={
            "decision": decision,
            "channel": channel,
            "error_code": error.code,
            "internal_reason": details.get("internal_reason", error.code.lower()),
            "action_hash": row.action_hash,
        },
    )
