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

Integrity: before executing, rolling back or recovering, the action hash is recomputed from the stored type,
target and parameters and compared with the stored ``action_hash``, which in turn must equal the hash in the
hash-chained ``action_proposed`` audit record (so rewriting params and hash together is caught too). A
mismatch is audited (``action_tampered``) and alerted (a critical ``action_tampered`` alert: ``alert_emitted``
audit record, handed to ``alert_notifier`` when one is set), and the handler is not called: an approved or
executing action moves to ``failed``, a rolling-back one to ``rollback_failed``, any other keeps its state.
``execute`` and ``rollback`` then raise ``ActionTampered`` (the trace is committed first).

Truthful undo: an action whose execution was interrupted (the recover sweep found it in ``executing`` with no
recorded effect) has an effect nobody recorded. ``recover_interrupted`` asks the handler
(``reconcile``) whether it exists before deciding: applied -> ``completed`` with the reconciled rollback data,
not applied -> ``failed``, unknown -> ``failed`` with an alert. ``rollback`` of an interrupted action asks
again instead of claiming "nothing to undo", and ends ``rollback_failed`` (``EFFECT_UNKNOWN``, alerted) when
the handler cannot tell. ``resume_rollback`` finishes a rollback a crash left in ``rolling_back``.
Failures caused by the request itself (validation, malformed messages, 5xx refusals) are never retried and
never count against the circuit breaker.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from saferails import transitions
from saferails.actions import lifecycle as lc
from saferails.actions.models import ActionView, Proposal, action_hash
from saferails.actions.repository import ActionRepository
from saferails.actions.service import ACTION_KIND, ENTITY, ActionService
from saferails.boundary import typed_errors
from saferails.clock import Clock, as_utc
from saferails.errors import (
    ActionTampered,
    ConcurrentModification,
    EffectUnknown,
    ExecutionError,
    InvalidInput,
    InvalidTransition,
    SaferailsError,
    StoreUnavailable,
)
from saferails.handlers import (
    ActionHandler,
    ExecutionOutcome,
    HandlerContext,
    HandlerSettings,
    PartialEffect,
    load_handler_settings,
)
from saferails.handlers.base import APPLIED, NOT_APPLIED, Reconciliation, reconcile_effect
from saferails.handlers.registry import get_handler
from saferails.org.tables import Effect
from saferails.resilience import BreakerRegistry, RetryPolicy, Sleeper, retry
from saferails.store.db import transaction
from saferails.store.tables import Action, AuditRecord
from saferails.workflow import alerts

EXECUTOR = "system:executor"
# The error of an action whose execution a crash interrupted (set by the recover sweep). Its effect was
# never recorded, so a rollback reconciles through the handler instead of assuming there is nothing to undo.
INTERRUPTED = "recovered: execution interrupted"
ROLLBACK_INTERRUPTED = "recovered: rollback interrupted"
# Called with (stage, action_id) between an effect and the commit that records it ("after_effect",
# "after_undo"): lets tests kill the process at the worst moment, as a crash would.
CrashHook = Callable[[str, str], None]
# Errors that say the request is malformed, not that the dependency is unhealthy: retrying cannot help.
_PERMANENT = (ValueError, TypeError, LookupError, ArithmeticError, RecursionError, AttributeError)


class CompensationFailed(ExecutionError):
    """A partial effect could not be undone; the action fails keeping the data to retry the undo."""

    code = "COMPENSATION_FAILED"


def is_transient(exc: BaseException) -> bool:
    """Worth retrying (and evidence that the dependency is unhealthy): connection and server trouble. Never our
    typed refusals (validation, ``EFFECT_REFUSED``) nor errors that say the request itself is malformed
    (``ValueError``, ``TypeError``, ...): those are permanent and do not count against a circuit breaker."""
    if isinstance(exc, PartialEffect):
        return is_transient(exc.cause)
    if isinstance(exc, SaferailsError):
        return isinstance(exc, (StoreUnavailable, ConcurrentModification))
    return not isinstance(exc, _PERMANENT)


def stored_hash_mismatch(row: Action, session: Session | None = None) -> str | None:
    """The hash recomputed from the row's type, target and params when the row was edited after the proposal,
    else None. Edited means: the recomputed hash differs from the stored ``action_hash``, or (given a session)
    the stored ``action_hash`` differs from the one the hash-chained ``action_proposed`` audit record holds, so
    rewriting params and hash together is caught as well."""
    try:
        computed = action_hash(row.action_type, row.target, dict(row.params or {}))
    except (TypeError, ValueError):
        return "uncomputable"
    if computed != row.action_hash:
        return computed
    if session is not None:
        recorded = session.execute(
            sa.select(AuditRecord.details)
            .where(AuditRecord.entity_id == row.id, AuditRecord.event == "action_proposed")
            .order_by(AuditRecord.sequence)
            .limit(1)
        ).scalar_one_or_none()
        if recorded is not None:
            try:
                proposed = json.loads(recorded).get("action_hash")
            except (ValueError, AttributeError):
                proposed = None
            if proposed is not None and proposed != row.action_hash:
                return computed
    return None


def _error_text(exc: BaseException) -> str:
    code = exc.code if isinstance(exc, SaferailsError) else type(exc).__name__
    return f"{code}: {exc}"


def _error_code(exc: BaseException) -> str:
    return exc.code if isinstance(exc, SaferailsError) else type(exc).__name__


def effect_key(row: Action) -> str:
    return f"{row.tenant}:{row.idempotency_key}"


@dataclass(frozen=True)
class _Prepared:
    """What claiming an action needs from its handler before anything is written."""

    handler: ActionHandler
    params: dict[str, Any]
    pre_state: dict[str, Any]


@dataclass(frozen=True)
class _Claim:
    """An action claimed (``ExecutionService._claimed``): what the handler run after the commit needs.
    ``handler`` is None when validation refused it (``row`` then failed in the claiming transaction)."""

    handler: ActionHandler | None
    row: Any
    params: dict[str, Any]
    pre_state: dict[str, Any]
    key: str
    recorded: ExecutionOutcome | None


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
        alert_notifier: alerts.Notifier | None = None,
        crash_hook: CrashHook | None = None,
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
        self.alert_notifier = alert_notifier
        self.crash_hook = crash_hook

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
        locked: Action | None = None,
    ) -> Action:
        """``transitions.transition`` of the action; ``locked`` is the row when this transaction already holds it
        (``lock_row``), which saves locking it again."""
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
            locked_row=locked,
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

    def _crash_point(self, stage: str, action_id: str) -> None:
        if self.crash_hook is not None:
            self.crash_hook(stage, action_id)

    def _alert(self, session: Session, row: Action, alert_type: str, message: str, details: dict[str, Any]) -> None:
        alert = alerts.Alert(alert_type, message, "critical", ENTITY, row.id, details)
        alerts.emit(session, alert, notifier=self.alert_notifier, actor=EXECUTOR, now=self.clock.now())

    def _flag_tampered(self, session: Session, row: Action, actor: str, stage: str, computed: str) -> Action:
        """Record (audit, outbox, alert) that ``row`` no longer matches its hash; an approved or executing
        action fails, a rolling-back one ends ``rollback_failed``, any other keeps its state."""
        now = self.clock.now()
        details = {"stage": stage, "stored_hash": row.action_hash, "computed_hash": computed,
                   "reason": "type, target or params changed after the action was proposed"}
        error = f"{ActionTampered.code}: the stored action does not match its hash ({stage} refused)"
        try:
            if row.state == lc.APPROVED:
                self._move(session, row.id, lc.EXECUTING, "execution_started", actor, details={"stage": "integrity"},
                           changes={"executed_at": now})
            if row.state in (lc.APPROVED, lc.EXECUTING):
                row = self._move(session, row.id, lc.FAILED, "action_tampered", actor, details=details,
                                 changes={"error": error, "finished_at": now})
            elif row.state == lc.ROLLING_BACK:
                row = self._move(session, row.id, lc.ROLLBACK_FAILED, "action_tampered", actor, details=details,
                                 changes={"error": error})
            else:
                transitions.record_event(session, ENTITY, row, actor=actor, event="action_tampered", now=now,
                                         details=details)
        except InvalidTransition:  # the guard refused the way to failed: the trace is still recorded
            transitions.record_event(session, ENTITY, row, actor=actor, event="action_tampered", now=now,
                                     details=details)
        self._alert(session, row, "action_tampered", f"action {row.id} was changed after approval; {stage} refused",
                    details)
        return row

    def _refuse_tampered(self, action_id: str, actor: str, stage: str) -> ActionTampered:
        """Commit the tamper trace in its own transaction and return the error to raise."""
        with transaction(self.sessions) as session:
            row = transitions.lock_row(session, ACTION_KIND, action_id)
            computed = stored_hash_mismatch(row, session) or row.action_hash
            self._flag_tampered(session, row, actor, stage, computed)
        return ActionTampered(
            f"action {action_id} no longer matches the action hash it was approved under: {stage} refused",
            action_id=action_id, stage=stage, computed_hash=computed,
        )

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
        return self._execute(action_id, actor, when_due=False)

    def attach_and_run(self, actions: ActionService, action_id: str, flow_run_id: str, actor: str = EXECUTOR,
                       on_attached: Callable[[ActionView], None] | None = None) -> ActionView:
        """``actions.attach_flow_run`` (audited as ``actor``) then ``run``, the attachment made in ``run``'s
        claiming transaction: one transaction locks the action, attaches the run and, when the action is approved
        and due, claims it; the handler runs after its commit. Otherwise the action comes back as the store holds
        it, attached. What the action flow calls for an action proposed before its run (``flows.api``).
        ``on_attached`` is called in that transaction with the action as locked (approvals not loaded), before
        any handler runs (the action flow starts renaming its run there)."""
        def attach(session: Session, row: Action) -> None:
            actions.attach_locked(session, row, flow_run_id, actor)
            if on_attached is not None:
                on_attached(ActionView.from_row(row, []))

        return self._execute(action_id, actor, when_due=True, locked=attach)

    def _execute(self, action_id: str, actor: str, *, when_due: bool,
                 locked: Callable[[Session, Action], None] | None = None) -> ActionView:
        """``execute``; with ``when_due``, an action that is not approved or not yet due is returned as it is,
        judged in the same transaction that claims a due one (``run``). ``locked`` is called with the row as
        soon as the claiming transaction holds it."""
        tampered = False
        with transaction(self.sessions) as session:
            row = transitions.lock_row(session, ACTION_KIND, action_id)
            if locked is not None:
                locked(session, row)
            if row.state == lc.COMPLETED:
                return self._view(session, row)
            if when_due and (row.state != lc.APPROVED or not self._due(row)):
                return self._view(session, row)
            tampered = row.state == lc.APPROVED and stored_hash_mismatch(row, session) is not None
            if not tampered:
                claim = self._claimed(session, row, actor, self._prepared(session, row), look_up_effect=True)
                if claim.handler is None:
                    return self._view(session, claim.row)
                handler = claim.handler
        if tampered:
            raise self._refuse_tampered(action_id, actor, "execute")
        return self._run_handler(action_id, handler, row, claim.params, claim.pre_state, claim.key, actor,
                                 claim.recorded)

    def _due(self, row: Any) -> bool:
        """Whether ``row`` may run now: unscheduled, or its ``scheduled_for`` has come."""
        return row.scheduled_for is None or as_utc(row.scheduled_for) <= self.clock.now()

    def _prepared(self, session: Session, row: Any) -> _Prepared | InvalidInput:
        """What claiming ``row`` needs (its handler, params and captured pre-state), or the refusal of a handler
        that trips over the params. Raises what else the breaker or the handler raises; writes nothing."""
        handler = get_handler(row.action_type)
        self.breakers.get(row.action_type).check()
        ctx = self._ctx(row, None if handler.external else session)
        params = dict(row.params)
        try:
            try:
                handler.validate(ctx, row.target, params)
                return _Prepared(handler, params, handler.capture(ctx, row.target, params))
            except (ValueError, TypeError, LookupError, OverflowError, RecursionError) as raw:
                # A handler tripping over the stored params is the request's fault: refuse it for good
                # instead of leaving the action approved for every sweep to trip over again.
                raise InvalidInput(f"{type(raw).__name__}: {raw}"[:500]) from raw
        except InvalidInput as exc:
            return exc

    def _claimed(self, session: Session, row: Any, actor: str, prepared: _Prepared | InvalidInput, *,
                 look_up_effect: bool) -> _Claim:
        """Claim ``row`` (locked, or a ``Draft`` of this transaction) in ``session``: ``executing`` with its
        pre-state, or, refused at validation, ``executing`` then ``failed`` (the claim's ``handler`` is None).
        With ``look_up_effect``, an external effect already recorded under the action's key is found here, in
        the claiming transaction, so it is never applied again and the first attempt needs no transaction."""
        now = self.clock.now()
        if isinstance(prepared, InvalidInput):
            self._move(session, row.id, lc.EXECUTING, "execution_started", actor, changes={"executed_at": now},
                       locked=row)
            failed = self._move(session, row.id, lc.FAILED, "execution_failed", actor,
                                details={"stage": "validate", "error_code": prepared.code, "error": prepared.message},
                                changes={"error": _error_text(prepared), "finished_at": now}, locked=row)
            return _Claim(None, failed, {}, {}, "", None)
        key = effect_key(row)
        external = prepared.handler.external
        recorded = self._recorded_effect(session, key) if external and look_up_effect else None
        self._move(session, row.id, lc.EXECUTING, "execution_started", actor, details={"pre_state": prepared.pre_state},
                   changes={"pre_state": prepared.pre_state, "executed_at": now}, locked=row)
        return _Claim(prepared.handler, row, prepared.params, prepared.pre_state, key, recorded)

    def propose_and_run(self, actions: ActionService, proposal: Proposal, *, flow_run_id: str | None = None,
                        actor: str = EXECUTOR,
                        on_proposed: Callable[[ActionView], None] | None = None) -> ActionView:
        """``actions.propose`` (``flow_run_id`` attached, audited as ``actor``), then ``run`` of the action, with
        the claim of a new action the policy allowed and that is due in the PROPOSING transaction: the action
        is recorded proposed, approved and ``executing`` (its pre-state captured) in one commit, and the handler
        runs after it, as after ``run``'s claim. What the action flow's fast path calls.

        Anything that would make ``run`` refuse or wait (not due, an open circuit breaker, a handler that cannot
        capture) leaves the new action approved and committed; ``run`` is then called as before and decides (and
        raises) exactly as it would have. An action that needs approval, was refused or was re-proposed under its
        idempotency key is returned as the store holds it (a re-proposed approved one goes through ``run``).
        ``on_proposed`` is called with the action as committed, before its handler runs (the action flow starts
        renaming its run there, so that API call overlaps the execution)."""
        claims: list[_Claim] = []
        view = actions.propose(proposal, flow_run_id=flow_run_id, actor=actor,
                               claim=lambda session, row: self._claim_new(
                                   session, row, actor, claims, fresh_key=proposal.idempotency_key is None))
        if on_proposed is not None:
            on_proposed(view)
        if not claims:
            return self.run(view.id, actor) if view.state == lc.APPROVED else view
        claim = claims[0]
        if claim.handler is None:  # refused at validation: already failed in the proposing transaction
            return view
        return self._run_handler(view.id, claim.handler, claim.row, claim.params, claim.pre_state, claim.key, actor,
                                 claim.recorded)

    def _claim_new(self, session: Session, row: Any, actor: str, claims: list[_Claim], *, fresh_key: bool) -> None:
        """``_claimed`` for a new, approved action ``row`` (a ``transitions.Draft``, not yet written) in
        the proposing ``session``; appends what ``propose_and_run`` needs to ``claims``, or nothing when the action
        must stay approved for ``run`` to judge (a database error propagates: the proposal rolls back with it).
        No integrity check: the action hash was computed from these very params in this transaction; with
        ``fresh_key`` (the idempotency key was generated for this action just now) no recorded effect is looked
        up, as none can be under it."""
        if not self._due(row):
            return
        try:
            prepared = self._prepared(session, row)
        except sa.exc.SQLAlchemyError:  # the session may be unusable: the proposal must not commit without it
            raise
        except Exception:  # noqa: BLE001 - ``run``, after the commit, meets it again and raises it as it always did
            return
        claims.append(self._claimed(session, row, actor, prepared, look_up_effect=not fresh_key))

    def _run_handler(
        self,
        action_id: str,
        handler: ActionHandler,
        row: Action,
        params: dict[str, Any],
        pre_state: dict[str, Any],
        key: str,
        actor: str,
        recorded: ExecutionOutcome | None,
    ) -> ActionView:
        """Apply the effect of an action just moved to ``executing`` and record the outcome. ``recorded`` is the
        external effect the claiming transaction found under ``key`` (None: none was); a retry looks again."""
        breaker = self.breakers.get(row.action_type)
        leftover: dict[str, Any] = {}  # rollback data of a partial effect that could not be compensated
        found: list[ExecutionOutcome] = []  # the recorded effect the attempt returned, if it returned one

        def attempt(n: int) -> ActionView | ExecutionOutcome:
            try:
                if handler.external:
                    if n > 1:
                        with transaction(self.sessions) as session:
                            known = self._recorded_effect(session, key)
                    else:
                        known = recorded
                    if known is not None:
                        found.append(known)
                        return known
                    done = breaker.call(
                        lambda: handler.execute(self._ctx(row, None), row.target, params, pre_state, key),
                        counts=is_transient,
                    )
                    self._crash_point("after_effect", action_id)
                    return done
                with transaction(self.sessions) as session:
                    current = transitions.lock_row(session, ACTION_KIND, action_id)
                    outcome = breaker.call(
                        lambda: handler.execute(self._ctx(current, session), row.target, params, pre_state, key),
                        counts=is_transient,
                    )
                    self._crash_point("after_effect", action_id)
                    return self._complete(session, current, outcome, key, actor, n, new_effect=True)
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
            current = transitions.lock_row(session, ACTION_KIND, action_id)
            return self._complete(session, current, done, key, actor, None, new_effect=not found)

    def _recorded_effect(self, session: Session, key: str) -> ExecutionOutcome | None:
        effect = session.get(Effect, key)
        if effect is None:
            return None
        return ExecutionOutcome(result=effect.result["result"], rollback_data=effect.result["rollback_data"])

    def _complete(
        self,
        session: Session,
        current: Action,
        outcome: ExecutionOutcome,
        key: str,
        actor: str,
        attempts: int | None,
        *,
        new_effect: bool,
    ) -> ActionView:
        """``executing -> completed`` for ``current`` (locked in ``session``), recording ``outcome`` under
        ``key`` when ``new_effect`` (the handler produced it; False: it was read from the ``effects`` table)."""
        now = self.clock.now()
        if new_effect:
            # No look-up first: the key is this action's alone (``uq_actions_tenant_idempotency_key``) and none
            # was recorded under it when the action was claimed. Were one there, the INSERT fails, never overwrites.
            session.add(
                Effect(
                    idempotency_key=key,
                    action_id=current.id,
                    action_type=current.action_type,
                    result={"result": outcome.result, "rollback_data": outcome.rollback_data},
                    created_at=now,
                )
            )
            session.flush()
        row = self._move(
            session,
            current.id,
            lc.COMPLETED,
            "executed",
            actor,
            details={"result": outcome.result, "effect_key": key, "attempts": attempts},
            changes={"result": outcome.result, "rollback_data": outcome.rollback_data, "finished_at": now},
            locked=current,
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
        be rolled back again) and ``ActionTampered`` (trace committed, state kept) when the stored action no
        longer matches its hash. A failed action with nothing applied rolls back without calling the handler;
        one whose execution was interrupted is reconciled through the handler first, and ends
        ``rollback_failed`` (``EFFECT_UNKNOWN``, alerted) if the handler cannot tell whether its effect exists.
        """
        tampered = False
        with transaction(self.sessions) as session:
            row = transitions.lock_row(session, ACTION_KIND, action_id)
            tampered = row.state in (lc.COMPLETED, lc.FAILED, lc.ROLLBACK_FAILED) and (
                stored_hash_mismatch(row, session) is not None
            )
            if not tampered:
                handler = get_handler(row.action_type)
                row = self._move(
                    session, action_id, lc.ROLLING_BACK, "rollback_started", actor, details={"reason": reason}
                )
                data, finished = self._undo_data(session, row, handler, actor, reason)
                if finished is not None:
                    return finished
        if tampered:
            raise self._refuse_tampered(action_id, actor, "rollback")
        assert data is not None
        return self._undo(action_id, handler, row, data, actor, reason)

    def _interrupted(self, row: Action) -> bool:
        """Was the execution cut short by a crash, so that its effect was never recorded?"""
        return row.pre_state is not None and (row.error or "").startswith(INTERRUPTED)

    def _reconcile(self, session: Session, row: Action, handler: ActionHandler) -> Reconciliation:
        ctx = self._ctx(row, None if handler.external else session)
        return reconcile_effect(handler, ctx, row.target, dict(row.params), dict(row.pre_state or {}),
                                effect_key(row))

    def _undo_data(
        self, session: Session, row: Action, handler: ActionHandler, actor: str, reason: str
    ) -> tuple[dict[str, Any] | None, ActionView | None]:
        """For a row just moved to ``rolling_back``: (the data to undo with, None), or (None, the finished view)
        when there is provably nothing to undo (``rolled_back``) or nobody can tell (``rollback_failed``)."""
        if row.rollback_data is not None:
            return dict(row.rollback_data), None
        now = self.clock.now()
        details: dict[str, Any] = {"reason": reason, "nothing_to_undo": True}
        if self._interrupted(row):
            found = self._reconcile(session, row, handler)
            details |= {"reconciled": found.status, "reconcile_detail": found.detail}
            if found.status == APPLIED:
                assert found.rollback_data is not None
                row.rollback_data = found.rollback_data
                transitions.record_event(session, ENTITY, row, actor=actor, event="effect_reconciled", now=now,
                                         details={"status": found.status, "detail": found.detail,
                                                  "rollback_data": found.rollback_data})
                return dict(found.rollback_data), None
            if found.status != NOT_APPLIED:
                error = EffectUnknown(f"cannot tell whether the effect of action {row.id} exists: {found.detail}",
                                      action_id=row.id)
                failed = self._move(
                    session, row.id, lc.ROLLBACK_FAILED, "rollback_failed", actor,
                    details={"reason": reason, "error_code": error.code, "error": error.message,
                             "reconciled": found.status},
                    changes={"error": _error_text(error)},
                )
                self._alert(session, failed, "effect_unknown",
                            f"action {row.id}: rollback impossible, the effect may still be in place", details)
                return None, self._view(session, failed)
        done = self._move(session, row.id, lc.ROLLED_BACK, "rolled_back", actor, details=details,
                          changes={"rolled_back_at": now})
        return None, self._view(session, done)

    def _undo(
        self,
        action_id: str,
        handler: ActionHandler,
        row: Action,
        data: dict[str, Any],
        actor: str,
        reason: str,
        *,
        alert_on_failure: bool = False,
    ) -> ActionView:
        """Run ``handler.rollback`` with retries; ``rolled_back`` or ``rollback_failed``, committed."""
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
                self._crash_point("after_undo", action_id)
                with transaction(self.sessions) as session:
                    return finish(session, result, n)
            with transaction(self.sessions) as session:
                current = transitions.lock_row(session, ACTION_KIND, action_id)
                result = breaker.call(
                    lambda: handler.rollback(self._ctx(current, session, reason), row.target, data), counts=is_transient
                )
                self._crash_point("after_undo", action_id)
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
                details = {"reason": reason, "error_code": _error_code(exc), "error": str(exc)}
                row = self._move(
                    session,
                    action_id,
                    lc.ROLLBACK_FAILED,
                    "rollback_failed",
                    actor,
                    details=details,
                    changes={"error": _error_text(exc)},
                )
                if alert_on_failure:
                    self._alert(session, row, "rollback_failed", f"action {action_id}: rollback failed", details)
                return self._view(session, row)

    # --- recovery after a crash (called by the recover sweep) ----------------------------------------------
    def resume_rollback(self, action_id: str, actor: str) -> ActionView:
        """Finish a rollback a crash left in ``rolling_back``. A store-local undo never committed, so it is
        retried. An external one is reconciled first: effect gone -> ``rolled_back``; still there or unknown ->
        the undo is retried (handlers' undo is idempotent or refuses with a conflict). A failure ends in
        ``rollback_failed`` with an alert. Any other state is returned unchanged."""
        reason = ROLLBACK_INTERRUPTED
        tampered = False
        with transaction(self.sessions) as session:
            row = transitions.lock_row(session, ACTION_KIND, action_id)
            if row.state != lc.ROLLING_BACK:
                return self._view(session, row)
            computed = stored_hash_mismatch(row, session)
            if computed is not None:
                tampered = True
                self._flag_tampered(session, row, actor, "rollback", computed)
            else:
                handler = get_handler(row.action_type)
                data, finished = self._undo_data(session, row, handler, actor, reason)
                if finished is not None:
                    return finished
                assert data is not None
                if handler.external and row.pre_state is not None:
                    found = self._reconcile(session, row, handler)
                    if found.status == NOT_APPLIED:
                        done = self._move(
                            session, action_id, lc.ROLLED_BACK, "rolled_back", actor,
                            details={"reason": reason, "resolution": "the undo had completed before the crash",
                                     "reconciled": found.status, "reconcile_detail": found.detail},
                            changes={"rolled_back_at": self.clock.now()},
                        )
                        return self._view(session, done)
        if tampered:
            raise ActionTampered(f"action {action_id} no longer matches its hash: rollback refused",
                                 action_id=action_id, stage="rollback")
        assert data is not None
        return self._undo(action_id, handler, row, data, actor, reason, alert_on_failure=True)

    def recover_interrupted(self, action_id: str, actor: str, *, lease_seconds: float | None = None) -> ActionView:
        """Resolve an action a crash left in ``executing`` (the recover sweep calls this once its lease has
        run out): the effect recorded under its idempotency key -> ``completed``; otherwise the handler is asked
        (``reconcile``): applied -> ``completed`` with the reconciled result and rollback data (event
        ``execution_recovered``); not applied -> ``failed`` (``execution_interrupted``); unknown -> ``failed``
        plus an ``effect_unknown`` alert. A tampered row fails with ``action_tampered``. The handler's effect
        is never applied again. Any other state is returned unchanged."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            row = transitions.lock_row(session, ACTION_KIND, action_id)
            if row.state != lc.EXECUTING:
                return self._view(session, row)
            key = effect_key(row)
            effect = session.get(Effect, key)
            if effect is not None:
                row = self._move(
                    session, action_id, lc.COMPLETED, "execution_recovered", actor,
                    details={"resolution": "effect_recorded", "effect_key": key, "result": effect.result["result"]},
                    changes={"result": effect.result["result"], "rollback_data": effect.result["rollback_data"],
                             "finished_at": now},
                )
                return self._view(session, row)
            computed = stored_hash_mismatch(row, session)
            if computed is not None:
                return self._view(session, self._flag_tampered(session, row, actor, "recover", computed))
            try:
                handler = get_handler(row.action_type)
                found = self._reconcile(session, row, handler)
            except SaferailsError as exc:
                found = Reconciliation("unknown", f"{exc.code}: {exc.message}")
            base = {"reason": INTERRUPTED, "executed_at": row.executed_at, "lease_seconds": lease_seconds,
                    "reconciled": found.status, "reconcile_detail": found.detail}
            if found.status == APPLIED:
                assert found.result is not None and found.rollback_data is not None
                if handler.external:
                    session.add(Effect(idempotency_key=key, action_id=action_id, action_type=row.action_type,
                                       result={"result": found.result, "rollback_data": found.rollback_data},
                                       created_at=now))
                    session.flush()
                row = self._move(
                    session, action_id, lc.COMPLETED, "execution_recovered", actor,
                    details=base | {"resolution": "effect_found", "effect_key": key, "result": found.result},
                    changes={"result": found.result, "rollback_data": found.rollback_data, "finished_at": now},
                )
                return self._view(session, row)
            error = INTERRUPTED if found.status == NOT_APPLIED else f"{INTERRUPTED}; effect unknown: {found.detail}"
            row = self._move(session, action_id, lc.FAILED, "execution_interrupted", actor, details=base,
                             changes={"error": error[:2000], "finished_at": now})
            if found.status != NOT_APPLIED:
                self._alert(session, row, "effect_unknown",
                            f"action {action_id} was interrupted and its effect cannot be verified", base)
            return self._view(session, row)

    # --- scheduling ---------------------------------------------------------------------------------------
    def run(self, action_id: str, actor: str = EXECUTOR) -> ActionView:
        """Execute ``action_id`` if it is approved and due (``scheduled_for`` unset or come); otherwise return
        it unchanged. What flows and sweeps call. One transaction decides and claims (no separate read first)."""
        return self._execute(action_id, actor, when_due=True)

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


# Every public method refuses bad input with a typed error, even when it only surfaces in the driver.
for _name in ("get", "preview", "execute", "rollback", "resume_rollback", "recover_interrupted", "run", "next_due",
              "propose_and_run", "attach_and_run"):
    setattr(ExecutionService, _name, typed_errors(getattr(ExecutionService, _name)))

__all__ = [
    "EXECUTOR",
    "INTERRUPTED",
    "ROLLBACK_INTERRUPTED",
    "CompensationFailed",
    "CrashHook",
    "ExecutionService",
    "effect_key",
    "is_transient",
    "stored_hash_mismatch",
]
