"""The load generator of the HTTP benchmark, run in its own process (``multiprocessing`` spawn) so the server
and the clients do not share an interpreter: ``clients`` concurrent ``saferails.client.AsyncClient`` s (one
connection each) propose ``total`` HIGH actions between them, each waiting for its answer before the next.

Kept apart from ``bench.http_api`` so the child imports only the client, not the store or the server.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from saferails.client import AsyncClient


async def _one_client(url: str, token: str, prefix: str, count: int, latencies: list[float],
                      states: dict[str, int]) -> None:
    async with AsyncClient(url, token, retries=0, timeout=60.0) as client:
        for i in range(count):
            start = time.perf_counter()
            action = await client.propose("reassign_manager", f"emp-{prefix}-{i}",
                                          {"new_manager_id": f"mgr-{i % 50}"}, reason="benchmark")
            latencies.append(time.perf_counter() - start)
            states[action.state] = states.get(action.state, 0) + 1


async def _run(url: str, token: str, clients: int, total: int, tag: str) -> dict[str, Any]:
    # Warm-up (not measured): each connection opened and one request each through the whole stack.
    await asyncio.gather(*(_one_client(url, token, f"{tag}-warm-{c}", 1, [], {}) for c in range(clients)))
    latencies: list[float] = []
    states: dict[str, int] = {}
    per_client = [total // clients + (1 if c < total % clients else 0) for c in range(clients)]
    start = time.perf_counter()
    await asyncio.gather(*(_one_client(url, token, f"{tag}-{c}", n, latencies, states)
                           for c, n in enumerate(per_client)))
    return {"seconds": time.perf_counter() - start, "latencies": latencies, "states": states}


def generate(url: str, token: str, clients: int, total: int, tag: str, results: Any) -> None:
    """Process target: run the load and put its measurements (or the error text) on the ``results`` queue."""
    try:
        results.put(asyncio.run(_run(url, token, clients, total, tag)))
    except BaseException as exc:  # the parent reports it; a child traceback alone would be lost
        results.put({"error": f"{type(exc).__name__}: {exc}"})
        raise
