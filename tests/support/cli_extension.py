"""A CLI extension for tests: a runbook runner that carries executions in this process, with the store the
CLI's settings name, and remembers what it was asked to run (so a test sees the registry used it)."""

from __future__ import annotations

from saferails.api import open_store
from saferails.cli.extensions import Registry
from saferails.runbooks.service import RunbookService
from saferails.runbooks.views import ExecutionView

RUNS: list[str] = []


class InProcessRunner:
    def run_execution(self, execution_id: str, *, deployment: str | None, poll_interval: int) -> str:
        with open_store() as store:
            RunbookService(store.sessions, store.clock, store.actions).run(execution_id)
        RUNS.append(execution_id)
        return f"in-process:{execution_id}"

    def wait_for_execution(self, execution_id: str, timeout: float) -> ExecutionView:
        with open_store() as store:
            return RunbookService(store.sessions, store.clock, store.actions).status(execution_id)


def register(registry: Registry) -> None:
    registry.provide_runbook_runner(InProcessRunner(), source=__name__)
