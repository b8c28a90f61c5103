"""What a sweep run reports: each item it handled and how, and progress while it runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Item outcomes. A sweep handles an item in exactly one of these ways.
RESOLVED = "resolved"  # the sweep changed the item's state (see ``state``)
SKIPPED = "skipped"  # someone else (an approver, the flow, another sweep) got there first: nothing written
FAILED = "failed"  # the sweep could not handle it; its claim is kept so it is retried after the lease
NOTED = "noted"  # audited without a state change


@dataclass(frozen=True, slots=True)
class SweepItem:
    action_id: str
    outcome: str
    state: str | None = None
    flow_run_id: str | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"action_id": self.action_id, "outcome": self.outcome, "state": self.state,
                "flow_run_id": self.flow_run_id, "detail": self.detail}


@dataclass(frozen=True)
class SweepProgress:
    """Where a running sweep is: ``done`` items handled of ``total`` known due when it started (``total`` may
    be exceeded by items that fell due during the run)."""

    sweep: str
    done: int
    total: int


ProgressCallback = Callable[[SweepProgress], None]


@dataclass
class SweepReport:
    sweep: str
    worker_id: str
    due_at_start: int = 0
    items: list[SweepItem] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for i in self.items if i.outcome == outcome)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sweep": self.sweep,
            "worker_id": self.worker_id,
            "due_at_start": self.due_at_start,
            "resolved": self.count(RESOLVED),
            "skipped": self.count(SKIPPED),
            "failed": self.count(FAILED),
            "noted": self.count(NOTED),
            "items": [i.to_dict() for i in self.items],
        }


class Progress:
    """Calls ``callback`` every ``every`` handled items and once at the end (if anything was handled)."""

    def __init__(self, sweep: str, total: int, every: int, callback: ProgressCallback | None) -> None:
        self.sweep, self.total, self.every, self.callback = sweep, total, max(1, every), callback
        self.done = 0
        self._reported = 0

    def step(self) -> None:
        self.done += 1
        if self.done % self.every == 0:
            self._emit()

    def finish(self) -> None:
        if self.done != self._reported:
            self._emit()

    def _emit(self) -> None:
        self._reported = self.done
        if self.callback is not None:
            self.callback(SweepProgress(self.sweep, self.done, max(self.total, self.done)))
