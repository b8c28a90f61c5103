"""Sweeps run now, outside their schedule (``saferails sweep run``, ``saferails outcomes due``).

:func:`run_sweep` runs ``expire``, ``recover``, ``outcomes`` or ``agents`` (paused agents whose time is up)
through the core and returns its report as
JSON-ready data; :func:`due_checks` lists the outcome checks a monitor run now would take. Both take an open
:class:`~saferails.api.Store` and read time from ``store.clock``. ``recover`` has no Prefect probe here (the
core never imports Prefect): it resolves actions stuck in ``executing`` and re-runs approved actions that never
had a flow run; the scheduled flow (``flows/sweeps.py``) also probes paused runs.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from saferails.errors import InvalidInput
from saferails.execution import ExecutionService
from saferails.outcomes.monitor import CheckOutcome, CheckView, OutcomeMonitor
from saferails.outcomes.rules import load_rulebook
from saferails.sweeps.agents import AutoResumeSweep
from saferails.sweeps.expire import ExpireSweep
from saferails.sweeps.recover import RecoverSweep
from saferails.sweeps.report import SweepProgress

if TYPE_CHECKING:
    from saferails.api import Store

__all__ = ["SWEEPS", "due_checks", "resolve_outcome", "run_sweep"]

SWEEPS = ("expire", "recover", "outcomes", "agents")


def _monitor(store: Store, execution: ExecutionService | None = None) -> OutcomeMonitor:
    # The policy in force says which judge, delay and thresholds each action type gets (the same as the flow's).
    return OutcomeMonitor(store.sessions, store.clock, execution or store.execution,
                          load_rulebook(store.policy.outcomes), codes=store.codes, notifier=store.notifier)


def due_checks(store: Store, *, limit: int = 100) -> list[CheckView]:
    """Outcome checks a monitor run now would take (due pending ones and expired claims), earliest first.
    Checks exist once a monitor run scheduled them (``run_sweep(store, "outcomes")`` or the hourly flow)."""
    if limit < 1:
        raise InvalidInput("--limit must be at least 1")
    return _monitor(store).due(limit=limit)


def resolve_outcome(store: Store, action_id: str, actor: str, *, roll_back: bool, reason: str, code: str | None,
                    channel: str = "api") -> CheckOutcome:
    """A person's decision on action ``action_id``'s inconclusive outcome check, with their one-time code (the
    monitor of the policy in force, with the store's codes): ``OutcomeMonitor.resolve_inconclusive``. ``actor``
    must be the authenticated principal."""
    return _monitor(store).resolve_inconclusive(action_id, actor, roll_back=roll_back, reason=reason, code=code,
                                                channel=channel)


def run_sweep(
    store: Store,
    name: str,
    *,
    limit: int | None = None,
    execution: ExecutionService | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    worker_id: str | None = None,
) -> dict[str, Any]:
    """Run one sweep now and return its report as JSON-ready data: ``sweep``, counts and ``items`` (one per
    handled action: ``action_id``, ``outcome``, ``state``, ``detail``). ``limit`` caps the items of ``expire``
    and the checks scheduled and decided by ``outcomes`` (``recover`` runs until nothing is due). Raises
    ``InvalidInput`` for an unknown sweep or a limit below 1."""
    if name not in SWEEPS:
        raise InvalidInput(f"unknown sweep {name!r}; known: {', '.join(SWEEPS)}")
    if limit is not None and limit < 1:
        raise InvalidInput("--limit must be at least 1")
    worker = worker_id or f"cli:{socket.gethostname()}:{os.getpid()}"

    def progress(p: SweepProgress) -> None:
        if on_progress is not None:
            on_progress(p.sweep, p.done, p.total)

    if name == "agents":  # paused agents whose time is up go back to work (audited agent_pause_expired)
        return AutoResumeSweep(store.sessions, store.clock).run().to_dict()
    if name == "expire":
        return ExpireSweep(store.actions, worker_id=worker).run(max_items=limit, on_progress=progress).to_dict()
    execution = execution or store.execution
    if name == "recover":
        return RecoverSweep(store.actions, execution, worker_id=worker).run(on_progress=progress).to_dict()
    monitor = _monitor(store, execution)

    def checked(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress("outcomes", done, total)

    scheduled = monitor.schedule(limit=limit or 1000)
    report = monitor.run_due(worker_id=worker, limit=limit or 1000, progress=checked)
    items = [{"action_id": o.action_id, "outcome": o.state, "state": _action_state(o), "flow_run_id": None,
              "detail": o.note or _findings(o.findings)} for o in report.outcomes]
    return {"sweep": "outcomes", "scheduled": scheduled, **report.as_dict(), "items": items}


def _action_state(outcome: CheckOutcome) -> str | None:
    """The action's state after the check, where the outcome tells it (a kept action with no note is completed)."""
    if outcome.state == "negative":
        return outcome.rollback_state
    return "completed" if outcome.state == "ok" and not outcome.note else None


def _findings(findings: list[dict[str, Any]]) -> str:
    fired = [f"{f['rule']} {f['change']:+.0%}" for f in findings if f.get("change") is not None]
    return ", ".join(fired)

