"""Writing requests queue one at a time per worker on SQLite (``saferails.http.writers``): concurrent proposals
are all answered, reads pass by, a body over the limit is still 413, and PostgreSQL apps do without the queue."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from saferails.http.writers import SerialWrites
from tests.support.http_world import HttpWorld
from tests.support.uvicorn_server import running


def _installed(w: HttpWorld) -> bool:
    return any(m.cls is SerialWrites for m in w.client.app.user_middleware)  # type: ignore[attr-defined]


def test_concurrent_proposals_through_the_queue_are_all_recorded(sqlite_world: HttpWorld) -> None:
    w = sqlite_world
    assert _installed(w)
    headers = w.headers("agent-1")

    def propose(i: int) -> Any:
        body = {"action_type": "reassign_manager", "target": f"emp_{i}", "params": {"new_manager_id": "mgr_456"}}
        return httpx.post(f"{url}/api/v1/actions", json=body, headers=headers, timeout=60)

    with running(w.client.app) as url, ThreadPoolExecutor(16) as pool:  # type: ignore[arg-type]
        answers = list(pool.map(propose, range(32)))
        listed = httpx.get(f"{url}/api/v1/actions", params={"limit": 200}, headers=headers)
        too_big = httpx.post(f"{url}/api/v1/actions", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                             headers=headers | {"Content-Type": "application/json"})
    assert [a.status_code for a in answers] == [201] * 32
    assert len({a.json()["id"] for a in answers}) == 32
    assert len(listed.json()["items"]) == 32
    assert too_big.status_code == 413


def test_postgresql_apps_have_no_queue(world: HttpWorld) -> None:
    assert _installed(world) == (world.store.engine.dialect.name == "sqlite")
