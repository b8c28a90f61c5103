"""Calendar events in our store: seed 001's ``create_calendar_event`` (and the insert behind seed 000's
``schedule_focus_time``). Rollback deletes the event the action created, and only that event."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from saferails.actions.types import CreateCalendarEventParams
from saferails.clock import as_utc
from saferails.handlers.base import (
    APPLIED,
    NOT_APPLIED,
    ExecutionOutcome,
    HandlerContext,
    Reconciliation,
    RollbackConflict,
    parse_params,
)
from saferails.org.repository import OrgRepository
from saferails.org.tables import CalendarEvent

_EVENT_IDS = uuid.UUID("6f1d2a0e-6c52-4f1e-9a55-0c5a7a0e5e01")


def event_id_for(idempotency_key: str) -> str:
    """A stable event id derived from the action's idempotency key (the same action never makes two events)."""
    return str(uuid.uuid5(_EVENT_IDS, idempotency_key))


def insert_event(
    ctx: HandlerContext,
    *,
    idempotency_key: str,
    calendar_id: str,
    kind: str,
    title: str,
    start: datetime,
    end: datetime,
    description: str = "",
    location: str = "",
    attendees: list[str] | None = None,
) -> ExecutionOutcome:
    event_id = event_id_for(idempotency_key)
    ctx.session.add(
        CalendarEvent(
            id=event_id,
            calendar_id=calendar_id,
            kind=kind,
            title=title,
            description=description,
            location=location,
            attendees=list(attendees or []),
            start_at=start,
            end_at=end,
            action_id=ctx.action_id,
            created_at=ctx.clock.now(),
        )
    )
    ctx.session.flush()
    return ExecutionOutcome(
        result={"event_id": event_id, "calendar_id": calendar_id, "start": as_utc(start).isoformat()},
        rollback_data={"event_id": event_id},
    )


def event_reconciliation(ctx: HandlerContext, idempotency_key: str, calendar_id: str) -> Reconciliation:
    """Applied when the event this action creates (its id derives from the idempotency key) exists."""
    event_id = event_id_for(idempotency_key)
    row = OrgRepository(ctx.session).calendar_event(event_id)
    if row is None:
        return Reconciliation(NOT_APPLIED, f"no calendar event {event_id}")
    if row.action_id != ctx.action_id:
        return Reconciliation(NOT_APPLIED, f"calendar event {event_id} belongs to another action")
    result = {"event_id": event_id, "calendar_id": calendar_id, "start": as_utc(row.start_at).isoformat()}
    return Reconciliation(APPLIED, f"calendar event {event_id} exists", result, {"event_id": event_id})


def delete_event(ctx: HandlerContext, rollback_data: dict[str, Any]) -> dict[str, Any]:
    event_id = str(rollback_data["event_id"])
    row = OrgRepository(ctx.session).calendar_event(event_id)
    if row is None:
        return {"event_id": event_id, "deleted": False, "note": "already gone"}
    if row.action_id != ctx.action_id:
        raise RollbackConflict(f"calendar event {event_id} was not created by action {ctx.action_id}")
    ctx.session.delete(row)
    ctx.session.flush()
    return {"event_id": event_id, "deleted": True}


class CreateCalendarEventHandler:
    """``target`` is the calendar id (an employee id or a named calendar)."""

    action_type = "create_calendar_event"
    external = False

    def validate(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> None:
        parse_params(self.action_type, CreateCalendarEventParams, params)

    def capture(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"calendar_id": target, "event_exists": False}

    def preview(
        self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any]
    ) -> dict[str, Any]:
        p = parse_params(self.action_type, CreateCalendarEventParams, params)
        return {
            "summary": f"create event {p.title!r} in calendar {target}",
            "start": p.start_time.isoformat(),
            "end": p.end_time.isoformat(),
            "attendees": list(p.attendees),
        }

    def execute(
        self,
        ctx: HandlerContext,
        target: str,
        params: dict[str, Any],
        pre_state: dict[str, Any],
        idempotency_key: str,
    ) -> ExecutionOutcome:
        p = parse_params(self.action_type, CreateCalendarEventParams, params)
        return insert_event(
            ctx,
            idempotency_key=idempotency_key,
            calendar_id=target,
            kind="event",
            title=p.title,
            start=p.start_time,
            end=p.end_time,
            description=p.description,
            location=p.location,
            attendees=list(p.attendees),
        )

    def reconcile(
        self,
        ctx: HandlerContext,
        target: str,
        params: dict[str, Any],
        pre_state: dict[str, Any],
        idempotency_key: str,
    ) -> Reconciliation:
        return event_reconciliation(ctx, idempotency_key, target)

    def rollback(self, ctx: HandlerContext, target: str, rollback_data: dict[str, Any]) -> dict[str, Any]:
        return delete_event(ctx, rollback_data)
