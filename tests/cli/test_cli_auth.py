"""The CLI acts as an authenticated principal, never as a name in a flag: ``saferails init``, credentials,
per-command permissions, and the approver being whoever holds the credential."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Cli, use_database

HIGH = ["propose", "reassign_manager", "--target", "emp_1", "--param", "new_manager_id=mgr_2", "--reason", "r"]


def _data_dir() -> Path:
    return Path(os.environ["SAFERAILS_DATA_DIR"])


@pytest.fixture
def cli(db: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    use_database(monkeypatch, db.url)
    return Cli(capsys)


@pytest.fixture
def admin(cli: Cli) -> Cli:
    """The first admin, created by ``saferails init`` (its credential in the credentials file only)."""
    assert cli.anonymous()("init", "--admin", "root", "--json").code == 0
    return cli.anonymous()


def _issue(admin: Cli, principal: str, *roles: str, groups: tuple[str, ...] = ()) -> Cli:
    added = admin("principal", "add", principal, *[a for r in roles for a in ("--role", r)],
                  *[a for g in groups for a in ("--group", g)], "--json")
    assert added.code == 0, added.err
    issued = admin("credential", "issue", principal, "--json")
    assert issued.code == 0, issued.err
    token = issued.json()["token"]
    assert token.startswith("sr_")
    return admin.with_token(token)


def test_no_credential_exits_12_unauthenticated(cli: Cli) -> None:
    result = cli.anonymous()("list")
    assert result.code == 12 and result.err.startswith("error[UNAUTHENTICATED]")
    assert cli.anonymous()("list", "--json").error()["error_code"] == "UNAUTHENTICATED"
    bogus = cli.with_token("sr_0123456789abcdef_not-the-secret")("list", "--json")
    assert bogus.code == 12 and bogus.error()["error_code"] == "UNAUTHENTICATED"


def test_init_saves_a_0600_credential_that_authenticates_and_is_refused_the_second_time(admin: Cli) -> None:
    path = _data_dir() / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    listed = admin("principal", "list", "--json")
    assert listed.code == 0 and {"id": "root", "roles": ["admin"], "tenant": "default", "groups": []} in listed.json()
    again = admin("init", "--admin", "mallory", "--json")
    assert again.code == 7 and again.error()["error_code"] == "PERMISSION_DENIED"
    assert "mallory" not in {p["id"] for p in admin("principal", "list", "--json").json()}


def test_a_world_readable_credentials_file_is_refused(admin: Cli) -> None:
    (_data_dir() / "credentials.json").chmod(0o644)
    result = admin("list", "--json")
    assert result.code != 0 and result.error()["error_code"] == "SECRET_FILE_INSECURE"


def test_an_agent_cannot_add_principals_change_roles_or_issue_credentials(admin: Cli) -> None:
    agent = _issue(admin, "agent-1", "agent")
    for argv in (["principal", "add", "mallory", "--role", "approver", "--group", "approvers"],
                 ["principal", "set-roles", "agent-1", "--role", "approver"],
                 ["principal", "set-groups", "agent-1", "--group", "approvers"],
                 ["credential", "issue", "root"],
                 ["credential", "list"]):
        result = agent(*argv, "--json")
        assert result.code == 7 and result.error()["error_code"] == "PERMISSION_DENIED", argv
    roles = {p["id"]: p for p in admin("principal", "list", "--json").json()}
    assert "mallory" not in roles and roles["agent-1"]["roles"] == ["agent"] and roles["agent-1"]["groups"] == []


def test_an_agent_cannot_approve_and_its_proposal_is_recorded_under_its_own_name(admin: Cli) -> None:
    agent = _issue(admin, "agent-1", "agent")
    approver = _issue(admin, "alice", "approver", groups=("approvers",))
    proposed = agent(*HIGH, "--json")
    assert proposed.code == 0, proposed.err
    action = proposed.json()
    assert action["proposer"] == "agent-1"
    spoofed = agent(*HIGH, "--proposer", "someone-else", "--json")
    assert spoofed.code == 7 and spoofed.error()["error_code"] == "PERMISSION_DENIED"

    code = admin.code("alice", action["id"])
    refused = agent("approve", action["id"], "--code", code, "--json")
    assert refused.code == 7 and refused.error()["error_code"] == "PERMISSION_DENIED"
    posing = agent("approve", action["id"], "--approver", "alice", "--code", code, "--json")
    assert posing.code == 7 and posing.error()["error_code"] == "PERMISSION_DENIED"
    assert agent("show", action["id"], "--json").json()["state"] == "pending_approval"

    # The approver is whoever holds the credential; naming someone else is refused, naming oneself is fine.
    other = approver("approve", action["id"], "--approver", "bob", "--code", code, "--json")
    assert other.code == 7 and other.error()["error_code"] == "PERMISSION_DENIED"
    approved = approver("approve", action["id"], "--approver", "alice", "--code", code, "--json")
    assert approved.code == 0, approved.err
    assert approved.json()["approvals"][0]["approver"] == "alice"


def test_an_agent_cannot_read_an_approvers_inbox(admin: Cli) -> None:
    agent = _issue(admin, "agent-1", "agent")
    approver = _issue(admin, "alice", "approver", groups=("approvers",))
    action_id = agent(*HIGH, "--json").json()["id"]
    stolen = agent("inbox", "--principal", "alice", "--json")
    assert stolen.code == 7 and stolen.error()["error_code"] == "PERMISSION_DENIED"
    own = agent("inbox", "--json")
    assert own.code == 0 and own.json() == []
    mine = approver("inbox", "--json")
    assert mine.code == 0
    assert [n["data"]["code"] for n in mine.json() if n["entity_id"] == action_id] == [admin.code("alice", action_id)]


def test_admin_changes_are_audited_with_the_admin_as_actor(admin: Cli) -> None:
    _issue(admin, "alice", "approver")
    assert admin("principal", "set-roles", "alice", "--role", "approver", "--role", "auditor").code == 0
    records = admin("audit", "query", "--actor", "root", "--limit", "1000", "--json")
    assert records.code == 0, records.err
    events = [(r["event"], r["actor"]) for r in records.json()["records"]]
    assert ("principal_added", "root") in events and ("roles_changed", "root") in events
    revoked_id = admin("credential", "list", "--principal", "alice", "--json").json()[0]["credential_id"]
    assert admin("credential", "revoke", revoked_id).code == 0
    assert admin("credential", "list", "--principal", "alice", "--json").json()[0]["revoked_at"] is not None


def test_a_revoked_credential_no_longer_authenticates(admin: Cli) -> None:
    alice = _issue(admin, "alice", "approver")
    assert alice("list").code == 0
    credential_id = admin("credential", "list", "--principal", "alice", "--json").json()[0]["credential_id"]
    assert admin("credential", "revoke", credential_id).code == 0
    assert alice("list").code == 12


def test_a_claimed_workflow_role_the_principal_does_not_hold_is_refused(admin: Cli) -> None:
    agent = _issue(admin, "agent-1", "agent")
    claimed = agent("task", "create", "--title", "t", "--role", "admin", "--json")
    assert claimed.code == 7 and claimed.error()["error_code"] == "PERMISSION_DENIED"
    assert agent("task", "create", "--title", "t", "--json").code == 0
    operator = _issue(admin, "op-1", "operator")
    assert operator("task", "create", "--title", "t2", "--role", "agency", "--json").code == 0


def test_an_agent_cannot_register_a_runbook_or_feed_an_execution_an_event(admin: Cli) -> None:
    """Registering a template decides what later executions do, and an event can release a waiting step: both
    are an operator's acts (as on the HTTP API), refused to an agent with nothing written."""
    example = Path(__file__).resolve().parents[2] / "examples" / "runbooks" / "investigate-threat.yaml"
    agent = _issue(admin, "agent-1", "agent")
    registered = agent("runbook", "register", str(example), "--json")
    assert registered.code == 7 and registered.error()["error_code"] == "PERMISSION_DENIED"
    assert agent("runbook", "list", "--json").json() == []
    event = agent("runbook", "send-event", "ticket-1", "--payload-json", '{"ok": true}', "--json")
    assert event.code == 7 and event.error()["error_code"] == "PERMISSION_DENIED"
    operator = _issue(admin, "ops-1", "operator")
    assert operator("runbook", "register", str(example), "--json").code == 0
    assert [t["runbook_id"] for t in agent("runbook", "list", "--json").json()] == ["investigate-threat"]
