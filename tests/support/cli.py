"""The one in-process runner of the ``saferails`` CLI for tests: ``saferails.cli.main`` with its output captured,
run as an authenticated principal.

The CLI acts only as the principal whose credential it holds (``SAFERAILS_TOKEN``). So that a test reads as the
story it tells, :class:`Cli` gives each command the credential of the principal the command names:

- ``cli.as_(principal)`` pins one principal (created with ``roles`` if it does not exist yet);
- ``cli.with_token(token)`` pins a token (e.g. one ``saferails credential issue`` printed);
- ``cli.anonymous()`` passes no token (the credentials file in the data directory, if any, still counts);
- otherwise the principal named by ``--approver``/``--proposer``/``--actor``/``--user`` acts; ``principal ...``
  and ``credential ...`` run as the admin ``admin``; anything else as ``cli`` (the old default actor).

Principals the runner provisions get every role but admin (``agent``, ``approver``, ``operator``, ``auditor``),
plus admin when the command claims the workflow role admin (``--role admin``): the CLI's own permission checks
still run, while the policy, self-approval and code rules decide as before. Tests of the permission checks
themselves pin principals with exact roles.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import SQLAlchemyError

from saferails.api import open_store
from saferails.cli import main
from saferails.errors import NotFound, SaferailsError
from saferails.identity import Principal, Role
from saferails.notify.outbox_log import InboxNotifier

ADMIN = "admin"
DEFAULT_PRINCIPAL = "cli"
TEST_ROLES = ("agent", "approver", "operator", "auditor")
_NAMING_FLAGS = ("--approver", "--proposer", "--actor", "--user")
# The in-process setup actor: the identity service checks roles, and the test harness is trusted.
_SETUP = Principal(id="system:test-setup", roles=frozenset({Role.ADMIN}))


@dataclass
class Run:
    """One command's exit code, stdout and stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def error(self) -> Any:
        return json.loads(self.err)


@dataclass
class _Tokens:
    """Tokens the runner issued, per (database, data directory, principal)."""

    issued: dict[tuple[str, str, str], str] = field(default_factory=dict)


def _store_key() -> tuple[str, str]:
    return os.environ.get("SAFERAILS_DATABASE_URL", ""), os.environ.get("SAFERAILS_DATA_DIR", "")


@contextmanager
def _env(name: str, value: str | None) -> Iterator[None]:
    before = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _token_env(token: str | None) -> AbstractContextManager[None]:
    return _env("SAFERAILS_TOKEN", token)


def provision(principal: str, roles: Sequence[str] = TEST_ROLES, *, database_url: str | None = None,
              data_dir: str | None = None) -> str:
    """A fresh token for ``principal`` in the store of the current environment (or of ``database_url`` and
    ``data_dir``, for a CLI run in a subprocess); the principal is created with ``roles`` if it does not exist,
    else given ``roles`` on top of its own."""
    with ExitStack() as stack:
        stack.enter_context(_token_env(None))
        if database_url is not None:
            stack.enter_context(_env("SAFERAILS_DATABASE_URL", database_url))
        if data_dir is not None:
            stack.enter_context(_env("SAFERAILS_DATA_DIR", data_dir))
        store = stack.enter_context(open_store())
        try:
            existing = store.identity.get(principal)
        except NotFound:
            store.identity.add_principal(_SETUP, principal, roles=roles)
        else:
            wanted = {r.value for r in existing.roles} | set(roles)
            if wanted != {r.value for r in existing.roles}:
                store.identity.set_roles(_SETUP, principal, sorted(wanted))
        return store.identity.issue_credential(_SETUP, principal, label="tests").token


def _named(argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv[:-1]):
        if arg in _NAMING_FLAGS:
            return argv[i + 1]
    return None


class Cli:
    """``cli(*argv)`` runs one ``saferails`` command and returns its exit code and output."""

    def __init__(self, capsys: pytest.CaptureFixture[str], *, principal: str | None = None,
                 roles: Sequence[str] | None = None, token: str | None = None, auto: bool = True,
                 tokens: _Tokens | None = None) -> None:
        self.capsys = capsys
        self._principal = principal
        self._roles = roles
        self._token = token
        self._auto = auto
        self._tokens = tokens or _Tokens()

    def as_(self, principal: str, roles: Sequence[str] | None = None) -> Cli:
        """This runner, acting as ``principal`` (created with ``roles``, default every role but admin, if new)."""
        return Cli(self.capsys, principal=principal, roles=roles, tokens=self._tokens)

    def with_token(self, token: str) -> Cli:
        """This runner, passing exactly ``token`` as ``SAFERAILS_TOKEN``."""
        return Cli(self.capsys, token=token, tokens=self._tokens)

    def anonymous(self) -> Cli:
        """This runner without ``SAFERAILS_TOKEN`` (only a credentials file can authenticate)."""
        return Cli(self.capsys, auto=False, tokens=self._tokens)

    def token_of(self, principal: str, roles: Sequence[str] | None = None) -> str:
        """A token of ``principal`` (provisioned once per store; see :func:`provision`)."""
        key = (*_store_key(), principal)
        if key not in self._tokens.issued:
            self._tokens.issued[key] = provision(principal, roles if roles is not None else TEST_ROLES)
        return self._tokens.issued[key]

    def _auto_token(self, principal: str, roles: Sequence[str]) -> str | None:
        try:
            return self.token_of(principal, roles)
        except (SQLAlchemyError, SaferailsError):
            # A store the runner cannot open (unreachable, misconfigured): the command reports it itself.
            return None

    def _token_for(self, argv: Sequence[str]) -> str | None:
        if self._token is not None:
            return self._token
        if not self._auto:
            return None
        if self._principal is not None:
            return self.token_of(self._principal, self._roles)
        words = [a for a in argv if not a.startswith("-")]
        if words[:1] in (["principal"], ["credential"]):
            return self._auto_token(ADMIN, ("admin",))
        if words[:1] in (["init"], ["--help"]) or "--help" in argv or "-h" in argv or not argv:
            return None
        principal = _named(argv) or DEFAULT_PRINCIPAL
        claims_admin = any(argv[i] == "--role" and argv[i + 1] == "admin" for i in range(len(argv) - 1))
        return self._auto_token(principal, (*TEST_ROLES, "admin") if claims_admin else TEST_ROLES)

    def __call__(self, *argv: str) -> Run:
        token = self._token_for(argv)
        self.capsys.readouterr()
        with _token_env(token):
            code = main(list(argv))
        captured = self.capsys.readouterr()
        return Run(code, captured.out, captured.err)

    def code(self, approver: str, action_id: str) -> str:
        """The one-time code ``approver`` was sent for ``action_id``, from its own 0600 inbox in the data directory
        the command ran with (``SAFERAILS_DATA_DIR``: every test gets its own, see tests/conftest.py)."""
        found = InboxNotifier(Path(os.environ["SAFERAILS_DATA_DIR"]) / "inbox").latest_code(approver, action_id)
        assert found is not None, f"{approver} got no code for {action_id}"
        return found

    def ok(self, *argv: str) -> Any:
        """Run a ``--json`` command that must succeed; its JSON result."""
        run = self(*argv, "--json")
        assert run.code == 0, run.err
        return run.json()


def use_database(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Point the CLI at ``url`` with the bundled policy and no approval secret (codes unchecked)."""
    monkeypatch.setenv("SAFERAILS_DATABASE_URL", url)
    monkeypatch.delenv("SAFERAILS_POLICY", raising=False)
    monkeypatch.delenv("SAFERAILS_APPROVAL_SECRET", raising=False)
    monkeypatch.delenv("SAFERAILS_TOKEN", raising=False)
    # The tests' local services (runbook call-service targets, webhook receivers) listen on loopback, which the
    # egress guard refuses unless allowed.
    monkeypatch.setenv("SAFERAILS_EGRESS_ALLOWED_HOSTS", "127.0.0.1")
