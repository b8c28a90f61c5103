"""Load and insert org data. Takes a session, never commits: the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from saferails.errors import InvalidInput, NotFound
from saferails.org.tables import (
    ORG_TABLES,
    CalendarEvent,
    Employee,
    LedgerEntry,
    Meeting,
    MeetingAttendee,
    Role,
    TaskAssignment,
    Team,
)
from saferails.store.tables import Base


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TeamIn(_In):
    id: str = Field(min_length=1)
    name: str = ""


class RoleIn(_In):
    id: str = Field(min_length=1)
    name: str = ""


class EmployeeIn(_In):
    id: str = Field(min_length=1)
    name: str
    email: str
    manager_id: str | None = None
    team_id: str | None = None
    role: str | None = None
    weekly_meeting_hours_cap: float | None = Field(default=None, gt=0)
    active: bool = True


class MeetingIn(_In):
    id: str = Field(min_length=1)
    title: str
    organizer_id: str
    start_at: datetime
    end_at: datetime
    attendees: list[str] = Field(default_factory=list)


class TaskIn(_In):
    id: str = Field(min_length=1)
    title: str
    assignee_id: str
    status: str = Field(default="open", pattern="^(open|done)$")
    created_at: datetime


class OrgData(_In):
    """A whole org in one document (the demo's seed, a test's world). Order inside lists does not matter."""

    teams: list[TeamIn] = Field(default_factory=list)
    roles: list[RoleIn] = Field(default_factory=list)
    employees: list[EmployeeIn] = Field(default_factory=list)
    meetings: list[MeetingIn] = Field(default_factory=list)
    tasks: list[TaskIn] = Field(default_factory=list)


class OrgRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # --- loading --------------------------------------------------------------------------------------------
    def insert(self, data: OrgData | Mapping[str, Any]) -> None:
        """Insert an org document. Raises ``InvalidInput`` for a malformed document; a reference to a missing
        row fails the caller's transaction (foreign keys), so nothing is written."""
        if not isinstance(data, OrgData):
            try:
                data = OrgData.model_validate(dict(data))
            except ValidationError as exc:
                raise InvalidInput(f"invalid org data: {exc.errors()[0]['msg']}", errors=len(exc.errors())) from None
        s = self.session
        s.add_all([Team(id=t.id, name=t.name or t.id) for t in data.teams])
        s.add_all([Role(id=r.id, name=r.name or r.id) for r in data.roles])
        s.flush()
        # Managers reference employees: insert everyone without a manager first, then link.
        s.add_all([Employee(**e.model_dump(exclude={"manager_id"})) for e in data.employees])
        s.flush()
        for e in data.employees:
            if e.manager_id is not None:
                self.require_employee(e.id).manager_id = e.manager_id
        for m in data.meetings:
            s.add(Meeting(**m.model_dump(exclude={"attendees"})))
            s.flush()
            for who in sorted({m.organizer_id, *m.attendees}):
                s.add(MeetingAttendee(meeting_id=m.id, employee_id=who, response="accepted"))
        s.add_all([TaskAssignment(**t.model_dump()) for t in data.tasks])
        s.flush()

    # --- reading --------------------------------------------------------------------------------------------
    def employee(self, employee_id: str) -> Employee | None:
        return self.session.get(Employee, employee_id)

    def require_employee(self, employee_id: str) -> Employee:
        row = self.session.get(Employee, employee_id)
        if row is None:
            raise NotFound("employee", employee_id)
        return row

    def team(self, team_id: str) -> Team | None:
        return self.session.get(Team, team_id)

    def role(self, role_id: str) -> Role | None:
        return self.session.get(Role, role_id)

    def manager_chain(self, employee_id: str, limit: int = 1000) -> list[str]:
        """The managers above ``employee_id``, nearest first (stops at a cycle or after ``limit`` steps)."""
        chain: list[str] = []
        current = self.employee(employee_id)
        while current is not None and current.manager_id is not None and len(chain) < limit:
            if current.manager_id in chain:
                break
            chain.append(current.manager_id)
            current = self.employee(current.manager_id)
        return chain

    def open_tasks(self, assignee_id: str) -> list[TaskAssignment]:
        stmt = (
            sa.select(TaskAssignment)
            .where(TaskAssignment.assignee_id == assignee_id, TaskAssignment.status == "open")
            .order_by(TaskAssignment.created_at, TaskAssignment.id)
        )
        return list(self.session.execute(stmt).scalars())

    def accepted_meetings(self, employee_id: str, since: datetime) -> list[tuple[Meeting, MeetingAttendee]]:
        """Meetings ``employee_id`` has accepted that start at or after ``since``, earliest first."""
        stmt = (
            sa.select(Meeting, MeetingAttendee)
            .join(MeetingAttendee, MeetingAttendee.meeting_id == Meeting.id)
            .where(
                MeetingAttendee.employee_id == employee_id,
                MeetingAttendee.response == "accepted",
                Meeting.start_at >= since,
            )
            .order_by(Meeting.start_at, Meeting.id)
        )
        return [(m, a) for m, a in self.session.execute(stmt)]

    def attendee(self, meeting_id: str, employee_id: str) -> MeetingAttendee | None:
        return self.session.get(MeetingAttendee, (meeting_id, employee_id))

    def calendar_event(self, event_id: str) -> CalendarEvent | None:
        return self.session.get(CalendarEvent, event_id)

    def ledger_entry(self, entry_id: str) -> LedgerEntry | None:
        return self.session.get(LedgerEntry, entry_id)

    def balance_minor(self, account: str, currency: str) -> int:
        """Net money out of ``account`` in ``currency``, minor units (reversals included)."""
        stmt = sa.select(sa.func.coalesce(sa.func.sum(LedgerEntry.amount_minor), 0)).where(
            LedgerEntry.account == account, LedgerEntry.currency == currency
        )
        return int(self.session.execute(stmt).scalar_one())

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every org table as sorted rows of plain values: two snapshots compare equal iff the org is the same."""
        out: dict[str, list[dict[str, Any]]] = {}
        for name in ORG_TABLES:
            table = Base.metadata.tables[name]
            rows = self.session.execute(sa.select(table)).mappings()
            out[name] = sorted((dict(r) for r in rows), key=repr)
        return out
