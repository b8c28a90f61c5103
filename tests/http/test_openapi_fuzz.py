"""A bounded schemathesis run over /openapi.json: whatever the generated requests, the API never answers 5xx.

Every operation gets a few generated requests as an admin, so they reach the handlers instead of stopping at
401/403. Bounded and derandomised so it costs seconds, not minutes. (schemathesis' pytest plugin does not load
under our pytest, so the operations are driven with hypothesis directly.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from saferails.clock import ManualClock
from tests.support.http_world import open_world

pytestmark = pytest.mark.slow  # seconds each (a demo run, a subprocess, a wheel build, a fuzz run)


def test_no_generated_request_gets_a_server_error(sqlite_db: Any, tmp_path: Path, clock: ManualClock) -> None:
    w = open_world(sqlite_db.url, tmp_path, clock)
    try:
        w.propose()
        schema = schemathesis.openapi.from_asgi("/openapi.json", w.client.app)
        headers = {"Authorization": f"Bearer {w.tokens['root']}"}
        seen: list[str] = []
        statuses: list[int] = []
        for result in schema.get_all_operations():
            operation = result.ok()  # type: ignore[union-attr]  # an Err would raise here: the schema is ours
            seen.append(operation.label)

            @given(case=operation.as_strategy())
            @settings(max_examples=10, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
            def never_5xx(case: Any) -> None:
                response = case.call(headers=headers)
                statuses.append(response.status_code)
                assert response.status_code < 500, (case.method, case.formatted_path, response.text)

            never_5xx()
        assert "POST /api/v1/actions" in seen and len(seen) >= 15
        assert {200, 201} & set(statuses) and {404, 422} <= set(statuses), sorted(set(statuses))
    finally:
        w.client.close()
        w.store.close()
