"""Runbooks and executions over HTTP (seed 002's API surface), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.http.test_actions_api import assert_problem
from tests.support.http_world import HttpWorld

# Waits for an event: no outside service needed, and it stops in "awaiting" so every control applies.
WAITER: dict[str, Any] = {
    "id": "ev", "name": "Wait for a case", "version": "1", "inputs": {"case": {"type": "string"}},
    "steps": [{"id": "wait", "type": "wait-for-event",
               "config": {"correlation_id": "case-{inputs.case}", "timeout": "10m",
                          "match": {"field": "event.payload.ok", "operator": "eq", "value": True}}}],
}
# Calls a loopback address the default egress policy refuses: the step fails, so the execution fails.
FAILING: dict[str, Any] = {
    "id": "fails", "name": "Fails", "version": "1",
    "steps": [{"id": "call", "type": "call-service", "retry_policy": {"max_attempts": 1},
               "config": {"url": "http://127.0.0.1:9/x"}}],
}


def acme_operator(w: HttpWorld) -> str:
    """An operator of tenant acme (may operate, but not on the default tenant's executions)."""
    w.tokens["olga-acme"] = w.keys.issue("olga-acme", {"operator"}, {"acme"})
    return "olga-acme"


def register(w: HttpWorld, doc: dict[str, Any] = WAITER, who: str = "olga") -> dict[str, Any]:
    response = w.client.post("/api/v1/runbooks", json=doc, headers=w.headers(who))
    assert response.status_code == 201, response.text
    return dict(response.json())


def start(w: HttpWorld, who: str = "olga", runbook_id: str = "ev", **body: Any) -> dict[str, Any]:
    payload = {"runbook_id": runbook_id, "inputs": {"case": "1"}} | body
    response = w.client.post("/api/v1/executions", json=payload, headers=w.headers(who))
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_register_list_and_show_templates(world: HttpWorld) -> None:
    registered = register(world)
    assert (registered["runbook_id"], registered["version"], registered["registered_by"]) == ("ev", "1", "olga")
    again = world.client.post("/api/v1/runbooks", json=WAITER, headers=world.headers("olga"))
    assert again.status_code == 201 and again.json()["content_hash"] == registered["content_hash"]
    changed = WAITER | {"name": "Another name"}
    assert_problem(world.client.post("/api/v1/runbooks", json=changed, headers=world.headers("olga")),
                   409, "RUNBOOK_VERSION_CONFLICT")
    listed = world.client.get("/api/v1/runbooks", headers=world.headers("agent-1")).json()
    assert [t["runbook_id"] for t in listed["items"]] == ["ev"] and listed["next_cursor"] is None
    shown = world.client.get("/api/v1/runbooks/ev", headers=world.headers("aude")).json()
    assert shown["definition"]["steps"][0]["id"] == "wait"
    assert_problem(world.client.get("/api/v1/runbooks/nope", headers=world.headers("aude")), 404, "NOT_FOUND")


def test_an_invalid_runbook_document_is_refused_and_not_stored(sqlite_world: HttpWorld) -> None:
    w = sqlite_world
    bad = WAITER | {"steps": [{"id": "a", "type": "wait-for-event", "depends_on": ["missing"],
                               "config": {"correlation_id": "x", "timeout": "1m"}}]}
    body = assert_problem(w.client.post("/api/v1/runbooks", json=bad, headers=w.headers("olga")),
                          400, "RUNBOOK_INVALID")
    assert "missing" in str(body["detail"])
    assert w.client.get("/api/v1/runbooks", headers=w.headers("olga")).json()["items"] == []


def test_start_waits_for_the_event_then_completes(world: HttpWorld) -> None:
    register(world)
    exe = start(world)
    assert exe["state"] == "awaiting" and exe["initiated_by"] == "olga" and exe["tenant"] == "default"
    assert exe["steps"][0]["state"] == "awaiting_event"
    sent = world.client.post("/api/v1/runbook-events", json={"correlation_id": "case-1", "payload": {"ok": True}},
                             headers=world.headers("olga"))
    assert sent.status_code == 202, sent.text
    ran = world.client.post(f"/api/v1/executions/{exe['id']}/run", headers=world.headers("olga"))
    assert ran.status_code == 200 and ran.json()["state"] == "completed"
    assert ran.json()["steps"][0]["output"] == {"ok": True}
    logs = world.client.get(f"/api/v1/executions/{exe['id']}/logs", headers=world.headers("aude")).json()
    assert logs["items"] and all("message" in line for line in logs["items"])
    evidence = world.client.get(f"/api/v1/executions/{exe['id']}/evidence", headers=world.headers("aude"))
    assert evidence.status_code == 200 and "items" in evidence.json()


def test_start_without_running_leaves_it_pending(sqlite_world: HttpWorld) -> None:
    register(sqlite_world)
    assert start(sqlite_world, run=False)["state"] == "pending"


def test_bad_inputs_are_refused_and_nothing_is_started(world: HttpWorld) -> None:
    register(world)
    response = world.client.post("/api/v1/executions", json={"runbook_id": "ev", "inputs": {"case": 7}},
                                 headers=world.headers("olga"))
    assert_problem(response, 400, "RUNBOOK_INPUT_INVALID")
    response = world.client.post("/api/v1/executions", json={"runbook_id": "ev", "initiated_by": "bob"},
                                 headers=world.headers("olga"))
    assert_problem(response, 422, "REQUEST_INVALID")
    assert world.client.get("/api/v1/executions", headers=world.headers("olga")).json()["items"] == []


def test_pause_resume_cancel_and_replay(world: HttpWorld) -> None:
    register(world)
    exe = start(world)
    url = f"/api/v1/executions/{exe['id']}"
    paused = world.client.post(f"{url}/pause", json={"reason": "look first"}, headers=world.headers("olga"))
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    assert_problem(world.client.post(f"{url}/pause", json={"reason": "again"}, headers=world.headers("olga")),
                   409, "INVALID_TRANSITION")
    resumed = world.client.post(f"{url}/resume", json={}, headers=world.headers("olga"))
    assert resumed.status_code == 200 and resumed.json()["state"] == "awaiting"
    cancelled = world.client.post(f"{url}/cancel", json={"reason": "not needed"}, headers=world.headers("olga"))
    assert cancelled.json()["state"] == "cancelled"
    assert_problem(world.client.post(f"{url}/resume", headers=world.headers("olga")), 409, "INVALID_TRANSITION")
    replay = world.client.post(f"{url}/replay", json={"reason": "again"}, headers=world.headers("olga"))
    assert replay.status_code == 201, replay.text
    assert replay.json()["replay_of"] == exe["id"] and replay.json()["inputs"] == {"case": "1"}


def test_retry_step_of_a_failed_execution_and_409_otherwise(world: HttpWorld) -> None:
    register(world, FAILING)
    exe = start(world, runbook_id="fails", inputs={})
    assert exe["state"] == "failed", exe
    retried = world.client.post(f"/api/v1/executions/{exe['id']}/steps/call/retry", json={"run": False},
                                headers=world.headers("olga"))
    assert retried.status_code == 200 and retried.json()["state"] == "running"
    assert_problem(world.client.post(f"/api/v1/executions/{exe['id']}/steps/call/retry",
                                     headers=world.headers("olga")), 409, "RUNBOOK_STEP_NOT_RETRYABLE")
    assert_problem(world.client.post(f"/api/v1/executions/{exe['id']}/steps/nope/retry",
                                     headers=world.headers("olga")), 404, "NOT_FOUND")


def test_lists_page_with_a_cursor_and_filter(sqlite_world: HttpWorld) -> None:
    w = sqlite_world
    register(w)
    ids = {start(w, inputs={"case": str(i)})["id"] for i in range(3)}
    first = w.client.get("/api/v1/executions?limit=2", headers=w.headers("olga")).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = w.client.get(f"/api/v1/executions?limit=2&cursor={first['next_cursor']}",
                          headers=w.headers("olga")).json()
    assert {e["id"] for e in first["items"] + second["items"]} == ids and second["next_cursor"] is None
    assert w.client.get("/api/v1/executions?state=completed", headers=w.headers("olga")).json()["items"] == []
    assert_problem(w.client.get("/api/v1/executions?state=nonsense", headers=w.headers("olga")),
                   400, "INVALID_INPUT")
    assert_problem(w.client.get("/api/v1/executions?cursor=zzz", headers=w.headers("olga")), 400, "INVALID_INPUT")


def test_another_tenants_execution_is_404_and_not_listed(world: HttpWorld) -> None:
    register(world)
    exe = start(world)
    other = acme_operator(world)
    for method, path in [("GET", ""), ("GET", "/logs"), ("GET", "/evidence"), ("POST", "/pause"),
                         ("POST", "/resume"), ("POST", "/cancel"), ("POST", "/replay"), ("POST", "/run"),
                         ("POST", "/steps/wait/retry")]:
        response = world.client.request(method, f"/api/v1/executions/{exe['id']}{path}",
                                        headers=world.headers(other))
        assert_problem(response, 404, "NOT_FOUND")
    for who in (other, "aude-acme"):
        assert world.client.get("/api/v1/executions", headers=world.headers(who)).json()["items"] == []
        assert world.client.get("/api/v1/executions?tenant=default",
                                headers=world.headers(who)).json()["items"] == []
    # Starting in another tenant is refused; the acme operator's own execution is acme's.
    response = world.client.post("/api/v1/executions", json={"runbook_id": "ev", "inputs": {"case": "1"},
                                                             "tenant": "default"}, headers=world.headers(other))
    assert_problem(response, 403, "INSUFFICIENT_PERMISSIONS")
    assert start(world, other)["tenant"] == "acme"
    unchanged = world.client.get(f"/api/v1/executions/{exe['id']}", headers=world.headers("aude"))
    assert unchanged.status_code == 200 and unchanged.json()["state"] == "awaiting"


@pytest.mark.parametrize(("who", "method", "path", "body"), [
    ("agent-1", "POST", "/api/v1/runbooks", WAITER),
    ("bob", "POST", "/api/v1/executions", {"runbook_id": "ev", "inputs": {"case": "1"}}),
    ("aude", "POST", "/api/v1/executions/{id}/pause", {}),
    ("aude", "POST", "/api/v1/executions/{id}/resume", {}),
    ("agent-1", "POST", "/api/v1/executions/{id}/cancel", {}),
    ("bob", "POST", "/api/v1/executions/{id}/steps/wait/retry", {}),
    ("bob", "POST", "/api/v1/executions/{id}/replay", {}),
    ("aude", "POST", "/api/v1/executions/{id}/run", None),
    ("agent-1", "POST", "/api/v1/runbook-events", {"correlation_id": "case-1"}),
])
def test_readers_may_not_operate(sqlite_world: HttpWorld, who: str, method: str, path: str,
                                 body: dict[str, Any] | None) -> None:
    register(sqlite_world)
    exe = start(sqlite_world)
    response = sqlite_world.client.request(method, path.format(id=exe["id"]), json=body,
                                           headers=sqlite_world.headers(who))
    problem = assert_problem(response, 403, "INSUFFICIENT_PERMISSIONS")
    assert str(problem["required_permission"]).startswith("runbooks:")
    assert sqlite_world.store.actions.list() == []


def test_every_runbook_endpoint_needs_credentials(sqlite_world: HttpWorld) -> None:
    paths = [("GET", "/api/v1/runbooks"), ("POST", "/api/v1/runbooks"), ("GET", "/api/v1/runbooks/ev"),
             ("POST", "/api/v1/executions"), ("GET", "/api/v1/executions"), ("GET", "/api/v1/executions/x"),
             ("POST", "/api/v1/executions/x/pause"), ("POST", "/api/v1/executions/x/resume"),
             ("POST", "/api/v1/executions/x/cancel"), ("POST", "/api/v1/executions/x/steps/s/retry"),
             ("POST", "/api/v1/executions/x/replay"), ("POST", "/api/v1/executions/x/run"),
             ("GET", "/api/v1/executions/x/logs"), ("GET", "/api/v1/executions/x/evidence"),
             ("POST", "/api/v1/runbook-events")]
    for method, path in paths:
        response = sqlite_world.client.request(method, path, json={})
        assert_problem(response, 401, "UNAUTHENTICATED")
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_an_idempotency_key_replays_the_start(sqlite_world: HttpWorld) -> None:
    w = sqlite_world
    register(w)
    headers = w.headers("olga", **{"Idempotency-Key": "start-1"})
    body = {"runbook_id": "ev", "inputs": {"case": "1"}}
    first = w.client.post("/api/v1/executions", json=body, headers=headers)
    again = w.client.post("/api/v1/executions", json=body, headers=headers)
    assert again.headers["idempotent-replayed"] == "true" and again.json()["id"] == first.json()["id"]
    other = w.client.post("/api/v1/executions", json=body | {"inputs": {"case": "2"}}, headers=headers)
    assert_problem(other, 422, "IDEMPOTENCY_KEY_REUSED")
    assert len(w.client.get("/api/v1/executions", headers=w.headers("olga")).json()["items"]) == 1


def test_health_endpoints_of_the_runbook_engine(sqlite_world: HttpWorld) -> None:
    for path in ("/health/live", "/health/ready"):
        assert sqlite_world.client.get(path).status_code == 200
