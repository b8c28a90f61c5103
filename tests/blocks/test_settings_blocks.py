"""The Prefect Blocks map onto the one settings model and the runtime is the core's composition root.

Building a Block object needs no Prefect server; only ``.save()`` / ``.load()`` do, so these tests run without one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from blocks.settings import (
    NotifierBlock,
    Runtime,
    SaferailsSettings,
    build_runtime,
    runtime_from_settings,
    runtime_from_store,
)
from saferails.api import Store
from saferails.clock import ManualClock
from saferails.errors import ConfigurationError
from saferails.handlers import HandlerSettings
from saferails.notify.outbox_log import InboxNotifier
from saferails.notify.smtp import SmtpNotifier
from saferails.settings import Settings
from saferails.store.db import create_engine, migrate, session_factory

SECRET = "a-long-enough-approval-secret-0123456789"
START = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
POLICY = """
version: "block-policy"
impact: {default: low}
rules: []
"""


def test_the_runtime_is_the_core_composition_root() -> None:
    assert Runtime is Store


def test_every_settings_block_field_maps_onto_the_settings_model(tmp_path: Path) -> None:
    block = SaferailsSettings(database_url=SecretStr("postgres://rails@db.example.com/rails"),
                              approval_secret=SecretStr(SECRET), file_root=str(tmp_path), smtp_host="mail.example.com",
                              smtp_port=2525, smtp_sender="rails@example.com", smtp_username="rails",
                              smtp_password=SecretStr("smtp-password"), smtp_starttls=True, policy_yaml=POLICY)
    s = block.to_settings()
    assert isinstance(s, Settings)
    assert s.database_url == "postgresql+psycopg://rails@db.example.com/rails"
    assert s.approval_key == SECRET.encode() and s.policy_path is None
    assert s.file_root == tmp_path.resolve()
    assert (s.smtp_host, s.smtp_port, s.smtp_sender, s.smtp_username, s.smtp_starttls) == (
        "mail.example.com", 2525, "rails@example.com", "rails", True)
    assert s.smtp_password is not None and s.smtp_password.get_secret_value() == "smtp-password"
    assert block.to_handler_settings() == s.handler_settings()
    assert block.to_policy().version == "block-policy"


@pytest.mark.parametrize("fields", [
    {"approval_secret": SecretStr("short")},
    {"database_url": SecretStr("mysql://root@db/rails")},
    {"file_root": "/nonexistent/root"},
    {"smtp_host": "mail.example.com", "smtp_sender": "rails@example.com", "smtp_username": "u",
     "smtp_password": SecretStr("p"), "smtp_starttls": False},
], ids=["short secret", "unknown URL scheme", "missing file root", "credentials in clear text"])
def test_a_settings_block_refuses_what_the_environment_would_refuse(tmp_path: Path, fields: dict[str, object]) -> None:
    block = SaferailsSettings(**{"database_url": SecretStr(f"sqlite:///{tmp_path / 'x.db'}"), **fields})
    with pytest.raises(ConfigurationError):
        block.to_settings()


def test_the_notifier_block_gives_a_validated_mail_notifier() -> None:
    notifier = NotifierBlock(smtp_host="mail.example.com", smtp_port=587, username="rails",
                             password=SecretStr("pw"), sender="rails@example.com", starttls=True).to_notifier()
    assert isinstance(notifier, SmtpNotifier)
    assert (notifier.settings.host, notifier.settings.port, notifier.settings.starttls) == ("mail.example.com", 587,
                                                                                          True)
    with pytest.raises(ConfigurationError):
        NotifierBlock(smtp_host="mail.example.com", username="rails", password=SecretStr("pw"),
                      starttls=False).to_notifier()


def test_a_runtime_from_block_settings_is_opened_by_open_store(tmp_path: Path) -> None:
    block = SaferailsSettings(database_url=SecretStr(f"sqlite:///{tmp_path / 'rails.db'}"),
                              approval_secret=SecretStr(SECRET), policy_yaml=POLICY)
    runtime = runtime_from_settings(block.to_settings(), policy=block.to_policy())
    try:
        assert isinstance(runtime, Store) and runtime.codes is not None
        assert isinstance(runtime.notifier, InboxNotifier)  # no sender: codes are not sent to 127.0.0.1:25
        assert runtime.policy.version == "block-policy"
        assert (tmp_path / "rails.db").exists()
    finally:
        runtime.close()


def test_build_runtime_and_runtime_from_store_reuse_the_one_wiring(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'rails.db'}")
    migrate(engine)
    try:
        clock = ManualClock(START)
        rt = build_runtime(session_factory(engine), clock=clock, settings=Settings(approval_secret=SECRET),
                           handler_settings=HandlerSettings(file_root=tmp_path), sleeper=lambda _s: None)
        assert rt.clock is clock and rt.codes is not None and rt.actions.sessions is rt.sessions
        assert rt.execution.settings.file_root == tmp_path
        assert runtime_from_store(rt) is rt
        moved = runtime_from_store(rt, handler_settings=HandlerSettings())
        assert moved.actions is rt.actions and moved.execution.settings.file_root is None
        moved.close()  # the copy does not own the engine
        with engine.connect() as conn:
            assert conn.exec_driver_sql("select 1").scalar() == 1
    finally:
        engine.dispose()


def test_an_error_building_the_runtime_from_the_environment_is_not_chained_to_the_missing_block(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A flow run interrupted (or failing) while its runtime is built shows that error alone in its traceback,
    not "Unable to find block document" above it: the fallback is not a consequence of the missing block."""
    import blocks.settings as module

    def no_block() -> None:
        raise ValueError("Unable to find block document named saferails")

    def interrupted(settings: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "runtime_from_blocks", no_block)
    monkeypatch.setattr(module, "runtime_from_settings", interrupted)
    module.install_runtime(None)
    with pytest.raises(KeyboardInterrupt) as raised:
        module.current_runtime()
    assert raised.value.__context__ is None
    assert module._runtime is None
