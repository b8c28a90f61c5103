"""The e-mail approval link page, through the HTTP client (the browser test is in ``test_approval_browser``)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from saferails.api import open_store
from saferails.http import ApprovalLinks, LinkClaims, create_app
from saferails.settings import Settings
from tests.support.http_auth import ApiKeyTable
from tests.support.http_world import BASE, HttpWorld

SAME_ORIGIN = {"Origin": BASE}


def form_token(html: str) -> str:
    match = re.search(r'name="token" value="([^"]+)"', html)
    assert match, "the page has no approval form"
    return match.group(1)


def post(w: HttpWorld, path: str, token: str, decision: str, reason: str = "", **headers: str) -> Any:
    return w.client.post(path, data={"token": token, "decision": decision, "reason": reason},
                         headers=SAME_ORIGIN | headers)


def test_opening_the_link_shows_the_request_and_decides_nothing(world: HttpWorld) -> None:
    action = world.propose(reason="<script>alert('pwned')</script> urgent",
                           params={"new_manager_id": "mgr_456"})
    link = world.link(action["id"], "carol")
    for _ in range(2):  # a mail scanner, then the person
        page = world.client.get(link)
        assert page.status_code == 200
    html = page.text
    assert page.headers["content-type"].startswith("text/html")
    for shown in ("reassign_manager", "emp_123", "mgr_456", "agent-1", "high", "high-impact-needs-approval",
                  "carol", "2026-11-23T09:00:00+00:00", "Approve", "Reject"):
        assert shown in html, shown
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in html
    assert "<script" not in html
    assert "Old Manager" in html or "mgr_old" in html  # the preview shows the current manager being replaced
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    view = world.store.actions.get(action["id"])
    assert view.state == "pending_approval" and view.approvals == ()


def test_the_form_post_approves_through_the_service_as_the_linked_approver(world: HttpWorld) -> None:
    action = world.propose()
    token = form_token(world.client.get(world.link(action["id"], "carol")).text)
    done = post(world, "/api/actions/approve", token, "approve", "looks right <b>to me</b>")
    assert done.status_code == 200, done.text
    assert "You approved the request" in done.text and "&lt;b&gt;to me&lt;/b&gt;" not in done.text
    view = world.store.actions.get(action["id"])
    assert view.state == "approved"
    assert [(a.approver, a.decision, a.channel, a.reason) for a in view.approvals] == [
        ("carol", "approve", "email-link", "looks right <b>to me</b>")]


def test_the_link_decides_once(world: HttpWorld) -> None:
    action = world.propose()
    link = world.link(action["id"], "carol")
    token = form_token(world.client.get(link).text)
    assert post(world, "/api/actions/approve", token, "reject", "no").status_code == 200
    again = post(world, "/api/actions/approve", token, "approve")
    assert again.status_code in (403, 409)
    assert "Nothing was decided" in again.text
    assert world.store.actions.get(action["id"]).state == "rejected"
    after = world.client.get(link)
    assert "no longer waiting for approval" in after.text and 'name="token"' not in after.text


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "http://evil.example"}, {"Origin": "null"}, {"Referer": "http://evil.example/page"}, {}],
    ids=["other-origin", "null-origin", "other-referer", "no-origin-no-referer"],
)
def test_a_post_from_another_origin_decides_nothing(sqlite_world: HttpWorld, headers: dict[str, str]) -> None:
    action = sqlite_world.propose()
    token = form_token(sqlite_world.client.get(sqlite_world.link(action["id"], "carol")).text)
    response = sqlite_world.client.post("/api/actions/approve",
                                        data={"token": token, "decision": "approve"}, headers=headers)
    assert response.status_code == 403
    assert sqlite_world.store.actions.get(action["id"]).state == "pending_approval"
    # The same form from the page's own origin (here proven by the Referer) still works afterwards.
    ok = sqlite_world.client.post("/api/actions/approve", data={"token": token, "decision": "approve"},
                                  headers={"Referer": f"{BASE}/api/actions/approve?token=x"})
    assert ok.status_code == 200, ok.text
    assert sqlite_world.store.actions.get(action["id"]).state == "approved"


def test_forged_tampered_and_foreign_tokens_are_refused(sqlite_world: HttpWorld) -> None:
    w = sqlite_world
    action = w.propose()
    data = w.outbox.approval_for(action["id"], "carol")
    deadline = w.store.actions.get(action["id"]).approval_deadline
    assert deadline is not None
    foreign = ApprovalLinks(b"z" * 40).token(LinkClaims(action["id"], "carol", str(data["action_hash"]),
                                                        data["code"], deadline))
    good = form_token(w.client.get(w.link(action["id"], "carol")).text)
    body, signature = good.split(".")
    tampered = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + signature
    for token in (foreign, tampered, "nonsense", ""):
        page = w.client.get(f"/api/actions/approve?token={token}")
        assert page.status_code == 403, token
        assert "approval link invalid or expired" in page.text and 'name="token"' not in page.text
        assert post(w, "/api/actions/approve", token, "approve").status_code == 403
    assert w.store.actions.get(action["id"]).state == "pending_approval"


def test_a_link_expires_with_the_request(sqlite_world: HttpWorld) -> None:
    action = sqlite_world.propose()
    link = sqlite_world.link(action["id"], "carol")
    token = form_token(sqlite_world.client.get(link).text)
    sqlite_world.clock.advance(timedelta(hours=24))
    assert sqlite_world.client.get(link).status_code == 403
    assert post(sqlite_world, "/api/actions/approve", token, "approve").status_code == 403
    assert sqlite_world.store.actions.get(action["id"]).approvals == ()


def test_the_reject_and_v1_paths_serve_the_same_page(sqlite_world: HttpWorld) -> None:
    action = sqlite_world.propose()
    link = sqlite_world.link(action["id"], "bob")
    query = link.split("?", 1)[1]
    for path in ("/api/actions/reject", "/api/v1/approval-link"):
        page = sqlite_world.client.get(f"{path}?{query}")
        assert page.status_code == 200 and f'action="{path}"' in page.text
    done = post(sqlite_world, "/api/v1/approval-link", form_token(page.text), "reject", "wrong target")
    assert done.status_code == 200 and "You rejected the request" in done.text
    assert sqlite_world.store.actions.get(action["id"]).state == "rejected"


def test_a_post_must_be_a_form_with_a_decision(sqlite_world: HttpWorld) -> None:
    action = sqlite_world.propose()
    token = form_token(sqlite_world.client.get(sqlite_world.link(action["id"], "carol")).text)
    as_json = sqlite_world.client.post("/api/actions/approve", json={"token": token, "decision": "approve"},
                                       headers=SAME_ORIGIN)
    assert as_json.status_code == 415
    assert post(sqlite_world, "/api/actions/approve", token, "maybe").status_code == 400
    assert sqlite_world.store.actions.get(action["id"]).state == "pending_approval"


def test_links_are_refused_when_no_approval_secret_is_configured(tmp_path: Path, sqlite_db: Any) -> None:
    store = open_store(Settings(database_url=sqlite_db.url, policy_path=None, approval_secret=None,
                                data_dir=tmp_path))
    try:
        client = TestClient(create_app(store, ApiKeyTable()), base_url=BASE)
        page = client.get("/api/actions/approve?token=abc.def")
        assert page.status_code == 403 and "approval link invalid or expired" in page.text
    finally:
        store.close()


TWO_APPROVERS = """
version: "test-2-approvers"
impact: {default: low, types: {reassign_manager: high}}
rules:
  - id: two-approvers
    kind: requires_approval
    action_types: [reassign_manager]
    approval: {approvers: {groups: [approvers]}, min_approvals: 2, timeout: 1h}
"""


def test_with_two_approvers_each_link_counts_once_and_the_second_approves(
    tmp_path: Path, sqlite_db: Any, clock: Any
) -> None:
    from saferails.policy import load_policy_text
    from tests.support.http_world import open_world

    w = open_world(sqlite_db.url, tmp_path, clock, policy=load_policy_text(TWO_APPROVERS))
    try:
        action = w.propose()
        bob = form_token(w.client.get(w.link(action["id"], "bob")).text)
        carol_link = w.link(action["id"], "carol")
        first = post(w, "/api/actions/approve", bob, "approve", "ok by me")
        assert first.status_code == 200 and "1 of 2 approvals" in first.text
        assert w.store.actions.get(action["id"]).state == "pending_approval"
        assert post(w, "/api/actions/approve", bob, "approve").status_code == 403  # bob's link is spent
        assert "0 of 2" not in w.client.get(carol_link).text
        second = post(w, "/api/actions/approve", form_token(w.client.get(carol_link).text), "approve")
        assert second.status_code == 200 and "now <b>approved</b>" in second.text
        view = w.store.actions.get(action["id"])
        assert view.state == "approved" and sorted(view.valid_approvers) == ["bob", "carol"]
    finally:
        w.client.close()
        w.store.close()
