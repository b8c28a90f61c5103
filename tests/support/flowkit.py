"""Helpers shared by the flow tests: a runtime on a ManualClock with an in-memory notifier, and waiting for the
in-process flow runs a test started."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

import pytest
from prefect.logging.handlers import APILogWorker

from blocks.settings import Runtime, build_runtime
from flows import api
from saferails.clock import ManualClock
from saferails.handlers import HandlerSettings
from saferails.notify.base import Notification
from saferails.settings import Settings, load_settings
from tests.support import Mailbox, eventually, free_port

__all__ = ["SECRET", "Mailbox", "Outbox", "eventually", "finish_flow_runs", "flow_runs_finished", "free_port",
           "make_runtime", "store_settings"]

SECRET = "s" * 48


class Outbox:
    """A Notifier that keeps notifications (the tests read the approval codes from them)."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> None:
        self.sent.append(notification)

    def code_for(self, action_id: str, approver: str) -> str | None:
        for n in reversed(self.sent):
            if n.entity_id == action_id and n.data.get("approver") == approver:
                code = n.data.get("code")
                return None if code is None else str(code)
        return None


def store_settings() -> Settings:
    return load_settings({"SAFERAILS_APPROVAL_SECRET": SECRET, "SAFERAILS_EGRESS_ALLOWED_HOSTS": "127.0.0.1"})


def make_runtime(sessions: Any, clock: ManualClock, outbox: Outbox, handler_settings: HandlerSettings | None = None,
                 policy: Any = None) -> Runtime:
    """A runtime with approval codes on (sent to ``outbox``), retries that never sleep, approvers alice/bob/carol."""
    runtime = build_runtime(sessions, clock=clock, settings=store_settings(), notifier=outbox, policy=policy,
                            handler_settings=handler_settings or HandlerSettings(), sleeper=lambda _s: None)
    for name in ("alice", "bob", "carol"):
        runtime.actions.upsert_principal(name, groups=["approvers"], email=f"{name}@example.com")
    return runtime


def finish_flow_runs(timeout: float = 60, *, ignore: Collection[str] = ()) -> None:
    """Wait for the flow runs this test started in-process (``flows.api`` threads) to end, then flush their logs to
    the server: a run left going would carry on against the next test's runtime after this test's store is gone."""
    left = api.join_flow_threads(timeout, ignore=ignore)
    APILogWorker.drain_all()
    assert not left, f"flow runs still going after {timeout} s (paused and never answered?): {left}"


@pytest.fixture
def flow_runs_finished() -> Iterator[None]:
    """Each test's in-process flow runs end before its store goes away: name it after the runtime fixture (or make
    an autouse fixture that depends on the runtime call ``finish_flow_runs``), so it is torn down first."""
    before = api.flow_threads()  # runs another test left going are that test's to end
    yield
    finish_flow_runs(ignore=before)
