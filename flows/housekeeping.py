"""Long-lived consumer runs: one flow run repeats a pass for a period, then ends, and the next scheduled run
takes over.

The audit relay and the outbox dispatcher consume continuously. One Prefect run per pass (every minute) buried
the action runs under ~2,900 housekeeping runs a day; instead each deployment is scheduled every
:data:`PERIOD_SECONDS` and its run loops with :func:`repeat` until its period is over (one run per consumer per
hour). Overlap at the hand-over is harmless: the deployments allow one running run at a time (a late run waits
for the slot), the outbox claims are leases taken with ``FOR UPDATE SKIP LOCKED`` (``BEGIN IMMEDIATE`` on
SQLite), and relayed events carry ids derived from the audit hash.

Time comes from the runtime's clock and waits go through its sleeper (``time.sleep`` unless a test or the demo
installs another), so a test drives a whole period with a ``ManualClock`` and no real waiting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from blocks.settings import current_runtime
from saferails.clock import Clock
from saferails.resilience import Sleeper

PERIOD_SECONDS = 3600
"""How long one consumer run loops, and how often its deployment is scheduled."""
INTERVAL_SECONDS = 10.0
"""The pause between two passes of a consumer run."""
TAGS = ["saferails", "housekeeping"]
"""Tags of the consumer deployments' runs (the UI hides them with a tag filter on ``action`` / ``runbook``)."""

T = TypeVar("T")


def repeat(one_pass: Callable[[], T], *, period: float, interval: float, clock: Clock, sleep: Sleeper) -> list[T]:
    """Call ``one_pass`` now and then every ``interval`` seconds while the next pass would still start before
    ``period`` seconds from now; returns the passes' results in order. At least one pass runs. The number of
    passes is also capped at ``period / interval + 1``, so a clock that does not move (a test's) cannot make the
    run endless. Raises ``ValueError`` for a negative period or a non-positive interval."""
    if period < 0 or interval <= 0:
        raise ValueError("the period must be >= 0 and the interval > 0")
    deadline = clock.now() + timedelta(seconds=period)
    step = timedelta(seconds=interval)
    most = math.floor(period / interval) + 1
    results = [one_pass()]
    while len(results) < most and clock.now() + step < deadline:
        sleep(interval)
        results.append(one_pass())
    return results


def repeat_in_runtime(one_pass: Callable[[], T], *, period: float, interval: float) -> list[T]:
    """:func:`repeat` on the current runtime's clock and sleeper."""
    rt = current_runtime()
    return repeat(one_pass, period=period, interval=interval, clock=rt.clock, sleep=rt.sleeper or time.sleep)
