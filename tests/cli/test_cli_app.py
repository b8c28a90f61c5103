"""What every ``saferails`` command shares: usage errors are typed, nothing unexpected shows a traceback, and
``--json`` works before the command as well as after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Cli, use_database


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    use_database(monkeypatch, f"sqlite:///{tmp_path / 'saferails.db'}")
    return Cli(capsys)


@pytest.mark.parametrize("argv", [
    pytest.param(["list", "--no-such-flag"], id="unknown flag"),
    pytest.param(["show"], id="missing argument"),
    pytest.param(["reject", "some-id"], id="missing required option"),
    pytest.param(["list", "--limit", "many"], id="not a number"),
    pytest.param(["audit", "query", "--since", "yesterday"], id="not an ISO time"),
    pytest.param(["audit", "query", "--since", "2026-11-22T10:00:00"], id="a time without timezone"),
    pytest.param(["org", "metrics", "p1", "--window", "a week"], id="not a duration"),
    pytest.param(["task", "create", "--title", "t", "--priority", "urgent"], id="not one of the choices"),
    pytest.param(["sweep", "run", "everything"], id="unknown sweep"),
    pytest.param(["no-such-command"], id="unknown command"),
    pytest.param(["runbook"], id="group without its command"),
    pytest.param([], id="no command at all"),
])
def test_a_usage_error_is_invalid_input_with_exit_2_and_no_usage_dump(cli: Cli, argv: list[str]) -> None:
    text = cli(*argv)
    assert text.code == 2
    assert text.err.startswith("error[INVALID_INPUT]: saferails")
    assert len(text.err.splitlines()) == 1 and "Usage:" not in text.err and "Traceback" not in text.err
    assert text.out == ""
    as_json = cli(*argv, "--json")
    assert as_json.code == 2
    assert as_json.error()["error_code"] == "INVALID_INPUT"


def test_a_bad_value_names_the_option_and_the_command(cli: Cli) -> None:
    result = cli("audit", "query", "--since", "2026-11-22T10:00:00")
    assert result.err.startswith("error[INVALID_INPUT]: saferails audit query: ")
    assert "--since" in result.err and "has no timezone" in result.err


def _corrupt_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store file that is not a database at all: SQLAlchemy raises an error no command expects."""
    path = tmp_path / "garbage.db"
    path.write_bytes(bytes(range(256)) * 16)
    use_database(monkeypatch, f"sqlite:///{path}")


def test_an_unexpected_failure_is_a_typed_internal_error_without_a_traceback(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _corrupt_store(tmp_path, monkeypatch)
    text = cli("list")
    assert text.code == 1
    assert text.err.startswith("error[INTERNAL_ERROR]: unexpected DatabaseError: ")
    assert "--debug" in text.err and "Traceback" not in text.err
    as_json = cli("list", "--json")
    assert as_json.code == 1
    assert as_json.error()["error_code"] == "INTERNAL_ERROR"
    assert as_json.error()["details"] == {"exception": "DatabaseError"}


def test_debug_shows_the_traceback_of_an_unexpected_failure(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _corrupt_store(tmp_path, monkeypatch)
    result = cli("--debug", "list")
    assert result.code == 1
    assert result.err.startswith("Traceback (most recent call last):")
    assert result.err.splitlines()[-1].startswith("error[INTERNAL_ERROR]: unexpected DatabaseError")


def test_json_is_accepted_before_the_command_as_well_as_after_it(cli: Cli) -> None:
    before = cli("--json", "principal", "add", "alice", "--group", "approvers")
    after = cli("principal", "add", "alice", "--group", "approvers", "--json")
    assert before.code == after.code == 0
    assert before.json() == after.json() == {"id": "alice", "groups": ["approvers"], "email": None,
                                             "kyc_verified": False}
    assert cli("--json", "list").json() == []


def test_help_lists_the_command_groups_and_exits_0_in_plain_text_in_a_pipe(cli: Cli) -> None:
    result = cli("--help")
    assert result.code == 0
    for group in ("propose", "principal", "audit", "runbook", "task", "org", "sweep"):
        assert group in result.out
    sub = cli("runbook", "start", "--help")
    assert sub.code == 0 and "--prefect" in sub.out
    assert not any(ch in result.out + sub.out for ch in "╭│─") and "\x1b" not in sub.out


def test_tables_in_a_pipe_carry_no_colour_or_box_art(cli: Cli) -> None:
    cli("principal", "add", "alice", "--group", "approvers")
    cli("propose", "reassign_manager", "--target", "emp_1", "--param", "new_manager_id=m", "--proposer", "a-1")
    table: Any = cli("list").out
    assert "\x1b" not in table
    assert not any(ch in table for ch in "─━│┃")
    header, row = table.splitlines()
    # Each column is as wide as its widest cell (an 8-character short id, "reassign_manager"), then two spaces.
    assert (header.index("type"), header.index("target")) == (10, 28)
    assert row[10:28] == "reassign_manager  " and row == row.rstrip()
