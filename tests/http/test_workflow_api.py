"""The workflow layer over HTTP (seed 004): tasks, transitions, plans, SLA, triggers, stats, metadata."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from saferails.cli.common import workflow_roles
from saferails.http import auth
from saferails.identity import Principal as IdentityPrincipal
from saferails.identity import Role
from tests.http.test_actions_api import assert_problem
from tests.support.http_world import HttpWorld

V1 = "/api/v1/workflow"


def task(w: HttpWorld, who: str = "agent-1", **body: Any) -> dict[str, Any]:
    payload = {"title": "Process Application", "task_type": "intake", "priority": "high"} | body
    response = w.client.post(f"{V1}/tasks", json=payload, headers=w.headers(who))
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_create_get_list_and_transition_a_task(world: HttpWorld) -> None:
    created = task(world, assigned_to="bob")
    assert (created["state"], created["created_by"], created["assigned_to"]) == ("new", "agent-1", "bob")
    shown = world.client.get(f"{V1}/tasks/{created['id']}", headers=world.headers("aude")).json()
    assert shown["title"] == "Process Application" and shown["sla"]["target_minutes"] == 60  # seed 004's
    moved = world.client.post(f"{V1}/tasks/{created['id']}/transition",
                              json={"target_state": "in_progress", "notes": "Beginning"},
                              headers=world.headers("bob"))
    assert moved.status_code == 200 and moved.json()["state"] == "in_progress"
    listed = world.client.get(f"{V1}/tasks?state=in_progress&task_type=intake", headers=world.headers("olga"))
    assert [t["id"] for t in listed.json()["items"]] == [created["id"]]
    assert_problem(world.client.post(f"{V1}/tasks/{created['id']}/transition", json={"target_state": "new"},
                                     headers=world.headers("bob")), 409, "INVALID_TRANSITION")
    assert_problem(world.client.get(f"{V1}/tasks/nope", headers=world.headers("bob")), 404, "NOT_FOUND")
    assert_problem(world.client.post(f"{V1}/tasks/nope/transition", json={"target_state": "completed"},
                                     headers=world.headers("olga")), 404, "NOT_FOUND")


def test_a_user_moves_only_its_own_tasks_and_an_operator_any(world: HttpWorld) -> None:
    unassigned = task(world, "agent-1")
    guarded = world.client.post(f"{V1}/tasks/{unassigned['id']}/transition", json={"target_state": "in_progress"},
                                headers=world.headers("agent-1"))
    assert_problem(guarded, 409, "TRANSITION_GUARD_FAILED")
    created = task(world, "agent-1", assigned_to="agent-1")
    refused = world.client.post(f"{V1}/tasks/{created['id']}/transition", json={"target_state": "in_progress"},
                                headers=world.headers("agent-2"))
    assert_problem(refused, 403, "PERMISSION_DENIED")
    moved = world.client.post(f"{V1}/tasks/{created['id']}/transition", json={"target_state": "in_progress"},
                              headers=world.headers("olga"))
    assert moved.status_code == 200


def test_bad_task_bodies_are_422(sqlite_world: HttpWorld) -> None:
    w = sqlite_world
    for body in ({"title": ""}, {"title": "x", "priority": "urgent"}, {"title": "x", "created_by": "bob"},
                 {"title": "x", "due_date": "2026-01-01T10:00:00"}):
        assert_problem(w.client.post(f"{V1}/tasks", json=body, headers=w.headers("agent-1")),
                       422, "REQUEST_INVALID")
    assert w.client.get(f"{V1}/tasks", headers=w.headers("olga")).json()["items"] == []


def test_tasks_page_with_a_cursor(sqlite_world: HttpWorld) -> None:
    w = sqlite_world
    ids = {task(w, title=f"t{i}")["id"] for i in range(3)}
    first = w.client.get(f"{V1}/tasks?limit=2", headers=w.headers("olga")).json()
    second = w.client.get(f"{V1}/tasks?limit=2&cursor={first['next_cursor']}", headers=w.headers("olga")).json()
    assert {t["id"] for t in first["items"] + second["items"]} == ids and second["next_cursor"] is None


def test_action_plans_need_the_agency_role(world: HttpWorld) -> None:
    body = {"title": "Q1 Compliance Plan", "goals": ["Complete all pending assessments"]}
    assert_problem(world.client.post(f"{V1}/action-plans", json=body, headers=world.headers("agent-1")),
                   403, "PERMISSION_DENIED")
    created = world.client.post(f"{V1}/action-plans", json=body, headers=world.headers("olga"))
    assert created.status_code == 201 and created.json()["state"] == "draft"
    plan = created.json()["id"]
    active = world.client.post(f"{V1}/action-plans/{plan}/activate", headers=world.headers("olga"))
    assert active.status_code == 200 and active.json()["state"] == "active"
    assert_problem(world.client.post(f"{V1}/action-plans/{plan}/activate", headers=world.headers("olga")),
                   409, "INVALID_TRANSITION")
    archived = world.client.post(f"{V1}/action-plans/{plan}/archive", headers=world.headers("olga"))
    assert archived.json()["state"] == "archived"
    listed = world.client.get(f"{V1}/action-plans?state=archived", headers=world.headers("aude")).json()
    assert [p["id"] for p in listed["items"]] == [plan]
    assert world.client.get(f"{V1}/action-plans/{plan}", headers=world.headers("aude")).json()["goals"] == [
        "Complete all pending assessments"]
    assert_problem(world.client.get(f"{V1}/action-plans/nope", headers=world.headers("aude")), 404, "NOT_FOUND")


def test_sla_configs_records_breaches_and_the_sweep(world: HttpWorld) -> None:
    config = {"service_area": "audit", "target_minutes": 30, "task_type": "audit", "active": True}
    assert_problem(world.client.post(f"{V1}/sla-configs", json=config, headers=world.headers("agent-1")),
                   403, "PERMISSION_DENIED")
    created = world.client.post(f"{V1}/sla-configs", json=config, headers=world.headers("olga"))
    assert created.status_code == 201, created.text
    again = world.client.post(f"{V1}/sla-configs", json=config, headers=world.headers("olga"))
    assert again.status_code == 200 and again.json()["id"] == created.json()["id"]
    assert_problem(world.client.post(f"{V1}/sla-configs", json=config | {"target_minutes": 45},
                                     headers=world.headers("olga")), 400, "INVALID_INPUT")
    overdue = task(world, task_type="audit")
    assert world.client.get(f"{V1}/tasks/{overdue['id']}", headers=world.headers("olga")).json()["sla"][
        "target_minutes"] == 30
    world.clock.advance(timedelta(minutes=31))
    assert_problem(world.client.post(f"{V1}/sla/sweep", headers=world.headers("agent-1")),
                   403, "INSUFFICIENT_PERMISSIONS")
    swept = world.client.post(f"{V1}/sla/sweep", headers=world.headers("olga"))
    assert [b["task_id"] for b in swept.json()["breaches"]] == [overdue["id"]]
    breaches = world.client.get(f"{V1}/sla/breaches?open_only=true", headers=world.headers("aude")).json()
    assert [b["task_id"] for b in breaches["items"]] == [overdue["id"]]
    patched = world.client.patch(f"{V1}/sla-configs/{created.json()['id']}", json={"active": False},
                                 headers=world.headers("olga"))
    assert patched.status_code == 200 and patched.json()["active"] is False
    listed = world.client.get(f"{V1}/sla-configs?active_only=true", headers=world.headers("aude")).json()
    assert created.json()["id"] not in [c["id"] for c in listed["items"]] and listed["items"]
    assert world.client.delete(f"{V1}/sla-configs/{created.json()['id']}",
                               headers=world.headers("olga")).status_code == 204
    assert_problem(world.client.delete(f"{V1}/sla-configs/{created.json()['id']}", headers=world.headers("olga")),
                   404, "NOT_FOUND")


def test_triggers_are_managed_by_agency_and_validated(world: HttpWorld) -> None:
    trigger = {"id": "escalate-blocked", "event_type": "TaskStateChanged",
               "predicate": {"field": "payload.to_state", "operator": "eq", "value": "blocked"},
               "actions": [{"type": "emit_alert", "alert_type": "task_blocked", "message": "blocked"}]}
    assert_problem(world.client.post(f"{V1}/triggers", json=trigger, headers=world.headers("bob")),
                   403, "PERMISSION_DENIED")
    created = world.client.post(f"{V1}/triggers", json=trigger, headers=world.headers("olga"))
    assert created.status_code == 201, created.text
    bad = trigger | {"id": "bad", "actions": [{"type": "launch_rocket"}]}
    response = world.client.post(f"{V1}/triggers", json=bad, headers=world.headers("olga"))
    assert response.status_code in (400, 422) and response.json()["code"] in ("INVALID_INPUT", "CONDITION_INVALID")
    disabled = world.client.patch(f"{V1}/triggers/escalate-blocked", json={"active": False},
                                  headers=world.headers("olga"))
    assert disabled.status_code == 200 and disabled.json()["active"] is False
    listed = world.client.get(f"{V1}/triggers", headers=world.headers("aude")).json()["items"]
    assert "escalate-blocked" in [t["id"] for t in listed]  # beside seed 004's two built-in triggers
    assert world.client.delete(f"{V1}/triggers/escalate-blocked", headers=world.headers("olga")).status_code == 204
    assert_problem(world.client.patch(f"{V1}/triggers/escalate-blocked", json={"active": True},
                                      headers=world.headers("olga")), 404, "NOT_FOUND")


def test_stats_need_view_stats_and_metadata_describes_the_machines(world: HttpWorld) -> None:
    task(world)
    assert_problem(world.client.get(f"{V1}/stats", headers=world.headers("agent-1")), 403, "PERMISSION_DENIED")
    stats = world.client.get(f"{V1}/stats", headers=world.headers("olga"))
    assert stats.status_code == 200, stats.text
    meta = world.client.get(f"{V1}/metadata", headers=world.headers("agent-1")).json()
    assert set(meta["state_machines"]) == {"task", "action_plan"}


def test_another_tenant_sees_no_workflow_object(world: HttpWorld) -> None:
    created = task(world)
    other = "aude-acme"
    assert_problem(world.client.get(f"{V1}/tasks/{created['id']}", headers=world.headers(other)), 404, "NOT_FOUND")
    assert world.client.get(f"{V1}/tasks", headers=world.headers(other)).json()["items"] == []
    assert_problem(world.client.post(f"{V1}/tasks/{created['id']}/transition", json={"target_state": "cancelled"},
                                     headers=world.headers("agent-acme")), 404, "NOT_FOUND")
    assert_problem(world.client.post(f"{V1}/tasks", json={"title": "x"}, headers=world.headers("agent-acme")),
                   403, "INSUFFICIENT_PERMISSIONS")
    assert_problem(world.client.get(f"{V1}/metadata", headers=world.headers(other)), 404, "NOT_FOUND")
    assert world.store.workflow.get_task(created["id"]).state == "new"


@pytest.mark.parametrize("path", [f"{V1}/tasks", "/api/workflow/tasks", f"{V1}/tasks/x", f"{V1}/action-plans",
                                  f"{V1}/sla-configs", f"{V1}/sla/breaches", f"{V1}/triggers", f"{V1}/stats",
                                  f"{V1}/metadata", "/api/workflow/metadata"])
def test_workflow_reads_need_credentials(sqlite_world: HttpWorld, path: str) -> None:
    response = sqlite_world.client.get(path)
    assert_problem(response, 401, "UNAUTHENTICATED")


def test_a_post_with_an_idempotency_key_creates_one_task(sqlite_world: HttpWorld) -> None:
    w = sqlite_world
    headers = w.headers("agent-1", **{"Idempotency-Key": "task-1"})
    first = w.client.post(f"{V1}/tasks", json={"title": "once"}, headers=headers)
    again = w.client.post(f"{V1}/tasks", json={"title": "once"}, headers=headers)
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
    assert_problem(w.client.post(f"{V1}/tasks", json={"title": "twice"}, headers=headers),
                   422, "IDEMPOTENCY_KEY_REUSED")
    assert len(w.store.workflow.list_tasks()) == 1


def test_http_workflow_roles_match_the_clis_for_every_identity_role() -> None:
    for role in Role:
        principal = auth.Principal("p", frozenset({role.value}), frozenset({"default"}))
        over_http = {name for permission, name in auth.WORKFLOW_ROLES.items() if principal.can(permission)}
        assert over_http == set(workflow_roles(IdentityPrincipal("p", frozenset({role})))), role
