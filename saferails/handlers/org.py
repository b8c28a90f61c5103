"""Seed 000's interventions, applied to the org tables in our store (store-local: the change commits with the
action's ``completed`` state). ``target`` is always an employee id.

Every rollback restores exactly what the action changed and refuses (``RollbackConflict``) when someone changed
the same value since, rather than overwrite their change.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

from pydantic import BaseModel

from saferails.actions.types import (
    ReassignManagerParams,
    RedistributeTasksParams,
    ReduceMeetingsParams,
    RoleChangeParams,
    ScheduleFocusTimeParams,
    TeamRestructureParams,
)
from saferails.clock import as_utc
from saferails.errors import InvalidParams
from saferails.handlers.base import (
    ExecutionOutcome,
    HandlerContext,
    Reconciliation,
    RollbackConflict,
    StoreLocal,
    parse_params,
)
from saferails.handlers.calendar import delete_event, event_reconciliation, insert_event
from saferails.org.repository import OrgRepository
from saferails.org.tables import Employee, TaskAssignment


def _active_employee(ctx: HandlerContext, action_type: str, employee_id: str, what: str) -> Employee:
    row = OrgRepository(ctx.session).employee(employee_id)
    if row is None or not row.active:
        raise InvalidParams(action_type, [f"{what} {employee_id!r} is not an active employee"])
    return row


class _EmployeeFieldHandler(StoreLocal):
    """Set one column of the target employee; rollback puts the old value back."""

    action_type: str
    column: ClassVar[str]
    params_model: ClassVar[type[BaseModel]]
    param: ClassVar[str]

    def _new_value(self, params: dict[str, Any]) -> str:
        return str(getattr(parse_params(self.action_type, self.params_model, params), self.param))

    def check_value(self, ctx: HandlerContext, employee: Employee, value: str) -> None:
        raise NotImplementedError

    def validate(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> None:
        employee = _active_employee(ctx, self.action_type, target, "target")
        self.check_value(ctx, employee, self._new_value(params))

    def capture(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> dict[str, Any]:
        employee = OrgRepository(ctx.session).require_employee(target)
        return {"employee_id": target, self.column: getattr(employee, self.column)}

    def preview(
        self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any]
    ) -> dict[str, Any]:
        new = self._new_value(params)
        return {
            "summary": f"{self.column} of {target}: {pre_state[self.column]!r} -> {new!r}",
            "changes": {self.column: {"from": pre_state[self.column], "to": new}},
        }

    def execute(
        self,
        ctx: HandlerContext,
        target: str,
        params: dict[str, Any],
        pre_state: dict[str, Any],
        idempotency_key: str,
    ) -> ExecutionOutcome:
        employee = OrgRepository(ctx.session).require_employee(target)
        old, new = getattr(employee, self.column), self._new_value(params)
        setattr(employee, self.column, new)
        ctx.session.flush()
        return ExecutionOutcome(
            result={"employee_id": target, self.column: new, "previous": old},
            rollback_data={"employee_id": target, "restore": old, "expected": new},
        )

    def rollback(self, ctx: HandlerContext, target: str, rollback_data: dict[str, Any]) -> dict[str, Any]:
        employee = OrgRepository(ctx.session).require_employee(str(rollback_data["employee_id"]))
        current = getattr(employee, self.column)
        if current != rollback_data["expected"]:
            raise RollbackConflict(
                f"{self.column} of {employee.id} is now {current!r}, not {rollback_data['expected']!r}: "
                "changed since the action ran"
            )
        setattr(employee, self.column, rollback_data["restore"])
        ctx.session.flush()
        return {"employee_id": employee.id, self.column: rollback_data["restore"]}


class ReassignManagerHandler(_EmployeeFieldHandler):
    action_type = "reassign_manager"
    column = "manager_id"
    params_model = ReassignManagerParams
    param = "new_manager_id"

    def check_value(self, ctx: HandlerContext, employee: Employee, value: str) -> None:
        _active_employee(ctx, self.action_type, value, "new manager")
        if value == employee.id or employee.id in OrgRepository(ctx.session).manager_chain(value):
            raise InvalidParams(self.action_type, [f"{value} reports to {employee.id}: that would make a cycle"])


class TeamRestructureHandler(_EmployeeFieldHandler):
    action_type = "team_restructure"
    column = "team_id"
    params_model = TeamRestructureParams
    param = "new_team_id"

    def check_value(self, ctx: HandlerContext, employee: Employee, value: str) -> None:
        if OrgRepository(ctx.session).team(value) is None:
            raise InvalidParams(self.action_type, [f"new_team_id: no team {value!r}"])


class RoleChangeHandler(_EmployeeFieldHandler):
    action_type = "role_change"
    column = "role"
    params_model = RoleChangeParams
    param = "new_role"

    def check_value(self, ctx: HandlerContext, employee: Employee, value: str) -> None:
        if OrgRepository(ctx.session).role(value) is None:
            raise InvalidParams(self.action_type, [f"new_role: no role {value!r}"])


class ReduceMeetingsHandler(StoreLocal):
    """Set the target's weekly meeting-hours cap and decline the upcoming meetings above it: within each ISO
    week, accepted meetings are kept in start order while they fit under the cap; the rest are declined.
    Rollback restores the cap and re-accepts exactly the meetings this action declined."""

    action_type = "reduce_meetings"

    def validate(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> None:
        parse_params(self.action_type, ReduceMeetingsParams, params)
        _active_employee(ctx, self.action_type, target, "target")

    def _plan(self, ctx: HandlerContext, target: str, cap: float) -> list[str]:
        used: dict[tuple[int, int], float] = defaultdict(float)
        declined: list[str] = []
        for meeting, _ in OrgRepository(ctx.session).accepted_meetings(target, ctx.clock.now()):
            start, end = as_utc(meeting.start_at), as_utc(meeting.end_at)
            hours = (end - start).total_seconds() / 3600
            week = start.isocalendar()[:2]
            if used[week] + hours <= cap:
                used[week] += hours
            else:
                declined.append(meeting.id)
        return declined

    def capture(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> dict[str, Any]:
        employee = OrgRepository(ctx.session).require_employee(target)
        upcoming = OrgRepository(ctx.session).accepted_meetings(target, ctx.clock.now())
        return {
            "employee_id": target,
            "weekly_meeting_hours_cap": employee.weekly_meeting_hours_cap,
            "accepted_meetings": [m.id for m, _ in upcoming],
        }

    def preview(
        self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any]
    ) -> dict[str, Any]:
        cap = parse_params(self.action_type, ReduceMeetingsParams, params).max_weekly_meeting_hours
        declined = self._plan(ctx, target, cap)
        return {"summary": f"cap {target} at {cap} h/week, decline {len(declined)} meetings", "decline": declined}

    def execute(
        self,
        ctx: HandlerContext,
        target: str,
        params: dict[str, Any],
        pre_state: dict[str, Any],
        idempotency_key: str,
    ) -> ExecutionOutcome:
        cap = parse_params(self.action_type, ReduceMeetingsParams, params).max_weekly_meeting_hours
        repo = OrgRepository(ctx.session)
        employee = repo.require_employee(target)
        previous_cap = employee.weekly_meeting_hours_cap
        declined = self._plan(ctx, target, cap)
        for meeting_id in declined:
            attendee = repo.attendee(meeting_id, target)
            assert attendee is not None  # _plan only returns meetings the target attends
            attendee.response = "declined"
        employee.weekly_meeting_hours_cap = cap
        ctx.session.flush()
        return ExecutionOutcome(
            result={"employee_id": target, "weekly_meeting_hours_cap": cap, "declined": declined},
            rollback_data={"employee_id": target, "previous_cap": previous_cap, "cap": cap, "declined": declined},
        )

    def rollback(self, ctx: HandlerContext, target: str, rollback_data: dict[str, Any]) -> dict[str, Any]:
        repo = OrgRepository(ctx.session)
        employee = repo.require_employee(str(rollback_data["employee_id"]))
        if employee.weekly_meeting_hours_cap != rollback_data["cap"]:
            raise RollbackConflict(f"the meeting cap of {employee.id} changed since the action ran")
        reaccepted = []
        for meeting_id in rollback_data["declined"]:
            attendee = repo.attendee(meeting_id, employee.id)
            if attendee is not None and attendee.response == "declined":
                attendee.response = "accepted"
                reaccepted.append(meeting_id)
        employee.weekly_meeting_hours_cap = rollback_data["previous_cap"]
        ctx.session.flush()
        return {"employee_id": employee.id, "reaccepted": reaccepted}


class RedistributeTasksHandler(StoreLocal):
    """Move the target's open tasks (oldest first, at most ``max_tasks``) to the given colleagues round-robin.
    Rollback gives back every moved task still held by the colleague it went to."""

    action_type = "redistribute_tasks"

    def validate(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> None:
        p = parse_params(self.action_type, RedistributeTasksParams, params)
        _active_employee(ctx, self.action_type, target, "target")
        if len(set(p.to_employee_ids)) != len(p.to_employee_ids) or target in p.to_employee_ids:
            raise InvalidParams(self.action_type, ["to_employee_ids: must be distinct and exclude the target"])
        for colleague in p.to_employee_ids:
            _active_employee(ctx, self.action_type, colleague, "to_employee_ids:")

    def _moves(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> list[tuple[TaskAssignment, str]]:
        p = parse_params(self.action_type, RedistributeTasksParams, params)
        tasks = OrgRepository(ctx.session).open_tasks(target)[: p.max_tasks]
        return [(task, p.to_employee_ids[i % len(p.to_employee_ids)]) for i, task in enumerate(tasks)]

    def capture(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"employee_id": target, "open_tasks": [t.id for t in OrgRepository(ctx.session).open_tasks(target)]}

    def preview(
        self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any]
    ) -> dict[str, Any]:
        moves = [{"task_id": t.id, "to": to} for t, to in self._moves(ctx, target, params)]
        return {"summary": f"move {len(moves)} open tasks of {target}", "moves": moves}

    def execute(
        self,
        ctx: HandlerContext,
        target: str,
        params: dict[str, Any],
        pre_state: dict[str, Any],
        idempotency_key: str,
    ) -> ExecutionOutcome:
        moves = []
        for task, to in self._moves(ctx, target, params):
            task.assignee_id = to
            moves.append({"task_id": task.id, "from": target, "to": to})
        ctx.session.flush()
        return ExecutionOutcome(result={"moved": moves}, rollback_data={"moves": moves})

    def rollback(self, ctx: HandlerContext, target: str, rollback_data: dict[str, Any]) -> dict[str, Any]:
        restored, skipped = [], []
        for move in rollback_data["moves"]:
            task = ctx.session.get(TaskAssignment, move["task_id"])
            if task is not None and task.assignee_id == move["to"]:
                task.assignee_id = move["from"]
                restored.append(move["task_id"])
            else:
                skipped.append(move["task_id"])
        if skipped:
            raise RollbackConflict(f"tasks reassigned since the action ran: {', '.join(skipped)}", skipped=skipped)
        ctx.session.flush()
        return {"restored": restored}


class ScheduleFocusTimeHandler:
    """Insert a focus-time block into the target employee's calendar; rollback deletes it."""

    action_type = "schedule_focus_time"
    external = False

    def validate(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> None:
        parse_params(self.action_type, ScheduleFocusTimeParams, params)
        _active_employee(ctx, self.action_type, target, "target")

    def capture(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"calendar_id": target, "event_exists": False}

    def preview(
        self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any]
    ) -> dict[str, Any]:
        p = parse_params(self.action_type, ScheduleFocusTimeParams, params)
        return {"summary": f"block {p.title!r} for {target}", "start": p.start.isoformat(), "end": p.end.isoformat()}

    def execute(
        self,
        ctx: HandlerContext,
        target: str,
        params: dict[str, Any],
        pre_state: dict[str, Any],
        idempotency_key: str,
    ) -> ExecutionOutcome:
        p = parse_params(self.action_type, ScheduleFocusTimeParams, params)
        return insert_event(
            ctx,
            idempotency_key=idempotency_key,
            calendar_id=target,
            kind="focus_time",
            title=p.title,
            start=p.start,
            end=p.end,
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
