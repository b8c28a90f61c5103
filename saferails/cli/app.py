"""The ``saferails`` application: the Typer app of every command group, and ``main``.

Contract: every command accepts ``--json`` (after the command, or before it as a global option). Results go to
stdout (tables, or one JSON document with ``--json``); errors go to stderr as ``error[CODE]: message`` (or the
error's JSON with ``--json``) and the exit code comes from the error class (``SaferailsError.exit_code``: 2 bad
input, including every usage error such as an unknown flag, a missing argument or a bad value; 3 audit chain
broken, 4 not found, 5 invalid transition, 6 refused by policy, 7 approval refused, 8 execution failed, 9 store
unavailable, 11 runbook wait timeout, 12 unauthenticated). An unexpected failure is ``error[INTERNAL_ERROR]`` with
exit 1 and no traceback unless ``--debug`` is given. ``propose`` of an action the policy refuses prints the recorded
(blocked) action and then fails with the refusal's code and exit code 6.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from saferails.cli import actions, agents, audit, db, http_api, org, policy, principals, runbook, workflow
from saferails.cli.common import JsonFlag, State, exit_code_for, state_of
from saferails.cli.output import is_terminal

__all__ = ["build_app", "main"]


def _root(ctx: typer.Context, as_json: JsonFlag = False,
          debug: Annotated[bool, typer.Option("--debug", help="show the traceback of an unexpected error")] = False,
          ) -> None:
    """Safety rails for AI agents and automations."""
    state = state_of(ctx)
    state.json = state.json or as_json
    state.debug = debug


def build_app() -> typer.Typer:
    """Every command group on one Typer app (a new one per call: nothing is shared between invocations). Help is
    Rich-formatted on a terminal and plain Click text elsewhere (no box art in a pipe)."""
    app = typer.Typer(name="saferails", add_completion=False, no_args_is_help=False,
                      pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]},
                      rich_markup_mode="rich" if is_terminal(sys.stdout) else None)
    app.callback()(_root)
    for group in (actions, principals, audit, policy, db, runbook, workflow, org, agents, http_api):
        group.register(app)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    # Known before parsing, so a usage error is reported as JSON too when --json was asked for.
    state = State(json="--json" in args)
    command = typer.main.get_command(build_app())
    try:
        returned = command.main(args=args, prog_name="saferails", standalone_mode=False, obj=state)
    except Exception as exc:  # noqa: BLE001 - the edge: every failure becomes a typed error and an exit code
        return exit_code_for(exc, state)
    # An int here is Click's own exit (--help: 0, Ctrl-C: 130); a command's outcome is in the state.
    return returned if isinstance(returned, int) and returned else state.exit_code
