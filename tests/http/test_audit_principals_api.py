"""The audit endpoints (query, verify, checkpoints), ``/metrics`` and the admin-only principals and credentials
endpoints, over a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from saferails.errors import Unauthenticated
from saferails.identity.tables import Credential
from saferails.store.db import read_transaction
from tests.support.http_world import HttpWorld


def test_audit_query_filters_and_pages_by_cursor(world: HttpWorld) -> None:
    action = world.propose()
    world.propose(target="emp_999")
    headers = world.headers("aude")
    mine = world.client.get("/api/v1/audit", params={"entity_id": action["id"]}, headers=headers)
    assert mine.status_code == 200, mine.text
    records = mine.json()["records"]
    assert records and {r["entity_id"] for r in records} == {action["id"]}
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2, "entity_type": "action"}
        if cursor is not None:
            params["cursor"] = cursor
        page = world.client.get("/api/v1/audit", params=params, headers=headers).json()
        seen += [r["sequence"] for r in page["records"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) >= 2
    newest = world.client.get("/api/v1/audit", params={"newest_first": True, "limit": 1}, headers=headers).json()
    assert newest["records"][0]["sequence"] >= max(seen)
    naive = world.client.get("/api/v1/audit", params={"start": "2026-11-22T10:00:00"}, headers=headers)
    assert naive.status_code == 400 and naive.json()["code"] == "AUDIT_QUERY_INVALID"


def test_audit_needs_its_permission_and_stays_inside_the_tenant(world: HttpWorld) -> None:
    world.propose()
    denied = world.client.get("/api/v1/audit", headers=world.headers("agent-1"))
    assert denied.status_code == 403
    assert denied.json()["required_permission"] == "audit:read" and denied.json()["user_role"] == "agent"
    assert world.client.get("/api/v1/audit").status_code == 401
    other = world.client.get("/api/v1/audit", headers=world.headers("aude-acme")).json()
    assert other["records"] == []
    asked = world.client.get("/api/v1/audit", params={"tenant": "default"}, headers=world.headers("aude-acme"))
    assert asked.status_code == 200 and asked.json()["records"] == []


def test_verify_reports_an_intact_chain_to_auditors_only(world: HttpWorld) -> None:
    world.propose()
    report = world.client.get("/api/v1/audit/verify", headers=world.headers("aude"))
    assert report.status_code == 200, report.text
    assert report.json()["ok"] is True and report.json()["records_checked"] >= 1
    assert report.json()["signatures_checked"] is True
    for who in ("olga", "agent-1"):
        refused = world.client.get("/api/v1/audit/verify", headers=world.headers(who))
        assert refused.status_code == 403 and refused.json()["required_permission"] == "audit:verify"


def test_checkpoints_are_listed_and_published_once(world: HttpWorld) -> None:
    world.propose()
    headers = world.headers("olga")
    listed = world.client.get("/api/v1/audit/checkpoints", params={"limit": 1}, headers=headers)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert len(body["checkpoints"]) == 1 and body["last_published"] is None
    newest = body["checkpoints"][0]
    first = world.client.post("/api/v1/audit/checkpoints", headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["published"]["sequence"] == newest["sequence"]
    assert world.client.post("/api/v1/audit/checkpoints", headers=headers).json()["published"] is None
    again = world.client.get("/api/v1/audit/checkpoints", headers=headers).json()
    assert again["last_published"]["sequence"] == newest["sequence"]
    if body["next_cursor"] is not None:
        older = world.client.get("/api/v1/audit/checkpoints", params={"cursor": body["next_cursor"]},
                                 headers=headers).json()
        assert all(c["sequence"] < newest["sequence"] for c in older["checkpoints"])
    assert world.client.post("/api/v1/audit/checkpoints", headers=world.headers("agent-1")).status_code == 403


def test_metrics_are_prometheus_text_for_operators(world: HttpWorld) -> None:
    world.propose()
    response = world.client.get("/metrics", headers=world.headers("olga"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert "saferails_pending_approvals 1.0" in response.text
    assert 'saferails_actions_total{state="pending_approval"} 1.0' in response.text
    assert "# TYPE workflow_transition_total counter" in response.text
    assert world.client.get("/metrics").status_code == 401
    assert world.client.get("/metrics", headers=world.headers("agent-1")).status_code == 403


def test_an_admin_creates_a_principal_and_issues_a_key_shown_once(world: HttpWorld) -> None:
    root = world.headers("root")
    created = world.client.post("/api/v1/principals", headers=root,
                                json={"id": "newbie", "roles": ["agent"], "email": "newbie@example.com"})
    assert created.status_code == 201, created.text
    assert created.json()["roles"] == ["agent"] and created.json()["disabled_at"] is None
    duplicate = world.client.post("/api/v1/principals", headers=root, json={"id": "newbie"})
    assert duplicate.status_code == 409 or duplicate.status_code == 400
    unknown_role = world.client.post("/api/v1/principals", headers=root, json={"id": "x", "roles": ["god"]})
    assert unknown_role.status_code == 400
    for bad in ({"id": "a\u0000b"}, {"id": "ok", "tenant": "t\u0000"}, {"id": "ok", "display_name": "d\u0000"}):
        assert world.client.post("/api/v1/principals", headers=root, json=bad).status_code in (400, 422)
    for path in ("/api/v1/principals/a%00b", "/api/v1/audit?actor=a%00b", "/api/v1/credentials?principal_id=a%00b"):
        assert world.client.get(path, headers=root).status_code < 500, path

    issued = world.client.post("/api/v1/principals/newbie/credentials", headers=root,
                               json={"expires_in_days": 30, "label": "ci"})
    assert issued.status_code == 201, issued.text
    assert issued.headers["Cache-Control"] == "no-store"
    token = issued.json()["token"]
    assert world.store.identity.authenticate(token).id == "newbie"
    # Stored hashed: neither the listing nor the table holds the token or its secret.
    listed = world.client.get("/api/v1/principals/newbie/credentials", headers=root).json()["items"]
    assert [c["credential_id"] for c in listed] == [issued.json()["credential_id"]]
    assert token not in str(listed)
    with read_transaction(world.store.sessions) as session:
        row = session.get(Credential, issued.json()["credential_id"])
        assert row is not None and token.split("_", 2)[2] not in row.secret_hash
    replay = world.client.post("/api/v1/principals/newbie/credentials", headers=root | {"Idempotency-Key": "k1"})
    assert replay.status_code == 400

    revoked = world.client.post(f"/api/v1/credentials/{issued.json()['credential_id']}/revoke", headers=root)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    with pytest.raises(Unauthenticated):
        world.store.identity.authenticate(token)


def test_disabling_a_principal_stops_its_keys(world: HttpWorld) -> None:
    root = world.headers("root")
    assert world.client.post("/api/v1/principals", headers=root, json={"id": "temp", "roles": ["agent"]}) \
        .status_code == 201
    token = world.client.post("/api/v1/principals/temp/credentials", headers=root).json()["token"]
    disabled = world.client.post("/api/v1/principals/temp/disable", headers=root)
    assert disabled.status_code == 200 and disabled.json()["disabled_at"] is not None
    with pytest.raises(Unauthenticated):
        world.store.identity.authenticate(token)
    assert world.client.post("/api/v1/principals/temp/enable", headers=root).json()["disabled_at"] is None
    assert world.store.identity.authenticate(token).id == "temp"
    page = world.client.get("/api/v1/principals", params={"limit": 2}, headers=root).json()
    assert len(page["items"]) == 2 and page["next_cursor"] == page["items"][-1]["id"]
    assert world.client.get("/api/v1/principals/nobody", headers=root).status_code == 404


def test_principals_are_admin_only_and_tenant_bound(world: HttpWorld) -> None:
    for who in ("olga", "aude", "bob"):
        denied = world.client.get("/api/v1/principals", headers=world.headers(who))
        assert denied.status_code == 403 and denied.json()["required_permission"] == "principals:manage"
        issue = world.client.post("/api/v1/principals/agent-1/credentials", headers=world.headers(who))
        assert issue.status_code == 403 and issue.json()["required_permission"] == "credentials:manage"
    world.tokens["admin-acme"] = world.keys.issue("admin-acme", {"admin"}, {"acme"})
    acme = world.headers("admin-acme")
    assert world.client.get("/api/v1/principals/agent-1", headers=acme).status_code == 404
    assert world.client.post("/api/v1/principals/agent-1/credentials", headers=acme).status_code == 404
    elsewhere = world.client.post("/api/v1/principals", headers=acme, json={"id": "spy", "tenant": "default"})
    assert elsewhere.status_code == 403
    ok = world.client.post("/api/v1/principals", headers=acme, json={"id": "acme-bot", "tenant": "acme"})
    assert ok.status_code == 201, ok.text
    ids = [p["id"] for p in world.client.get("/api/v1/principals", headers=acme).json()["items"]]
    assert ids == ["acme-bot"]
