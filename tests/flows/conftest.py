"""Flow tests: ONE prefect_test_harness for the session, heartbeats and analytics off; a fresh store per test
with a ManualClock runtime installed for the flows and a notifier that keeps what it was asked to send."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from blocks.settings import Runtime, install_runtime
from saferails.clock import ManualClock
from tests.support.flowkit import Outbox, flow_runs_finished, make_runtime

__all__ = ["flow_runs_finished"]  # a fixture: importing it here makes it available to the flow tests


@pytest.fixture(scope="session", autouse=True)
def prefect_harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120), temporary_settings(
        {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    ):
        yield


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def runtime(sqlite_db: Any, clock: ManualClock, outbox: Outbox) -> Iterator[Runtime]:
    rt = make_runtime(sqlite_db.sessions, clock, outbox)
    install_runtime(rt)
    yield rt
    install_runtime(None)
