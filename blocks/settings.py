"""Settings Blocks and the runtime the tasks call.

``SaferailsSettings`` (database URL, approval secret and SMTP password as ``SecretStr``, the policy as YAML text,
the handlers' file root and SMTP server) and ``NotifierBlock`` (SMTP for approval requests) are saved in Prefect;
``runtime_from_blocks`` turns them into a :class:`Runtime`: the core services over one store, opened by
``saferails.api.open_store`` exactly as the CLI opens it (one-time approval codes issued and sent by
``ActionService`` when an action starts waiting, when a secret is configured) plus an ``ExecutionService``
with validated ``HandlerSettings``. Tasks ask :func:`current_runtime`; a process (a test, the demo,
``deployments.serve``) may :func:`install_runtime` its own, e.g. with a ``ManualClock``. Without one, the runtime
is built once from the block named ``saferails`` if it exists, else from ``SAFERAILS_*`` environment variables.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import cast

from prefect.blocks.core import Block
from pydantic import Field, SecretStr
from sqlalchemy.orm import Session, sessionmaker

from saferails.actions.service import ActionService, ApprovalRequestHook
from saferails.api import Store, default_notifier, open_store
from saferails.approvals.codes import ApprovalCodes, approval_notifications
from saferails.clock import Clock, SystemClock
from saferails.errors import ConfigurationError
from saferails.execution import ExecutionService
from saferails.handlers import HandlerSettings, load_handler_settings
from saferails.notify.base import Notification, Notifier
from saferails.notify.smtp import SmtpNotifier, load_smtp_settings
from saferails.policy import Policy, default_policy, load_policy_text
from saferails.resilience import Sleeper
from saferails.settings import MIN_SECRET_BYTES, Settings, load_settings, normalise_database_url
from saferails.store.tables import Action

DEFAULT_BLOCK = "saferails"


class SaferailsSettings(Block):
    """Where the store is, which policy applies, the key for one-time approval codes and where handlers act."""

    _block_type_name = "Saferails Settings"
    database_url: SecretStr = Field(description="SQLAlchemy URL of the saferails store (sqlite:/// or postgresql://)")
    policy_yaml: str = Field(default="", description="Policy document as YAML; empty means the bundled policy")
    approval_secret: SecretStr | None = Field(default=None, description="At least 32 bytes; signs approval codes")
    file_root: str | None = Field(default=None, description="Directory file actions are confined to")
    smtp_host: str = Field(default="127.0.0.1", description="SMTP server send_email actions use")
    smtp_port: int = 25
    smtp_sender: str | None = Field(default=None, description="From address of send_email (unset: email off)")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False

    def to_settings(self) -> Settings:
        """Validated core settings; refuses a short secret exactly as ``load_settings`` does."""
        secret = self.approval_secret.get_secret_value().encode() if self.approval_secret else None
        if secret is not None and len(secret) < MIN_SECRET_BYTES:
            raise ConfigurationError(f"approval_secret must be at least {MIN_SECRET_BYTES} bytes")
        base = load_settings({})
        url = normalise_database_url(self.database_url.get_secret_value())
        return Settings(database_url=url, policy_path=None, approval_secret=secret, data_dir=base.data_dir)

    def to_policy(self) -> Policy:
        return load_policy_text(self.policy_yaml) if self.policy_yaml.strip() else default_policy()

    def to_handler_settings(self) -> HandlerSettings:
        """Validated by ``load_handler_settings``, so the block refuses what the environment would refuse."""
        env = {"SAFERAILS_FILE_ROOT": self.file_root or "", "SAFERAILS_SMTP_HOST": self.smtp_host,
               "SAFERAILS_SMTP_PORT": str(self.smtp_port), "SAFERAILS_SMTP_SENDER": self.smtp_sender or "",
               "SAFERAILS_SMTP_USERNAME": self.smtp_username or "",
               "SAFERAILS_SMTP_PASSWORD": self.smtp_password.get_secret_value() if self.smtp_password else "",
               "SAFERAILS_SMTP_STARTTLS": "true" if self.smtp_starttls else "false"}
        return load_handler_settings(env)


class NotifierBlock(Block):
    """SMTP settings for approval requests and outcome notices."""

    _block_type_name = "Saferails Notifier"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "saferails@localhost"
    starttls: bool = False

    def to_notifier(self) -> Notifier:
        """An ``SmtpNotifier`` validated by ``load_smtp_settings`` (``ConfigurationError`` on unsafe values)."""
        env = {"SAFERAILS_SMTP_HOST": self.smtp_host, "SAFERAILS_SMTP_PORT": str(self.smtp_port),
               "SAFERAILS_SMTP_SENDER": self.sender, "SAFERAILS_SMTP_USERNAME": self.username or "",
               "SAFERAILS_SMTP_PASSWORD": self.password.get_secret_value() if self.password else "",
               "SAFERAILS_SMTP_STARTTLS": "true" if self.starttls else "false"}
        return SmtpNotifier(load_smtp_settings(env))


@dataclass
class Runtime:
    """The core services one process's flows and tasks use. ``codes`` is None when no approval secret is
    configured (codes are then not checked); ``notifier`` is the one ``actions`` sends approval requests with."""

    sessions: sessionmaker[Session]
    clock: Clock
    actions: ActionService
    execution: ExecutionService
    codes: ApprovalCodes | None = None
    notifier: Notifier | None = None


def build_runtime(
    sessions: sessionmaker[Session],
    *,
    policy: Policy | None = None,
    clock: Clock | None = None,
    settings: Settings | None = None,
    notifier: Notifier | None = None,
    handler_settings: HandlerSettings | None = None,
    sleeper: Sleeper | None = None,
) -> Runtime:
    """Wire the core services over existing ``sessions`` (tests, the benchmark), as ``open_store`` wires them:
    with an approval secret, codes are issued and sent by ``ActionService`` when an action starts waiting, through
    ``notifier`` (default: ``saferails.api.default_notifier``). ``handler_settings`` default to
    ``load_handler_settings()``; ``sleeper`` is the retry backoff's (default ``time.sleep``)."""
    clock = clock or SystemClock()
    settings = settings or load_settings({})
    codes = ApprovalCodes(settings.approval_secret, clock) if settings.approval_secret is not None else None
    hook: ApprovalRequestHook | None = None
    if codes is not None:
        notifier = notifier or default_notifier(settings)
        issuer = codes

        def hook(session: Session, row: Action) -> list[Notification]:
            return approval_notifications(session, row, issuer.issue(session, row))

    actions = ActionService(sessions, policy or default_policy(), clock,
                            code_verifier=codes.verify if codes is not None else None,
                            on_approval_requested=hook, notifier=notifier)
    return Runtime(sessions=sessions, clock=clock, actions=actions,
                   execution=_execution(sessions, clock, handler_settings, sleeper), codes=codes, notifier=notifier)


def runtime_from_store(store: Store, *, handler_settings: HandlerSettings | None = None,
                       sleeper: Sleeper | None = None) -> Runtime:
    """The runtime over a store opened by ``saferails.api.open_store`` (its services, clock and codes)."""
    return Runtime(sessions=store.sessions, clock=store.clock, actions=store.actions,
                   execution=_execution(store.sessions, store.clock, handler_settings, sleeper),
                   codes=store.codes, notifier=store.actions.notifier)


def _execution(sessions: sessionmaker[Session], clock: Clock, handler_settings: HandlerSettings | None,
               sleeper: Sleeper | None) -> ExecutionService:
    return ExecutionService(sessions, clock, handler_settings or load_handler_settings(), sleeper=sleeper or time.sleep)


def runtime_from_settings(settings: Settings, *, policy: Policy | None = None, notifier: Notifier | None = None,
                          handler_settings: HandlerSettings | None = None) -> Runtime:
    """Open (and migrate) the store named by ``settings`` through ``open_store`` and build the runtime over it."""
    store = open_store(settings, policy=policy, notifier=notifier)
    return runtime_from_store(store, handler_settings=handler_settings)


def runtime_from_blocks(name: str = DEFAULT_BLOCK, notifier_block: str | None = None) -> Runtime:
    """Build the runtime from saved Blocks (``SaferailsSettings.load(name)``)."""
    # Block.load is typed sync-or-async; called outside an event loop it returns the block.
    block = cast(SaferailsSettings, SaferailsSettings.load(name))
    notifier = cast(NotifierBlock, NotifierBlock.load(notifier_block)).to_notifier() if notifier_block else None
    return runtime_from_settings(block.to_settings(), policy=block.to_policy(), notifier=notifier,
                                 handler_settings=block.to_handler_settings())


_lock = threading.Lock()
_runtime: Runtime | None = None


def install_runtime(runtime: Runtime | None) -> None:
    """Make ``runtime`` the one this process's tasks use (None forgets it)."""
    global _runtime
    with _lock:
        _runtime = runtime


def current_runtime() -> Runtime:
    """The installed runtime, else one built from the ``saferails`` block, else from the environment."""
    global _runtime
    with _lock:
        if _runtime is None:
            try:
                _runtime = runtime_from_blocks()
            except ValueError:  # no saved block of that name
                _runtime = runtime_from_settings(load_settings())
        return _runtime
