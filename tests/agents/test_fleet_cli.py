"""``saferails agent ...``: the fleet controls from the command line, through propose and the policy."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.cli import Cli, use_database


@pytest.fixture
def cli(db: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    use_database(monkeypatch, db.url)
    run = Cli(capsys)
    for name, group in (("alice", "approvers"), ("bob", "approvers"), ("olga", "operators")):
        assert run("principal", "add", name, "--group", group).code == 0
    assert run("agent", "register", "bot-1", "--tenant", "acme", "--department", "sales").code == 0
    assert run("agent", "register", "bot-2", "--tenant", "acme", "--department", "ops").code == 0
    return run


def test_pause_refuses_the_agents_next_proposal_with_exit_6_and_resume_lets_it_go(cli: Cli) -> None:
    paused = cli.ok("agent", "pause", "bot-1", "--tenant", "acme", "--minutes", "45", "--reason", "runaway",
                    "--actor", "olga")
    assert paused["state"] == "completed" and paused["result"]["affected"] == ["bot-1"]
    assert cli.ok("agent", "show", "bot-1")["status"] == "paused"

    refused = cli("propose", "create_document", "--target", "a.md", "--params-json",
                  '{"path": "a.md", "content": "x"}', "--proposer", "bot-1", "--tenant", "acme", "--json")
    assert refused.code == 6 and refused.error()["error_code"] == "AGENT_PAUSED"
    assert "runaway" in refused.error()["message"]

    assert cli.ok("agent", "resume", "bot-1", "--tenant", "acme", "--actor", "olga")["state"] == "completed"
    listed = {a["id"]: a["status"] for a in cli.ok("agent", "list", "--tenant", "acme")}
    assert listed == {"bot-1": "active", "bot-2": "active"}


def test_a_fleet_pause_from_the_cli_waits_for_two_approvals(cli: Cli) -> None:
    waiting = cli.ok("agent", "pause", "acme", "--scope", "fleet", "--tenant", "acme", "--reason", "kill switch",
                     "--actor", "olga")
    assert waiting["state"] == "pending_approval" and waiting["min_approvals"] == 2
    action_id = waiting["id"]
    for approver in ("alice", "bob"):
        assert cli("approve", action_id, "--approver", approver, "--code", cli.code(approver, action_id)).code == 0
    assert cli.ok("execute", action_id)["state"] == "completed"
    assert {a["status"] for a in cli.ok("agent", "list", "--tenant", "acme")} == {"paused"}


def test_set_budget_and_bad_values_from_the_cli(cli: Cli) -> None:
    done = cli.ok("agent", "set-budget", "bot-2", "--tenant", "acme", "--amount", "75.50", "--currency", "EUR",
                  "--period", "day", "--actor", "olga")
    assert done["result"]["budget"] == {"amount": "75.50", "currency": "EUR", "period": "day"}
    bad = cli("agent", "pause", "bot-1", "--tenant", "acme", "--minutes", "0", "--reason", "x", "--actor", "olga")
    assert bad.code == 2 and "INVALID_PARAMS" in bad.err


def test_the_audit_record_of_the_fleet_controls_from_the_cli(cli: Cli) -> None:
    done = cli.ok("agent", "pause", "bot-1", "--tenant", "acme", "--reason", "runaway", "--actor", "olga")
    cli.ok("agent", "pause", "acme", "--scope", "fleet", "--tenant", "acme", "--reason", "kill", "--actor", "olga")
    (record,) = cli.ok("agent", "actions", "--workspace", "acme", "--scope", "agent", "--actor", "olga",
                       "--type", "pause_agent")
    assert (record["action_id"], record["status"], record["can_rollback"]) == (done["id"], "completed", True)
    assert [r["scope"] for r in cli.ok("agent", "actions", "--workspace", "acme")] == ["fleet", "agent"]
    table = cli("agent", "actions", "--scope", "fleet")
    assert table.code == 0 and "pending_approval" in table.out
    assert cli("agent", "actions", "--scope", "galaxy").code != 0


def test_the_controls_act_as_the_authenticated_operator_never_as_a_name_given(cli: Cli) -> None:
    # An agent holds only propose and read: it can neither pause a peer nor register itself a sidekick.
    agent = cli.as_("bot-2", roles=["agent"])
    for argv in (("agent", "pause", "bot-1", "--tenant", "acme", "--reason", "x", "--actor", "olga"),
                 ("agent", "pause", "bot-1", "--tenant", "acme", "--reason", "x"),
                 ("agent", "register", "evil", "--tenant", "acme", "--actor", "olga"),
                 ("agent", "actions", "--workspace", "acme")):
        refused = agent(*argv, "--json")
        assert refused.code == 7 and refused.error()["error_code"] == "PERMISSION_DENIED", argv
    # An operator acts as itself: another name in --actor is refused, none at all records the operator.
    olga = cli.as_("olga", roles=["operator"])
    forged = olga("agent", "pause", "bot-1", "--tenant", "acme", "--reason", "x", "--actor", "oscar", "--json")
    assert forged.code != 0 and "oscar" in forged.err
    assert olga.ok("agent", "pause", "bot-1", "--tenant", "acme", "--reason", "runaway")["proposer"] == "olga"
    assert {a["id"] for a in cli.ok("agent", "list", "--tenant", "acme")} == {"bot-1", "bot-2"}
