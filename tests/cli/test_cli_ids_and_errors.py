"""What a person expects of the CLI: the short ids ``list`` prints work everywhere an id is taken, an ambiguous
prefix names its candidates, every failure is on stderr as ``error[CODE]: message``, ``policy check`` exits 6 on
a denial. Run in-process through ``saferails.cli.main`` against real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from saferails.approvals.tables import ApprovalCode
from saferails.store.tables import Action
from tests.support.cli import Cli, use_database

ADMIN = ("--actor", "ada", "--role", "admin")


@pytest.fixture
def cli(db: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    use_database(monkeypatch, db.url)
    monkeypatch.setenv("SAFERAILS_FILE_ROOT", str(tmp_path))
    run = Cli(capsys)
    run("principal", "add", "alice", "--group", "approvers")
    return run


def _propose_high(cli: Cli, target: str = "emp_1") -> str:
    result = cli("propose", "reassign_manager", "--target", target, "--param", "new_manager_id=mgr_2",
                 "--proposer", "agent-1", "--reason", "too many reports", "--json")
    assert result.code == 0, result.err
    return str(result.json()["id"])


def test_the_eight_character_id_that_list_prints_works_for_show_approve_and_the_rest(cli: Cli) -> None:
    action_id = _propose_high(cli)
    short = action_id[:8]
    assert short in cli("list").out
    assert cli.ok("show", short)["id"] == action_id
    approved = cli("approve", short, "--approver", "alice", "--reason", "fine", "--code", cli.code("alice", action_id),
                   "--json")
    assert approved.code == 0, approved.err
    assert approved.json()["id"] == action_id and approved.json()["state"] == "approved"


def test_a_prefix_shared_by_two_actions_exits_2_ambiguous_id_listing_both(cli: Cli, db: Any) -> None:
    first, second = _propose_high(cli, "emp_1"), _propose_high(cli, "emp_2")
    engine = sa.create_engine(db.url)
    with engine.begin() as conn:  # give both ids the same first characters, as a big table eventually does
        for old in (first, second):
            # Their one-time codes reference the id (a foreign key PostgreSQL enforces); this test needs no codes.
            conn.execute(sa.delete(ApprovalCode).where(ApprovalCode.action_id == old))
            conn.execute(sa.update(Action).where(Action.id == old).values(id="abcd" + old[4:]))
    engine.dispose()
    result = cli("show", "abcd")
    assert result.code == 2
    assert result.err.startswith("error[AMBIGUOUS_ID]: action id 'abcd' is ambiguous")
    assert "abcd" + first[4:] in result.err and "abcd" + second[4:] in result.err
    assert cli.ok("show", "abcd" + first[4:13])["target"] == "emp_1"


def test_an_unknown_or_too_short_prefix_is_refused_with_its_code(cli: Cli) -> None:
    _propose_high(cli)
    missing = cli("show", "ffffffff")
    assert missing.code == 4 and missing.err.startswith("error[NOT_FOUND]: action 'ffffffff' not found")
    short = cli("show", "ab")
    assert short.code == 2 and short.err.startswith("error[INVALID_INPUT]: action id 'ab' is too short")


def test_task_and_plan_commands_take_the_short_ids_their_listings_print(cli: Cli) -> None:
    plan = cli.ok("plan", "create", "--title", "winter", "--goal", "assess within 4h", *ADMIN)
    assert cli.ok("plan", "activate", plan["id"][:8], *ADMIN)["state"] == "active"
    task = cli.ok("task", "create", "--title", "Referral 7", "--plan", plan["id"][:6], "--assign", "ada", *ADMIN)
    assert task["action_plan_id"] == plan["id"]
    assert cli.ok("task", "show", task["id"][:8])["id"] == task["id"]
    moved = cli.ok("task", "transition", task["id"][:8], "in_progress", "--actor", "ada", "--role", "admin")
    assert moved["state"] == "in_progress"
    assert [t["id"] for t in cli.ok("task", "list", "--plan", plan["id"][:8])] == [task["id"]]


def test_an_execution_that_fails_says_why_on_stderr_and_exits_8(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("already here")
    proposed = cli("propose", "create_document", "--target", "notes", "--param", "path=notes.md",
                   "--param", "content=hello", "--proposer", "agent-1", "--json")
    action_id = proposed.json()["id"]
    result = cli("execute", action_id[:8])
    assert result.code == 8
    assert "failed" in result.out
    assert result.err.startswith(f"error[EXECUTION_FAILED]: action {action_id} failed: ")
    assert len(result.err.strip().splitlines()[0]) > len(f"error[EXECUTION_FAILED]: action {action_id} failed: ")


def test_policy_check_exits_6_with_the_refusal_on_stderr_when_the_policy_would_deny(cli: Cli) -> None:
    denied = cli("policy", "check", "make_payment", "--target", "acct", "--param", "amount=10",
                 "--param", "currency=EUR", "--param", "payee=ACME", "--proposer", "agent-1")
    assert denied.code == 6
    assert "DENY" in denied.out
    assert denied.err.startswith("error[ACTION_BLOCKED]: the policy would refuse this action: rule payments-blocked")
    needs = cli("policy", "check", "reassign_manager", "--target", "emp_1", "--param", "new_manager_id=mgr_2",
                "--proposer", "agent-1")
    assert (needs.code, needs.err) == (0, "")
    assert cli("list", "--json").json() == []
