"""The one function that changes state.

Every state change of every entity (actions, tasks, action plans, runbook executions) goes through
``transition``: lock the row, check the transition against the entity's state machine (guards included),
write the new state, append the audit record and the outbox event. It runs inside the caller's transaction and
never commits, so the four writes land together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from saferails import audit, outbox
from saferails.errors import ConcurrentModification, InvalidInput, NotFound
from saferails.lifecycle import StateMachine


@dataclass(frozen=True)
class AuditSubject:
    action_type: str | None = None
    target: str | None = None
    tenant: str = "default"


def _row_itself(_session: Session, row: Any, _now: datetime) -> Any:
    return row


def _no_payload(_row: Any) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class EntityKind:
    """How one entity type plugs into ``transition``.

    Outbox event types are ``{event_prefix}StateChanged`` for transitions (seed 004's ``TaskStateChanged``) and
    the CamelCased audit event otherwise, prefixed unless it already starts with the prefix
    (``action_proposed`` -> ``ActionProposed``, ``created`` on a task -> ``TaskCreated``).

    ``subject`` builds what the guards see (the row, or facts derived from it such as the number of valid
    approvals); ``audit_subject`` names the action type / target / tenant for audit queries; ``payload`` is the
    entity snapshot put in every outbox event so consumers need not read the row back.
    """

    entity_type: str
    model: type[Any]
    machine: StateMachine
    event_prefix: str
    audit_subject: Callable[[Any], AuditSubject]
    subject: Callable[[Session, Any, datetime], Any] = _row_itself
    payload: Callable[[Any], dict[str, Any]] = _no_payload
    extra: Mapping[str, Any] = field(default_factory=dict)


_KINDS: dict[str, EntityKind] = {}


def register_entity(kind: EntityKind) -> EntityKind:
    """Register an entity kind (idempotent for the same object)."""
    existing = _KINDS.get(kind.entity_type)
    if existing is not None and existing is not kind:
        raise InvalidInput(f"entity type {kind.entity_type!r} is already registered")
    _KINDS[kind.entity_type] = kind
    return kind


def entity_kind(entity_type: str) -> EntityKind:
    try:
        return _KINDS[entity_type]
    except KeyError:
        raise InvalidInput(f"unknown entity type {entity_type!r}", known=sorted(_KINDS)) from None


def registered_kinds() -> dict[str, EntityKind]:
    return dict(_KINDS)


def lock_row(session: Session, kind: EntityKind, entity_id: str) -> Any:
    """Load and lock one row for the rest of the transaction (FOR UPDATE on PostgreSQL; on SQLite the
    transaction already holds the writer lock). ``populate_existing`` discards any stale copy in the session."""
    stmt = (
        sa.select(kind.model)
        .where(kind.model.id == entity_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    row = session.execute(stmt).scalar_one_or_none()
    if row is None:
        raise NotFound(kind.entity_type, entity_id)
    return row


def create(
    session: Session,
    entity_type: str,
    row: Any,
    *,
    actor: str,
    event: str,
    now: datetime,
    details: Mapping[str, Any] | None = None,
    correlation_id: str | None = None,
) -> Any:
    """Insert a new entity in its machine's initial state, with its audit record and outbox event."""
    kind = entity_kind(entity_type)
    row.state = kind.machine.initial
    row.version = 1
    row.created_at = now
    row.updated_at = now
    session.add(row)
    _record(
        session,
        kind,
        row,
        actor=actor,
        event=event,
        now=now,
        details=dict(details or {}),
        change=None,
        correlation_id=correlation_id,
    )
    return row


def transition(
    session: Session,
    entity_type: str,
    entity_id: str,
    target: str,
    *,
    actor: str,
    event: str,
    now: datetime,
    details: Mapping[str, Any] | None = None,
    changes: Mapping[str, Any] | None = None,
    expected_version: int | None = None,
    correlation_id: str | None = None,
    locked_row: Any | None = None,
) -> Any:
    """Move ``entity_id`` to ``target``. Raises ``NotFound``, ``InvalidTransition``, ``GuardRejected`` or
    ``ConcurrentModification``; on any raise nothing has been written by this call.

    ``changes`` are column values written together with the state (e.g. ``result``, ``rollback_data``).
    Guards see the entity after ``changes`` are applied in memory; if a guard refuses, the session must be
    rolled back by the caller (the transaction context manager does this).
    ``locked_row`` skips the lookup when the caller already holds the row locked in this transaction (it created
    it, or locked it with ``lock_row``).
    """
    kind = entity_kind(entity_type)
    row = locked_row if locked_row is not None else lock_row(session, kind, entity_id)
    if expected_version is not None and row.version != expected_version:
        raise ConcurrentModification(
            f"{entity_type} {entity_id} is at version {row.version}, expected {expected_version}",
            entity_id=entity_id,
        )
    source = row.state
    kind.machine.check(source, target, kind.subject(session, row, now), entity_id=entity_id)
    for column, value in (changes or {}).items():
        setattr(row, column, value)
    row.state = target
    row.version += 1
    row.updated_at = now
    _record(
        session,
        kind,
        row,
        actor=actor,
        event=event,
        now=now,
        details=dict(details or {}),
        change=(source, target),
        correlation_id=correlation_id,
    )
    return row


def record_event(
    session: Session,
    entity_type: str,
    row: Any,
    *,
    actor: str,
    event: str,
    now: datetime,
    details: Mapping[str, Any] | None = None,
    correlation_id: str | None = None,
) -> None:
    """Audit and announce something that happened to an entity without changing its state (an approval that
    does not yet reach the quorum, a rollback attempt that failed, a notification sent)."""
    kind = entity_kind(entity_type)
    _record(
        session,
        kind,
        row,
        actor=actor,
        event=event,
        now=now,
        details=dict(details or {}),
        change=None,
        correlation_id=correlation_id,
    )


def _record(
    session: Session,
    kind: EntityKind,
    row: Any,
    *,
    actor: str,
    event: str,
    now: datetime,
    details: dict[str, Any],
    change: tuple[str, str] | None,
    correlation_id: str | None,
) -> None:
    subject = kind.audit_subject(row)
    audit_details = dict(details)
    if change is not None:
        audit_details["from_state"], audit_details["to_state"] = change
    else:
        audit_details.setdefault("state", row.state)
    audit.append(
        session,
        audit.AuditEntry(
            actor=actor,
            event=event,
            entity_type=kind.entity_type,
            entity_id=str(row.id),
            action_type=subject.action_type,
            target=subject.target,
            tenant=subject.tenant,
            details=audit_details,
        ),
        now=now,
    )
    payload = {**kind.payload(row), **audit_details, "event": event}
    outbox.append(
        session,
        outbox.DomainEvent(
            event_type=_event_type(kind.event_prefix, event, state_changed=change is not None),
            aggregate_type=kind.entity_type,
            aggregate_id=str(row.id),
            actor=actor,
            payload=payload,
            tenant=subject.tenant,
            correlation_id=correlation_id,
        ),
        now=now,
    )


def _event_type(prefix: str, event: str, *, state_changed: bool) -> str:
    if state_changed:
        return f"{prefix}StateChanged"
    camel = "".join(part.capitalize() for part in event.split("_"))
    return camel if camel.startswith(prefix) else prefix + camel
