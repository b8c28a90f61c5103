"""Retry with backoff and the circuit breaker, in isolation: time moves by a ManualClock, sleeps are recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest

from saferails.clock import ManualClock
from saferails.errors import CircuitOpen, InvalidInput
from saferails.resilience import BreakerState, CircuitBreaker, RetryPolicy, retry


def test_backoff_doubles_from_half_a_second_and_stops_at_the_cap() -> None:
    policy = RetryPolicy(max_attempts=8, initial=0.5, multiplier=2, max_delay=10)
    assert [policy.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_retry_gives_up_after_the_last_attempt_and_reports_every_failure() -> None:
    sleeps: list[float] = []
    reports: list[tuple[int, float | None]] = []

    def always_fails(attempt: int) -> None:
        raise ConnectionError(f"attempt {attempt}")

    with pytest.raises(ConnectionError, match="attempt 3"):
        retry(
            always_fails,
            RetryPolicy(),
            sleeper=sleeps.append,
            retryable=lambda _e: True,
            on_failure=lambda n, _e, d: reports.append((n, d)),
        )
    assert sleeps == [0.5, 1.0]
    assert reports == [(1, 0.5), (2, 1.0), (3, None)]


def test_an_error_that_is_not_retryable_is_raised_after_one_attempt() -> None:
    sleeps: list[float] = []
    calls: list[int] = []

    def refuses(attempt: int) -> None:
        calls.append(attempt)
        raise InvalidInput("bad")

    with pytest.raises(InvalidInput):
        retry(refuses, RetryPolicy(), sleeper=sleeps.append, retryable=lambda e: not isinstance(e, InvalidInput))
    assert calls == [1] and sleeps == []


def test_an_unusable_retry_policy_is_refused() -> None:
    with pytest.raises(InvalidInput):
        RetryPolicy(max_attempts=0)


def test_a_half_open_breaker_lets_one_trial_through_and_a_failed_trial_opens_it_again(clock: ManualClock) -> None:
    breaker = CircuitBreaker("smtp", clock, failure_threshold=2, reset_timeout=timedelta(seconds=30))
    breaker.record_failure()
    assert _state(breaker) is BreakerState.CLOSED
    breaker.record_failure()
    assert _state(breaker) is BreakerState.OPEN
    with pytest.raises(CircuitOpen):
        breaker.before_call()

    clock.advance(timedelta(seconds=30))
    assert _state(breaker) is BreakerState.HALF_OPEN
    breaker.before_call()
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # only one trial at a time
    breaker.record_failure()
    assert _state(breaker) is BreakerState.OPEN

    clock.advance(timedelta(seconds=30))
    assert breaker.call(lambda: "sent") == "sent"
    assert _state(breaker) is BreakerState.CLOSED


def test_failures_that_say_nothing_about_the_dependency_do_not_trip_the_breaker(clock: ManualClock) -> None:
    breaker = CircuitBreaker("files", clock, failure_threshold=1, reset_timeout=timedelta(seconds=30))

    def refused() -> None:
        raise InvalidInput("path outside root")

    with pytest.raises(InvalidInput):
        breaker.call(refused, counts=lambda e: not isinstance(e, InvalidInput))
    assert _state(breaker) is BreakerState.CLOSED


def _state(breaker: CircuitBreaker) -> BreakerState:
    """The breaker's state, read through a call: mypy would otherwise keep the narrowing of one ``assert
    breaker.state is X`` across the calls that change it."""
    return breaker.state
