"""The collector pause a sweep batch runs under: shared by nested and concurrent batches, and it leaves the
collector as it found it."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from saferails.sweeps.collector import collection_paused


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_the_collector_is_off_inside_and_on_again_after_the_last_of_nested_pauses(collector_on: None) -> None:
    with collection_paused():
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_pause_ending_in_an_exception_still_enables_the_collector(collector_on: None) -> None:
    with pytest.raises(ValueError), collection_paused():
        raise ValueError("the batch failed")
    assert gc.isenabled()


def test_overlapping_pauses_in_two_threads_leave_the_collector_on(collector_on: None) -> None:
    first_in, second_done = threading.Event(), threading.Event()

    def first() -> None:
        with collection_paused():
            first_in.set()
            second_done.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(10)
    with collection_paused():  # begins while the collector is already off: it must not keep it off
        pass
    second_done.set()
    thread.join(10)
    assert gc.isenabled()


def test_a_collector_the_application_disabled_stays_disabled(collector_on: None) -> None:
    gc.disable()
    with collection_paused():
        pass
    assert not gc.isenabled()
