"""The action endpoints over a real store, on SQLite and PostgreSQL: what a client of the API sees."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest

from tests.support.http_world import HttpWorld

PROBLEM = "application/problem+json"


def assert_problem(response: object, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == PROBLEM  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"] == f"urn:saferails:error:{code}"
    assert body["title"] and body["detail"] and body["request_id"]
    return dict(body)


# --- proposing ------------------------------------------------------------------------------------------------


def test_an_agent_proposes_and_is_recorded_as_the_proposer(world: HttpWorld) -> None:
    action = world.propose("agent-1")
    assert action["state"] == "pending_approval"
    assert action["proposer"] == "agent-1"
    assert action["impact"] == "high"
    assert world.store.actions.get(action["id"]).proposer == "agent-1"


def test_a_proposer_named_in_the_body_is_refused_not_trusted(world: HttpWorld) -> None:
    response = world.client.post(
        "/api/v1/actions",
        json={"action_type": "reassign_manager", "target": "emp_123", "params": {"new_manager_id": "mgr_456"},
              "proposer": "bob"},
        headers=world.headers("agent-1"),
    )
    body = assert_problem(response, 422, "REQUEST_INVALID")
    errors = cast(list[dict[str, Any]], body["errors"])
    assert ["body", "proposer"] in [e["loc"] for e in errors]
    assert world.store.actions.list() == []


def test_unknown_action_types_and_bad_params_are_422_and_write_nothing(world: HttpWorld) -> None:
    unknown = world.client.post("/api/v1/actions", json={"action_type": "launch_rocket", "target": "moon"},
                                headers=world.headers("agent-1"))
    assert_problem(unknown, 422, "UNKNOWN_ACTION_TYPE")
    bad = world.client.post("/api/v1/actions", json={"action_type": "reassign_manager", "target": "emp_123",
                                                     "params": {"manager": 1}}, headers=world.headers("agent-1"))
    assert_problem(bad, 422, "INVALID_PARAMS")
    assert world.store.actions.list() == []


def test_a_policy_refusal_is_403_and_names_the_recorded_action(world: HttpWorld) -> None:
    response = world.client.post(
        "/api/v1/actions",
        json={"action_type": "make_payment", "target": "acct_1",
              "params": {"amount": "10.00", "currency": "EUR", "payee": "vendor"}},
        headers=world.headers("agent-1"),
    )
    body = assert_problem(response, 403, "ACTION_BLOCKED")
    assert world.store.actions.get(str(body["action_id"])).state == "blocked"


# --- authentication and permissions ---------------------------------------------------------------------------

ENDPOINTS = [
    ("POST", "/api/v1/actions", {"action_type": "reassign_manager", "target": "emp_123"}),
    ("GET", "/api/v1/actions", None),
    ("GET", "/api/v1/actions/pending", None),
    ("GET", "/api/v1/actions/{id}", None),
    ("POST", "/api/v1/actions/{id}/approve", {}),
    ("POST", "/api/v1/actions/{id}/reject", {}),
    ("POST", "/api/v1/actions/{id}/cancel", {}),
    ("POST", "/api/v1/actions/{id}/rollback", {}),
    ("GET", "/api/v1/actions/{id}/audit", None),
    ("POST", "/api/v1/policy/check", {"action_type": "reassign_manager", "target": "emp_123"}),
    ("POST", "/api/actions", {"user_id": "u", "action_type": "create_document"}),
    ("GET", "/api/actions/{id}", None),
    ("GET", "/api/actions/{id}/audit", None),
    ("POST", "/api/actions/{id}/approve", {}),
    ("POST", "/api/actions/{id}/reject", {}),
    ("POST", "/api/interventions/propose", {"intervention_type": "role_change", "target_employee_id": "e"}),
]


@pytest.mark.parametrize("credentials", [None, "Bearer sr_not-a-key", "Basic Ym9iOnB3"], ids=["none", "bad", "basic"])
def test_every_endpoint_answers_401_with_www_authenticate_without_valid_credentials(
    sqlite_world: HttpWorld, credentials: str | None
) -> None:
    action = sqlite_world.propose()
    headers = {} if credentials is None else {"Authorization": credentials}
    for method, path, body in ENDPOINTS:
        response = sqlite_world.client.request(method, path.format(id=action["id"]), json=body, headers=headers)
        assert_problem(response, 401, "UNAUTHENTICATED")
        assert response.headers["www-authenticate"].startswith("Bearer"), path
    assert sqlite_world.store.actions.get(action["id"]).state == "pending_approval"


def test_a_revoked_key_stops_working(sqlite_world: HttpWorld) -> None:
    assert sqlite_world.client.get("/api/v1/actions", headers=sqlite_world.headers("bob")).status_code == 200
    sqlite_world.keys.revoke(sqlite_world.tokens["bob"])
    assert_problem(sqlite_world.client.get("/api/v1/actions", headers=sqlite_world.headers("bob")),
                   401, "UNAUTHENTICATED")


@pytest.mark.parametrize(
    ("who", "method", "path", "body", "permission"),
    [
        ("aude", "POST", "/api/v1/actions", {"action_type": "reassign_manager", "target": "emp_123",
                                             "params": {"new_manager_id": "mgr_456"}}, "actions:propose"),
        ("agent-2", "POST", "/api/v1/actions/{id}/approve", {"code": "X"}, "actions:decide"),
        ("olga", "POST", "/api/v1/actions/{id}/reject", {"reason": "no"}, "actions:decide"),
        ("bob", "POST", "/api/v1/actions/{id}/rollback", {"reason": "undo"}, "actions:rollback"),
        ("bob", "GET", "/api/v1/actions/{id}/audit", None, "audit:read"),
        ("bob", "POST", "/api/v1/actions/{id}/cancel", {"reason": "no"}, "actions:cancel_own"),
        ("aude", "POST", "/api/v1/policy/check", {"action_type": "reassign_manager", "target": "emp_123"},
         "policy:check"),
    ],
    ids=["auditor-proposes", "agent-approves", "operator-rejects", "approver-rolls-back", "approver-reads-audit",
         "approver-cancels", "auditor-checks-policy"],
)
def test_a_missing_permission_is_403_with_the_playbook_fields(
    world: HttpWorld, who: str, method: str, path: str, body: object, permission: str
) -> None:
    action = world.propose("agent-1")
    response = world.client.request(method, path.format(id=action["id"]), json=body, headers=world.headers(who))
    problem = assert_problem(response, 403, "INSUFFICIENT_PERMISSIONS")
    assert problem["required_permission"] == permission
    assert problem["user_role"] == next(iter(world.keys.authenticate(world.tokens[who]).roles))
    assert problem["message"] == problem["detail"]
    assert world.store.actions.get(action["id"]).state == "pending_approval"


# --- tenants and ownership ------------------------------------------------------------------------------------


def test_another_tenants_action_is_404_on_every_route_never_403(world: HttpWorld) -> None:
    acme = world.propose("agent-acme")
    assert acme["tenant"] == "acme"
    routes = [
        ("GET", f"/api/v1/actions/{acme['id']}", None, "bob"),
        ("GET", f"/api/actions/{acme['id']}", None, "bob"),
        ("POST", f"/api/v1/actions/{acme['id']}/approve", {"code": world.code(acme["id"], "bob-acme")}, "bob"),
        ("POST", f"/api/v1/actions/{acme['id']}/reject", {"reason": "x"}, "bob"),
        ("POST", f"/api/v1/actions/{acme['id']}/cancel", {"reason": "x"}, "olga"),
        ("GET", f"/api/v1/actions/{acme['id']}/audit", None, "aude"),
    ]
    for method, path, body, who in routes:
        assert_problem(world.client.request(method, path, json=body, headers=world.headers(who)), 404, "NOT_FOUND")
    listed = world.client.get("/api/v1/actions", headers=world.headers("bob")).json()["items"]
    assert acme["id"] not in [a["id"] for a in listed]
    assert world.client.get("/api/v1/actions?tenant=acme", headers=world.headers("bob")).json()["items"] == []
    # The same requests by the right tenant's principals work.
    assert world.client.get(f"/api/v1/actions/{acme['id']}", headers=world.headers("bob-acme")).status_code == 200
    assert world.client.get(f"/api/v1/actions/{acme['id']}/audit",
                            headers=world.headers("aude-acme")).status_code == 200
    assert world.store.actions.get(acme["id"]).state == "pending_approval"


def test_proposing_into_a_tenant_you_do_not_belong_to_is_refused(world: HttpWorld) -> None:
    response = world.client.post("/api/v1/actions", json={"action_type": "reassign_manager", "target": "emp_123",
                                                           "params": {"new_manager_id": "mgr_456"},
                                                           "tenant": "acme"}, headers=world.headers("agent-1"))
    problem = assert_problem(response, 403, "INSUFFICIENT_PERMISSIONS")
    assert problem["required_permission"] == "tenant:acme"
    assert world.store.actions.list() == []


def test_an_agent_reads_only_its_own_actions(world: HttpWorld) -> None:
    mine = world.propose("agent-1")
    theirs = world.propose("agent-2", target="mgr_old", params={"new_manager_id": "mgr_456"})
    assert world.client.get(f"/api/v1/actions/{mine['id']}", headers=world.headers("agent-1")).status_code == 200
    assert_problem(world.client.get(f"/api/v1/actions/{theirs['id']}", headers=world.headers("agent-1")),
                   404, "NOT_FOUND")
    listed = world.client.get("/api/v1/actions", headers=world.headers("agent-1")).json()["items"]
    assert [a["id"] for a in listed] == [mine["id"]]
    snooping = world.client.get("/api/v1/actions?proposer=agent-2", headers=world.headers("agent-1")).json()
    assert snooping["items"] == []


def test_an_unknown_action_is_404(world: HttpWorld) -> None:
    assert_problem(world.client.get("/api/v1/actions/nope", headers=world.headers("bob")), 404, "NOT_FOUND")


# --- deciding -------------------------------------------------------------------------------------------------


def test_an_approver_approves_with_the_one_time_code_and_the_audit_trail_says_who(world: HttpWorld) -> None:
    action = world.propose()
    no_code = world.client.post(f"/api/v1/actions/{action['id']}/approve", json={"reason": "fine"},
                                headers=world.headers("bob"))
    problem = assert_problem(no_code, 403, "APPROVAL_CODE_INVALID")
    assert "internal_reason" not in problem
    ok = world.client.post(f"/api/v1/actions/{action['id']}/approve",
                           json={"reason": "fine", "code": world.code(action["id"], "bob")},
                           headers=world.headers("bob"))
    assert ok.status_code == 200, ok.text
    assert ok.json()["state"] == "approved"
    assert [(a["approver"], a["channel"]) for a in ok.json()["approvals"]] == [("bob", "api")]
    again = world.client.post(f"/api/v1/actions/{action['id']}/approve",
                              json={"code": world.code(action["id"], "carol")}, headers=world.headers("carol"))
    assert_problem(again, 409, "INVALID_TRANSITION")
    audit = world.client.get(f"/api/v1/actions/{action['id']}/audit", headers=world.headers("aude")).json()
    approved = [r for r in audit["records"] if r["event"] == "approved"]
    assert approved[0]["actor"] == "bob"
    assert approved[0]["details"]["reason"] == "fine"


def test_a_code_issued_to_another_approver_does_not_work(world: HttpWorld) -> None:
    action = world.propose()
    response = world.client.post(f"/api/v1/actions/{action['id']}/approve",
                                 json={"code": world.code(action["id"], "carol")}, headers=world.headers("bob"))
    assert_problem(response, 403, "APPROVAL_CODE_INVALID")
    assert world.store.actions.get(action["id"]).state == "pending_approval"


def test_the_proposer_cannot_approve_its_own_action(world: HttpWorld) -> None:
    action = world.propose("dual")
    response = world.client.post(f"/api/v1/actions/{action['id']}/approve", json={"code": "0000-0000-0000"},
                                 headers=world.headers("dual"))
    assert_problem(response, 403, "SELF_APPROVAL_REFUSED")


def test_a_stale_action_hash_is_refused(world: HttpWorld) -> None:
    action = world.propose()
    response = world.client.post(f"/api/v1/actions/{action['id']}/approve",
                                 json={"code": world.code(action["id"], "bob"), "action_hash": "0" * 64},
                                 headers=world.headers("bob"))
    assert_problem(response, 403, "ACTION_CHANGED")


def test_an_expired_request_cannot_be_approved(world: HttpWorld) -> None:
    action = world.propose()
    world.clock.advance(timedelta(hours=25))
    response = world.client.post(f"/api/v1/actions/{action['id']}/approve",
                                 json={"code": world.code(action["id"], "bob")}, headers=world.headers("bob"))
    assert_problem(response, 410, "APPROVAL_EXPIRED")


def test_one_rejection_ends_the_request_with_its_reason(world: HttpWorld) -> None:
    action = world.propose()
    response = world.client.post(f"/api/v1/actions/{action['id']}/reject",
                                 json={"reason": "not now", "code": world.code(action["id"], "carol")},
                                 headers=world.headers("carol"))
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "rejected"
    assert response.json()["approvals"][0]["reason"] == "not now"


# --- cancel, rollback, audit, policy check ----------------------------------------------------------------------


def test_an_agent_cancels_its_own_proposal_but_not_another_agents(world: HttpWorld) -> None:
    mine = world.propose("agent-1")
    theirs = world.propose("agent-2", target="mgr_old")
    assert_problem(world.client.post(f"/api/v1/actions/{theirs['id']}/cancel", json={"reason": "x"},
                                     headers=world.headers("agent-1")), 404, "NOT_FOUND")
    ok = world.client.post(f"/api/v1/actions/{mine['id']}/cancel", json={"reason": "changed my mind"},
                           headers=world.headers("agent-1"))
    assert ok.status_code == 200 and ok.json()["state"] == "cancelled"
    assert_problem(world.client.post(f"/api/v1/actions/{mine['id']}/cancel", headers=world.headers("agent-1")),
                   409, "INVALID_TRANSITION")
    by_operator = world.client.post(f"/api/v1/actions/{theirs['id']}/cancel", headers=world.headers("olga"))
    assert by_operator.status_code == 200 and by_operator.json()["state"] == "cancelled"


def test_an_operator_rolls_back_an_executed_action(world: HttpWorld) -> None:
    action = world.propose()
    world.client.post(f"/api/v1/actions/{action['id']}/approve", json={"code": world.code(action["id"], "bob")},
                      headers=world.headers("bob"))
    not_yet = world.client.post(f"/api/v1/actions/{action['id']}/rollback", json={"reason": "undo"},
                                headers=world.headers("olga"))
    assert_problem(not_yet, 409, "INVALID_TRANSITION")
    assert world.store.execution.execute(action["id"]).state == "completed"
    response = world.client.post(f"/api/v1/actions/{action['id']}/rollback", json={"reason": "wrong manager"},
                                 headers=world.headers("olga"))
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "rolled_back"
    events = [r["event"] for r in world.client.get(f"/api/v1/actions/{action['id']}/audit",
                                                   headers=world.headers("aude")).json()["records"]]
    assert events[-2:] == ["rollback_started", "rolled_back"]


def test_the_audit_trail_pages_with_a_cursor(world: HttpWorld) -> None:
    action = world.propose()
    first = world.client.get(f"/api/v1/actions/{action['id']}/audit?limit=2", headers=world.headers("aude")).json()
    assert len(first["records"]) == 2 and first["next_cursor"] is not None
    rest = world.client.get(f"/api/v1/actions/{action['id']}/audit?limit=100&cursor={first['next_cursor']}",
                            headers=world.headers("aude")).json()
    sequences = [r["sequence"] for r in first["records"] + rest["records"]]
    assert sequences == sorted(set(sequences)) and len(sequences) >= 3
    assert rest["next_cursor"] is None


def test_policy_check_is_a_dry_run_that_writes_nothing(world: HttpWorld) -> None:
    response = world.client.post("/api/v1/policy/check", json={"action_type": "make_payment", "target": "acct_1",
                                                               "params": {"amount": "5", "currency": "EUR",
                                                                          "payee": "x"}},
                                 headers=world.headers("agent-1"))
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "deny"
    assert response.json()["code"] == "ACTION_BLOCKED"
    high = world.client.post("/api/v1/policy/check", json={"action_type": "reassign_manager", "target": "emp_123",
                                                           "params": {"new_manager_id": "mgr_456"}},
                             headers=world.headers("agent-1")).json()
    assert high["outcome"] == "needs_approval"
    assert world.store.actions.list() == []


# --- listing ----------------------------------------------------------------------------------------------------


def test_listing_filters_and_pages_with_an_opaque_cursor(world: HttpWorld) -> None:
    ids = {world.propose(target=t)["id"] for t in ("emp_123", "mgr_old", "mgr_456", "emp_123", "mgr_old")}
    world.propose(action_type="create_document", target="notes", params={"path": "a.txt", "content": "x"})
    seen: list[str] = []
    url = "/api/v1/actions?state=pending_approval&limit=2"
    while url:
        page = world.client.get(url, headers=world.headers("bob")).json()
        assert len(page["items"]) <= 2
        seen += [a["id"] for a in page["items"]]
        url = page["next_cursor"] and f"/api/v1/actions?state=pending_approval&limit=2&cursor={page['next_cursor']}"
    assert sorted(seen) == sorted(ids)
    by_target = world.client.get("/api/v1/actions?target=mgr_old", headers=world.headers("bob")).json()["items"]
    assert len(by_target) == 2 and {a["target"] for a in by_target} == {"mgr_old"}
    pending = world.client.get("/api/v1/actions/pending", headers=world.headers("bob")).json()["items"]
    assert sorted(a["id"] for a in pending) == sorted(ids)
    assert_problem(world.client.get("/api/v1/actions?cursor=%%%", headers=world.headers("bob")), 400,
                   "INVALID_INPUT")
    assert_problem(world.client.get("/api/v1/actions?limit=0", headers=world.headers("bob")), 422,
                   "REQUEST_INVALID")


def test_health_needs_no_credentials(world: HttpWorld) -> None:
    for path in ("/api/v1/health/live", "/health/live", "/api/v1/health/ready", "/health/ready"):
        response = world.client.get(path)
        assert response.status_code == 200, path
        assert response.json()["status"] in ("ok", "ready")
