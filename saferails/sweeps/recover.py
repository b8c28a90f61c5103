"""The recover sweep: resolve actions whose flow run died under them, by rules that never execute twice.

Contract of ``RecoverSweep.run`` (each part claims its items like the expire sweep, so concurrent runs split
the work and a re-run after a crash is harmless):

1. **Stuck in ``executing``** for longer than ``lease`` (default 15 min, counted from ``executed_at``): if the
   ``effects`` table holds the effect recorded under the action's idempotency key, the action is completed with
   that result (``execution_recovered``). Otherwise (with an execution service) the handler is asked whether
   the effect exists (``ExecutionService.recover_interrupted``): applied -> ``completed`` with the reconciled
   rollback data, not applied -> ``failed`` with the error ``recovered: execution interrupted``, unknown ->
   ``failed`` with an ``effect_unknown`` alert. The effect is never applied again. Without an execution
   service the action fails with that error, and a later rollback reconciles before claiming anything.
2. **``approved`` and due, with no live flow run** (no ``flow_run_id``, or the probe says the run is missing or
   finished) and unchanged for ``lease``: re-run through ``ExecutionService.run``, which re-checks approval and
   schedule under the row lock (``approved -> executing`` happens once, so a racing flow cannot run it twice).
3. **``pending_approval`` whose flow run is dead** (missing or finished): audited once per run as
   ``paused_run_lost``; the expire sweep still resolves it at its deadline. Each pending action is probed at
   most once per ``recheck`` (its claim is kept as the "recently checked" mark). A Paused run whose process died
   looks Paused to Prefect, so it is found here only once it is gone; the expire sweep ends it at the deadline.
4. **Stuck in ``rolling_back``** for longer than ``lease`` (counted from ``updated_at``), with an execution
   service: the rollback is finished (``ExecutionService.resume_rollback``: reconciled, retried, or
   ``rollback_failed`` with an alert).

A bad item never stops a sweep: an item whose handling raises anything (a typed error or not) is recorded as
``failed`` in the report, and one whose handling raised something other than a typed error is also moved to a
final state with the reason (``executing``/``approved`` -> ``failed``, ``rolling_back`` -> ``rollback_failed``;
audited ``sweep_item_poisoned``); the sweep carries on with the rest.

Whether a run is alive is asked through ``probe`` (flow run id -> Prefect state type such as ``"PAUSED"``, or
None when no such run exists). Without a probe, parts 2 and 3 only consider actions with no flow run at all.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa

from saferails import transitions
from saferails.actions import lifecycle as lc
from saferails.actions.service import ACTION_KIND, ENTITY, ActionService
from saferails.errors import SaferailsError
from saferails.execution import INTERRUPTED, ExecutionService, effect_key
from saferails.org.tables import Effect
from saferails.store.db import transaction
from saferails.store.tables import Action, AuditRecord
from saferails.sweeps import claims
from saferails.sweeps.report import (
    FAILED,
    NOTED,
    RESOLVED,
    SKIPPED,
    Progress,
    ProgressCallback,
    SweepItem,
    SweepReport,
)

ACTOR = "system:recovery-sweep"
STUCK, ORPHANED, LOST = "recover-executing", "recover-approved", "recover-pending"
ORDER = (Action.updated_at, Action.id)  # every part takes its items oldest change first
UNDOING = "recover-rolling-back"
POISONED_FINAL = {lc.APPROVED: lc.FAILED, lc.EXECUTING: lc.FAILED, lc.ROLLING_BACK: lc.ROLLBACK_FAILED}
log = logging.getLogger("saferails.sweeps.recover")
ALIVE = frozenset({"SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"})


def lost_conditions() -> list[sa.ColumnElement[bool]]:
    """Pending approvals that have a flow run (part 3): the partial index ``ix_actions_pending_run`` holds exactly
    these rows in :data:`ORDER` (migration 0013_recover_index)."""
    return [Action.state == lc.PENDING_APPROVAL, Action.flow_run_id.is_not(None)]


RunProbe = Callable[[str], str | None]


class RecoverSweep:
    def __init__(
        self,
        actions: ActionService,
        execution: ExecutionService | None,
        *,
        probe: RunProbe | None = None,
        lease: timedelta = timedelta(minutes=15),
        recheck: timedelta = timedelta(hours=1),
        batch_size: int = 200,
        progress_every: int = 100,
        worker_id: str | None = None,
    ) -> None:
        self.actions = actions
        self.execution = execution
        self.sessions = actions.sessions
        self.clock = actions.clock
        self.probe = probe
        self.lease = lease
        self.recheck = recheck
        self.batch_size = batch_size
        self.progress_every = progress_every
        self.worker_id = worker_id or f"recover-{uuid.uuid4().hex[:12]}"

    def run(self, *, on_progress: ProgressCallback | None = None) -> SweepReport:
        report = SweepReport("recover", self.worker_id)
        progress = Progress("recover", 0, self.progress_every, on_progress)
        self._loop(STUCK, self._stuck_where, self._recover_stuck, report, progress)
        if self.execution is not None:
            self._loop(ORPHANED, self._orphan_where, self._rerun, report, progress)
        self._loop(LOST, self._lost_where, self._note_lost, report, progress, keep_claims=True)
        if self.execution is not None:
            self._loop(UNDOING, self._undoing_where, self._resume_rollback, report, progress)
        progress.finish()
        return report

    # --- the loop shared by the three parts -----------------------------------------------------------------
    def _loop(
        self,
        sweep: str,
        where: Callable[[datetime], list[sa.ColumnElement[bool]]],
        handle: Callable[[str], SweepItem | None],
        report: SweepReport,
        progress: Progress,
        *,
        keep_claims: bool = False,
    ) -> None:
        with transaction(self.sessions) as session:
            claims.purge_lapsed(session, sweep, self.clock.now())
        lease = self.recheck if keep_claims else self.lease
        while True:
            now = self.clock.now()
            with transaction(self.sessions) as session:
                ids = claims.claim_due(session, Action, where(now), ORDER,
                                       self.batch_size, self.worker_id, lease, now, sweep=sweep)
            if not ids:
                return
            done = []
            for action_id in ids:
                try:
                    item = handle(action_id)
                except SaferailsError as exc:
                    item = SweepItem(action_id, FAILED, detail=f"{exc.code}: {exc.message}")
                except Exception as exc:  # noqa: BLE001 - one poisoned item must not starve the others
                    item = self._poisoned(sweep, action_id, exc)
                if item is None:
                    continue  # not this part's business now: the kept claim stops re-checking it every batch
                report.items.append(item)
                progress.step()
                if item.outcome != FAILED:
                    done.append(action_id)
            if not keep_claims:
                with transaction(self.sessions) as session:
                    claims.release(session, sweep, done, self.worker_id)

    def _poisoned(self, sweep: str, action_id: str, exc: Exception) -> SweepItem:
        """Put an item whose handling crashed into a final state with the reason, audited; never raises."""
        reason = f"{sweep}: {type(exc).__name__}: {exc}"[:1000]
        log.warning("action %s poisoned the %s sweep: %s", action_id, sweep, reason)
        try:
            with transaction(self.sessions) as session:
                row = transitions.lock_row(session, ACTION_KIND, action_id)
                final = POISONED_FINAL.get(row.state)
                details = {"sweep": sweep, "reason": reason, "error_type": type(exc).__name__}
                now = self.clock.now()
                # An execution cut short keeps the "interrupted" mark: a later rollback then reconciles its
                # effect instead of assuming there is nothing to undo.
                error = f"{INTERRUPTED}; poisoned: {reason}" if row.state == lc.EXECUTING else f"poisoned: {reason}"
                if row.state == lc.APPROVED:  # approved -> failed only runs through executing
                    transitions.transition(session, ENTITY, action_id, lc.EXECUTING, actor=ACTOR,
                                           event="execution_started", now=now, details={"stage": "sweep"},
                                           changes={"executed_at": now})
                if final is not None:
                    row = transitions.transition(
                        session, ENTITY, action_id, final, actor=ACTOR, event="sweep_item_poisoned", now=now,
                        details=details, changes={"error": error, "finished_at": now}
                        if final == lc.FAILED else {"error": error},
                    )
                else:
                    transitions.record_event(session, ENTITY, row, actor=ACTOR, event="sweep_item_poisoned",
                                             now=now, details=details)
                return SweepItem(action_id, FAILED, row.state, row.flow_run_id, f"poisoned: {reason}")
        except Exception as inner:  # noqa: BLE001 - even recording it failed: report and move on
            log.error("could not record poisoned action %s: %s", action_id, inner)
            return SweepItem(action_id, FAILED, detail=f"poisoned (not recorded: {type(inner).__name__}): {reason}")

    def _dead(self, flow_run_id: str | None) -> tuple[bool, str | None]:
        """(is the run gone?, its state type). No run id counts as gone; without a probe a run id counts alive."""
        if flow_run_id is None:
            return True, None
        if self.probe is None:
            return False, None
        state = self.probe(flow_run_id)
        return state is None or state.upper() not in ALIVE, state

    # --- 1. stuck in executing --------------------------------------------------------------------------------
    def _stuck_where(self, now: datetime) -> list[sa.ColumnElement[bool]]:
        return [Action.state == lc.EXECUTING, Action.executed_at <= now - self.lease]

    def _recover_stuck(self, action_id: str) -> SweepItem:
        if self.execution is not None:
            before = self.actions.get(action_id)
            if before.state != lc.EXECUTING:
                return SweepItem(action_id, SKIPPED, state=before.state, detail="no longer executing")
            after = self.execution.recover_interrupted(action_id, ACTOR, lease_seconds=self.lease.total_seconds())
            detail = after.error or "effect found" if after.state == lc.COMPLETED else after.error or after.state
            return SweepItem(action_id, RESOLVED, after.state, after.flow_run_id, detail)
        now = self.clock.now()
        with transaction(self.sessions) as session:
            row = transitions.lock_row(session, ACTION_KIND, action_id)
            if row.state != lc.EXECUTING:
                return SweepItem(action_id, SKIPPED, state=row.state, detail="no longer executing")
            key = effect_key(row)
            effect = session.get(Effect, key)
            if effect is not None:
                row = transitions.transition(
                    session, ENTITY, action_id, lc.COMPLETED, actor=ACTOR, event="execution_recovered", now=now,
                    details={"resolution": "effect_recorded", "effect_key": key, "result": effect.result["result"]},
                    changes={"result": effect.result["result"], "rollback_data": effect.result["rollback_data"],
                             "finished_at": now},
                )
                return SweepItem(action_id, RESOLVED, row.state, row.flow_run_id, "effect recorded")
            row = transitions.transition(
                session, ENTITY, action_id, lc.FAILED, actor=ACTOR, event="execution_interrupted", now=now,
                details={"reason": INTERRUPTED, "executed_at": row.executed_at, "lease_seconds":
                         self.lease.total_seconds()},
                changes={"error": INTERRUPTED, "finished_at": now},
            )
            return SweepItem(action_id, RESOLVED, row.state, row.flow_run_id, INTERRUPTED)

    # --- 2. approved, due, nobody running it ------------------------------------------------------------------
    def _orphan_where(self, now: datetime) -> list[sa.ColumnElement[bool]]:
        return [
            Action.state == lc.APPROVED,
            sa.or_(Action.scheduled_for.is_(None), Action.scheduled_for <= now),
            Action.updated_at <= now - self.lease,
        ]

    def _rerun(self, action_id: str) -> SweepItem | None:
        assert self.execution is not None  # the part only runs with an execution service
        view = self.execution.get(action_id)
        gone, state = self._dead(view.flow_run_id)
        if not gone:
            return None
        after = self.execution.run(action_id, actor=ACTOR)
        return SweepItem(action_id, RESOLVED, after.state, view.flow_run_id,
                         f"re-run: flow run {view.flow_run_id or '-'} is {state or 'gone'}")

    # --- 4. rolling back, undo interrupted ---------------------------------------------------------------------
    def _undoing_where(self, now: datetime) -> list[sa.ColumnElement[bool]]:
        return [Action.state == lc.ROLLING_BACK, Action.updated_at <= now - self.lease]

    def _resume_rollback(self, action_id: str) -> SweepItem:
        assert self.execution is not None  # the part only runs with an execution service
        after = self.execution.resume_rollback(action_id, ACTOR)
        return SweepItem(action_id, RESOLVED, after.state, after.flow_run_id,
                         f"rollback resumed: {after.state}" + (f" ({after.error})" if after.error else ""))

    # --- 3. pending, paused run gone -----------------------------------------------------------------------
    def _lost_where(self, _now: datetime) -> list[sa.ColumnElement[bool]]:
        return lost_conditions()

    def _note_lost(self, action_id: str) -> SweepItem | None:
        view = self.actions.get(action_id)
        gone, state = self._dead(view.flow_run_id)
        if not gone or self.probe is None or view.flow_run_id is None:
            return None
        run_id = view.flow_run_id
        with transaction(self.sessions) as session:
            row = transitions.lock_row(session, ACTION_KIND, action_id)
            if row.state != lc.PENDING_APPROVAL or row.flow_run_id != run_id:
                return None
            noted = session.execute(
                sa.select(AuditRecord.sequence).where(
                    AuditRecord.entity_id == action_id,
                    AuditRecord.event == "paused_run_lost",
                    AuditRecord.details.contains(json.dumps(run_id)),
                ).limit(1)
            ).first()
            if noted is not None:
                return None
            transitions.record_event(
                session, ENTITY, row, actor=ACTOR, event="paused_run_lost", now=self.clock.now(),
                details={"flow_run_id": run_id, "run_state": state, "deadline": row.approval_deadline,
                         "resolution": "the expire sweep applies the timeout action at the deadline"},
            )
        return SweepItem(action_id, NOTED, lc.PENDING_APPROVAL, run_id, f"flow run is {state or 'gone'}")


__all__ = ["ACTOR", "ALIVE", "INTERRUPTED", "UNDOING", "RecoverSweep", "RunProbe"]
