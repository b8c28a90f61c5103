"""Org data and effect-ledger tables (migration ``0003``), declared on the shared ``Base``.

The org tables are the world seed 000's interventions change: employees with their manager, team, role and
meeting-hours cap; teams; roles; meetings with attendees; task assignments; calendar events. ``ledger_entries``
records payments and purchases (seed 001), append-only: a rollback appends a reversing entry. ``effects``
records every applied handler effect under its idempotency key, written in the transaction that marks the
action completed, so an effect is recorded exactly once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from saferails.store.tables import Base, JSONType


class Team(Base):
    __tablename__ = "teams"
    id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))


class Role(Base):
    __tablename__ = "roles"
    id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))


class Employee(Base):
    """``role`` names a row of ``roles``; ``weekly_meeting_hours_cap`` is None when uncapped."""

    __tablename__ = "employees"
    id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    email: Mapped[str] = mapped_column(sa.String(320))
    manager_id: Mapped[str | None] = mapped_column(sa.ForeignKey("employees.id"))
    team_id: Mapped[str | None] = mapped_column(sa.ForeignKey("teams.id"))
    role: Mapped[str | None] = mapped_column(sa.ForeignKey("roles.id"))
    weekly_meeting_hours_cap: Mapped[float | None] = mapped_column(sa.Float)
    active: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (sa.Index("ix_employees_manager", "manager_id"), sa.Index("ix_employees_team", "team_id"))


class Meeting(Base):
    __tablename__ = "meetings"
    id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(300))
    organizer_id: Mapped[str] = mapped_column(sa.ForeignKey("employees.id"))
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]


class MeetingAttendee(Base):
    """``response`` is ``accepted`` or ``declined``; reduce_meetings declines and its rollback re-accepts."""

    __tablename__ = "meeting_attendees"
    meeting_id: Mapped[str] = mapped_column(sa.ForeignKey("meetings.id"), primary_key=True)
    employee_id: Mapped[str] = mapped_column(sa.ForeignKey("employees.id"), primary_key=True)
    response: Mapped[str] = mapped_column(sa.String(20), default="accepted")

    __table_args__ = (sa.Index("ix_meeting_attendees_employee", "employee_id"),)


class TaskAssignment(Base):
    """``status`` is ``open`` or ``done``; only open tasks are redistributed."""

    __tablename__ = "task_assignments"
    id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(300))
    assignee_id: Mapped[str] = mapped_column(sa.ForeignKey("employees.id"))
    status: Mapped[str] = mapped_column(sa.String(20), default="open")
    created_at: Mapped[datetime]

    __table_args__ = (sa.Index("ix_task_assignments_assignee", "assignee_id", "status"),)


class CalendarEvent(Base):
    """An event in a calendar (``calendar_id``: an employee id or a named calendar). ``action_id`` names the
    action that created it, if any."""

    __tablename__ = "calendar_events"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    calendar_id: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[str] = mapped_column(sa.String(20), default="event")  # event | focus_time
    title: Mapped[str] = mapped_column(sa.String(500))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    location: Mapped[str] = mapped_column(sa.String(500), default="")
    attendees: Mapped[list[Any]] = mapped_column(default=list)
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    action_id: Mapped[str | None] = mapped_column(sa.String(36))
    created_at: Mapped[datetime]

    __table_args__ = (sa.Index("ix_calendar_events_calendar", "calendar_id", "start_at"),)


class LedgerEntry(Base):
    """One money movement in minor units (cents). Money out of ``account`` is positive; a reversal carries the
    negated amount and names the entry it reverses. Entries are never updated or deleted."""

    __tablename__ = "ledger_entries"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    action_id: Mapped[str | None] = mapped_column(sa.String(36))
    kind: Mapped[str] = mapped_column(sa.String(20))  # payment | purchase | reversal
    account: Mapped[str] = mapped_column(sa.String(200))
    counterparty: Mapped[str] = mapped_column(sa.String(200))
    amount_minor: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    memo: Mapped[str] = mapped_column(sa.Text, default="")
    reverses_id: Mapped[str | None] = mapped_column(sa.ForeignKey("ledger_entries.id"))
    created_at: Mapped[datetime]

    __table_args__ = (sa.Index("ix_ledger_entries_account", "account", "currency"),)


class Effect(Base):
    """An applied handler effect. The primary key is the idempotency key: one effect per key, ever."""

    __tablename__ = "effects"
    idempotency_key: Mapped[str] = mapped_column(sa.String(300), primary_key=True)
    action_id: Mapped[str] = mapped_column(sa.ForeignKey("actions.id"))
    action_type: Mapped[str] = mapped_column(sa.String(100))
    result: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime]

    __table_args__ = (sa.Index("ix_effects_action", "action_id"),)


ORG_TABLES = ("teams", "roles", "employees", "meetings", "meeting_attendees", "task_assignments", "calendar_events")
