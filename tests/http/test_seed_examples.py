"""The seeds' curl examples, run with curl against the API served by uvicorn on loopback.

The only change to each example is the ``Authorization`` header: every caller is authenticated, and the
approver is the authenticated principal (``approved_by``, if sent, must name it) with its one-time code.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.http_world import HttpWorld
from tests.support.uvicorn_server import running


@pytest.fixture
def base(sqlite_world: HttpWorld) -> Iterator[str]:
    with running(sqlite_world.client.app) as url:  # type: ignore[arg-type]
        yield url


def curl(*args: str) -> tuple[int, Any]:
    """Run curl; returns (HTTP status, parsed JSON body)."""
    out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *args], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    body, status = out.rsplit("\n", 1)
    return int(status), json.loads(body)


def test_seed_000_propose_an_intervention_then_list_pending(sqlite_world: HttpWorld, base: str) -> None:
    auth = f"Authorization: Bearer {sqlite_world.tokens['agent-1']}"
    status, body = curl("-X", "POST", f"{base}/api/interventions/propose",
                        "-H", "Content-Type: application/json", "-H", auth,
                        "-d", """{
    "intervention_type": "reassign_manager",
    "target_employee_id": "emp_123",
    "params": {"new_manager_id": "mgr_456"},
    "reason": "Improve team dynamics"
  }""")
    assert status == 201, body
    assert body["impact_level"] == "HIGH" and body["requires_approval"] is True
    assert body["status"] == "pending_approval"
    status, pending = curl(f"{base}/api/interventions/pending",
                           "-H", f"Authorization: Bearer {sqlite_world.tokens['bob']}")
    assert status == 200
    assert [a["id"] for a in pending["items"]] == [body["intervention_id"]]


def test_seed_001_create_get_and_approve_an_action(sqlite_world: HttpWorld, base: str) -> None:
    agent = f"Authorization: Bearer {sqlite_world.tokens['agent-1']}"
    status, created = curl("-X", "POST", f"{base}/api/actions", "-H", "Content-Type: application/json",
                           "-H", agent, "-d", """{
    "user_id": "user123",
    "action_type": "create_calendar_event",
    "payload": {
      "title": "Test Event",
      "start_time": "2024-01-15T10:00:00Z",
      "end_time": "2024-01-15T11:00:00Z"
    }
  }""")
    assert status == 201, created
    assert created["success"] is True and created["requires_approval"] is False
    assert created["status"] == "approved"

    status, action = curl(f"{base}/api/actions/{created['action_id']}", "-H", agent)
    assert status == 200
    assert (action["target"], action["action_type"], action["proposer"]) == (
        "user123", "create_calendar_event", "agent-1")

    # A file move needs approval (seed 001's default rules); approve it the seed's way, as bob.
    status, move = curl("-X", "POST", f"{base}/api/actions", "-H", "Content-Type: application/json", "-H", agent,
                        "-d", json.dumps({"user_id": "user123", "action_type": "move_file",
                                          "payload": {"source": "a.txt", "destination": "b.txt"}}))
    assert status == 201 and move["requires_approval"] is True
    bob = f"Authorization: Bearer {sqlite_world.tokens['bob']}"
    status, refused = curl("-X", "POST", f"{base}/api/actions/{move['action_id']}/approve",
                           "-H", "Content-Type: application/json", "-H", bob, "-d", '{"approved_by": "user123"}')
    assert status == 403 and refused["code"] == "PERMISSION_DENIED"
    code = sqlite_world.code(move["action_id"], "bob")
    status, approved = curl("-X", "POST", f"{base}/api/actions/{move['action_id']}/approve",
                            "-H", "Content-Type: application/json", "-H", bob,
                            "-d", json.dumps({"approved_by": "bob", "code": code}))
    assert status == 200, approved
    assert approved == {"success": True, "action_id": move["action_id"], "status": "approved",
                        "message": "approval by bob recorded"}

    status, audit = curl(f"{base}/api/actions/{move['action_id']}/audit",
                         "-H", f"Authorization: Bearer {sqlite_world.tokens['aude']}")
    assert status == 200
    assert "approved" in [r["event"] for r in audit["records"]]


def test_seed_001_reject_with_a_reason(sqlite_world: HttpWorld, base: str) -> None:
    move = sqlite_world.propose(action_type="move_file", target="user123",
                                params={"source": "a.txt", "destination": "b.txt"})
    carol = f"Authorization: Bearer {sqlite_world.tokens['carol']}"
    status, body = curl("-X", "POST", f"{base}/api/actions/{move['id']}/reject",
                        "-H", "Content-Type: application/json", "-H", carol,
                        "-d", json.dumps({"rejected_by": "carol", "reason": "Not needed",
                                          "code": sqlite_world.code(move["id"], "carol")}))
    assert status == 200, body
    assert body["status"] == "rejected"
    assert sqlite_world.store.actions.get(move["id"]).approvals[0].reason == "Not needed"
