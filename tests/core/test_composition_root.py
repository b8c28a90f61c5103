"""One settings model read in one place, and one composition root built from it.

``load_settings`` reads ``SAFERAILS_*`` variables (from the process or a mapping) into ``Settings`` and refuses
unsafe values with ``ConfigurationError``; ``open_store`` / ``compose`` build every service from that one object:
the policy it names, approval codes keyed by its secret and sent through its notifier, execution confined to its
file root.
"""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest

from saferails.actions.models import Proposal
from saferails.api import compose, open_store
from saferails.clock import ManualClock
from saferails.errors import ConfigurationError
from saferails.handlers import load_handler_settings
from saferails.notify.outbox_log import InboxNotifier
from saferails.notify.smtp import SmtpNotifier, load_smtp_settings
from saferails.settings import Settings, load_settings
from saferails.store.db import create_engine, migrate, session_factory

SECRET = "a-long-enough-approval-secret-0123456789"
WEBHOOK = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # Standard Webhooks form, 24 bytes
START = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)

TWO_OF_THREE = """
version: "root-2of3"
impact: {default: low, types: {reassign_manager: high}}
rules:
  - id: two-approvers
    kind: requires_approval
    action_types: [reassign_manager]
    approval: {approvers: {groups: [approvers]}, min_approvals: 2, timeout: 1h}
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(TWO_OF_THREE, encoding="utf-8")
    return path


def full_env(tmp_path: Path, policy_file: Path) -> dict[str, str]:
    (tmp_path / "files").mkdir(exist_ok=True)
    return {
        "SAFERAILS_DATA_DIR": str(tmp_path / "data"),
        "SAFERAILS_DATABASE_URL": "postgres://rails@db.example.com:5432/rails",
        "SAFERAILS_POLICY": str(policy_file),
        "SAFERAILS_APPROVAL_SECRET": SECRET,
        "SAFERAILS_WEBHOOK_SECRET": WEBHOOK,
        "SAFERAILS_FILE_ROOT": str(tmp_path / "files"),
        "SAFERAILS_SMTP_HOST": "mail.example.com",
        "SAFERAILS_SMTP_PORT": "2525",
        "SAFERAILS_SMTP_SENDER": "rails@example.com",
        "SAFERAILS_SMTP_USERNAME": "rails",
        "SAFERAILS_SMTP_PASSWORD": "smtp-password",
        "SAFERAILS_SMTP_STARTTLS": "true",
        "SAFERAILS_SMTP_TIMEOUT": "4.5",
        "SAFERAILS_LEDGER_ACCOUNT": "treasury",
        "SAFERAILS_RUNNER_LIMIT": "12",
        "SAFERAILS_METRICS_PORT": "9999",
        "SAFERAILS_CLI_EXTENSIONS": "acme.cli_tools, acme.more:register,",
        "UNRELATED": "ignored",
        "SAFERAILS_TEST_PG_URL": "variables of the test suite and the benchmark are not settings",
    }


# --- settings -------------------------------------------------------------------------------------------------
def test_every_variable_lands_in_its_field(tmp_path: Path, policy_file: Path) -> None:
    s = load_settings(full_env(tmp_path, policy_file))
    assert s.data_dir == tmp_path / "data"
    assert s.database_url == "postgresql+psycopg://rails@db.example.com:5432/rails"
    assert s.policy_path == policy_file
    assert s.approval_key == SECRET.encode() and s.webhook_key == WEBHOOK
    assert s.file_root == (tmp_path / "files").resolve()
    assert (s.smtp_host, s.smtp_port, s.smtp_sender, s.smtp_username, s.smtp_starttls, s.smtp_timeout) == (
        "mail.example.com", 2525, "rails@example.com", "rails", True, 4.5)
    assert (s.ledger_account, s.runner_limit, s.metrics_port) == ("treasury", 12, 9999)
    assert s.cli_extensions == ["acme.cli_tools", "acme.more:register"]


def test_nothing_set_gives_the_documented_defaults(tmp_path: Path) -> None:
    s = load_settings({"SAFERAILS_DATA_DIR": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path / 'saferails.db'}" and s.is_sqlite
    assert (s.policy_path, s.approval_secret, s.webhook_secret, s.file_root, s.smtp_host) == (None,) * 5
    assert (s.runner_limit, s.metrics_port, s.cli_extensions) == (50, 9464, [])
    assert load_settings({}).data_dir == Path(".saferails")


def test_empty_variables_count_as_unset(tmp_path: Path) -> None:
    s = load_settings({"SAFERAILS_DATA_DIR": str(tmp_path), "SAFERAILS_APPROVAL_SECRET": "", "SAFERAILS_POLICY": " ",
                       "SAFERAILS_DATABASE_URL": ""})
    assert (s.approval_secret, s.policy_path) == (None, None) and s.is_sqlite


def test_load_settings_reads_the_process_environment_and_direct_construction_does_not(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SAFERAILS_RUNNER_LIMIT", "7")
    monkeypatch.setenv("SAFERAILS_APPROVAL_SECRET", SECRET)
    monkeypatch.setenv("SAFERAILS_DATA_DIR", str(tmp_path))
    from_env = load_settings()
    assert (from_env.runner_limit, from_env.approval_key, from_env.data_dir) == (7, SECRET.encode(), tmp_path)
    direct = Settings(data_dir=tmp_path)
    assert (direct.runner_limit, direct.approval_secret) == (50, None)


def test_secrets_never_show_in_the_settings_text(tmp_path: Path, policy_file: Path) -> None:
    s = load_settings(full_env(tmp_path, policy_file))
    assert all(secret not in f"{s!r} {s}" for secret in (SECRET, WEBHOOK, "smtp-password"))


def test_with_changes_validates_again(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert s.with_changes(approval_secret=SECRET).approval_key == SECRET.encode()
    with pytest.raises(ConfigurationError):
        s.with_changes(approval_secret="short")


REFUSED = {
    "short approval secret": ({"SAFERAILS_APPROVAL_SECRET": "x" * 31}, "SAFERAILS_APPROVAL_SECRET"),
    "short webhook secret": ({"SAFERAILS_WEBHOOK_SECRET": "hunter2"}, "SAFERAILS_WEBHOOK_SECRET"),
    "mysql URL": ({"SAFERAILS_DATABASE_URL": "mysql://root@db/rails"}, "mysql"),
    "URL without scheme": ({"SAFERAILS_DATABASE_URL": "rails.db"}, "sqlite:///"),
    "policy file missing": ({"SAFERAILS_POLICY": "/nonexistent/policy.yaml"}, "SAFERAILS_POLICY"),
    "file root missing": ({"SAFERAILS_FILE_ROOT": "/nonexistent/root"}, "SAFERAILS_FILE_ROOT"),
    "port not a number": ({"SAFERAILS_SMTP_PORT": "seventy"}, "SAFERAILS_SMTP_PORT"),
    "port out of range": ({"SAFERAILS_SMTP_PORT": "70000"}, "SAFERAILS_SMTP_PORT"),
    "STARTTLS neither true nor false": ({"SAFERAILS_SMTP_STARTTLS": "maybe"}, "SAFERAILS_SMTP_STARTTLS"),
    "username without password": ({"SAFERAILS_SMTP_USERNAME": "u"}, "SAFERAILS_SMTP_PASSWORD"),
    "credentials in clear text to a remote host": (
        {"SAFERAILS_SMTP_HOST": "mail.example.com", "SAFERAILS_SMTP_USERNAME": "u", "SAFERAILS_SMTP_PASSWORD": "p",
         "SAFERAILS_SMTP_STARTTLS": "false"}, "clear text"),
    "runner limit zero": ({"SAFERAILS_RUNNER_LIMIT": "0"}, "SAFERAILS_RUNNER_LIMIT"),
    "metrics port out of range": ({"SAFERAILS_METRICS_PORT": "70000"}, "SAFERAILS_METRICS_PORT"),
    "timeout not positive": ({"SAFERAILS_SMTP_TIMEOUT": "0"}, "SAFERAILS_SMTP_TIMEOUT"),
    "extension with a space": ({"SAFERAILS_CLI_EXTENSIONS": "acme tools"}, "SAFERAILS_CLI_EXTENSIONS"),
}


@pytest.mark.parametrize(("env", "named"), REFUSED.values(), ids=REFUSED.keys())
def test_unsafe_or_malformed_values_are_refused_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings(env)
    assert named in str(refused.value)
    assert refused.value.code == "CONFIGURATION_INVALID" and refused.value.exit_code == 2


def test_direct_construction_refuses_the_same_values() -> None:
    with pytest.raises(ConfigurationError):
        Settings(approval_secret="short")
    with pytest.raises(ConfigurationError):
        Settings(database_url="mysql://x/y")


def test_the_handler_and_mail_views_take_their_values_from_one_settings(tmp_path: Path, policy_file: Path) -> None:
    s = load_settings(full_env(tmp_path, policy_file))
    handlers = load_handler_settings(s)
    assert (handlers.file_root, handlers.smtp_host, handlers.smtp_port, handlers.smtp_timeout,
            handlers.ledger_account) == (s.file_root, "mail.example.com", 2525, 4.5, "treasury")
    mail = load_smtp_settings(s)
    assert (mail.host, mail.port, mail.sender, mail.username, mail.password, mail.starttls) == (
        "mail.example.com", 2525, "rails@example.com", "rails", "smtp-password", True)
    with pytest.raises(ConfigurationError):
        load_smtp_settings(Settings())  # no SMTP host: no mail notifier


# --- the composition root -------------------------------------------------------------------------------------
def test_the_root_built_from_the_environment_uses_its_policy_secret_notifier_and_clock(
    tmp_path: Path, policy_file: Path
) -> None:
    env = {"SAFERAILS_DATA_DIR": str(tmp_path), "SAFERAILS_POLICY": str(policy_file),
           "SAFERAILS_APPROVAL_SECRET": SECRET, "SAFERAILS_FILE_ROOT": str(tmp_path)}
    with open_store(load_settings(env), clock=ManualClock(START)) as store:
        assert store.policy.version == "root-2of3" and store.codes is not None
        assert isinstance(store.notifier, InboxNotifier)
        for name in ("alice", "bob"):
            store.actions.upsert_principal(name, email=f"{name}@example.com", groups=["approvers"])
        view = store.actions.propose(Proposal(action_type="reassign_manager", target="emp_1",
                                              params={"new_manager_id": "mgr_2"}, proposer="agent-1", reason="r"))
        assert view.state == "pending_approval" and view.created_at == START
        inbox = InboxNotifier(tmp_path / "inbox")
        assert all(inbox.latest_code(name, view.id) for name in ("alice", "bob"))
        assert not (tmp_path / "notifications.jsonl").exists()  # no shared file a proposer could read
        assert store.execution is store.execution  # one execution service, so breakers see every call
        assert store.execution.settings.file_root == tmp_path.resolve()
        assert store.workflow.clock is store.clock


def test_without_a_secret_a_private_key_is_generated_and_with_an_smtp_host_codes_go_by_mail(tmp_path: Path) -> None:
    with open_store(Settings(data_dir=tmp_path)) as store:
        assert store.codes is not None and isinstance(store.notifier, InboxNotifier)
    key = tmp_path / "keys" / "approval-secret"
    assert key.is_file() and key.stat().st_mode & 0o077 == 0  # 0600: no unchecked mode, nothing readable by others
    with_mail = Settings(data_dir=tmp_path, approval_secret=SECRET, smtp_host="127.0.0.1", smtp_port=2525,
                         smtp_sender="rails@example.com")
    with open_store(with_mail) as store:
        assert isinstance(store.notifier, SmtpNotifier)
        assert (store.notifier.settings.host, store.notifier.settings.port) == ("127.0.0.1", 2525)


def test_a_root_composed_over_existing_sessions_leaves_their_engine_open(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'shared.db'}")
    migrate(engine)
    try:
        sessions = session_factory(engine)
        root = compose(Settings(data_dir=tmp_path), sessions, clock=ManualClock(START))
        assert root.sessions is sessions and root.actions.sessions is sessions
        root.close()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("select 1").scalar() == 1
    finally:
        engine.dispose()


def test_an_unsafe_setting_fails_before_the_database_is_touched(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        open_store(load_settings({"SAFERAILS_DATA_DIR": str(tmp_path), "SAFERAILS_APPROVAL_SECRET": "short"}))
    assert not (tmp_path / "saferails.db").exists()


def test_only_the_settings_module_reads_the_environment() -> None:
    core = Path(__file__).resolve().parents[2] / "saferails"
    readers = []
    for path in sorted(core.rglob("*.py")):
        if path.name == "settings.py" and path.parent == core:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "environb"}) or (
                isinstance(node, ast.alias) and node.name in {"environ", "getenv"}
            ):
                readers.append(f"{path.relative_to(core.parent)}:{getattr(node, 'lineno', 0)}")
    assert readers == []
