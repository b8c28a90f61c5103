"""Retry with exponential backoff and a circuit breaker, both driven by injected time.

``retry`` sleeps through an injected ``sleeper`` (``time.sleep`` in production, a recorder in tests) and the
breaker reads an injected ``Clock``, so nothing here ever needs a test to wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from saferails.clock import Clock
from saferails.errors import CircuitOpen, InvalidInput

T = TypeVar("T")
Sleeper = Callable[[float], None]


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` calls in all; the delay after failed attempt n is ``initial * multiplier**(n-1)``,
    capped at ``max_delay`` seconds. No jitter: one executor per action makes herd effects moot, and fixed
    delays keep the audit trail predictable."""

    max_attempts: int = 3
    initial: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.initial < 0 or self.multiplier < 1 or self.max_delay < 0:
            raise InvalidInput(f"unusable retry policy {self!r}")

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt ``failed_attempt`` (1-based) failed."""
        return float(min(self.initial * self.multiplier ** (failed_attempt - 1), self.max_delay))


def retry(
    fn: Callable[[int], T],
    policy: RetryPolicy,
    *,
    sleeper: Sleeper,
    retryable: Callable[[BaseException], bool],
    on_failure: Callable[[int, Exception, float | None], None] | None = None,
) -> T:
    """Call ``fn(attempt)`` until it returns, at most ``policy.max_attempts`` times.

    After each failure ``on_failure(attempt, error, next_delay)`` is called (``next_delay`` None when no
    retry follows: attempts exhausted or the error is not retryable); then the sleeper waits ``next_delay``.
    The last error is re-raised.
    """
    attempt = 1
    while True:
        try:
            return fn(attempt)
        except Exception as exc:
            more = attempt < policy.max_attempts and retryable(exc)
            delay = policy.delay(attempt) if more else None
            if on_failure is not None:
                on_failure(attempt, exc, delay)
            if delay is None:
                raise
            sleeper(delay)
            attempt += 1


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Stops calling a failing dependency.

    Closed: calls pass; ``failure_threshold`` consecutive failures open it. Open: ``before_call`` raises
    ``CircuitOpen`` until ``reset_timeout`` has passed by the clock; then half-open: one trial call passes
    (others are refused); its success closes the breaker, its failure opens it again for another timeout.
    """

    def __init__(self, name: str, clock: Clock, *, failure_threshold: int = 5, reset_timeout: timedelta) -> None:
        if failure_threshold < 1:
            raise InvalidInput("failure_threshold must be at least 1")
        self.name = name
        self.clock = clock
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._failures = 0
        self._opened_at: datetime | None = None
        self._trial_running = False
        self._lock = threading.Lock()

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state()

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self.clock.now() - self._opened_at >= self.reset_timeout:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def check(self) -> None:
        """Raise ``CircuitOpen`` if the breaker is open, without taking the half-open trial slot."""
        with self._lock:
            if self._state() is BreakerState.OPEN or self._trial_running:
                self._raise_open()

    def before_call(self) -> None:
        """Raise ``CircuitOpen`` if a call may not go through now; otherwise let it pass."""
        with self._lock:
            state = self._state()
            if state is BreakerState.CLOSED:
                return
            if state is BreakerState.HALF_OPEN and not self._trial_running:
                self._trial_running = True
                return
            self._raise_open()

    def _raise_open(self) -> None:
        assert self._opened_at is not None
        retry_at = self._opened_at + self.reset_timeout
        raise CircuitOpen(
            f"circuit {self.name!r} is open after {self._failures} consecutive failures; "
            f"next trial at {retry_at.isoformat()}",
            circuit=self.name,
            retry_at=retry_at.isoformat(),
        )

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_running = False

    def release(self) -> None:
        """End a call that says nothing about the dependency's health (e.g. refused input)."""
        with self._lock:
            self._trial_running = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_running or self._failures >= self.failure_threshold:
                self._opened_at = self.clock.now()
            self._trial_running = False

    def call(self, fn: Callable[[], T], *, counts: Callable[[BaseException], bool] = lambda _e: True) -> T:
        """Run ``fn`` through the breaker; failures for which ``counts`` is false do not trip it."""
        self.before_call()
        try:
            value = fn()
        except Exception as exc:
            if counts(exc):
                self.record_failure()
            else:
                self.release()
            raise
        self.record_success()
        return value


class BreakerRegistry:
    """One breaker per name (the executor uses one per action type), created on first use."""

    def __init__(self, clock: Clock, *, failure_threshold: int = 5, reset_timeout: timedelta | None = None) -> None:
        self.clock = clock
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout or timedelta(seconds=60)
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> CircuitBreaker:
        with self._lock:
            if name not in self._breakers:
                self._breakers[name] = CircuitBreaker(
                    name, self.clock, failure_threshold=self.failure_threshold, reset_timeout=self.reset_timeout
                )
            return self._breakers[name]
