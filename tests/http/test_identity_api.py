"""The HTTP API authenticates with the store's own credentials by default: keys made with the CLI
(``saferails init``, ``principal add``, ``credential issue``) are the API's bearer tokens, with the same roles."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from saferails.errors import ConfigurationError
from saferails.http import server
from saferails.http.auth import ROLE_PERMISSIONS, Principal
from saferails.identity import ROLE_PERMISSIONS as IDENTITY_ROLE_PERMISSIONS
from tests.support.cli import Cli, use_database

HIGH = {"action_type": "reassign_manager", "target": "emp_1", "params": {"new_manager_id": "mgr_2"},
        "reason": "too many reports"}


def _key(admin: Cli, principal: str, *args: str) -> str:
    assert admin("principal", "add", principal, *args).code == 0
    issued = admin("credential", "issue", principal, "--json")
    assert issued.code == 0, issued.err
    return str(issued.json()["token"])


@pytest.fixture
def keyed(db: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
          ) -> Iterator[tuple[Cli, TestClient, dict[str, str]]]:
    use_database(monkeypatch, db.url)
    monkeypatch.delenv(server.AUTHENTICATOR_ENV, raising=False)
    cli = Cli(capsys).anonymous()
    assert cli("init", "--admin", "root").code == 0
    keys = {"agent": _key(cli, "agent-1", "--role", "agent"),
            "approver": _key(cli, "alice", "--role", "approver", "--group", "approvers")}
    app = server.build_app()
    with TestClient(app, raise_server_exceptions=False) as client:
        yield cli, client, keys


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_cli_keys_propose_and_approve_over_http_and_an_agent_key_cannot_approve(
    keyed: tuple[Cli, TestClient, dict[str, str]],
) -> None:
    cli, client, keys = keyed
    created = client.post("/api/v1/actions", headers=_bearer(keys["agent"]), json=HIGH)
    assert created.status_code == 201, created.text
    action = created.json()
    assert action["proposer"] == "agent-1" and action["state"] == "pending_approval"
    code = cli.code("alice", action["id"])

    by_agent = client.post(f"/api/v1/actions/{action['id']}/approve", headers=_bearer(keys["agent"]),
                           json={"code": code})
    assert by_agent.status_code == 403, by_agent.text

    approved = client.post(f"/api/v1/actions/{action['id']}/approve", headers=_bearer(keys["approver"]),
                           json={"code": code, "reason": "fine"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "approved"
    assert [a["approver"] for a in approved.json()["approvals"]] == ["alice"]


def test_no_key_a_wrong_key_and_a_revoked_key_are_401(keyed: tuple[Cli, TestClient, dict[str, str]]) -> None:
    cli, client, keys = keyed
    assert client.get("/api/v1/actions").status_code == 401
    assert client.get("/api/v1/actions", headers=_bearer(keys["agent"] + "x")).status_code == 401
    assert client.get("/api/v1/actions", headers=_bearer(keys["agent"])).status_code == 200
    credential_id = keys["agent"].split("_")[1]
    assert cli("credential", "revoke", credential_id).code == 0
    assert client.get("/api/v1/actions", headers=_bearer(keys["agent"])).status_code == 401


def test_the_http_role_table_is_derived_from_the_identity_roles() -> None:
    assert set(ROLE_PERMISSIONS) == {role.value for role in IDENTITY_ROLE_PERMISSIONS}
    agent = Principal("a", frozenset({"agent"}), frozenset({"default"}))
    admin = Principal("r", frozenset({"admin"}), frozenset({"*"}))
    # Separation of duties holds over HTTP too: an admin neither proposes nor decides.
    assert agent.can("actions:propose") and not agent.can("actions:decide") and not agent.can("actions:read")
    assert not admin.can("actions:propose") and not admin.can("actions:decide") and admin.can("audit:read")


def test_api_serve_refuses_a_bad_worker_count(db: Any, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    use_database(monkeypatch, db.url)
    result = Cli(capsys).anonymous()("api", "serve", "--workers", "0", "--json")
    assert result.code == ConfigurationError.exit_code
    assert result.error()["error_code"] == ConfigurationError.code
