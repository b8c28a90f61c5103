"""README's CLI tour, as a user types it: ``saferails init``, principals and credentials saved as profiles, then
each principal acting through ``SAFERAILS_PROFILE`` (no token in the environment, no name in a flag)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.cli import Cli, use_database


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
