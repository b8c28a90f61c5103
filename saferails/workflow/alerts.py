"""Alerts raised by triggers and SLA sweeps.

An alert always leaves an ``alert_emitted`` audit record (who raised it, about what, through which channel);
when a notifier is configured it is also handed the alert, inside the caller's transaction, so a notifier
that raises rolls the triggering work back and the dispatcher retries it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from saferails import audit


@dataclass(frozen=True)
class Alert:
    alert_type: str
    message: str
    severity: str = "info"
    entity_type: str | None = None
    entity_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


Notifier = Callable[[Alert], None]


def emit(session: Session, alert: Alert, *, notifier: Notifier | None, actor: str, now: datetime) -> None:
    if notifier is not None:
        notifier(alert)
    audit.append(
        session,
        audit.AuditEntry(
            actor=actor,
            event="alert_emitted",
            entity_type=alert.entity_type or "workflow",
            entity_id=alert.entity_id,
            details={
                "alert_type": alert.alert_type,
                "message": alert.message,
                "severity": alert.severity,
                "channel": "notifier" if notifier is not None else "audit",
                **alert.details,
            },
        ),
        now=now,
    )
