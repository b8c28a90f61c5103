"""The Prefect project's CLI extension: ``saferails runbook ... --prefect`` carried by a ``runbook_flow`` run.

Enable it from the project directory with ``SAFERAILS_CLI_EXTENSIONS=flows.cli_extension:register`` (the library
never imports this module nor Prefect; ``saferails.cli.extensions`` loads it only when ``--prefect`` is asked for).
"""

from __future__ import annotations

from flows import runbook_api
from saferails.cli.extensions import Registry
from saferails.runbooks.views import ExecutionView

__all__ = ["PrefectRunbookRunner", "register"]


class PrefectRunbookRunner:
    """Runs an execution as a flow run (``flows.runbook_api``): in this process, or through ``deployment``."""

    def run_execution(self, execution_id: str, *, deployment: str | None, poll_interval: int) -> str:
        return str(runbook_api.run_execution(execution_id, deployment=deployment, poll_interval=poll_interval))

    def wait_for_execution(self, execution_id: str, timeout: float) -> ExecutionView:
        """Raises ``TimeoutError`` (``runbook_api.ExecutionTimeout``) when not final after ``timeout`` seconds."""
        return runbook_api.wait_for_execution(execution_id, timeout)


def register(registry: Registry) -> None:
    """Provide the runbook runner on Prefect."""
    registry.provide_runbook_runner(PrefectRunbookRunner(), source=__name__)
