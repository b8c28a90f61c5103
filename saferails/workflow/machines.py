"""Task and action-plan lifecycles (seed 004's diagrams) and their registration with ``saferails.transitions``.

Task::

    new ──► in_progress ──► completed
     │  ╲        ▲  │  ╲
     │   ╲       │  ▼   ╲
     │    ► blocked ──────► cancelled   (new, in_progress and blocked may all be cancelled)

ActionPlan::

    draft ──► active ──► archived
      └──────────────────►┘

Guards (the reasons are what ``TRANSITION_GUARD_FAILED`` reports):

* a task cannot start or resume (``-> in_progress``) without an assignee: nobody would be working on it;
* a task cannot start, resume or complete while its action plan is archived: the plan it serves is retired;
* an action plan cannot be activated without at least one goal: an active plan must say what it is for.

Cancelling is never guarded, so no task is ever stuck.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from saferails import transitions
from saferails.lifecycle import StateMachine, Transition
from saferails.transitions import AuditSubject, EntityKind
from saferails.workflow.tables import ActionPlan, Task

TASK = "task"
ACTION_PLAN = "action_plan"

NEW = "new"
IN_PROGRESS = "in_progress"
BLOCKED = "blocked"
COMPLETED = "completed"
CANCELLED = "cancelled"

DRAFT = "draft"
ACTIVE = "active"
ARCHIVED = "archived"

PRIORITIES = ("low", "medium", "high", "critical")


@dataclass(frozen=True)
class TaskFacts:
    """What task guards may know: the assignee and the state of the task's action plan (None without one)."""

    assigned_to: str | None
    plan_state: str | None


@dataclass(frozen=True)
class PlanFacts:
    goals: int


def _has_assignee(f: TaskFacts) -> str | None:
    return None if f.assigned_to else "the task has no assignee"


def _plan_not_archived(f: TaskFacts) -> str | None:
    return "the task's action plan is archived" if f.plan_state == ARCHIVED else None


def _has_goal(f: PlanFacts) -> str | None:
    return None if f.goals > 0 else "the action plan has no goals"


TASK_MACHINE = StateMachine.define(
    TASK,
    initial=NEW,
    final=[COMPLETED, CANCELLED],
    transitions=[
        Transition(NEW, IN_PROGRESS, "started", (_has_assignee, _plan_not_archived), "start work"),
        Transition(NEW, BLOCKED, "blocked", (), "issue identified"),
        Transition(NEW, CANCELLED, "cancelled", (), "cancelled"),
        Transition(IN_PROGRESS, COMPLETED, "completed", (_plan_not_archived,), "work finished"),
        Transition(IN_PROGRESS, BLOCKED, "blocked", (), "issue encountered"),
        Transition(IN_PROGRESS, CANCELLED, "cancelled", (), "cancelled"),
        Transition(BLOCKED, IN_PROGRESS, "resumed", (_has_assignee, _plan_not_archived), "issue resolved"),
        Transition(BLOCKED, CANCELLED, "cancelled", (), "cannot resolve"),
    ],
    descriptions={
        NEW: "created, not started",
        IN_PROGRESS: "someone is working on it",
        BLOCKED: "waiting on an issue",
        COMPLETED: "work finished",
        CANCELLED: "will not be done",
    },
)

ACTION_PLAN_MACHINE = StateMachine.define(
    ACTION_PLAN,
    initial=DRAFT,
    final=[ARCHIVED],
    transitions=[
        Transition(DRAFT, ACTIVE, "activated", (_has_goal,), "activate plan"),
        Transition(DRAFT, ARCHIVED, "archived", (), "archive without activation"),
        Transition(ACTIVE, ARCHIVED, "archived", (), "complete or retire plan"),
    ],
    descriptions={DRAFT: "being written", ACTIVE: "in force", ARCHIVED: "completed or retired"},
)

GUARD_RULES: tuple[str, ...] = (
    "task -> in_progress needs an assignee",
    "task -> in_progress / completed refused while its action plan is archived",
    "action_plan draft -> active needs at least one goal",
)


def _task_facts(session: Session, row: Task, _now: datetime) -> TaskFacts:
    plan_state = None
    if row.action_plan_id is not None:
        plan_state = session.execute(
            sa.select(ActionPlan.state).where(ActionPlan.id == row.action_plan_id)
        ).scalar_one_or_none()
    return TaskFacts(assigned_to=row.assigned_to, plan_state=plan_state)


def _plan_facts(_session: Session, row: ActionPlan, _now: datetime) -> PlanFacts:
    return PlanFacts(goals=len(row.goals or []))


def task_payload(row: Task) -> dict[str, Any]:
    return {
        "task_id": row.id,
        "title": row.title,
        "task_type": row.task_type,
        "priority": row.priority,
        "state": row.state,
        "assigned_to": row.assigned_to,
        "created_by": row.created_by,
        "action_plan_id": row.action_plan_id,
    }


def plan_payload(row: ActionPlan) -> dict[str, Any]:
    return {"action_plan_id": row.id, "title": row.title, "state": row.state, "created_by": row.created_by}


TASK_KIND = transitions.register_entity(
    EntityKind(
        entity_type=TASK,
        model=Task,
        machine=TASK_MACHINE,
        event_prefix="Task",
        audit_subject=lambda r: AuditSubject(action_type=None, target=f"task:{r.id}"),
        subject=_task_facts,
        payload=task_payload,
    )
)

ACTION_PLAN_KIND = transitions.register_entity(
    EntityKind(
        entity_type=ACTION_PLAN,
        model=ActionPlan,
        machine=ACTION_PLAN_MACHINE,
        event_prefix="ActionPlan",
        audit_subject=lambda r: AuditSubject(action_type=None, target=f"action_plan:{r.id}"),
        subject=_plan_facts,
        payload=plan_payload,
    )
)
