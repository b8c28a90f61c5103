"""The playbook's HTTP paths: ``POST /api/v1/actions/{action_name}`` and ``GET /api/v1/agents``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from saferails.clock import ManualClock
from tests.support.http_world import HttpWorld, open_world


@pytest.fixture
def world(db: Any, tmp_path: Path, clock: ManualClock) -> Iterator[HttpWorld]:
    w = open_world(db.url, tmp_path, clock)
    for agent_id, department in (("agent-1", "eng"), ("agent-2", "eng")):
        w.store.agents.register(agent_id, tenant="default", department=department)
    w.store.agents.register("agent-acme", tenant="acme", department="eng")
    yield w
    w.client.close()
    w.store.close()


PAUSE = {"agent_id": "agent-1", "reason": "Maintenance", "duration_minutes": 30}


def test_the_action_requires_authentication(world: HttpWorld) -> None:
    response = world.client.post("/api/v1/actions/pause_agent", json={"agent_id": "agent-1", "reason": "Test"})
    assert response.status_code == 401
    assert world.store.agents.get("agent-1").status == "active"


def test_the_action_requires_its_permission_with_the_playbook_body(world: HttpWorld) -> None:
    response = world.client.post("/api/v1/actions/pause_agent", json={"agent_id": "agent-1", "reason": "Test"},
                                 headers=world.headers("aude"))
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "INSUFFICIENT_PERMISSIONS" and "INSUFFICIENT_PERMISSIONS" in body["error"]["code"]
    assert body["required_permission"] == "actions:pause_agent" and body["user_role"] == "auditor"
    # An agent cannot pause (or resume) anyone either, itself included.
    response = world.client.post("/api/v1/actions/resume_agent", json={"agent_id": "agent-1"},
                                 headers=world.headers("agent-1"))
    assert response.status_code == 403 and response.json()["required_permission"] == "actions:resume_agent"


def test_pausing_one_agent_runs_at_once_and_its_next_proposal_is_refused(world: HttpWorld) -> None:
    response = world.client.post("/api/v1/actions/pause_agent", json=PAUSE, headers=world.headers("olga"))
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["status"] == "completed" and data["result"]["new_status"] == "paused"
    action = world.store.actions.get(data["action_id"])
    assert action.proposer == "olga" and action.params["reason"] == "Maintenance"

    refused = world.client.post("/api/v1/actions", headers=world.headers("agent-1"), json={
        "action_type": "send_email", "target": "mailbox",
        "params": {"to": ["x@example.com"], "subject": "hi", "body": "hello"}, "reason": "r"})
    assert refused.status_code == 403 and refused.json()["code"] == "AGENT_PAUSED"

    listed = world.client.get("/api/v1/agents", headers=world.headers("olga")).json()["items"]
    assert {a["id"]: a["status"] for a in listed} == {"agent-1": "paused", "agent-2": "active"}


def test_a_fleet_pause_waits_for_two_approvals(world: HttpWorld) -> None:
    response = world.client.post("/api/v1/actions/pause_agent", headers=world.headers("olga"),
                                 json={"scope": "fleet", "reason": "kill switch", "duration_minutes": 60})
    assert response.status_code == 202 and response.json()["status"] == "pending_approval"
    assert world.store.agents.get("agent-1").status == "active"


def test_set_budget_over_http_and_unknown_actions(world: HttpWorld) -> None:
    response = world.client.post("/api/v1/actions/set_budget", headers=world.headers("root"),
                                 json={"agent_id": "agent-2", "amount": "250.00", "currency": "EUR", "period": "week"})
    assert response.status_code == 200, response.text
    assert response.json()["result"]["budget"] == {"amount": "250.00", "currency": "EUR", "period": "week"}
    assert world.client.post("/api/v1/actions/delete_everything", headers=world.headers("root"),
                             json={}).status_code == 404
    # Another workspace's agent is out of reach of an operator of "default".
    other = world.client.post("/api/v1/actions/pause_agent", headers=world.headers("olga"),
                              json={"agent_id": "agent-acme", "reason": "x"})
    assert other.status_code == 404 and world.store.agents.get("agent-acme").status == "active"
    assert world.store.actions.list() != [] and all(a.target != "agent-acme" for a in world.store.actions.list())


def test_the_fleet_actions_audit_filters_by_workspace_scope_actor_and_type(world: HttpWorld) -> None:
    paused = world.client.post("/api/v1/actions/pause_agent", json=PAUSE, headers=world.headers("olga")).json()
    world.clock.advance(timedelta(seconds=1))
    world.client.post(f"/api/v1/actions/{paused['action_id']}/rollback", json={"reason": "undo"},
                      headers=world.headers("olga"))
    world.clock.advance(timedelta(seconds=1))
    fleet = world.client.post("/api/v1/actions/pause_agent", headers=world.headers("olga"),
                              json={"scope": "fleet", "reason": "kill switch", "duration_minutes": 60}).json()

    def query(who: str = "olga", **params: Any) -> Any:
        return world.client.get("/api/v1/agents/actions", params=params, headers=world.headers(who))

    items = query(workspace="default").json()["items"]
    assert [i["action_id"] for i in items] == [fleet["action_id"], paused["action_id"]]
    (agent_scope,) = query(scope="agent", actor="olga", type="pause_agent").json()["items"]
    assert agent_scope["status"] == "rolled_back" and agent_scope["rolled_back_by"] == "olga"
    assert agent_scope["actor_role"] == "operators" and agent_scope["rollback_reason"] == "undo"
    assert query(scope="fleet").json()["items"][0]["status"] == "pending_approval"
    assert query(actor="bob").json()["items"] == []
    assert query(type="set_budget").json()["items"] == []
    assert query("aude-acme").json()["items"] == []  # another workspace's auditor sees none of it
    assert query("agent-1").status_code == 403
    assert query(scope="galaxy").status_code == 422
