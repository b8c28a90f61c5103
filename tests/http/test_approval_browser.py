"""The e-mail approval link end to end in a real browser (Debian's Chromium driven by Playwright), with
JavaScript disabled: the page must work as plain HTML.

Needs ``/usr/bin/chromium`` (nothing is downloaded at run time; never ``playwright install``). Without it the
test is skipped, except under ``CI=true`` where that is an error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from saferails.api import open_store
from saferails.clock import ManualClock
from saferails.http import create_app
from saferails.org.repository import OrgRepository
from saferails.settings import Settings
from saferails.store.db import transaction
from tests.support import Mailbox
from tests.support.http_auth import ApiKeyTable
from tests.support.http_world import SECRET, HttpWorld
from tests.support.uvicorn_server import listening_socket, running

CHROMIUM = Path(os.environ.get("SAFERAILS_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOT = Path("/tmp/h-http-approve.png")
ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-dev-shm-usage"]

pytestmark = pytest.mark.browser


def _require_browser() -> None:
    problem = None if CHROMIUM.exists() else f"no Chromium at {CHROMIUM}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "playwright is not installed"
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{problem} (CI=true: the browser test must run)")
        pytest.skip(problem)


def test_an_approver_opens_the_emailed_link_and_approves_in_a_browser(world: HttpWorld) -> None:
    _require_browser()
    from playwright.sync_api import sync_playwright

    action = world.propose(reason="Team lead left <script>document.title='pwned'</script>")
    with running(world.client.app) as base, sync_playwright() as pw:  # type: ignore[arg-type]
        link = world.link(action["id"], "carol", base=base)
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            context = browser.new_context(java_script_enabled=False, viewport={"width": 900, "height": 1000})
            page = context.new_page()
            response = page.goto(link)
            assert response is not None and response.status == 200
            assert page.title() == "Approval request - saferails"
            table = page.locator("table")
            for shown in ("reassign_manager", "emp_123", "mgr_456", "agent-1", "high", "carol"):
                assert shown in table.inner_text(), shown
            # The agent's markup is shown as text, not run.
            assert page.get_by_text("<script>document.title='pwned'</script>").count() == 1
            page.fill("#reason", "Checked with the team: the new manager agreed")
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            assert world.store.actions.get(action["id"]).state == "pending_approval"

            with page.expect_navigation():
                page.get_by_role("button", name="Approve").click()
            assert page.title() == "You approved the request - saferails"
            assert "The action is now approved" in page.locator("p.note").inner_text()
            page.screenshot(path=str(SCREENSHOT.with_name("h-http-approved.png")), full_page=True)

            view = world.store.actions.get(action["id"])
            assert view.state == "approved"
            assert [(a.approver, a.channel, a.reason) for a in view.approvals] == [
                ("carol", "email-link", "Checked with the team: the new manager agreed")]

            # Back and submit again: the link has been spent.
            page.goto(link)
            assert "no longer waiting for approval" in page.locator("p.note").inner_text()
            assert page.get_by_role("button", name="Approve").count() == 0
        finally:
            browser.close()


def test_from_the_mailed_link_to_the_executed_action_and_its_audit_trail(
    sqlite_db: Any, tmp_path: Path, clock: ManualClock, smtp_server: Mailbox,
) -> None:
    """The walkthrough a new user does: an agent proposes over HTTP, the approver's mail (a real SMTP server)
    carries a link to the API's own address, Chromium opens it and approves, an operator executes the action, and
    its audit trail over the API tells the story (the approval through ``email-link``)."""
    _require_browser()
    import httpx
    from playwright.sync_api import sync_playwright

    sock = listening_socket()  # the link must name the address the server really listens on
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(database_url=sqlite_db.url, policy_path=None, approval_secret=SECRET, data_dir=tmp_path,
                        smtp_host=smtp_server.host, smtp_port=smtp_server.port, smtp_sender="saferails@example.com",
                        smtp_starttls=False, public_url=base)
    store = open_store(settings, clock=clock)
    with transaction(store.sessions) as session:
        OrgRepository(session).insert({"employees": [
            {"id": "mgr_old", "name": "Old Manager", "email": "old@example.com"},
            {"id": "mgr_456", "name": "New Manager", "email": "new@example.com"},
            {"id": "emp_123", "name": "Erin Employee", "email": "erin@example.com", "manager_id": "mgr_old"}]})
    store.actions.upsert_principal("carol", email="carol@example.com", groups=["approvers"])
    keys = ApiKeyTable()
    agent, olga = keys.issue("agent-1", {"agent"}), keys.issue("olga", {"operator"})
    try:
        with running(create_app(store, keys, public_url=base), sock) as served, sync_playwright() as pw, \
                httpx.Client(base_url=served) as api:
            proposed = api.post("/api/actions", headers={"Authorization": f"Bearer {agent}"}, json={
                "user_id": "emp_123", "action_type": "reassign_manager", "payload": {"new_manager_id": "mgr_456"},
                "reason": "Improve team dynamics"})
            assert proposed.status_code == 201, proposed.text
            action_id = proposed.json()["action_id"]
            (mail,) = [m for rcpt, m in smtp_server.messages if rcpt == ["carol@example.com"]]
            payload = mail.get_payload(decode=True)
            assert isinstance(payload, bytes)
            link = re.search(r"(http://\S+/api/actions/approve\?token=\S+)", payload.decode())
            assert link is not None and link.group(1).startswith(f"{served}/"), payload.decode()

            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                page = browser.new_context(java_script_enabled=False).new_page()
                response = page.goto(link.group(1))
                assert response is not None and response.status == 200
                page.fill("#reason", "Checked with the team")
                with page.expect_navigation():
                    page.get_by_role("button", name="Approve").click()
                note = page.locator("p.note").inner_text()
                assert "The action is now approved" in note and "executes it" in note
            finally:
                browser.close()

            operator = {"Authorization": f"Bearer {olga}"}
            executed = api.post(f"/api/v1/actions/{action_id}/execute", headers=operator)
            assert executed.status_code == 200, executed.text
            assert executed.json()["state"] == "completed"
            trail = api.get(f"/api/v1/actions/{action_id}/audit", headers=operator)
            assert trail.status_code == 200, trail.text
            records = trail.json()["records"]
            assert [r["event"] for r in records][:1] == ["action_proposed"]
            assert {"approved", "executed"} <= {r["event"] for r in records}
            assert [r["actor"] for r in records if r["event"] == "approved"] == ["carol"]
    finally:
        store.close()
