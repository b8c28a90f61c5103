"""The agents page (``GET /agents``) in a real browser: Debian's Chromium driven by Playwright, against the API
served by uvicorn on loopback over a real store.

Needs ``/usr/bin/chromium`` (nothing is downloaded at run time; never ``playwright install``). Without it the
test is skipped, except under ``CI=true`` where that is an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from saferails.clock import ManualClock
from tests.support.http_world import HttpWorld, open_world
from tests.support.uvicorn_server import running

CHROMIUM = Path(os.environ.get("SAFERAILS_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOT = Path("/tmp/fleet-ui-agents-page.png")
ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-dev-shm-usage"]


@pytest.fixture
def world(sqlite_db: Any, tmp_path: Path, clock: ManualClock) -> Iterator[HttpWorld]:
    w = open_world(sqlite_db.url, tmp_path, clock)
    w.store.agents.register("agent-1", tenant="default", department="eng")
    w.store.agents.register("agent-2", tenant="default", department="eng")
    # An agent id is untrusted text: the page must show it, not run it.
    w.store.agents.register("agent-3", tenant="default", department="<img src=x onerror=alert(1)>")
    yield w
    w.client.close()
    w.store.close()


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


def test_the_page_holds_no_data_and_locks_down_scripts(world: HttpWorld) -> None:
    response = world.client.get("/agents")
    assert response.status_code == 200 and "agent-1" not in response.text
    csp = response.headers["content-security-policy"]
    assert "script-src 'nonce-" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert world.client.get("/agents").headers["content-security-policy"] != csp  # a fresh nonce per page


@pytest.mark.browser
def test_an_operator_pauses_an_agent_through_the_dialog_and_undoes_it(world: HttpWorld) -> None:
    _require_browser()
    from playwright.sync_api import expect, sync_playwright

    with running(world.client.app) as base, sync_playwright() as pw:  # type: ignore[arg-type]
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            dialogs: list[str] = []

            def on_dialog(d: Any) -> None:  # an alert() would mean injected markup ran
                dialogs.append(d.message)
                d.dismiss()

            page.on("dialog", on_dialog)
            page.goto(f"{base}/agents")
            page.fill("#api-key", world.tokens["olga"])
            page.get_by_role("button", name="Sign in").click()
            row = page.locator("tr[data-agent='agent-1']")
            expect(row.locator("td.status")).to_have_text("active")
            expect(page.get_by_text("<img src=x onerror=alert(1)>")).to_have_count(1)

            row.get_by_role("button", name="Pause").click()
            dialog = page.locator("dialog#confirm")
            expect(dialog).to_be_visible()
            # Reason is required and the duration has bounds: the dialog does not submit without them.
            page.fill("#duration", "0")
            page.get_by_role("button", name="Confirm").click()
            expect(dialog).to_be_visible()
            page.fill("#duration", "30")
            page.fill("#reason", "Maintenance window")
            page.select_option("#scope", "agent")
            # What the operator sees while the request is on its way: the route holds it until we have looked.
            in_flight: list[str] = []

            def look_then_send(route: Any) -> None:
                in_flight.append(page.locator("#message").get_attribute("class") or "")
                in_flight.append(page.locator("#message-text").inner_text())
                in_flight.append(str(page.get_by_role("button", name="Reload").is_disabled()))
                route.continue_()

            page.route("**/api/v1/actions/pause_agent", look_then_send)
            page.get_by_role("button", name="Confirm").click()

            message = page.locator("#message-text")
            expect(message).to_contain_text("Paused agent-1 (scope agent): action ")
            expect(message).to_contain_text("completed")
            expect(row.locator("td.status")).to_have_text("paused")
            assert in_flight == ["note busy", "Pause agent-1: in progress...", "True"]
            page.unroute("**/api/v1/actions/pause_agent")
            action_id = world.store.agents.get("agent-1").paused_by_action
            assert action_id is not None and action_id in message.inner_text()
            assert world.store.actions.get(action_id).params["reason"] == "Maintenance window"
            page.screenshot(path=str(SCREENSHOT), full_page=True)

            page.get_by_role("button", name="Undo").click()
            expect(message).to_have_text(f"Undid action {action_id}: rolled back.")
            expect(row.locator("td.status")).to_have_text("active")
            assert world.store.actions.get(action_id).state == "rolled_back"
            assert world.store.agents.get("agent-1").status == "active"

            # A fleet pause is HIGH impact: the page says it waits for approval, nothing is paused yet.
            row.get_by_role("button", name="Pause").click()
            page.fill("#reason", "Kill switch drill")
            page.select_option("#scope", "fleet")
            page.get_by_role("button", name="Confirm").click()
            expect(message).to_contain_text("Waiting for approval: action ")
            assert world.store.agents.get("agent-2").status == "active"
            assert dialogs == []
        finally:
            browser.close()


@pytest.mark.browser
def test_an_approver_key_sees_the_403_and_nothing_changes(world: HttpWorld) -> None:
    _require_browser()
    from playwright.sync_api import expect, sync_playwright

    with running(world.client.app) as base, sync_playwright() as pw:  # type: ignore[arg-type]
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{base}/agents")
            page.fill("#api-key", world.tokens["bob"])
            page.get_by_role("button", name="Sign in").click()
            row = page.locator("tr[data-agent='agent-1']")
            row.get_by_role("button", name="Pause").click()
            page.fill("#reason", "I am not allowed to")
            page.get_by_role("button", name="Confirm").click()
            message = page.locator("#message")
            expect(message).to_contain_text("Error 403 INSUFFICIENT_PERMISSIONS")
            expect(message).to_have_class("note bad")
            expect(page.get_by_role("button", name="Undo")).to_be_hidden()
            assert world.store.agents.get("agent-1").status == "active"
            assert world.store.actions.list() == []

            # A wrong key: 401, the key is forgotten and the page asks again.
            page.evaluate("sessionStorage.setItem('saferails.apiKey', 'not-a-key')")
            page.reload()
            expect(page.locator("#message")).to_contain_text("Error 401")
            expect(page.locator("#api-key")).to_be_visible()
        finally:
            browser.close()


@pytest.mark.browser
def test_no_agents_yet_says_how_to_register_one(sqlite_db: Any, tmp_path: Path, clock: ManualClock) -> None:
    _require_browser()
    from playwright.sync_api import expect, sync_playwright

    world = open_world(sqlite_db.url, tmp_path, clock)
    try:
        with running(world.client.app) as base, sync_playwright() as pw:  # type: ignore[arg-type]
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                page = browser.new_page()
                page.goto(f"{base}/agents")
                page.fill("#api-key", world.tokens["olga"])
                page.get_by_role("button", name="Sign in").click()
                expect(page.locator("tr#no-agents")).to_contain_text("saferails agent register ID --tenant")
                expect(page.locator("tr[data-agent]")).to_have_count(0)
            finally:
                browser.close()
    finally:
        world.client.close()
        world.store.close()
