"""The playbook's action audit record (seed 003, ``action_audit_log``) over the actions table.

saferails keeps one record per action (``actions``) plus its hash-chained trail (``audit_log``); the playbook's
row is a view of both: workspace (``tenant``), type, scope, actor (the proposer) and actor role (the proposer's
groups when the policy decided), parameters, status (the action's state), result, error message, can-rollback,
and the started / completed / rolled-back times. A rollback is recorded on the action it undoes (state
``rolled_back``, ``rolled_back_at``, audit events ``rollback_started`` / ``rolled_back`` under the same id), so
the link between an action and its rollback is the action id; ``rolled_back_by`` and ``rollback_reason`` come
from the trail.

:func:`query_actions` filters by workspace, scope, actor and type, newest first, served by the indexes of
migration ``0011_fleet_audit`` (``tenant, scope, created_at``; ``tenant, created_at``; ``action_type,
created_at``) and ``ix_actions_rate`` (``proposer, action_type, created_at``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from saferails.actions import lifecycle as alc
from saferails.clock import as_utc
from saferails.errors import InvalidInput
from saferails.store.tables import Action, AuditRecord

FLEET_ACTIONS = ("pause_agent", "resume_agent", "set_budget")
MAX_LIMIT = 500
SCOPES = ("agent", "department", "fleet")


@dataclass(frozen=True)
class ActionAuditQuery:
    """Every given filter must match; ``None`` means any. ``action_type`` None means the fleet controls
    (:data:`FLEET_ACTIONS`). ``before`` pages: pass the previous page's last ``created_at``. Raises
    ``InvalidInput`` for a scope outside :data:`SCOPES` or a limit outside 1..500."""

    workspace: str | None = None
    scope: str | None = None
    actor: str | None = None
    action_type: str | None = None
    before: datetime | None = None
    limit: int = 50

    def __post_init__(self) -> None:
        if self.scope is not None and self.scope not in SCOPES:
            raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}", scope=self.scope)
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be 1..{MAX_LIMIT}", limit=self.limit)
        if self.before is not None and self.before.tzinfo is None:
            raise InvalidInput("before must be timezone-aware")


@dataclass(frozen=True)
class ActionAuditRecord:
    action_id: str
    workspace: str
    action_type: str
    scope: str | None
    target: str
    actor: str
    actor_role: str | None
    params: dict[str, Any]
    status: str
    result: dict[str, Any] | None
    error_message: str | None
    can_rollback: bool
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    rolled_back_at: datetime | None
    rolled_back_by: str | None
    rollback_reason: str | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.__dict__)
        for key in ("created_at", "started_at", "completed_at", "rolled_back_at"):
            out[key] = None if out[key] is None else out[key].isoformat()
        return out


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _can_rollback(row: Action) -> bool:
    if row.state != alc.COMPLETED:
        return False
    return bool((row.result or {}).get("can_rollback", row.rollback_data is not None))


def query_actions(session: Session, q: ActionAuditQuery, tenants: frozenset[str] | None = None,
                  ) -> list[ActionAuditRecord]:
    """The actions ``q`` selects, newest first (ties by id). ``tenants`` (None: every one) limits the result to
    the workspaces the caller may see."""
    stmt = sa.select(Action)
    if q.action_type is not None:
        stmt = stmt.where(Action.action_type == q.action_type)
    else:
        stmt = stmt.where(Action.action_type.in_(FLEET_ACTIONS))
    if q.workspace is not None:
        stmt = stmt.where(Action.tenant == q.workspace)
    if tenants is not None:
        stmt = stmt.where(Action.tenant.in_(sorted(tenants)))
    if q.scope is not None:
        stmt = stmt.where(Action.scope == q.scope)
    if q.actor is not None:
        stmt = stmt.where(Action.proposer == q.actor)
    if q.before is not None:
        stmt = stmt.where(Action.created_at < q.before)
    rows = session.scalars(stmt.order_by(Action.created_at.desc(), Action.id.desc()).limit(q.limit)).all()
    rollbacks = _rollbacks(session, [r.id for r in rows if r.rolled_back_at is not None])
    return [
        ActionAuditRecord(
            action_id=r.id, workspace=r.tenant, action_type=r.action_type, scope=r.scope, target=r.target,
            actor=r.proposer, actor_role=r.actor_role, params=dict(r.params), status=r.state, result=r.result,
            error_message=r.error, can_rollback=_can_rollback(r), created_at=as_utc(r.created_at),
            started_at=_aware(r.executed_at), completed_at=_aware(r.finished_at),
            rolled_back_at=_aware(r.rolled_back_at),
            rolled_back_by=rollbacks.get(r.id, (None, None))[0], rollback_reason=rollbacks.get(r.id, (None, None))[1],
        )
        for r in rows
    ]


def _rollbacks(session: Session, action_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """Who asked for each action's rollback, and why (its ``rollback_started`` audit record)."""
    if not action_ids:
        return {}
    found: dict[str, tuple[str, str | None]] = {}
    records = session.execute(
        sa.select(AuditRecord.entity_id, AuditRecord.actor, AuditRecord.details)
        .where(AuditRecord.entity_type == "action", AuditRecord.entity_id.in_(action_ids),
               AuditRecord.event == "rollback_started")
        .order_by(AuditRecord.sequence)
    ).all()
    for entity_id, actor, details in records:
        try:
            reason = json.loads(details).get("reason")
        except (ValueError, AttributeError):
            reason = None
        if entity_id is not None:
            found[entity_id] = (actor, reason if isinstance(reason, str) else None)
    return found


__all__ = ["FLEET_ACTIONS", "SCOPES", "ActionAuditQuery", "ActionAuditRecord", "query_actions"]
