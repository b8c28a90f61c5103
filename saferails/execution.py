"""Execution and undo: run an approved action through its handler, and roll a finished one back.

Contract of ``ExecutionService.execute``:

1. One transaction moves ``approved -> executing`` (the lifecycle guards re-check the policy decision or the
   approval quorum bound to the action hash, and ``scheduled_for``), storing the pre-state the handler
   captured. It is committed before any effect, so a crash leaves a visible ``executing`` action for the sweep.
2. The handler runs with retries (exponential backoff through the injected sleeper) behind a circuit breaker
   per action type. Every failed attempt is audited (``execution_attempt_failed``: attempt, error, next delay).
   A store-local handler's attempt runs inside the transaction that also records the effect and moves the
   action to ``completed``: effect and state commit together or not at all. An external handler's effect is
   recorded in ``effects`` (keyed by the idempotency key) in the completing transaction.
3. A ``PartialEffect`` is compensated (``handler.rollback`` with its data; for store-local handlers the
   transaction rollback already undid it) and audited ``compensated`` / ``compensation_failed``.
4. Success: ``executing -> completed`` (audit ``executed``). Final failure: ``executing -> failed`` with the
   error; a failed action is returned, not raised. Validation failing at execution time (the world changed
   since the proposal) also ends in ``failed``.

``execute`` on a completed action applies nothing and returns it. Refusals that write nothing: an action that
is not approved (``InvalidTransition`` / ``GuardRejected``), no handler (``HandlerNotRegistered``), an open
circuit (``CircuitOpen``: the action stays ``approved`` for a later run).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from saferails import transitions
from saferails.actions import lifecycle as lc
from saferails.actions.models import ActionView
from saferails.actions.repository import ActionRepository
from saferails.actions.service import ACTION_KIND, ENTITY
from saferails.clock import Clock
from saferails.errors import ConcurrentModification, ExecutionError, InvalidInput, SaferailsError, StoreUnavailable
from saferails.handlers import (
    ActionHandler,
    ExecutionOutcome,
    HandlerContext,
    HandlerSettings,
    PartialEffect,
    load_handler_settings,
)
from saferails.handlers.registry import get_handler
from saferails.org.tables import Effect
from saferails.resilience import BreakerRegistry, RetryPolicy, Sleeper, retry
from saferails.store.db import transaction
from saferails.store.tables import Action

EXECUTOR = "system:executor"


class CompensationFailed(ExecutionError):
    """A partial effect could not be undone; the action fails keeping the data to retry the undo."""

    code = "COMPENSATION_FAILED"


def is_transient(exc: BaseException) -> bool:
    """Worth retrying (and evidence that the dependency is unhealthy): anything but our typed refusals."""
    if isinstance(exc, PartialEffect):
        return is_transient(exc.cause)
    if isinstance(exc, SaferailsError):
        return isinstance(exc, (StoreUnavailable, ConcurrentModification))
    return True


def _error_text(exc: BaseException) -> str:
    code = exc.code if isinstance(exc, SaferailsError) else type(exc).__name__
    return f"{code}: {exc}"


def _error_code(exc: BaseException) -> str:
    return exc.code if isinstance(exc, SaferailsError) else type(exc).__name__


def effect_key(row: Action) -> str:
    return f"{row.tenant}:{row.idempotency_key}"


class ExecutionService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        settings: HandlerSettings | None = None,
        *,
        retry_policy: RetryPolicy | None = None,
        breaker_registry: BreakerRegistry | None = None,
        sleeper: Sleeper = time.sleep,
        logger: logging.Logger | None = None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        if not isinstance(settings, HandlerSettings):
            # None (or, from older callers, the store's Settings): handler settings come from SAFERAILS_* env.
            settings = load_handler_settings()
        self.settings = settings
        self.retry_policy = retry_policy or RetryPolicy()
        self.breakers = breaker_registry or BreakerRegistry(clock)
        self.sleeper = sleeper
        self.logger = logger or logging.getLogger("saferails.execution")

    # --- helpers ------------------------------------------------------------------------------------------
    def _ctx(self, row: Action, session: Session | None, reason: str = "") -> HandlerContext:
        return HandlerContext(
            settings=self.settings,
            clock=self.clock,
            logger=self.logger,
            action_id=row.id,
            action_type=row.action_type,
            store_session=session,
            reason=reason,
        )

    def _view(self, session: Session, row: Action) -> ActionView:
        return ActionView.from_row(row, ActionRepository(session).approvals(row.id))

    def _move(
        self,
        session: Session,
        action_id: str,
        target: str,
        event: str,
        actor: str,
        details: dict[str, Any] | None = None,
        changes: dict[str, Any] | None = None,
    ) -> Action:
        row: Action = transitions.transition(
            session,
            ENTITY,
            action_id,
            target,
            actor=actor,
            event=event,
            now=self.clock.now(),
            details=details,
            changes=changes,
        )
        return row

    def _note(self, action_id: str, event: str, actor: str, details: dict[str, Any]) -> None:
        """Audit something that happened without a state change, in its own committed transaction."""
        with transaction(self.sessions) as session:
            row = transitions.lock_row(session, ACTION_KIND, action_id)
            transitions.record_event(
                session, ENTITY, row, actor=actor, event=event, now=self.clock.now(), details=details
            )

    def get(self, action_id: str) -> ActionView:
        with transaction(self.sessions) as session:
            return self._view(session, transitions.lock_row(session, ACTION_KIND, action_id))

    # --- preview ------------------------------------------------------------------------------------------
    def preview(self, action_id: str) -> dict[str, Any]:
        """Validate, capture and preview an action without changing anything: what the approver is shown.
        Raises the handler's ``InvalidInput`` if the action could not run against the current world."""
        with transaction(self.sessions) as session:
            row = transitions.lock_row(session, ACTION_KIND, action_id)
            handler = get_handler(row.action_type)
            ctx = self._ctx(row, None if handler.external else session)
            handler.validate(ctx, row.target, dict(row.params))
            pre_state = handler.capture(ctx, row.target, dict(row.params))
            return {"pre_state": pre_state, "preview": handler.preview(ctx, row.target, dict(row.params), pre_state)}

    # --- execution ----------------------------------------------------------------------------------------
    def execute(self, action_id: str, actor: str = EXECUTOR) -> ActionView:
        """Execute an approved action (see the module docstring for the full contract)."""
        with transaction(self.sessions) as session:
            row = transitions.lock_row(session, ACTION_KIND, action_id)
            if row.state == lc.COMPLETED:
                return self._view(session, row)
            handler = get_handler(row.action_type)
            self.breakers.get(row.action_type).check()
            ctx = self._ctx(row, None if handler.external else session)
            params = dict(row.params)
            try:
                handler.validate(ctx, row.target, params)
                pre_state = handler.capture(ctx, row.target, params)
            except InvalidInput as exc:
                self._move(
                    session,
                    action_id,
                    lc.EXECUTING,
                    "execution_started",
                    actor,
                    changes={"executed_at": self.clock.now()},
                )
                row = self._move(
                    session,
                    action_id,
                    lc.FAILED,
                    "execution_failed",
                    actor,
                    details={"stage": "validate", "error_code": exc.code, "error": exc.message},
                    changes={"error": _error_text(exc), "finished_at": self.clock.now()},
                )
                return self._view(session, row)
            self._move(
                session,
                action_id,
                lc.EXECUTING,
                "execution_started",
                actor,
                details={"pre_state": pre_state},
                changes={"pre_state": pre_state, "executed_at": self.clock.now()},
            )
            key = effect_key(row)
        return self._run_handler(action_id, handler, row, params, pre_state, key, actor)

    def _run_handler(
        self,
        action_id: str,
        handler: ActionHandler,
        row: Action,
        params: dict[str, Any],
        pre_state: dict[str, Any],
        key: str,
        actor: str,
    ) -> ActionView:
        breaker = self.breakers.get(row.action_type)
        leftover: dict[str, Any] = {}  # rollback data of a partial effect that could not be compensated

        def attempt(n: int) -> ActionView | ExecutionOutcome:
            try:
                if handler.external:
                    recorded = self._recorded_effect(key)
                    if recorded is not None:
                        return recorded
                    return breaker.call(
                        lambda: handler.execute(self._ctx(row, None), row.target, params, pre_state, key),
                        counts=is_transient,
                    )
                with transaction(self.sessions) as session:
                    current = transitions.lock_row(session, ACTION_KIND, action_id)
                    outcome = breaker.call(
                        lambda: handler.execute(self._ctx(current, session), row.target, params, pre_state, key),
                        counts=is_transient,
                    )
                    return self._complete(session, action_id, outcome, key, actor, n)
            except PartialEffect as partial:
                self._compensate(action_id, handler, row, partial, leftover)
                raise

        def failed(n: int, exc: Exception, delay: float | None) -> None:
            self.logger.warning("action %s attempt %d failed: %s", action_id, n, exc)
            self._note(
                action_id,
                "execution_attempt_failed",
                actor,
                {"attempt": n, "error_code": _error_code(exc), "error": str(exc), "next_delay": delay},
            )

        try:
            done = retry(
                attempt,
                self.retry_policy,
                sleeper=self.sleeper,
                retryable=lambda e: is_transient(e) and not leftover,
                on_failure=failed,
            )
        except Exception as exc:  # noqa: BLE001 - every final failure ends in ``failed``, recorded and committed
            with transaction(self.sessions) as session:
                final = self._move(
                    session,
                    action_id,
                    lc.FAILED,
                    "execution_failed",
                    actor,
                    details={"stage": "execute", "error_code": _error_code(exc), "error": str(exc)},
                    changes={
                        "error": _error_text(exc),
                        "finished_at": self.clock.now(),
                        "rollback_data": leftover or None,
                    },
                )
                return self._view(session, final)
        if isinstance(done, ActionView):
            return done
        with transaction(self.sessions) as session:
            return self._complete(session, action_id, done, key, actor, None)

    def _recorded_effect(self, key: str) -> ExecutionOutcome | None:
        with transaction(self.sessions) as session:
            effect = session.get(Effect, key)
            if effect is None:
                return None
            return ExecutionOutcome(result=effect.result["result"], rollback_data=effect.result["rollback_data"])

    def _complete(
        self, session: Session, action_id: str, outcome: ExecutionOutcome, key: str, actor: str, attempts: int | None
    ) -> ActionView:
        now = self.clock.now()
        current = transitions.lock_row(session, ACTION_KIND, action_id)
        if session.get(Effect, key) is None:
            session.add(
                Effect(
                    idempotency_key=key,
                    action_id=action_id,
                    action_type=current.action_type,
                    result={"result": outcome.result, "rollback_data": outcome.rollback_data},
                    created_at=now,
                )
            )
            session.flush()
        row = self._move(
            session,
            action_id,
            lc.COMPLETED,
            "executed",
            actor,
            details={"result": outcome.result, "effect_key": key, "attempts": attempts},
            changes={"result": outcome.result, "rollback_data": outcome.rollback_data, "finished_at": now},
        )
        return self._view(session, row)

    def _compensate(
        self, action_id: str, handler: ActionHandler, row: Action, partial: PartialEffect, leftover: dict[str, Any]
    ) -> None:
        if not handler.external:
            self._note(action_id, "compensated", EXECUTOR, {"by": "transaction_rollback", "cause": str(partial.cause)})
            return
        try:
            undone = handler.rollback(
                self._ctx(row, None, "compensating a partial effect"), row.target, partial.rollback_data
            )
        except Exception as exc:  # any failure to compensate is recorded, then the action fails
            leftover.update(partial.rollback_data)
            self._note(
                action_id,
                "compensation_failed",
                EXECUTOR,
                {
                    "cause": str(partial.cause),
                    "error_code": _error_code(exc),
                    "error": str(exc),
                    "rollback_data": partial.rollback_data,
                },
            )
            raise CompensationFailed(f"could not undo a partial effect: {exc}", action_id=action_id) from exc
        self._note(
            action_id,
            "compensated",
            EXECUTOR,
            {"cause": str(partial.cause), "rollback_data": partial.rollback_data, "result": undone},
        )

    # --- undo ---------------------------------------------------------------------------------------------
    def rollback(self, action_id: str, actor: str, *, reason: str) -> ActionView:
        """Restore the captured pre-state: ``completed | failed | rollback_failed -> rolling_back ->
        rolled_back`` (or ``rollback_failed`` with the error, committed even though the handler failed).
        Every attempt is audited. Raises ``InvalidTransition`` for any other state (a rolled-back action cannot
        be rolled back again). A failed action with nothing applied rolls back without calling the handler.
        """
        with transaction(self.sessions) as session:
            row = transitions.lock_row(session, ACTION_KIND, action_id)
            handler = get_handler(row.action_type)
            row = self._move(session, action_id, lc.ROLLING_BACK, "rollback_started", actor, details={"reason": reason})
            data = row.rollback_data
            if data is None:
                row = self._move(
                    session,
                    action_id,
                    lc.ROLLED_BACK,
                    "rolled_back",
                    actor,
                    details={"reason": reason, "nothing_to_undo": True},
                    changes={"rolled_back_at": self.clock.now()},
                )
                return self._view(session, row)
        breaker = self.breakers.get(row.action_type)

        def finish(session: Session, result: dict[str, Any], attempts: int) -> ActionView:
            done = self._move(
                session,
                action_id,
                lc.ROLLED_BACK,
                "rolled_back",
                actor,
                details={"reason": reason, "result": result, "attempts": attempts},
                changes={"rolled_back_at": self.clock.now()},
            )
            return self._view(session, done)

        def attempt(n: int) -> ActionView:
            if handler.external:
                result = breaker.call(
                    lambda: handler.rollback(self._ctx(row, None, reason), row.target, data), counts=is_transient
                )
                with transaction(self.sessions) as session:
                    return finish(session, result, n)
            with transaction(self.sessions) as session:
                current = transitions.lock_row(session, ACTION_KIND, action_id)
                result = breaker.call(
                    lambda: handler.rollback(self._ctx(current, session, reason), row.target, data), counts=is_transient
                )
                return finish(session, result, n)

        def failed(n: int, exc: Exception, delay: float | None) -> None:
            self._note(
                action_id,
                "rollback_attempt_failed",
                actor,
                {
                    "attempt": n,
                    "error_code": _error_code(exc),
                    "error": str(exc),
                    "next_delay": delay,
                    "reason": reason,
                },
            )

        try:
            return retry(attempt, self.retry_policy, sleeper=self.sleeper, retryable=is_transient, on_failure=failed)
        except Exception as exc:  # noqa: BLE001 - every failure ends in rollback_failed, recorded and committed
            with transaction(self.sessions) as session:
                row = self._move(
                    session,
                    action_id,
                    lc.ROLLBACK_FAILED,
                    "rollback_failed",
                    actor,
                    details={"reason": reason, "error_code": _error_code(exc), "error": str(exc)},
                    changes={"error": _error_text(exc)},
                )
                return self._view(session, row)

    # --- scheduling ---------------------------------------------------------------------------------------
    def run(self, action_id: str, actor: str = EXECUTOR) -> ActionView:
        """Execute ``action_id`` if it is approved and due (``scheduled_for`` unset or come); otherwise return
        it unchanged. What flows and sweeps call."""
        view = self.get(action_id)
        due = view.scheduled_for is None or view.scheduled_for <= self.clock.now()
        if view.state == lc.APPROVED and due:
            return self.execute(action_id, actor)
        return view

    def next_due(self, limit: int = 100) -> list[str]:
        """Ids of approved actions that are due, most urgent first: priority (1 first), then the time they
        became due (``scheduled_for``, or ``created_at`` when unscheduled), then ``created_at`` and id."""
        now: datetime = self.clock.now()
        due_since = sa.func.coalesce(Action.scheduled_for, Action.created_at)
        stmt = (
            sa.select(Action.id)
            .where(Action.state == lc.APPROVED, sa.or_(Action.scheduled_for.is_(None), Action.scheduled_for <= now))
            .order_by(Action.priority, due_since, Action.created_at, Action.id)
            .limit(max(1, limit))
        )
        with transaction(self.sessions) as session:
            return list(session.execute(stmt).scalars())


__all__ = ["EXECUTOR", "CompensationFailed", "ExecutionService", "effect_key", "is_transient"]
