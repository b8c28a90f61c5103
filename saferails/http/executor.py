"""Approved actions that no orchestrator owns are executed by the API process, right after they are approved.

An action proposed over HTTP has no Prefect run waiting at a gate: without this, an ``approved`` action (allowed
at once, or approved over HTTP or from the e-mailed link) would wait for an operator's ``execute`` or for the
recover sweep's lease (15 min). :class:`Executor` hands such an action to ``ExecutionService.run`` on a small
thread pool after the request that approved it has been answered. It is safe to race with anything else that
executes: ``run`` re-checks approval and schedule under the row lock and ``approved -> executing`` happens once,
so a gate, a sweep or an operator's ``execute`` that gets there first wins and this one returns the action as it
is. An action owned by a flow run (``flow_run_id``) is left to its run, a scheduled one to its time (the
recover sweep runs it when due). Failures are the action's own state (``failed`` with its error, audited);
nothing here raises to the caller.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from saferails.actions.lifecycle import APPROVED
from saferails.actions.models import ActionView
from saferails.api import Store
from saferails.errors import SaferailsError

log = logging.getLogger(__name__)

EXECUTOR_ACTOR = "system:http-executor"


class Executor:
    """Execute approved, unowned, due actions in the background (``after``); ``close`` waits for those started."""

    def __init__(self, store: Store, *, workers: int = 2) -> None:
        self._store = store
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="saferails-execute")

    def after(self, view: ActionView) -> None:
        """Queue ``view`` for execution if it is approved, owned by no flow run and due; otherwise do nothing."""
        if view.state != APPROVED or view.flow_run_id:
            return
        if view.scheduled_for is not None and view.scheduled_for > self._store.clock.now():
            return
        self._pool.submit(self._run, view.id)

    def _run(self, action_id: str) -> None:
        try:
            view = self._store.execution.run(action_id, EXECUTOR_ACTOR)
            log.info("action %s executed by the API: %s", action_id, view.state)
        except SaferailsError as exc:  # e.g. an open circuit breaker: the action stays approved for the sweep
            log.warning("action %s not executed by the API: %s (%s)", action_id, exc, exc.code)
        except Exception:
            log.exception("action %s: execution by the API raised; the recover sweep will resolve it", action_id)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
