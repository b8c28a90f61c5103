"""The ``saferails`` CLI's core commands (actions, principals, policy, audit, db), run in-process through
``saferails.cli.main`` against real databases.

Most tests use the ``db`` fixture's URL (SQLite and PostgreSQL); the tampering test edits an SQLite file directly.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from saferails.actions.service import ActionService, Proposal
from saferails.policy import default_policy
from tests.support.cli import Cli, Run, use_database

EMAIL = ["--param", 'to=["ops@example.com"]', "--param", "subject=hello", "--param", "body=hi"]


@pytest.fixture
def cli(db: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """``cli(*argv)`` runs one command against the test database and returns its exit code and output."""
    use_database(monkeypatch, db.url)
    run = Cli(capsys)
    run("principal", "add", "alice", "--group", "approvers")
    run("principal", "add", "bob", "--group", "approvers")
    return run


def _propose_high(cli: Cli) -> str:
    result = cli("propose", "reassign_manager", "--target", "emp_1", "--param", "new_manager_id=mgr_2",
                 "--proposer", "agent-1", "--reason", "too many reports", "--json")
    assert result.code == 0, result.err
    return str(result.json()["id"])


def test_a_high_impact_proposal_waits_for_approval_and_explains_why(cli: Cli) -> None:
    result = cli("propose", "reassign_manager", "--target", "emp_1", "--param", "new_manager_id=mgr_2",
                 "--proposer", "agent-1", "--reason", "too many reports")
    assert result.code == 0
    assert "pending_approval" in result.out
    assert "NEEDS_APPROVAL by policy 2026.11.1: rule high-impact-needs-approval" in result.out


def test_a_low_impact_proposal_is_approved_automatically_in_json(cli: Cli) -> None:
    result = cli("propose", "create_document", "--target", "docs/a.md",
                 "--params-json", '{"path": "docs/a.md", "content": "# A"}', "--proposer", "agent-1", "--json")
    assert result.code == 0
    data = result.json()
    assert (data["state"], data["impact"], data["decision"]["outcome"]) == ("approved", "low", "allow")
    assert data["explanation"].startswith("ALLOW by policy")


def test_approving_a_pending_action_moves_it_to_approved(cli: Cli) -> None:
    action_id = _propose_high(cli)
    result = cli("approve", action_id, "--approver", "alice", "--reason", "fine", "--code",
                 cli.code("alice", action_id), "--json")
    assert result.code == 0
    assert result.json()["state"] == "approved"
    assert result.json()["approvals"][0]["approver"] == "alice"


def test_rejecting_a_pending_action_moves_it_to_rejected(cli: Cli) -> None:
    action_id = _propose_high(cli)
    result = cli("reject", action_id, "--approver", "bob", "--reason", "not now", "--code", cli.code("bob", action_id))
    assert result.code == 0
    assert "rejected" in result.out


def test_show_prints_the_action_its_decision_and_its_audit_trail(cli: Cli) -> None:
    action_id = _propose_high(cli)
    cli("approve", action_id, "--approver", "alice", "--code", cli.code("alice", action_id))
    text = cli("show", action_id)
    assert text.code == 0
    assert "audit trail:" in text.out and "approved" in text.out
    data = cli("show", action_id, "--json").json()
    assert [r["event"] for r in data["audit"]] == [
        "action_proposed", "approval_requested", "approval_codes_issued", "approved"
    ]
    assert data["explanation"].startswith("NEEDS_APPROVAL")


def test_list_filters_pending_actions_and_prints_an_aligned_table(cli: Cli) -> None:
    pending = _propose_high(cli)
    cli("propose", "create_document", "--target", "d", "--param", "path=d", "--param", "content=x",
        "--proposer", "agent-1")
    listed = cli("list", "--pending", "--json").json()
    assert [a["id"] for a in listed] == [pending]
    table = cli("list").out.splitlines()
    assert table[0].split() == ["id", "type", "target", "impact", "state", "proposer", "approvals", "created"]
    column = table[0].index("state")
    assert sorted(row[column:].split()[0] for row in table[1:]) == ["approved", "pending_approval"]


def test_policy_check_explains_the_decision_and_writes_nothing(cli: Cli) -> None:
    result = cli("policy", "check", "make_payment", "--target", "acct", "--param", "amount=10",
                 "--param", "currency=EUR", "--param", "payee=ACME", "--proposer", "agent-1", "--json")
    assert result.code == 6 and result.error()["error_code"] == "ACTION_BLOCKED"
    data = result.json()
    assert (data["outcome"], data["code"]) == ("deny", "ACTION_BLOCKED")
    assert "rule payments-blocked" in data["explanation"]
    assert cli("list", "--json").json() == []


def test_policy_show_prints_the_yaml_version_and_fingerprint(cli: Cli) -> None:
    text = cli("policy", "show")
    assert text.code == 0
    assert f"# fingerprint: {default_policy().fingerprint}" in text.out
    assert "payments-blocked" in text.out
    data = cli("policy", "show", "--json").json()
    assert (data["version"], data["fingerprint"]) == ("2026.11.1", default_policy().fingerprint)


def test_an_unknown_action_type_exits_2_with_its_code(cli: Cli) -> None:
    result = cli("propose", "launch_rocket", "--target", "moon", "--proposer", "agent-1")
    assert result.code == 2
    assert result.err.startswith("error[UNKNOWN_ACTION_TYPE]: unknown action type 'launch_rocket'")


def test_invalid_params_exit_2_listing_every_problem_and_write_nothing(cli: Cli) -> None:
    result = cli("propose", "send_email", "--target", "mbx", "--param", "subject=hi", "--proposer", "agent-1",
                 "--json")
    assert result.code == 2
    error = result.error()
    assert error["error_code"] == "INVALID_PARAMS"
    assert {p.split(":")[0] for p in error["details"]["problems"]} == {"to", "body"}
    assert cli("list", "--json").json() == []


def test_a_blocked_payment_is_recorded_and_exits_6_with_action_blocked(cli: Cli) -> None:
    result = cli("propose", "make_payment", "--target", "acct", "--param", "amount=10", "--param", "currency=EUR",
                 "--param", "payee=ACME", "--proposer", "agent-1")
    assert result.code == 6
    assert "blocked" in result.out
    assert result.err.startswith("error[ACTION_BLOCKED]:")
    assert "rule payments-blocked" in result.err


def test_the_51st_email_in_an_hour_exits_6_rate_limited_with_a_retry_time(cli: Cli, db: Any) -> None:
    service = ActionService(db.sessions, default_policy())
    email = {"to": ["ops@example.com"], "subject": "hello", "body": "hi"}
    service.propose_many([Proposal(action_type="send_email", target="mbx", params=email, proposer="agent-1")] * 50)
    result = cli("propose", "send_email", "--target", "mbx", *EMAIL, "--proposer", "agent-1", "--json")
    assert result.code == 6
    assert result.json()["state"] == "blocked"
    error = result.error()
    assert error["error_code"] == "RATE_LIMITED"
    assert error["details"]["retry_after"] is not None
    assert "retry after" in error["message"]


def test_an_unauthorised_approver_exits_7_and_the_action_stays_pending(cli: Cli) -> None:
    action_id = _propose_high(cli)
    result = cli("approve", action_id, "--approver", "mallory")
    assert result.code == 7
    assert result.err.startswith("error[PERMISSION_DENIED]: mallory is not authorised")
    assert cli("show", action_id, "--json").json()["state"] == "pending_approval"


def test_the_proposer_cannot_approve_its_own_action(cli: Cli) -> None:
    action_id = _propose_high(cli)
    result = cli("approve", action_id, "--approver", "agent-1", "--json")
    assert result.code == 7
    assert result.error()["error_code"] == "SELF_APPROVAL_REFUSED"


def test_an_approval_without_its_one_time_code_exits_7(cli: Cli) -> None:
    action_id = _propose_high(cli)
    result = cli("approve", action_id, "--approver", "alice", "--code", "AAAA-BBBB-CCCC", "--json")
    assert result.code == 7
    assert result.error()["error_code"] == "APPROVAL_CODE_INVALID"
    assert "internal_reason" not in result.error()["details"]
    assert cli("show", action_id, "--json").json()["approvals"] == []


def test_an_unknown_action_id_exits_4(cli: Cli) -> None:
    result = cli("show", "00000000-0000-0000-0000-000000000000")
    assert result.code == 4
    assert result.err.startswith("error[NOT_FOUND]: action '00000000-0000-0000-0000-000000000000' not found")


def test_approving_a_decided_action_exits_5_naming_both_states(cli: Cli) -> None:
    action_id = _propose_high(cli)
    cli("reject", action_id, "--approver", "bob", "--reason", "no", "--code", cli.code("bob", action_id))
    result = cli("approve", action_id, "--approver", "alice", "--code", cli.code("alice", action_id), "--json")
    assert result.code == 5
    assert result.error()["details"]["current_state"] == "rejected"


def test_cancel_withdraws_a_pending_action(cli: Cli) -> None:
    action_id = _propose_high(cli)
    assert cli("cancel", action_id, "--actor", "agent-1", "--reason", "obsolete", "--json").json()["state"] == \
        "cancelled"


def test_a_usage_error_exits_2_as_invalid_input(cli: Cli) -> None:
    result = cli("list", "--no-such-flag")
    assert result.code == 2
    assert result.err.startswith("error[INVALID_INPUT]:")


def test_audit_query_filters_by_action_and_paginates(cli: Cli) -> None:
    first = _propose_high(cli)
    _propose_high(cli)
    records = cli("audit", "query", "--action", first, "--json").json()["records"]
    assert {r["entity_id"] for r in records} == {first}
    page = cli("audit", "query", "--limit", "2", "--json").json()
    assert len(page["records"]) == 2 and page["next_cursor"]
    rest = cli("audit", "query", "--cursor", str(page["next_cursor"]), "--json").json()["records"]
    assert rest[0]["sequence"] > page["records"][-1]["sequence"]


def test_audit_verify_passes_on_an_untouched_chain_and_against_an_exported_head(cli: Cli, tmp_path: Path) -> None:
    _propose_high(cli)
    result = cli("audit", "verify")
    assert result.code == 0
    assert "audit chain OK" in result.out
    anchor = tmp_path / "head.json"
    assert cli("audit", "export-head", str(anchor)).code == 0
    assert anchor.is_file()
    assert cli("audit", "verify", "--anchor", str(anchor), "--json").json()["ok"] is True


def _tamper(path: Path, sql: str, *params: Any) -> None:
    """Edit the SQLite file behind the store's back, as an attacker with file access would."""
    conn = sqlite3.connect(path)
    try:
        triggers = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]
        for name in triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


@dataclass
class SqliteCli:
    """The CLI and the SQLite file it uses."""

    run: Cli
    path: Path

    def __call__(self, *argv: str) -> Run:
        return self.run(*argv)


@pytest.fixture
def sqlite_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> SqliteCli:
    """The CLI on a brand-new SQLite file (not pre-migrated): the first command creates the schema."""
    path = tmp_path / "fresh" / "saferails.db"
    use_database(monkeypatch, f"sqlite:///{path}")
    return SqliteCli(Cli(capsys), path)


def test_db_upgrade_creates_the_schema_in_a_fresh_sqlite_file(sqlite_cli: SqliteCli) -> None:
    result = sqlite_cli("db", "upgrade", "--json")
    assert result.code == 0
    assert result.json()["revisions"]
    assert sqlite_cli.path.is_file()
    assert sqlite_cli("list", "--json").json() == []


def test_audit_verify_exits_3_naming_the_altered_row(sqlite_cli: SqliteCli) -> None:
    sqlite_cli("principal", "add", "alice", "--group", "approvers")
    for target in ("emp_1", "emp_2"):
        sqlite_cli("propose", "reassign_manager", "--target", target, "--param", "new_manager_id=m",
                   "--proposer", "agent-1")
    assert sqlite_cli("audit", "verify").code == 0
    _tamper(sqlite_cli.path, "UPDATE audit_log SET actor = 'someone-else' WHERE sequence = ?", 3)
    result = sqlite_cli("audit", "verify")
    assert result.code == 3
    assert result.err.startswith("error[AUDIT_CHAIN_BROKEN]: audit record #3 ")
    assert sqlite_cli("audit", "verify", "--json").error()["details"]["first_broken_sequence"] == 3


def test_deleting_the_newest_audit_rows_is_caught_by_the_exported_head(sqlite_cli: SqliteCli, tmp_path: Path) -> None:
    sqlite_cli("propose", "reassign_manager", "--target", "emp_1", "--param", "new_manager_id=m",
               "--proposer", "agent-1")
    anchor = tmp_path / "head.json"
    sqlite_cli("audit", "export-head", str(anchor))
    _tamper(sqlite_cli.path, "DELETE FROM audit_log WHERE sequence = (SELECT max(sequence) FROM audit_log)")
    assert sqlite_cli("audit", "verify", "--anchor", str(anchor)).code == 3


def test_an_unreachable_database_exits_9_store_unavailable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SAFERAILS_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nothing")
    result = Cli(capsys)("list")
    assert result.code == 9
    assert result.err.startswith("error[STORE_UNAVAILABLE]: database unavailable")


def test_a_malformed_policy_file_exits_2_naming_the_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: '1'\nrules:\n  - {id: x, kind: blocked}\n")
    monkeypatch.setenv("SAFERAILS_DATABASE_URL", f"sqlite:///{tmp_path / 's.db'}")
    monkeypatch.setenv("SAFERAILS_POLICY", str(policy))
    result = Cli(capsys)("policy", "show")
    assert result.code == 2
    assert result.err.startswith("error[POLICY_INVALID]: rule 'x'")


def test_with_an_approval_secret_each_approver_is_sent_a_code_that_approves_once(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SAFERAILS_APPROVAL_SECRET", "s" * 40)
    action_id = _propose_high(cli)
    assert not (Path(os.environ["SAFERAILS_DATA_DIR"]) / "notifications.jsonl").exists()
    codes = {name: cli.code(name, action_id) for name in ("alice", "bob")}
    wrong = cli("approve", action_id, "--approver", "alice", "--code", codes["bob"], "--json")
    assert wrong.code == 7 and wrong.error()["error_code"] == "APPROVAL_CODE_INVALID"
    ok = cli("approve", action_id, "--approver", "alice", "--code", codes["alice"], "--json")
    assert ok.code == 0 and ok.json()["state"] == "approved"


def test_an_approved_document_is_executed_then_rolled_back_from_the_cli(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SAFERAILS_FILE_ROOT", str(tmp_path))
    proposed = cli("propose", "create_document", "--target", "notes", "--param", "path=notes.md",
                   "--param", "content=hello", "--proposer", "agent-1", "--json")
    action_id = proposed.json()["id"]
    executed = cli("execute", action_id, "--json")
    assert executed.code == 0 and executed.json()["state"] == "completed"
    assert (tmp_path / "notes.md").read_text() == "hello"
    rolled = cli("rollback", action_id, "--actor", "alice", "--reason", "wrong notes", "--json")
    assert rolled.code == 0 and rolled.json()["state"] == "rolled_back"
    assert not (tmp_path / "notes.md").exists()
    again = cli("rollback", action_id, "--actor", "alice", "--reason", "twice", "--json")
    assert again.code == 5 and again.error()["error_code"] == "INVALID_TRANSITION"


def test_executing_an_action_still_waiting_for_approval_is_refused(cli: Cli) -> None:
    action_id = _propose_high(cli)
    result = cli("execute", action_id, "--json")
    assert result.code == 5 and result.error()["error_code"] == "INVALID_TRANSITION"


def test_without_an_approval_secret_codes_are_still_required_with_a_generated_key(cli: Cli) -> None:
    action_id = _propose_high(cli)
    result = cli("approve", action_id, "--approver", "alice", "--json")
    assert result.code == 7 and result.error()["error_code"] == "APPROVAL_CODE_INVALID"
    key = Path(os.environ["SAFERAILS_DATA_DIR"]) / "keys" / "approval-secret"
    assert key.is_file() and key.stat().st_mode & 0o077 == 0
    assert cli("approve", action_id, "--approver", "alice", "--code", cli.code("alice", action_id)).code == 0
