"""The rest of the seeds' action paths (seed 000 interventions, seed 001 actions) and their /api/v1 equivalents:
execute, rate-limit status, rollback, approve/reject by intervention id, timeout-expired, the audit query."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.http.test_actions_api import assert_problem
from tests.support.http_world import HttpWorld


def approved(w: HttpWorld) -> dict[str, Any]:
    action = w.propose()
    response = w.client.post(f"/api/v1/actions/{action['id']}/approve", json={"code": w.code(action["id"], "bob")},
                             headers=w.headers("bob"))
    assert response.json()["state"] == "approved", response.text
    return action


def test_an_operator_executes_an_approved_action_then_rolls_it_back_the_seed_way(world: HttpWorld) -> None:
    pending = world.propose()
    assert_problem(world.client.post(f"/api/v1/actions/{pending['id']}/execute", headers=world.headers("olga")),
                   409, "INVALID_TRANSITION")
    action = approved(world)
    assert_problem(world.client.post(f"/api/v1/actions/{action['id']}/execute", headers=world.headers("bob")),
                   403, "INSUFFICIENT_PERMISSIONS")
    done = world.client.post(f"/api/v1/actions/{action['id']}/execute", headers=world.headers("olga"))
    assert done.status_code == 200 and done.json()["state"] == "completed", done.text
    assert_problem(world.client.post(f"/api/actions/{action['id']}/rollback",
                                     json={"rolled_back_by": "bob", "reason": "x"}, headers=world.headers("olga")),
                   403, "PERMISSION_DENIED")
    rolled = world.client.post(f"/api/actions/{action['id']}/rollback",
                               json={"rolled_back_by": "olga", "reason": "Incorrect data"},
                               headers=world.headers("olga"))
    assert rolled.status_code == 200 and rolled.json()["state"] == "rolled_back", rolled.text
    assert_problem(world.client.post(f"/api/actions/{action['id']}/rollback", json={"reason": "again"},
                                     headers=world.headers("olga")), 409, "INVALID_TRANSITION")


def test_an_intervention_is_approved_and_rolled_back_by_id(world: HttpWorld) -> None:
    action = world.propose()
    refused = world.client.post("/api/interventions/approve", json={"intervention_id": action["id"]},
                                headers=world.headers("agent-2"))
    assert_problem(refused, 403, "INSUFFICIENT_PERMISSIONS")
    someone_else = world.client.post("/api/interventions/approve",
                                     json={"intervention_id": action["id"], "approved_by": "carol"},
                                     headers=world.headers("bob"))
    assert_problem(someone_else, 403, "PERMISSION_DENIED")
    ok = world.client.post("/api/interventions/approve",
                           json={"intervention_id": action["id"], "code": world.code(action["id"], "bob")},
                           headers=world.headers("bob"))
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"intervention_id": action["id"], "status": "approved", "message": "approval by bob recorded"}
    shown = world.client.get(f"/api/interventions/{action['id']}", headers=world.headers("agent-1"))
    assert shown.json()["state"] == "approved"
    world.store.execution.execute(action["id"])
    rolled = world.client.post(f"/api/interventions/{action['id']}/rollback", json={"reason": "negative outcome"},
                               headers=world.headers("olga"))
    assert rolled.status_code == 200 and rolled.json()["state"] == "rolled_back"
    assert_problem(world.client.post("/api/interventions/approve", json={"intervention_id": "nope"},
                                     headers=world.headers("bob")), 404, "NOT_FOUND")
    assert_problem(world.client.post("/api/interventions/approve", json={}, headers=world.headers("bob")),
                   422, "REQUEST_INVALID")


def test_an_intervention_is_rejected_with_a_reason(sqlite_world: HttpWorld) -> None:
    w = sqlite_world
    action = w.propose()
    response = w.client.post("/api/interventions/reject",
                             json={"intervention_id": action["id"], "reason": "Not now",
                                   "code": w.code(action["id"], "carol")}, headers=w.headers("carol"))
    assert response.status_code == 200 and response.json()["status"] == "rejected"


def test_timeout_expired_resolves_overdue_approvals(world: HttpWorld) -> None:
    action = world.propose()
    assert_problem(world.client.post("/api/interventions/timeout-expired", headers=world.headers("bob")),
                   403, "INSUFFICIENT_PERMISSIONS")
    nothing = world.client.post("/api/interventions/timeout-expired", headers=world.headers("olga")).json()
    assert nothing["resolved"] == 0
    world.clock.advance(timedelta(days=8))
    swept = world.client.post("/api/interventions/timeout-expired", headers=world.headers("olga"))
    assert swept.status_code == 200 and swept.json()["resolved"] == 1, swept.text
    assert world.store.actions.get(action["id"]).state != "pending_approval"


def test_the_audit_query_reads_the_callers_tenant_with_naive_dates_as_utc(world: HttpWorld) -> None:
    action = world.propose()
    other = world.propose("agent-acme", target="emp_9", params={"new_manager_id": "mgr_456"})
    url = "/api/interventions/audit/query?start_date=2000-01-01T00:00:00&end_date=2999-12-31T23:59:59"
    records = world.client.get(url, headers=world.headers("aude-acme")).json()["records"]
    assert records and {r["entity_id"] for r in records if r["entity_type"] == "action"} == {other["id"]}
    mine = world.client.get(f"/api/interventions/audit/query?intervention_id={action['id']}",
                            headers=world.headers("aude")).json()["records"]
    assert mine and {r["entity_id"] for r in mine} == {action["id"]}
    assert world.client.get("/api/interventions/audit/query?employee_id=emp_9",
                            headers=world.headers("aude")).json()["records"] == []
    assert_problem(world.client.get(url, headers=world.headers("bob")), 403, "INSUFFICIENT_PERMISSIONS")
    assert_problem(world.client.get("/api/interventions/audit/query?start_date=soon", headers=world.headers("aude")),
                   422, "REQUEST_INVALID")


def test_another_tenants_intervention_is_404(world: HttpWorld) -> None:
    action = world.propose()
    for method, path, body in [("GET", f"/api/interventions/{action['id']}", None),
                               ("POST", "/api/interventions/approve", {"intervention_id": action["id"]}),
                               ("POST", "/api/interventions/reject", {"intervention_id": action["id"]})]:
        assert_problem(world.client.request(method, path, json=body, headers=world.headers("bob-acme")),
                       404, "NOT_FOUND")
    assert_problem(world.client.get(f"/api/interventions/{action['id']}", headers=world.headers("aude-acme")),
                   404, "NOT_FOUND")
    assert world.store.actions.get(action["id"]).state == "pending_approval"


def test_actions_for_a_user_page_with_limit_and_offset(world: HttpWorld) -> None:
    ids = [world.propose(target="user123", action_type="create_document",
                         params={"path": f"d{i}.txt", "content": "x"})["id"] for i in range(3)]
    world.propose(target="someone_else", action_type="create_document", params={"path": "z.txt", "content": "x"})
    first = world.client.get("/api/actions/user/user123?limit=2&offset=0", headers=world.headers("olga")).json()
    rest = world.client.get("/api/actions/user/user123?limit=2&offset=2", headers=world.headers("olga")).json()
    assert sorted(a["id"] for a in first["items"] + rest["items"]) == sorted(ids)
    assert world.client.get("/api/actions/user/user123", headers=world.headers("agent-acme")).json()["items"] == []


def test_rate_limit_status_counts_the_proposers_accepted_actions(world: HttpWorld) -> None:
    for i in range(2):
        world.propose(target="user123", action_type="create_calendar_event",
                      params={"title": f"e{i}", "start_time": "2024-01-15T10:00:00Z",
                              "end_time": "2024-01-15T11:00:00Z"})
    own = world.client.get("/api/v1/rate-limits/agent-1/create_calendar_event", headers=world.headers("agent-1"))
    assert own.status_code == 200, own.text
    assert [(w["rule"], w["window"], w["current"], w["limit"]) for w in own.json()["rate_limits"]] == [
        ("calendar-rate-limit", "1 day", 2, 100)]
    seed = world.client.get("/api/actions/rate-limits/agent-1/send_email", headers=world.headers("olga")).json()
    assert seed["success"] is True and {w["window"] for w in seed["rate_limits"]} == {"1 hour", "1 day"}
    assert_problem(world.client.get("/api/v1/rate-limits/agent-1/send_email", headers=world.headers("agent-2")),
                   403, "INSUFFICIENT_PERMISSIONS")
    assert_problem(world.client.get("/api/v1/rate-limits/agent-1/send_email", headers=world.headers("bob-acme")),
                   404, "NOT_FOUND")
    assert world.client.get("/api/v1/rate-limits/agent-1/reassign_manager",
                            headers=world.headers("olga")).json()["rate_limits"] == []


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/v1/actions/x/execute"), ("GET", "/api/v1/rate-limits/a/b"), ("POST", "/api/actions/x/rollback"),
    ("GET", "/api/actions/user/u"), ("GET", "/api/actions/rate-limits/u/t"), ("POST", "/api/interventions/approve"),
    ("POST", "/api/interventions/reject"), ("GET", "/api/interventions/x"),
    ("POST", "/api/interventions/timeout-expired"), ("POST", "/api/interventions/x/rollback"),
    ("GET", "/api/interventions/audit/query"),
])
def test_every_alias_needs_credentials(sqlite_world: HttpWorld, method: str, path: str) -> None:
    response = sqlite_world.client.request(method, path, json={})
    assert_problem(response, 401, "UNAUTHENTICATED")


@pytest.mark.parametrize("path", ["/api/v1/actions/{id}/audit", "/api/interventions/audit/query"])
def test_an_audit_cursor_too_large_for_the_database_is_422_not_500(sqlite_world: HttpWorld, path: str) -> None:
    action = sqlite_world.propose()
    response = sqlite_world.client.get(f"{path.format(id=action['id'])}?cursor=99999999999999999999999",
                                       headers=sqlite_world.headers("aude"))
    assert_problem(response, 422, "REQUEST_INVALID")
