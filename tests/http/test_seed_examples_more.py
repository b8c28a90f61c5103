"""More of the seeds' examples, run with curl against the API served by uvicorn on loopback: seed 000's approve
and audit query, seed 002's runbook API surface, seed 004's workflow requests and debug commands.

As in ``test_seed_examples``, the only change to each example is the ``Authorization`` header (and, for an
approval, the approver's one-time code): every caller is authenticated.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.http.test_seed_examples import curl
from tests.support.http_world import HttpWorld
from tests.support.uvicorn_server import running


@pytest.fixture
def base(sqlite_world: HttpWorld) -> Iterator[str]:
    with running(sqlite_world.client.app) as url:  # type: ignore[arg-type]
        yield url


def bearer(w: HttpWorld, who: str) -> str:
    return f"Authorization: Bearer {w.tokens[who]}"


def post(url: str, auth: str, body: str | dict[str, Any] | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, str) else json.dumps(body or {})
    return curl("-X", "POST", url, "-H", "Content-Type: application/json", "-H", auth, "-d", data)


def test_seed_000_approve_an_intervention_and_query_the_audit_log(sqlite_world: HttpWorld, base: str) -> None:
    w = sqlite_world
    action = w.propose()
    status, body = post(f"{base}/api/interventions/approve", bearer(w, "bob"),
                        {"intervention_id": action["id"], "code": w.code(action["id"], "bob")})
    assert status == 200, body
    assert body["status"] == "approved"
    # The seed's query, verbatim: its dates have no offset (read as UTC) and cover 2024, before anything here.
    status, log = curl(f"{base}/api/interventions/audit/query?start_date=2024-01-01T00:00:00"
                       "&end_date=2024-12-31T23:59:59", "-H", bearer(w, "aude"))
    assert status == 200 and log["records"] == []
    status, log = curl(f"{base}/api/interventions/audit/query?start_date=2026-01-01T00:00:00"
                       f"&end_date=2026-12-31T23:59:59&intervention_id={action['id']}", "-H", bearer(w, "aude"))
    assert status == 200
    assert {"action_proposed", "approved"} <= {r["event"] for r in log["records"]}


RUNBOOK = {
    "id": "triage", "name": "Triage", "version": "1", "inputs": {"case": {"type": "string"}},
    "steps": [{"id": "wait", "type": "wait-for-event",
               "config": {"correlation_id": "case-{inputs.case}", "timeout": "10m"}}],
}


def test_seed_002_the_runbook_api_surface(sqlite_world: HttpWorld, base: str) -> None:
    w = sqlite_world
    auth = bearer(w, "olga")
    assert post(f"{base}/api/v1/runbooks", auth, RUNBOOK)[0] == 201
    status, templates = curl(f"{base}/api/v1/runbooks", "-H", auth)
    assert status == 200 and [t["runbook_id"] for t in templates["items"]] == ["triage"]
    assert curl(f"{base}/api/v1/runbooks/triage", "-H", auth)[0] == 200
    status, exe = post(f"{base}/api/v1/executions", auth, {"runbook_id": "triage", "inputs": {"case": "7"}})
    assert status == 201 and exe["state"] == "awaiting"
    url = f"{base}/api/v1/executions/{exe['id']}"
    assert curl(url, "-H", auth)[1]["id"] == exe["id"]
    assert [e["id"] for e in curl(f"{base}/api/v1/executions", "-H", auth)[1]["items"]] == [exe["id"]]
    assert post(f"{url}/pause", auth, {"reason": "check"})[1]["state"] == "paused"
    assert post(f"{url}/resume", auth)[1]["state"] == "awaiting"
    assert post(f"{url}/cancel", auth, {"reason": "done"})[1]["state"] == "cancelled"
    status, replay = post(f"{url}/replay", auth)
    assert status == 201 and replay["replay_of"] == exe["id"]
    status, retry = post(f"{url}/steps/wait/retry", auth)
    assert status == 409 and retry["code"] == "RUNBOOK_STEP_NOT_RETRYABLE"
    assert curl(f"{url}/logs", "-H", auth)[0] == 200
    assert curl(f"{url}/evidence", "-H", auth)[0] == 200
    for path in ("/health/ready", "/health/live"):
        assert curl(f"{base}{path}")[0] == 200


def test_seed_004_task_requests(sqlite_world: HttpWorld, base: str) -> None:
    w = sqlite_world
    auth = bearer(w, "olga")
    status, task = post(f"{base}/api/workflow/tasks", auth, """{
  "title": "Process Application",
  "description": "Review and process new application",
  "task_type": "intake",
  "priority": "high",
  "assigned_to": "user123",
  "due_date": "2024-01-15T10:00:00Z"
}""")
    assert status == 201, task
    assert (task["state"], task["assigned_to"], task["created_by"]) == ("new", "user123", "olga")
    status, moved = post(f"{base}/api/workflow/tasks/{task['id']}/transition", auth, """{
  "target_state": "in_progress",
  "context": {
    "reason": "Starting work",
    "estimated_completion": "2024-01-15T12:00:00Z"
  },
  "notes": "Beginning task execution"
}""")
    assert status == 200 and moved["state"] == "in_progress", moved
    status, shown = curl(f"{base}/api/workflow/tasks/{task['id']}", "-H", auth)
    assert status == 200 and shown["sla"]["target_minutes"] == 60
    status, listed = curl(f"{base}/api/workflow/tasks?state=in_progress&task_type=intake&limit=50", "-H", auth)
    assert status == 200 and [t["id"] for t in listed["items"]] == [task["id"]]


def test_seed_004_action_plan_and_sla_requests(sqlite_world: HttpWorld, base: str) -> None:
    w = sqlite_world
    auth = bearer(w, "olga")
    status, plan = post(f"{base}/api/workflow/action-plans", auth, """{
  "title": "Q1 Compliance Plan",
  "description": "Quarterly compliance action plan",
  "goals": [
    "Complete all pending assessments",
    "Update compliance documentation",
    "Schedule quarterly review"
  ]
}""")
    assert status == 201 and plan["state"] == "draft", plan
    assert post(f"{base}/api/workflow/action-plans/{plan['id']}/activate", auth)[1]["state"] == "active"
    assert post(f"{base}/api/workflow/action-plans/{plan['id']}/archive", auth)[1]["state"] == "archived"
    status, meta = curl(f"{base}/api/workflow/metadata", "-H", auth)
    assert status == 200 and "task" in meta["state_machines"]
    # Seed 004's intake SLA is one of our defaults: sending it again answers the stored config.
    status, config = post(f"{base}/api/workflow/sla-configs", auth, """{
  "service_area": "intake",
  "target_minutes": 60,
  "task_type": "intake",
  "active": true
}""")
    assert status in (200, 201) and config["target_minutes"] == 60, config
    status, configs = curl(f"{base}/api/workflow/sla-configs?active_only=true", "-H", auth)
    assert status == 200 and config["id"] in [c["id"] for c in configs["items"]]


def test_seed_004_debug_commands(sqlite_world: HttpWorld, base: str) -> None:
    w = sqlite_world
    token = w.tokens["olga"]
    status, stats = curl("-H", f"Authorization: Bearer {token}", f"{base}/api/workflow/stats")
    assert status == 200 and "tasks" in stats
    status, _meta = curl(f"{base}/api/workflow/metadata", "-H", f"Authorization: Bearer {token}")
    assert status == 200
    status, configs = curl("-H", f"Authorization: Bearer {token}", f"{base}/api/workflow/sla-configs")
    assert status == 200 and {c["service_area"] for c in configs["items"]} >= {"intake"}
    status, refused = curl(f"{base}/api/workflow/metadata")
    assert status == 401 and refused["code"] == "UNAUTHENTICATED"
