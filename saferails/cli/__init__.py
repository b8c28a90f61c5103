"""The ``saferails`` command line (Typer + Rich): an edge over the core (``saferails.api``), one module per
command group. ``main`` is the console script's entry point; ``saferails.cli.app`` holds the contract.

``main`` imports the application lazily so ``saferails.cli.output`` (used by the demos) stays light.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (the console script exits with it)."""
    from saferails.cli.app import main as run_main

    return run_main(argv)
