"""Settings Blocks and the runtime the tasks call.

``SaferailsSettings`` (database URL, approval secret and SMTP password as ``SecretStr``, the policy as YAML text,
the handlers' file root and SMTP server) and ``NotifierBlock`` (SMTP for approval requests) are saved in Prefect.
Their fields map onto the one settings model (``saferails.settings.Settings``: :meth:`SaferailsSettings.to_settings`)
and the runtime is the core's composition root (``saferails.api.Store``) built from it by ``open_store`` exactly as
the CLI builds it: :class:`Runtime` is that class, nothing here wires a service. Tasks ask :func:`current_runtime`;
a process (a test, the demo, ``deployments.serve``) may :func:`install_runtime` its own, e.g. with a
``ManualClock``. Without one, the runtime is built once from the block named ``saferails`` if it exists, else from
``SAFERAILS_*`` environment variables (``saferails.settings.load_settings``).
"""

from __future__ import annotations

import contextlib
import threading
from typing import cast

from prefect.blocks.core import Block
from pydantic import Field, SecretStr
from sqlalchemy.orm import Session, sessionmaker

from saferails.api import Store, compose, open_store
from saferails.clock import Clock
from saferails.handlers import HandlerSettings
from saferails.notify.base import Notifier
from saferails.notify.smtp import SmtpNotifier
from saferails.policy import Policy, default_policy, load_policy_text
from saferails.resilience import Sleeper
from saferails.settings import Settings, load_settings

DEFAULT_BLOCK = "saferails"

Runtime = Store
"""The core services one process's flows and tasks use: the composition root itself."""


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


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
        """The block's fields as the one settings model, validated there (``ConfigurationError`` on a short
        secret, an unknown URL scheme, a missing file root, clear-text SMTP credentials...). The policy travels
        as text (:meth:`to_policy`), so ``policy_path`` stays unset. Without a sender email is off and the SMTP
        host is left unset, as ``SAFERAILS_SMTP_HOST`` would be: approval codes then go to the data directory's
        ``notifications.jsonl`` (or through a ``NotifierBlock``) rather than to a mail server nobody set up."""
        return Settings(
            database_url=self.database_url.get_secret_value(),
            approval_secret=_secret(self.approval_secret),
            file_root=self.file_root or None,
            smtp_host=self.smtp_host if self.smtp_sender else None,
            smtp_port=self.smtp_port,
            smtp_sender=self.smtp_sender or None,
            smtp_username=self.smtp_username or None,
            smtp_password=_secret(self.smtp_password) or None,
            smtp_starttls=self.smtp_starttls,
        )

    def to_policy(self) -> Policy:
        return load_policy_text(self.policy_yaml) if self.policy_yaml.strip() else default_policy()

    def to_handler_settings(self) -> HandlerSettings:
        """The handlers' view of :meth:`to_settings`."""
        return self.to_settings().handler_settings()


class NotifierBlock(Block):
    """SMTP settings for approval requests and outcome notices."""

    _block_type_name = "Saferails Notifier"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "saferails@localhost"
    starttls: bool = False

    def to_settings(self) -> Settings:
        """The block's fields as the SMTP part of the one settings model."""
        return Settings(smtp_host=self.smtp_host, smtp_port=self.smtp_port, smtp_sender=self.sender,
                        smtp_username=self.username or None, smtp_password=_secret(self.password) or None,
                        smtp_starttls=self.starttls)

    def to_notifier(self) -> Notifier:
        """An ``SmtpNotifier`` over the validated settings (``ConfigurationError`` on unsafe values)."""
        return SmtpNotifier(self.to_settings().smtp_settings())


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
    """The root over existing ``sessions`` (tests, the benchmark): ``saferails.api.compose`` with ``settings``
    (default: ``Settings()``, nothing from the environment)."""
    return compose(settings or Settings(), sessions, clock=clock, policy=policy, notifier=notifier,
                   handler_settings=handler_settings, sleeper=sleeper)


def runtime_from_store(store: Store, *, handler_settings: HandlerSettings | None = None,
                       sleeper: Sleeper | None = None) -> Runtime:
    """The runtime over a store opened by ``saferails.api.open_store``: the store itself, or a copy sharing its
    services with another execution set-up."""
    if handler_settings is None and sleeper is None:
        return store
    return store.with_execution(handler_settings, sleeper)


def runtime_from_settings(settings: Settings, *, policy: Policy | None = None, notifier: Notifier | None = None,
                          handler_settings: HandlerSettings | None = None) -> Runtime:
    """Open (and migrate) the store named by ``settings`` through ``open_store``."""
    return open_store(settings, policy=policy, notifier=notifier, handler_settings=handler_settings)


def runtime_from_blocks(name: str = DEFAULT_BLOCK, notifier_block: str | None = None) -> Runtime:
    """Build the runtime from saved Blocks (``SaferailsSettings.load(name)``)."""
    # Block.load is typed sync-or-async; called outside an event loop it returns the block.
    block = cast(SaferailsSettings, SaferailsSettings.load(name))
    notifier = cast(NotifierBlock, NotifierBlock.load(notifier_block)).to_notifier() if notifier_block else None
    return runtime_from_settings(block.to_settings(), policy=block.to_policy(), notifier=notifier)


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
            with contextlib.suppress(ValueError):  # no saved block of that name: the environment's, below
                _runtime = runtime_from_blocks()
        if _runtime is None:
            # Outside the handler, so an error while building it is not chained to the missing block.
            _runtime = runtime_from_settings(load_settings())
        return _runtime
