"""The expire sweep: pending approvals past their deadline get their timeout action.

Contract of ``ExpireSweep.run``: every action in ``pending_approval`` whose ``approval_deadline`` is at or
before the clock's now gets the policy's timeout action (``fail`` -> ``timed_out``, ``reject`` -> ``rejected``,
``approve`` -> ``approved``), oldest deadline first, in batches: ONE transaction per batch locks up to
``batch_size`` due rows (``claims.lock_due``: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the writer lock on
SQLite; a Core SELECT of ``TIMEOUT_COLUMNS`` into ``transitions.Stored`` rows, no ORM objects) and resolves them
(``ActionService.resolve_locked_timeouts``: set-based writes of states, audit records chained in order and
outbox events), with the cyclic garbage collector held off for the batch (``collector.collection_paused``).
Whether the flow run that paused for it is alive does not matter: the store is the truth. An action decided by
someone else in the meantime is ``skipped`` (nothing written). Several sweeps may run at once (each item is
handled by one of them: a locked row is skipped by the others); a crash rolls its batch back, so the items are
due again at once. An item that fails with a typed error is held by a claim for ``lease`` (the
next batches, and other workers, leave it alone until then), as is any item a live claim of this sweep holds.
Cost follows the due items: the due query and the count read the partial index ``ix_actions_pending_deadline
(approval_deadline, id) WHERE state = 'pending_approval'`` in the sweep's order on SQLite and PostgreSQL.
A batch whose transaction fails as a whole is retried item by item (``resolve_timeout``), and an item whose
resolution raises anything but a typed error is ended ``timed_out`` with the reason (audited
``sweep_item_poisoned``); the sweep carries on with the rest.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from saferails import transitions
from saferails.actions import lifecycle as lc
from saferails.actions.service import ACTION_KIND, ENTITY, TIMEOUT_COLUMNS, ActionService, TimeoutOutcome
from saferails.errors import InvalidTransition, SaferailsError
from saferails.store.db import transaction
from saferails.store.tables import Action
from saferails.sweeps import claims
from saferails.sweeps.collector import collection_paused
from saferails.sweeps.report import FAILED, RESOLVED, SKIPPED, Progress, ProgressCallback, SweepItem, SweepReport

SWEEP = "expire"
ACTOR = "system:timeout-sweep"


# ``state = 'pending_approval'`` written as a literal, exactly the predicate of the partial index
# ``ix_actions_pending_deadline``: neither SQLite nor PostgreSQL (generic plans of prepared statements) match a
# partial index against a bound parameter. ``unselective`` keeps SQLite from preferring ``ix_actions_state_priority``
# for it when the database has no statistics.
PENDING = sa.literal_column(f"'{lc.PENDING_APPROVAL}'", sa.String)


def due_conditions(now: datetime) -> list[sa.ColumnElement[bool]]:
    """Pending approvals whose deadline is at or before ``now`` (served by ``ix_actions_pending_deadline``)."""
    return [claims.unselective(Action.state == PENDING), Action.approval_deadline <= now]


ORDER = (Action.approval_deadline, Action.id)


class ExpireSweep:
    def __init__(
        self,
        actions: ActionService,
        *,
        batch_size: int = 500,
        lease: timedelta = timedelta(minutes=10),
        progress_every: int = 100,
        worker_id: str | None = None,
    ) -> None:
        self.actions = actions
        self.sessions = actions.sessions
        self.clock = actions.clock
        self.batch_size = batch_size
        self.lease = lease
        self.progress_every = progress_every
        self.worker_id = worker_id or f"expire-{uuid.uuid4().hex[:12]}"

    def count_due(self) -> int:
        """How many actions are due now (a range count over the due entries of the partial index)."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            stmt = sa.select(sa.func.count()).select_from(Action).where(*due_conditions(now))
            return int(session.execute(stmt).scalar_one())

    def run(self, *, max_items: int | None = None, on_progress: ProgressCallback | None = None) -> SweepReport:
        """Resolve due approvals until none is left unclaimed (or ``max_items`` were handled)."""
        report = SweepReport(SWEEP, self.worker_id, due_at_start=self.count_due())
        progress = Progress(SWEEP, report.due_at_start, self.progress_every, on_progress)
        with transaction(self.sessions) as session:
            claims.purge_lapsed(session, SWEEP, self.clock.now())
        while max_items is None or len(report.items) < max_items:
            want = self.batch_size if max_items is None else min(self.batch_size, max_items - len(report.items))
            items = self._batch(want)
            if not items:
                break
            for item in items:
                report.items.append(item)
                progress.step()
        progress.finish()
        return report

    def _batch(self, want: int) -> list[SweepItem]:
        """Lock up to ``want`` due actions and resolve them in ONE transaction (``claims.lock_due`` then
        ``ActionService.resolve_locked_timeouts``); an item that fails with a typed error is held for ``lease`` so
        the next batch does not take it again. If the transaction fails as a whole (anything but an item's typed
        error), the batch is retried item by item, one transaction each, so one poisoned item is isolated and the
        rest still resolve."""
        now = self.clock.now()
        ids: list[str] = []
        try:
            with collection_paused(), transaction(self.sessions) as session:
                rows = claims.lock_due(session, Action, due_conditions(now), ORDER, want, now, sweep=SWEEP,
                                       columns=TIMEOUT_COLUMNS)
                ids = list(rows)
                if not ids:
                    return []
                items = [self._item(o) for o in
                         self.actions.resolve_locked_timeouts(session, rows, ids, actor=ACTOR, now=now)]
                self._hold(session, items, now)
                return items
        except Exception:
            if not ids:
                raise  # the due query itself failed: nothing to isolate
        items = [self._resolve(action_id) for action_id in ids]  # fall back: find the culprit
        with transaction(self.sessions) as session:
            self._hold(session, items, self.clock.now())
        return items

    def _hold(self, session: Session, items: list[SweepItem], now: datetime) -> None:
        failed = [i.action_id for i in items if i.outcome == FAILED]
        claims.hold(session, SWEEP, failed, self.worker_id, self.lease, now)

    @staticmethod
    def _item(outcome: TimeoutOutcome) -> SweepItem:
        if outcome.error is None:
            return SweepItem(outcome.action_id, RESOLVED, state=outcome.state, flow_run_id=outcome.flow_run_id)
        if isinstance(outcome.error, InvalidTransition):  # decided meanwhile: the store already has it
            return SweepItem(outcome.action_id, SKIPPED, detail=outcome.error.code)
        return SweepItem(outcome.action_id, FAILED, detail=f"{outcome.error.code}: {outcome.error.message}")

    def _resolve(self, action_id: str) -> SweepItem:
        try:
            view = self.actions.resolve_timeout(action_id, actor=ACTOR)
        except InvalidTransition as exc:  # decided meanwhile (or deadline moved): the store already has it
            return SweepItem(action_id, SKIPPED, detail=exc.code)
        except SaferailsError as exc:
            return SweepItem(action_id, FAILED, detail=f"{exc.code}: {exc.message}")
        except Exception as exc:  # noqa: BLE001 - one poisoned item must not stop the sweep
            return self._poisoned(action_id, exc)
        return SweepItem(action_id, RESOLVED, state=view.state, flow_run_id=view.flow_run_id)

    def _poisoned(self, action_id: str, exc: Exception) -> SweepItem:
        """End a pending action whose resolution crashed as ``timed_out`` with the reason; never raises."""
        reason = f"{type(exc).__name__}: {exc}"[:1000]
        try:
            with transaction(self.sessions) as session:
                now = self.clock.now()
                row = transitions.lock_row(session, ACTION_KIND, action_id)
                details = {"sweep": SWEEP, "reason": reason}
                if row.state == lc.PENDING_APPROVAL:
                    row = transitions.transition(session, ENTITY, action_id, lc.TIMED_OUT, actor=ACTOR,
                                                 event="sweep_item_poisoned", now=now, details=details,
                                                 changes={"decided_at": now, "error": f"poisoned: {reason}"})
                else:
                    transitions.record_event(session, ENTITY, row, actor=ACTOR, event="sweep_item_poisoned",
                                             now=now, details=details)
                return SweepItem(action_id, FAILED, state=row.state, detail=f"poisoned: {reason}")
        except Exception as inner:  # noqa: BLE001 - even recording it failed: report and move on
            return SweepItem(action_id, FAILED, detail=f"poisoned (not recorded: {type(inner).__name__}): {reason}")


__all__ = ["ACTOR", "SWEEP", "ExpireSweep", "due_conditions"]
