"""Behaviour every route shares: idempotency keys, problem details, request ids, the body size limit, the
last-resort 500, OpenAPI."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from saferails.http import Principal, create_app
from tests.http.test_actions_api import PROBLEM, assert_problem
from tests.support.http_world import BASE, HttpWorld

PROPOSAL = {"action_type": "reassign_manager", "target": "emp_123", "params": {"new_manager_id": "mgr_456"},
            "reason": "Improve team dynamics"}


# --- Idempotency-Key ----------------------------------------------------------------------------------------------


def test_a_retried_proposal_with_the_same_key_replays_the_first_response(world: HttpWorld) -> None:
    headers = world.headers("agent-1", **{"Idempotency-Key": "k-1"})
    first = world.client.post("/api/v1/actions", json=PROPOSAL, headers=headers)
    again = world.client.post("/api/v1/actions", json=PROPOSAL, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(world.store.actions.list()) == 1


def test_the_same_key_with_another_body_is_refused(world: HttpWorld) -> None:
    headers = world.headers("agent-1", **{"Idempotency-Key": "k-2"})
    world.client.post("/api/v1/actions", json=PROPOSAL, headers=headers)
    other = world.client.post("/api/v1/actions", json=PROPOSAL | {"target": "mgr_old"}, headers=headers)
    assert_problem(other, 422, "IDEMPOTENCY_KEY_REUSED")
    assert len(world.store.actions.list()) == 1


def test_proposal_keys_hold_across_processes_because_the_store_keeps_them(world: HttpWorld) -> None:
    headers = world.headers("agent-1", **{"Idempotency-Key": "k-3"})
    first = world.client.post("/api/v1/actions", json=PROPOSAL, headers=headers).json()
    # Another worker: a new app (its own in-process cache) over the same store.
    other = TestClient(create_app(world.store, world.keys), base_url=BASE)
    again = other.post("/api/v1/actions", json=PROPOSAL, headers=headers)
    assert again.status_code == 201 and again.json()["id"] == first["id"]

    def fresh_worker() -> TestClient:
        return TestClient(create_app(world.store, world.keys), base_url=BASE)

    # Workers that never saw the key: the store refuses a different proposal under it.
    assert_problem(fresh_worker().post("/api/v1/actions", json=PROPOSAL | {"reason": "something else"},
                                       headers=headers), 422, "IDEMPOTENCY_KEY_REUSED")
    assert_problem(fresh_worker().post("/api/v1/actions", json=PROPOSAL | {"params": {"new_manager_id": "mgr_old"}},
                                       headers=headers), 409, "IDEMPOTENCY_CONFLICT")
    assert len(world.store.actions.list()) == 1


def test_keys_are_per_caller(world: HttpWorld) -> None:
    mine = world.client.post("/api/v1/actions", json=PROPOSAL,
                             headers=world.headers("agent-1", **{"Idempotency-Key": "same"})).json()
    theirs = world.client.post("/api/v1/actions", json=PROPOSAL,
                               headers=world.headers("agent-2", **{"Idempotency-Key": "same"})).json()
    assert mine["id"] != theirs["id"]
    assert theirs["proposer"] == "agent-2"


def test_a_retried_approval_replays_instead_of_failing_on_the_spent_code(sqlite_world: HttpWorld) -> None:
    w = sqlite_world
    action = w.propose()
    body = {"code": w.code(action["id"], "bob"), "reason": "ok"}
    headers = w.headers("bob", **{"Idempotency-Key": "approve-1"})
    first = w.client.post(f"/api/v1/actions/{action['id']}/approve", json=body, headers=headers)
    again = w.client.post(f"/api/v1/actions/{action['id']}/approve", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.json()["state"] == "approved"
    without_key = w.client.post(f"/api/v1/actions/{action['id']}/approve", json=body, headers=w.headers("bob"))
    assert_problem(without_key, 409, "INVALID_TRANSITION")
    assert_problem(w.client.post(f"/api/v1/actions/{action['id']}/approve", json=body | {"reason": "other"},
                                 headers=headers), 422, "IDEMPOTENCY_KEY_REUSED")


def test_a_malformed_key_is_refused(sqlite_world: HttpWorld) -> None:
    response = sqlite_world.client.post("/api/v1/actions", json=PROPOSAL,
                                        headers=sqlite_world.headers("agent-1", **{"Idempotency-Key": "x" * 201}))
    assert_problem(response, 400, "INVALID_INPUT")
    assert sqlite_world.store.actions.list() == []


# --- problem details, request ids, limits --------------------------------------------------------------------------


def test_a_request_id_is_echoed_or_made_and_appears_in_problems(sqlite_world: HttpWorld) -> None:
    given = sqlite_world.client.get("/api/v1/health/live", headers={"X-Request-ID": "trace-42"})
    assert given.headers["x-request-id"] == "trace-42"
    made = sqlite_world.client.get("/api/v1/health/live", headers={"X-Request-ID": "bad id\twith spaces"})
    assert made.headers["x-request-id"] not in ("", "bad id\twith spaces")
    problem = sqlite_world.client.get("/api/v1/actions/nope", headers=sqlite_world.headers("bob", **{
        "X-Request-ID": "trace-43"}))
    assert problem.headers["x-request-id"] == "trace-43"
    assert problem.json()["request_id"] == "trace-43"
    assert problem.json()["instance"] == "/api/v1/actions/nope"


def test_the_access_log_ties_the_request_id_to_the_principal(sqlite_world: HttpWorld,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="saferails.http.access"):
        sqlite_world.client.get("/api/v1/actions", headers=sqlite_world.headers("bob", **{"X-Request-ID": "t-7"}))
    assert any(r.getMessage() == "t-7 GET /api/v1/actions principal=bob status=200" for r in caplog.records)


def test_unknown_routes_and_methods_are_problems_too(sqlite_world: HttpWorld) -> None:
    assert_problem(sqlite_world.client.get("/api/v1/nothing-here"), 404, "NOT_FOUND")
    assert_problem(sqlite_world.client.delete("/api/v1/actions", headers=sqlite_world.headers("bob")), 405,
                   "METHOD_NOT_ALLOWED")
    broken = sqlite_world.client.post("/api/v1/actions", content=b"{not json",
                                      headers=sqlite_world.headers("agent-1", **{"Content-Type": "application/json"}))
    assert_problem(broken, 422, "REQUEST_INVALID")


def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(tmp_path: Path, sqlite_db: object,
                                                                   clock: object) -> None:
    from tests.support.http_world import open_world

    w = open_world(sqlite_db.url, tmp_path, clock, max_body_bytes=2048)  # type: ignore[attr-defined,arg-type]
    try:
        big = PROPOSAL | {"reason": "x" * 4096}
        assert_problem(w.client.post("/api/v1/actions", json=big, headers=w.headers("agent-1")),
                       413, "PAYLOAD_TOO_LARGE")

        def chunks() -> Iterator[bytes]:
            yield b'{"action_type": "reassign_manager", "target": "emp_123", "reason": "'
            for _ in range(8):
                yield b"y" * 512
            yield b'"}'

        streamed = w.client.post("/api/v1/actions", content=chunks(),
                                 headers=w.headers("agent-1", **{"Content-Type": "application/json"}))
        assert_problem(streamed, 413, "PAYLOAD_TOO_LARGE")
        assert w.store.actions.list() == []
        assert w.client.post("/api/v1/actions", json=PROPOSAL, headers=w.headers("agent-1")).status_code == 201
    finally:
        w.client.close()
        w.store.close()


class _BrokenAuthenticator:
    def authenticate(self, token: str) -> Principal:
        raise RuntimeError(f"connection to postgresql://admin:hunter2@db failed for {token}")


def test_an_unexpected_exception_is_a_500_problem_that_shows_no_internals(sqlite_world: HttpWorld) -> None:
    client = TestClient(create_app(sqlite_world.store, _BrokenAuthenticator()), base_url=BASE,
                        raise_server_exceptions=False)
    response = client.get("/api/v1/actions", headers={"Authorization": "Bearer abc", "X-Request-ID": "r-500"})
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["x-request-id"] == "r-500"
    body = response.json()
    assert body["code"] == "INTERNAL_ERROR" and body["request_id"] == "r-500"
    assert "hunter2" not in response.text and "Traceback" not in response.text and "RuntimeError" not in response.text


def test_openapi_and_docs_describe_the_api(sqlite_world: HttpWorld) -> None:
    spec = sqlite_world.client.get("/openapi.json").json()
    for path in ("/api/v1/actions", "/api/v1/actions/{action_id}/approve", "/api/v1/actions/{action_id}/audit",
                 "/api/v1/policy/check", "/api/v1/health/ready", "/api/actions", "/api/interventions/propose"):
        assert path in spec["paths"], path
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "proposer" not in spec["components"]["schemas"]["ProposalIn"]["properties"]
    docs = sqlite_world.client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


ONE_DOCUMENT_PER_HOUR = """
version: "test-rate"
rules:
  - id: one-document-per-hour
    kind: rate_limit
    action_types: [create_document]
    limits: {per_hour: 1}
"""


def test_a_rate_limited_proposal_is_429_with_retry_after(tmp_path: Path, sqlite_db: object, clock: object) -> None:
    from saferails.policy import load_policy_text
    from tests.support.http_world import open_world

    w = open_world(sqlite_db.url, tmp_path, clock,  # type: ignore[attr-defined,arg-type]
                   policy=load_policy_text(ONE_DOCUMENT_PER_HOUR))
    try:
        doc = {"action_type": "create_document", "target": "notes", "params": {"path": "a.txt", "content": "x"}}
        assert w.client.post("/api/v1/actions", json=doc, headers=w.headers("agent-1")).status_code == 201
        second = w.client.post("/api/v1/actions", json=doc, headers=w.headers("agent-1"))
        problem = assert_problem(second, 429, "RATE_LIMITED")
        assert second.headers["retry-after"] == "Sun, 22 Nov 2026 10:00:00 GMT"
        assert w.store.actions.get(str(problem["action_id"])).state == "blocked"
    finally:
        w.client.close()
        w.store.close()
