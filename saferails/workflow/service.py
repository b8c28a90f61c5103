"""The workflow service: the core API the CLI, Python callers and flows use for tasks, plans, SLA configs
and triggers.

Every public method takes a ``WorkflowActor``, checks its permission, runs in one transaction (state, audit and
outbox together through ``saferails.transitions``) and returns a frozen view, or raises a typed error having
written nothing: ``PermissionDenied`` (PERMISSION_DENIED), ``InvalidInput`` (INVALID_INPUT, CONDITION_INVALID),
``NotFound``, ``InvalidTransition`` (INVALID_TRANSITION) or ``GuardRejected`` (TRANSITION_GUARD_FAILED).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from saferails.boundary import typed_errors
from saferails.clock import Clock, SystemClock
from saferails.errors import InvalidInput, InvalidTransition, NotFound, PermissionDenied
from saferails.store.db import transaction
from saferails.workflow import ops, stats
from saferails.workflow.machines import ACTION_PLAN, ACTIVE, TASK
from saferails.workflow.metrics import METRICS, WorkflowMetrics
from saferails.workflow.permissions import Permission, WorkflowActor, require, require_task_update
from saferails.workflow.tables import ActionPlan, AutomationTrigger, SlaConfig, SlaRecord, Task
from saferails.workflow.triggers import validate_trigger
from saferails.workflow.views import ActionPlanView, SlaConfigView, SlaRecordView, TaskView, TriggerView


class WorkflowService:
    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock | None = None, *, metrics: WorkflowMetrics = METRICS
    ) -> None:
        self.sessions = sessions
        self.clock: Clock = clock or SystemClock()
        self.metrics = metrics

    # --- tasks --------------------------------------------------------------------------------------------
    def create_task(self, actor: WorkflowActor, **fields: Any) -> TaskView:
        """Create a task in ``new`` (fields: see ``ops.TaskInput``); opens its SLA record. Needs CREATE_TASK."""
        require(actor, Permission.CREATE_TASK)
        spec = ops.parse(ops.TaskInput, fields, "task")
        with transaction(self.sessions) as session:
            return TaskView.of(ops.create_task(session, spec, actor=actor.id, now=self.clock.now()))

    def transition_task(self, actor: WorkflowActor, task_id: str, target: str, *, reason: str = "",
                        context: dict[str, Any] | None = None) -> TaskView:
        """Move a task to ``target``. Needs UPDATE_TASK and, for plain users, being its creator or assignee."""
        with self._counted(TASK), transaction(self.sessions) as session:
            task = self._task(session, task_id)
            require_task_update(actor, task.created_by, task.assigned_to)
            details = {"reason": reason, **({"context": context} if context else {})}
            row = ops.change_state(session, TASK, task_id, target, actor=actor.id, now=self.clock.now(),
                                   details=details)
            return TaskView.of(row)

    def get_task(self, task_id: str) -> TaskView:
        with transaction(self.sessions) as session:
            return TaskView.of(self._task(session, task_id))

    def list_tasks(self, *, state: str | None = None, task_type: str | None = None, assigned_to: str | None = None,
                   action_plan_id: str | None = None, limit: int = 50) -> list[TaskView]:
        """Newest first, at most ``limit`` (1..1000)."""
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000", limit=limit)
        stmt = sa.select(Task).order_by(Task.created_at.desc(), Task.id).limit(limit)
        for column, value in ((Task.state, state), (Task.task_type, task_type), (Task.assigned_to, assigned_to),
                              (Task.action_plan_id, action_plan_id)):
            if value is not None:
                stmt = stmt.where(column == value)
        with transaction(self.sessions) as session:
            return [TaskView.of(r) for r in session.execute(stmt).scalars()]

    def sla_record(self, task_id: str) -> SlaRecordView | None:
        with transaction(self.sessions) as session:
            row = session.execute(sa.select(SlaRecord).where(SlaRecord.task_id == task_id)).scalar_one_or_none()
            return None if row is None else SlaRecordView.of(row)

    def list_sla_records(self, *, breached: bool | None = None, open_only: bool = False,
                         limit: int = 100) -> list[SlaRecordView]:
        """SLA records, most overdue first (earliest ``due_at``); ``breached=True`` lists the breaches."""
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000", limit=limit)
        stmt = sa.select(SlaRecord).order_by(SlaRecord.due_at, SlaRecord.id).limit(limit)
        if breached is not None:
            stmt = stmt.where(SlaRecord.breached.is_(breached))
        if open_only:
            stmt = stmt.where(SlaRecord.completed_at.is_(None))
        with transaction(self.sessions) as session:
            return [SlaRecordView.of(r) for r in session.execute(stmt).scalars()]

    # --- action plans -------------------------------------------------------------------------------------
    def create_action_plan(self, actor: WorkflowActor, **fields: Any) -> ActionPlanView:
        """Create a plan in ``draft`` (title, description, goals, metadata). Needs CREATE_ACTION_PLAN."""
        require(actor, Permission.CREATE_ACTION_PLAN)
        spec = ops.parse(ops.PlanInput, fields, "action plan")
        with transaction(self.sessions) as session:
            return ActionPlanView.of(ops.create_plan(session, spec, actor=actor.id, now=self.clock.now()))

    def transition_action_plan(self, actor: WorkflowActor, plan_id: str, target: str, *,
                               reason: str = "") -> ActionPlanView:
        """Activation needs ACTIVATE_ACTION_PLAN; any other change CREATE_ACTION_PLAN."""
        require(actor, Permission.ACTIVATE_ACTION_PLAN if target == ACTIVE else Permission.CREATE_ACTION_PLAN)
        with self._counted(ACTION_PLAN), transaction(self.sessions) as session:
            row = ops.change_state(session, ACTION_PLAN, plan_id, target, actor=actor.id, now=self.clock.now(),
                                   details={"reason": reason})
            return ActionPlanView.of(row)

    def activate_action_plan(self, actor: WorkflowActor, plan_id: str) -> ActionPlanView:
        return self.transition_action_plan(actor, plan_id, ACTIVE)

    def archive_action_plan(self, actor: WorkflowActor, plan_id: str) -> ActionPlanView:
        return self.transition_action_plan(actor, plan_id, "archived")

    def get_action_plan(self, plan_id: str) -> ActionPlanView:
        with transaction(self.sessions) as session:
            row = session.get(ActionPlan, plan_id)
            if row is None:
                raise NotFound(ACTION_PLAN, plan_id)
            return ActionPlanView.of(row)

    def list_action_plans(self, *, state: str | None = None, limit: int = 50) -> list[ActionPlanView]:
        stmt = sa.select(ActionPlan).order_by(ActionPlan.created_at.desc(), ActionPlan.id).limit(limit)
        if state is not None:
            stmt = stmt.where(ActionPlan.state == state)
        with transaction(self.sessions) as session:
            return [ActionPlanView.of(r) for r in session.execute(stmt).scalars()]

    # --- SLA configs --------------------------------------------------------------------------------------
    def create_sla_config(self, actor: WorkflowActor, *, service_area: str, task_type: str, target_minutes: int,
                          active: bool = True) -> SlaConfigView:
        """Needs MANAGE_SLA. One config per (service_area, task_type); ``target_minutes`` 1..525600."""
        require(actor, Permission.MANAGE_SLA)
        _check_sla(service_area, task_type, target_minutes)
        row = SlaConfig(id=str(uuid.uuid4()), service_area=service_area, task_type=task_type,
                        target_minutes=target_minutes, active=active, created_at=self.clock.now())
        try:
            with transaction(self.sessions) as session:
                session.add(row)
                session.flush()
                return SlaConfigView.of(row)
        except IntegrityError:
            raise InvalidInput(f"an SLA config for service area {service_area!r} and task type {task_type!r} "
                               "already exists", service_area=service_area, task_type=task_type) from None

    def update_sla_config(self, actor: WorkflowActor, config_id: str, *, target_minutes: int | None = None,
                          active: bool | None = None) -> SlaConfigView:
        """Changes apply to records started afterwards (records keep the target they started with)."""
        require(actor, Permission.MANAGE_SLA)
        with transaction(self.sessions) as session:
            row = self._sla(session, config_id)
            if target_minutes is not None:
                _check_sla(row.service_area, row.task_type, target_minutes)
                row.target_minutes = target_minutes
            if active is not None:
                row.active = active
            return SlaConfigView.of(row)

    def delete_sla_config(self, actor: WorkflowActor, config_id: str) -> None:
        require(actor, Permission.MANAGE_SLA)
        with transaction(self.sessions) as session:
            session.delete(self._sla(session, config_id))

    def list_sla_configs(self, *, active_only: bool = False) -> list[SlaConfigView]:
        stmt = sa.select(SlaConfig).order_by(SlaConfig.service_area, SlaConfig.task_type)
        if active_only:
            stmt = stmt.where(SlaConfig.active.is_(True))
        with transaction(self.sessions) as session:
            return [SlaConfigView.of(r) for r in session.execute(stmt).scalars()]

    # --- triggers -----------------------------------------------------------------------------------------
    def create_trigger(self, actor: WorkflowActor, definition: dict[str, Any]) -> TriggerView:
        """Store a trigger (see ``saferails.workflow.triggers`` for the document). Needs MANAGE_TRIGGERS."""
        require(actor, Permission.MANAGE_TRIGGERS)
        spec = validate_trigger(definition)
        now = self.clock.now()
        try:
            with transaction(self.sessions) as session:
                row = AutomationTrigger(id=spec.id, event_type=spec.event_type, predicate=spec.predicate,
                                        actions=spec.actions, description=spec.description, active=spec.active,
                                        created_at=now, updated_at=now)
                session.add(row)
                session.flush()
                return TriggerView.of(row)
        except IntegrityError:
            raise InvalidInput(f"trigger {spec.id!r} already exists", trigger_id=spec.id) from None

    def update_trigger(self, actor: WorkflowActor, trigger_id: str, **changes: Any) -> TriggerView:
        """Replace any of event_type, predicate, actions, description, active; the result is re-validated."""
        require(actor, Permission.MANAGE_TRIGGERS)
        with transaction(self.sessions) as session:
            row = self._trigger(session, trigger_id)
            spec = validate_trigger({**TriggerView.of(row).to_dict(), **changes, "id": trigger_id})
            row.event_type, row.predicate, row.actions = spec.event_type, spec.predicate, spec.actions
            row.description, row.active, row.updated_at = spec.description, spec.active, self.clock.now()
            return TriggerView.of(row)

    def delete_trigger(self, actor: WorkflowActor, trigger_id: str) -> None:
        require(actor, Permission.MANAGE_TRIGGERS)
        with transaction(self.sessions) as session:
            session.delete(self._trigger(session, trigger_id))

    def list_triggers(self, *, active_only: bool = False) -> list[TriggerView]:
        stmt = sa.select(AutomationTrigger).order_by(AutomationTrigger.id)
        if active_only:
            stmt = stmt.where(AutomationTrigger.active.is_(True))
        with transaction(self.sessions) as session:
            return [TriggerView.of(r) for r in session.execute(stmt).scalars()]

    # --- introspection ------------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """State machines, permissions, rules and stored triggers, for a UI. No permission needed."""
        with transaction(self.sessions) as session:
            return stats.workflow_metadata(session)

    def stats(self, actor: WorkflowActor, now: datetime | None = None) -> dict[str, Any]:
        """Counts by state, SLA met/breached/open, outbox lag and dead letters. Needs VIEW_STATS."""
        require(actor, Permission.VIEW_STATS)
        with transaction(self.sessions) as session:
            return stats.workflow_stats(session, now or self.clock.now())

    # --- helpers ------------------------------------------------------------------------------------------
    def _counted(self, entity_type: str) -> _TransitionCounter:
        return _TransitionCounter(self.metrics, entity_type)

    @staticmethod
    def _task(session: Session, task_id: str) -> Task:
        row = session.get(Task, task_id)
        if row is None:
            raise NotFound(TASK, task_id)
        return row

    @staticmethod
    def _sla(session: Session, config_id: str) -> SlaConfig:
        row = session.get(SlaConfig, config_id)
        if row is None:
            raise NotFound("sla_config", config_id)
        return row

    @staticmethod
    def _trigger(session: Session, trigger_id: str) -> AutomationTrigger:
        row = session.get(AutomationTrigger, trigger_id)
        if row is None:
            raise NotFound("automation_trigger", trigger_id)
        return row


class _TransitionCounter:
    """Counts ``workflow_transition_total{entity_type, result}`` around one service call."""

    def __init__(self, metrics: WorkflowMetrics, entity_type: str) -> None:
        self.metrics = metrics
        self.entity_type = entity_type

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            result = "success"
        elif issubclass(exc_type, InvalidTransition):
            result = "invalid"
        elif issubclass(exc_type, PermissionDenied):
            result = "denied"
        else:
            result = "error"
        self.metrics.transitions.labels(self.entity_type, result).inc()


def _check_sla(service_area: str, task_type: str, target_minutes: int) -> None:
    problems = []
    if not service_area.strip() or len(service_area) > 100:
        problems.append("service_area must be 1..100 characters")
    if not task_type.strip() or len(task_type) > 100:
        problems.append("task_type must be 1..100 characters")
    if isinstance(target_minutes, bool) or not isinstance(target_minutes, int) or not 1 <= target_minutes <= 525_600:
        problems.append("target_minutes must be an integer between 1 and 525600")
    if problems:
        raise InvalidInput(f"invalid SLA config: {'; '.join(problems)}", problems=problems)


# Every public method refuses bad input with a typed error, even when it only surfaces in the driver.
for _name in [n for n, v in vars(WorkflowService).items() if callable(v) and not n.startswith("_")]:
    setattr(WorkflowService, _name, typed_errors(getattr(WorkflowService, _name)))
