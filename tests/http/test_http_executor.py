"""An action approved over HTTP (API or e-mailed link) that no flow run owns is executed by the API process at
once, exactly once, and an action that is not due or is owned by a run is left alone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from saferails.audit import AuditQuery, query_audit
from saferails.clock import ManualClock
from saferails.store.db import read_transaction
from tests.support import eventually
from tests.support.http_world import HttpWorld, open_world


@pytest.fixture
def executing_world(db: Any, tmp_path: Path, clock: ManualClock) -> Iterator[HttpWorld]:
    w = open_world(db.url, tmp_path, clock, execute_approved=True)
    yield w
    w.client.close()
    w.client.app.state.executor.close()  # type: ignore[attr-defined]
    w.store.close()


def _approve(world: HttpWorld, action_id: str) -> dict[str, Any]:
    response = world.client.post(f"/api/v1/actions/{action_id}/approve", headers=world.headers("bob"),
                                 json={"code": world.code(action_id, "bob"), "reason": "checked"})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_an_action_approved_over_http_runs_at_once_and_only_once(executing_world: HttpWorld) -> None:
    world = executing_world
    action = world.propose("agent-1")
    assert action["state"] == "pending_approval"
    assert _approve(world, action["id"])["state"] == "approved"
    eventually(lambda: world.store.actions.get(action["id"]).state in ("completed", "failed"))
    view = world.store.actions.get(action["id"])
    assert view.state == "completed", view.error
    assert view.result is not None and view.result["manager_id"] == "mgr_456"
    with read_transaction(world.store.sessions) as session:
        events = [r.event for r in query_audit(session, AuditQuery(entity_id=action["id"], limit=100)).records]
    assert events.count("execution_started") == 1 and "executed" in events
    # An operator's execute afterwards changes nothing: the effect is not applied twice.
    again = world.client.post(f"/api/v1/actions/{action['id']}/execute", headers=world.headers("olga"))
    assert again.status_code == 200 and again.json()["state"] == "completed"
    with read_transaction(world.store.sessions) as session:
        events = [r.event for r in query_audit(session, AuditQuery(entity_id=action["id"], limit=100)).records]
    assert events.count("execution_started") == 1


def test_a_scheduled_action_waits_for_its_time(executing_world: HttpWorld, clock: ManualClock) -> None:
    world = executing_world
    later = (clock.now() + timedelta(hours=2)).isoformat()
    action = world.propose("agent-1", scheduled_for=later)
    _approve(world, action["id"])
    world.client.app.state.executor.close()  # type: ignore[attr-defined]  # everything queued has run
    assert world.store.actions.get(action["id"]).state == "approved"


def test_without_the_executor_an_approved_action_waits_for_its_runner(world: HttpWorld) -> None:
    action = world.propose("agent-1")
    assert _approve(world, action["id"])["state"] == "approved"
    assert world.store.actions.get(action["id"]).state == "approved"
