"""README's CLI tour, as a user types it: ``saferails init``, principals and credentials saved as profiles, then
each principal acting through ``SAFERAILS_PROFILE`` (no token in the environment, no name in a flag)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from saferails.cli import main
from saferails.cli.app import build_app
from tests.support.cli import Cli, use_database
from tests.support.readme import Session, console_blocks, section


def test_the_readme_tour_runs_with_profiles_from_the_credentials_file(
    db: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    use_database(monkeypatch, db.url)
    user = Cli(capsys).anonymous()
    assert user("init", "--admin", "root").code == 0
    assert user("principal", "add", "agent-1", "--role", "agent").code == 0
    assert user("principal", "add", "alice", "--role", "approver", "--group", "approvers",
                "--email", "alice@example.com").code == 0
    assert user("credential", "issue", "agent-1", "--save", "agent").code == 0
    assert user("credential", "issue", "alice", "--save", "alice").code == 0

    monkeypatch.setenv("SAFERAILS_PROFILE", "agent")
    proposed = user("propose", "reassign_manager", "--target", "emp_7", "--param", "new_manager_id=mgr_3",
                    "--reason", "mgr_1 has 19 direct reports", "--json")
    assert proposed.code == 0, proposed.err
    action = proposed.json()
    assert (action["state"], action["proposer"]) == ("pending_approval", "agent-1")
    assert user("approve", action["id"]).code == 7
    assert user("principal", "add", "mallory", "--role", "admin").code == 7

    monkeypatch.setenv("SAFERAILS_PROFILE", "alice")
    inbox = user("inbox", "--json").json()
    code = next(n["data"]["code"] for n in inbox if n["entity_id"] == action["id"])
    approved = user("approve", action["id"], "--code", code, "--reason", "ok", "--json")
    assert approved.code == 0, approved.err
    assert [a["approver"] for a in approved.json()["approvals"]] == ["alice"]

    monkeypatch.setenv("SAFERAILS_PROFILE", "nobody")
    assert user("list").code == 12


README = Path(__file__).resolve().parents[2] / "README.md"
# Groups whose commands serve until Ctrl-C (`api serve`, `metrics serve`): the README names them in prose, the
# HTTP and metrics tests run them.
SERVERS = {"api", "metrics"}


@pytest.mark.slow
def test_every_console_example_of_the_readme_cli_tour_runs_as_written(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    """The tour's console blocks in order, each command run as written (in a fresh directory with the README's
    examples/ beside it, the default SQLite store in ``SAFERAILS_DATA_DIR``), its exit code and the output the
    README shows compared; the tour uses every command group."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(README.parent / "examples")
    for name in [n for n in os.environ if n.startswith("SAFERAILS_") and n != "SAFERAILS_DATA_DIR"]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")

    def run_cli(argv: list[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(argv)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    session = Session(run_cli)
    blocks = console_blocks(*section(README.read_text(), "CLI tour"))
    assert blocks, "the README's CLI tour has no console block"
    used: set[str] = set()
    for example in [e for block in blocks for e in block]:
        session.check(example)
        words = shlex.split(example.command, comments=True)
        if words[:1] == ["saferails"] and len(words) > 1:
            used.add(words[1])
    groups = set(typer.main.get_command(build_app()).commands)  # type: ignore[attr-defined]
    assert groups - SERVERS - used == set(), "command groups the README's tour never uses"
