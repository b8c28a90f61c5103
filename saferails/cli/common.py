"""What every command of the ``saferails`` CLI shares, defined once.

- :class:`Io`, the one output protocol: a result as text (tables) or, with ``--json``, one JSON document on
  stdout; an error on stderr as ``error[CODE]: message`` (or the error's JSON) with its class's exit code.
- :func:`run`, the body of every command: open the store (``saferails.api.open_store``), authenticate the caller
  (``SAFERAILS_TOKEN``, else the 0600 credentials file ``saferails init`` wrote: ``error[UNAUTHENTICATED]``, exit 12,
  without one), check the command's permission (``error[PERMISSION_DENIED]``, exit 7), run the command, record
  its exit code. The caller is :func:`principal_of`; a name given in a flag (``--approver``, ``--proposer``,
  ``--actor``) is only accepted when it IS the caller (:func:`acting_as`).
  Errors are mapped to exit codes once, by :func:`exit_code_for` (called from ``saferails.cli.app``).
- Value parsers for options: :func:`iso_time`, :func:`duration`, :func:`params`, :func:`json_object`,
  :func:`key_values`.
- ``JsonFlag``, the ``--json`` option of every command.
- :func:`resolve`, the one place an id argument becomes a full id: every command taking an action, task, plan or
  execution id accepts the full id or a prefix of at least 4 hex characters (``saferails.store.ids``).
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, TextIO

import typer
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from typer.exceptions import TyperException

from saferails.api import Store, open_store
from saferails.cli import output as out
from saferails.cli.extensions import Registry, load_registry
from saferails.errors import InternalError, InvalidInput, PermissionDenied, SaferailsError, StoreUnavailable
from saferails.identity import Permission, Principal, Role, credentials_path, require, resolve_token
from saferails.policy.model import parse_duration
from saferails.runbooks.tables import RunbookExecution
from saferails.store.db import read_transaction
from saferails.store.ids import resolve_id
from saferails.store.tables import Action
from saferails.workflow.tables import ActionPlan, Task

__all__ = [
    "Command",
    "Io",
    "JsonFlag",
    "State",
    "acting_as",
    "authenticate",
    "current_principal",
    "duration",
    "exit_code_for",
    "iso_time",
    "json_object",
    "key_values",
    "params",
    "principal_of",
    "resolve",
    "run",
    "run_unauthenticated",
    "workflow_roles",
]

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


class Io:
    """Where a command writes: its result (text or JSON, by ``--json``), warnings, progress and its errors."""

    def __init__(self, stdout: TextIO, stderr: TextIO, as_json: bool) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.json = as_json

    def result(self, data: Any, text: Callable[[TextIO], object]) -> None:
        """``data`` as one JSON document with ``--json``, else whatever ``text`` writes."""
        if self.json:
            out.print_json(data, self.stdout)
        else:
            text(self.stdout)

    def table(self, data: Any, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str = "(none)",
              ) -> int:
        """``data`` as JSON with ``--json``, else ``rows`` as a table (``empty`` when there are none); exit 0."""
        self.result(data, lambda stream: out.render_table(columns, rows, stream, empty=empty))
        return 0

    def warn(self, message: str) -> None:
        """A warning on stderr, in text mode only (``--json`` keeps stderr for errors)."""
        if not self.json:
            self.stderr.write(f"warning: {message}\n")

    def progress(self, description: str) -> AbstractContextManager[Callable[[int, int | None], None]]:
        """A progress bar while the ``with`` block runs (a terminal without ``--json`` only); yields
        ``update(done, total)``."""
        return out.progress(description, self.stdout, quiet=self.json)

    def error(self, exc: SaferailsError) -> int:
        """Write ``exc`` to stderr; its exit code."""
        if self.json:
            data = exc.to_dict()
            # Why a one-time code failed is for the audit trail, not for whoever typed it (saferails.approvals).
            data["details"] = {k: v for k, v in data["details"].items() if k != "internal_reason"}
            out.print_json(data, self.stderr)
        else:
            self.stderr.write(f"error[{exc.code}]: {exc.message}\n")
        return exc.exit_code


@dataclass
class State:
    """One invocation's global options and outcome (the Click context's ``obj``)."""

    json: bool = False
    debug: bool = False
    exit_code: int = 0
    io: Io | None = None
    principal: Principal | None = None
    _registry: Registry | None = field(default=None, repr=False)

    def output(self) -> Io:
        """The command's output object, or (before a command ran, e.g. a usage error) one on the process streams."""
        return self.io or Io(sys.stdout, sys.stderr, self.json)

    def registry(self) -> Registry:
        """The CLI extensions, loaded on first use (only commands that need one pay for importing them)."""
        if self._registry is None:
            self._registry = load_registry()
        return self._registry


def state_of(ctx: typer.Context) -> State:
    state: State = ctx.ensure_object(State)
    return state


Command = Callable[[Store, Io], int]


# The authenticated caller of the command running in this context (for helpers that get no ``ctx``).
_CURRENT: ContextVar[Principal | None] = ContextVar("saferails_cli_principal", default=None)


def authenticate(store: Store) -> Principal:
    """The caller: the token of ``SAFERAILS_TOKEN``, else of the credentials file's profile
    (``SAFERAILS_PROFILE``), checked by the store's identity service. ``Unauthenticated`` (exit 12) without a
    valid one: the CLI never acts as a name the caller merely claims."""
    settings = store.settings
    env_token = settings.token.get_secret_value() if settings.token is not None else None
    token = resolve_token(env_token, credentials_path(settings.data_dir), settings.profile)
    return store.identity.authenticate(token)


def principal_of(ctx: typer.Context) -> Principal:
    """The authenticated caller of the running command (set by :func:`run`)."""
    principal = state_of(ctx).principal
    if principal is None:
        raise InternalError("no authenticated principal: the command did not go through run()")
    return principal


def current_principal() -> Principal:
    """The authenticated caller of the command running now (set by :func:`run`)."""
    principal = _CURRENT.get()
    if principal is None:
        raise InternalError("no authenticated principal: the command did not go through run()")
    return principal


def acting_as(principal: Principal, claimed: str | None, flag: str) -> str:
    """The id a command records as its actor: always the authenticated ``principal``. A name given in ``flag``
    is accepted only when it is that principal (kept for scripts that pass it); any other is refused with
    ``PermissionDenied``, so nobody acts under another name."""
    if claimed is not None and claimed != principal.id:
        raise PermissionDenied(
            f"{flag} {claimed!r} is not the authenticated principal {principal.id!r}; the CLI acts only as the "
            "principal whose credential it holds", actor=principal.id, claimed=claimed)
    return principal.id


def workflow_roles(principal: Principal) -> frozenset[str]:
    """The workflow layer's roles (``saferails.workflow.permissions``) a principal may act with: ``user`` always,
    ``agency`` for an operator or admin, ``admin`` for an admin."""
    held = {"user"}
    if Role.OPERATOR in principal.roles or Role.ADMIN in principal.roles:
        held.add("agency")
    if Role.ADMIN in principal.roles:
        held.add("admin")
    return frozenset(held)


def run(ctx: typer.Context, as_json: bool, command: Command, *, opening: str | None = None,
        permission: Permission | None = Permission.READ) -> None:
    """Open the store, authenticate the caller, require ``permission`` of it, run ``command`` and record its exit
    code. ``opening`` names a progress bar shown while the store opens (it migrates the schema on first use).
    ``permission=None`` only authenticates (the command checks finer rules itself)."""
    state = state_of(ctx)
    state.io = io = Io(sys.stdout, sys.stderr, as_json or state.json)
    with _opened(io, opening) as store:
        state.principal = principal = authenticate(store)
        if permission is not None:
            require(principal, permission)
        reset = _CURRENT.set(principal)
        try:
            state.exit_code = command(store, io)
        finally:
            _CURRENT.reset(reset)


def run_unauthenticated(ctx: typer.Context, as_json: bool, command: Command, *, opening: str | None = None) -> None:
    """Open the store and run ``command`` without a caller: only ``saferails init`` (the first admin has no
    credential yet; the identity service refuses once an admin exists) and ``saferails db upgrade`` (opening the
    store migrates it anyway: whoever holds the database URL can, see docs/security.md)."""
    state = state_of(ctx)
    state.io = io = Io(sys.stdout, sys.stderr, as_json or state.json)
    with _opened(io, opening) as store:
        state.exit_code = command(store, io)


def _opened(io: Io, opening: str | None) -> Store:
    """The store, opened under a progress bar named ``opening`` when given (the first open migrates)."""
    if opening is None:
        return open_store()
    with io.progress(opening):
        return open_store()


IdKind = Literal["action", "task", "action plan", "runbook execution"]
_ID_MODELS: dict[str, Any] = {"action": Action, "task": Task, "action plan": ActionPlan,
                              "runbook execution": RunbookExecution}


def resolve(sessions: sessionmaker[Session], kind: IdKind, value: str) -> str:
    """The full id ``value`` names: itself, or the one id of ``kind`` it is a prefix of (at least 4 hex
    characters). ``NotFound`` (exit 4) or ``AmbiguousId`` (exit 2, listing the candidates) otherwise."""
    with read_transaction(sessions) as session:
        return resolve_id(session, _ID_MODELS[kind], value, kind)


def run_offline(ctx: typer.Context, as_json: bool, command: Callable[[Io], int]) -> None:
    """Run ``command`` without opening the store (commands that prepare the database or read only files)."""
    state = state_of(ctx)
    state.io = io = Io(sys.stdout, sys.stderr, as_json or state.json)
    state.exit_code = command(io)


def exit_code_for(exc: BaseException, state: State) -> int:
    """The one mapping from a failure to what the user sees: usage errors are ``INVALID_INPUT`` (exit 2), an
    unreachable database ``STORE_UNAVAILABLE`` (exit 9), anything unexpected ``INTERNAL_ERROR`` (exit 1, the
    traceback only with ``--debug``). Never a traceback otherwise."""
    io = state.output()
    if isinstance(exc, SaferailsError):
        return io.error(exc)
    if isinstance(exc, TyperException):  # Click's usage errors: unknown flag, missing argument, bad value
        command = getattr(getattr(exc, "ctx", None), "command_path", None) or "saferails"
        return io.error(InvalidInput(f"{command}: {exc.format_message()}"))
    if isinstance(exc, OperationalError):
        # A database that cannot be reached (or a locked/corrupt SQLite file) is an operational state, not a bug.
        return io.error(StoreUnavailable(f"database unavailable: {exc.orig or exc}"))
    if state.debug:
        traceback.print_exception(exc, file=io.stderr)
    hint = "" if state.debug else " (run with --debug for the traceback)"
    first_line = next(iter(str(exc).splitlines()), "")
    return io.error(InternalError(f"unexpected {type(exc).__name__}: {first_line}{hint}",
                                  exception=type(exc).__name__))


# --- option values ----------------------------------------------------------------------------------------------


def iso_time(value: str) -> datetime:
    """An ISO-8601 time with its timezone (``2026-11-22T10:00:00Z``); a usage error otherwise."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO-8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise typer.BadParameter(f"{value!r} has no timezone (e.g. 2026-11-22T10:00:00Z)")
    return parsed


def duration(value: str) -> timedelta:
    """A duration like ``12h`` or ``7d`` (the policy's syntax); a usage error otherwise."""
    try:
        parsed = parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if not isinstance(parsed, timedelta):
        raise typer.BadParameter(f"expected a duration like 12h or 7d, got {value!r}")
    return parsed


def json_object(text: str, flag: str) -> dict[str, Any]:
    """``text`` as a JSON object; ``InvalidInput`` naming ``flag`` otherwise."""
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{flag} is not valid JSON: {exc}") from None
    if not isinstance(loaded, dict):
        raise InvalidInput(f"{flag} must be a JSON object")
    return loaded


def key_values(pairs: Sequence[str] | None, flag: str, value: Callable[[str, str], Any] | None = None,
               ) -> dict[str, Any]:
    """``k=v`` pairs as a dict; ``value(key, text)`` converts each value (default: kept as a string)."""
    result: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"{flag} expects key=value, got {pair!r}")
        result[key] = text if value is None else value(key, text)
    return result


def params(pairs: Sequence[str] | None, params_json: str | None) -> dict[str, Any]:
    """``--params-json`` first, then each ``--param k=v`` on top. A value starting with ``[`` or ``{`` is JSON;
    every other value is a string (the action type's model converts numbers, booleans and times)."""

    def value(key: str, text: str) -> Any:
        if text[:1] not in ("[", "{"):
            return text
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"--param {key}: value is not valid JSON: {exc}") from None

    loaded = {} if params_json is None else json_object(params_json, "--params-json")
    return loaded | key_values(pairs, "--param", value)
