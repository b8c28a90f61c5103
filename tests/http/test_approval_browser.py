"""The e-mail approval link end to end in a real browser (Debian's Chromium driven by Playwright), with
JavaScript disabled: the page must work as plain HTML.

Needs ``/usr/bin/chromium`` (nothing is downloaded at run time; never ``playwright install``). Without it the
test is skipped, except under ``CI=true`` where that is an error.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.http_world import HttpWorld
from tests.support.uvicorn_server import running

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
