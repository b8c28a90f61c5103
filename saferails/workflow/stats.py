"""Workflow metadata (for UIs to introspect) and statistics (for operators)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from saferails.clock import as_utc
from saferails.store.tables import OutboxEvent
from saferails.workflow.machines import ACTION_PLAN_MACHINE, GUARD_RULES, PRIORITIES, TASK_MACHINE
from saferails.workflow.permissions import ROLE_PERMISSIONS, Permission
from saferails.workflow.tables import ActionPlan, AutomationTrigger, SlaRecord, Task
from saferails.workflow.triggers import BUILTIN_TRIGGERS


def workflow_metadata(session: Session | None = None) -> dict[str, Any]:
    """Machines (``StateMachine.describe()``), guard rules, priorities, permissions by role and triggers.

    With a session the triggers are the stored ones; without, seed 004's built-ins.
    """
    if session is None:
        triggers = [dict(t) for t in BUILTIN_TRIGGERS]
    else:
        triggers = [
            {
                "id": t.id,
                "event_type": t.event_type,
                "predicate": t.predicate,
                "actions": t.actions,
                "description": t.description,
                "active": t.active,
            }
            for t in session.execute(sa.select(AutomationTrigger).order_by(AutomationTrigger.id)).scalars()
        ]
    return {
        "state_machines": {m.entity_type: m.describe() for m in (TASK_MACHINE, ACTION_PLAN_MACHINE)},
        "rules": list(GUARD_RULES),
        "priorities": list(PRIORITIES),
        "permissions": [p.value for p in Permission],
        "roles": {role: sorted(p.value for p in perms) for role, perms in sorted(ROLE_PERMISSIONS.items())},
        "triggers": triggers,
    }


def workflow_stats(session: Session, now: datetime) -> dict[str, Any]:
    """Counts by state, SLA met/breached/open, outbox pending/lag (age in seconds of the oldest unprocessed,
    non-dead-lettered event; 0 when none) and dead letters."""
    tasks: dict[str, int] = {
        state: n for state, n in session.execute(sa.select(Task.state, sa.func.count()).group_by(Task.state))
    }
    plans: dict[str, int] = {
        state: n
        for state, n in session.execute(sa.select(ActionPlan.state, sa.func.count()).group_by(ActionPlan.state))
    }
    sla_open = _count(session, SlaRecord, SlaRecord.completed_at.is_(None))
    sla_breached = _count(session, SlaRecord, SlaRecord.breached.is_(True))
    sla_met = _count(
        session,
        SlaRecord,
        SlaRecord.completed_at.is_not(None),
        SlaRecord.breached.is_(False),
        SlaRecord.end_state == "completed",
    )
    pending = (OutboxEvent.processed_at.is_(None), OutboxEvent.dead_lettered_at.is_(None))
    oldest = session.execute(sa.select(sa.func.min(OutboxEvent.created_at)).where(*pending)).scalar_one_or_none()
    return {
        "tasks": {s: int(tasks.get(s, 0)) for s in TASK_MACHINE.states},
        "action_plans": {s: int(plans.get(s, 0)) for s in ACTION_PLAN_MACHINE.states},
        "sla": {
            "open": sla_open,
            "met": sla_met,
            "breached": sla_breached,
            "open_breached": _count(session, SlaRecord, SlaRecord.completed_at.is_(None), SlaRecord.breached.is_(True)),
        },
        "outbox": {
            "pending": _count(session, OutboxEvent, *pending),
            "lag_seconds": 0.0 if oldest is None else max(0.0, (now - as_utc(oldest)).total_seconds()),
            "dead_letters": _count(session, OutboxEvent, OutboxEvent.dead_lettered_at.is_not(None)),
        },
    }


def _count(session: Session, model: Any, *where: Any) -> int:
    return int(session.execute(sa.select(sa.func.count()).select_from(model).where(*where)).scalar_one())
