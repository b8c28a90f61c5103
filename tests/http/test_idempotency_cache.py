"""The in-process Idempotency-Key cache: replay, refusal, expiry on the injected clock, bounded size."""

from __future__ import annotations

from datetime import timedelta

import pytest

from saferails.clock import ManualClock
from saferails.errors import IdempotencyKeyReused
from saferails.http.idempotency import IdempotencyCache, fingerprint


def test_a_key_replays_for_its_request_refuses_another_and_expires(clock: ManualClock) -> None:
    cache = IdempotencyCache(clock, ttl=timedelta(hours=24))
    first = fingerprint("POST", "/a", b"{}")
    cache.store("agent-1", "k", first, 201, {"id": 1})
    assert cache.lookup("agent-1", "k", first).body == {"id": 1}  # type: ignore[union-attr]
    assert cache.lookup("agent-2", "k", first) is None
    with pytest.raises(IdempotencyKeyReused):
        cache.lookup("agent-1", "k", fingerprint("POST", "/a", b'{"x": 1}'))
    with pytest.raises(IdempotencyKeyReused):
        cache.lookup("agent-1", "k", fingerprint("POST", "/b", b"{}"))
    clock.advance(timedelta(hours=24))
    assert cache.lookup("agent-1", "k", first) is None


def test_the_cache_and_its_locks_stay_bounded(clock: ManualClock) -> None:
    cache = IdempotencyCache(clock, max_entries=10)
    for i in range(100):
        with cache.lock("p", f"k{i}"):
            if i % 2:
                cache.store("p", f"k{i}", "f", 200, i)
    assert len(cache._entries) == 10
    assert len(cache._locks) <= 2 * 10 + 1
    assert cache.lookup("p", "k99", "f").body == 99  # type: ignore[union-attr]
    assert cache.lookup("p", "k1", "f") is None  # the oldest were evicted
