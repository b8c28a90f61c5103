"""The one extension point of the CLI: capabilities that need more than the library (e.g. Prefect).

The library never imports Prefect nor the Prefect project (``flows/`` ...). A command that can hand its work to
something else (``saferails runbook start --prefect``) asks the :class:`Registry` for the capability; whoever
provides it registers it with a ``register(registry)`` function found through

- the entry-point group ``saferails.cli`` (an installed package declares
  ``[project.entry-points."saferails.cli"] name = "package.module:register"``), and
- the setting ``SAFERAILS_CLI_EXTENSIONS``: comma-separated ``module:function`` paths, e.g.
  ``flows.cli_extension:register`` for the Prefect project in this repository (run from the project directory).

Extensions are loaded only when a command asks for a capability, so a plain command never pays for importing
Prefect. A path that cannot be imported or does not name a callable is a ``CONFIGURATION_INVALID`` error (exit
2); a capability nobody provides is ``EXTENSION_MISSING`` (exit 2), whose message says how to enable it.

:func:`configured_extensions` reads ``SAFERAILS_CLI_EXTENSIONS`` through the one settings model
(``saferails.settings.load_settings``), the only place the environment is read.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Final, Protocol

from saferails.errors import ConfigurationError, ExtensionMissing
from saferails.runbooks.views import ExecutionView
from saferails.settings import load_settings

__all__ = [
    "ENTRY_POINT_GROUP",
    "EXTENSIONS_SETTING",
    "PREFECT_EXTENSION",
    "Registry",
    "RunbookRunner",
    "configured_extensions",
    "load_registry",
]

ENTRY_POINT_GROUP = "saferails.cli"
EXTENSIONS_SETTING: Final = "SAFERAILS_CLI_EXTENSIONS"
PREFECT_EXTENSION = "flows.cli_extension:register"

def configured_extensions() -> list[str]:
    """The ``module:function`` paths of ``SAFERAILS_CLI_EXTENSIONS``, read through the one settings model."""
    return list(load_settings().cli_extensions)


class RunbookRunner(Protocol):
    """Carries a runbook execution somewhere other than this process (the Prefect project: one flow run)."""

    def run_execution(self, execution_id: str, *, deployment: str | None, poll_interval: int) -> str:
        """Make sure something carries ``execution_id`` forward; returns the id of what does (a flow run id)."""
        ...

    def wait_for_execution(self, execution_id: str, timeout: float) -> ExecutionView:
        """The execution once final; raises ``TimeoutError`` when it is not after ``timeout`` seconds."""
        ...


class Registry:
    """What the loaded extensions provide; each capability at most once (a second provider is refused)."""

    def __init__(self) -> None:
        self._runbook_runner: tuple[RunbookRunner, str] | None = None

    def provide_runbook_runner(self, runner: RunbookRunner, *, source: str) -> None:
        """Register the runner for ``--prefect`` runbook commands; ``source`` names the extension in errors."""
        if self._runbook_runner is not None:
            raise ConfigurationError(f"two CLI extensions provide a runbook runner: {self._runbook_runner[1]} and "
                                     f"{source}", capability="runbook-runner")
        self._runbook_runner = (runner, source)

    def runbook_runner(self) -> RunbookRunner:
        """The registered runbook runner; ``ExtensionMissing`` naming how to enable one when there is none."""
        if self._runbook_runner is None:
            raise ExtensionMissing(
                f"--prefect needs a CLI extension that runs runbooks on Prefect, and none is registered: from the "
                f"project directory set {EXTENSIONS_SETTING}={PREFECT_EXTENSION} (or install a package that "
                f"registers one under the entry-point group {ENTRY_POINT_GROUP!r})",
                capability="runbook-runner", setting=EXTENSIONS_SETTING, suggestion=PREFECT_EXTENSION)
        return self._runbook_runner[0]


Register = Callable[[Registry], object]


def _from_path(path: str) -> Register:
    module_name, sep, function_name = path.partition(":")
    if not sep or not module_name or not function_name:
        raise ConfigurationError(f"{EXTENSIONS_SETTING}: {path!r} is not module:function", extension=path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"{EXTENSIONS_SETTING}: cannot import {module_name!r} ({exc}); run from the "
                                 "directory that holds it", extension=path) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigurationError(f"{EXTENSIONS_SETTING}: {module_name} has no function {function_name!r}",
                                 extension=path)
    register: Register = function
    return register


def load_registry() -> Registry:
    """A registry filled by every ``saferails.cli`` entry point, then every path in ``SAFERAILS_CLI_EXTENSIONS``."""
    registry = Registry()
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            register: Register = point.load()
        except ImportError as exc:
            raise ConfigurationError(f"CLI extension {point.name} ({point.value}) cannot be imported: {exc}",
                                     extension=point.value) from None
        register(registry)
    for path in configured_extensions():
        _from_path(path)(registry)
    return registry
