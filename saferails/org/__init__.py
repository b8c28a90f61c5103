"""Org data (seed 000's world): employees, teams, roles, meetings, tasks, calendars, plus the effect ledger."""

from saferails.org.repository import OrgData, OrgRepository
from saferails.org.tables import (
    CalendarEvent,
    Effect,
    Employee,
    LedgerEntry,
    Meeting,
    MeetingAttendee,
    Role,
    TaskAssignment,
    Team,
)

__all__ = [
    "CalendarEvent",
    "Effect",
    "Employee",
    "LedgerEntry",
    "Meeting",
    "MeetingAttendee",
    "OrgData",
    "OrgRepository",
    "Role",
    "TaskAssignment",
    "Team",
]
