from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from saferails.clock import ManualClock
from tests.support.http_world import HttpWorld, open_world


@pytest.fixture
def world(db: Any, tmp_path: Path, clock: ManualClock) -> Iterator[HttpWorld]:
    """The API over a fresh database, once on SQLite and once on PostgreSQL."""
    w = open_world(db.url, tmp_path, clock)
    yield w
    w.client.close()
    w.store.close()


@pytest.fixture
def sqlite_world(sqlite_db: Any, tmp_path: Path, clock: ManualClock) -> Iterator[HttpWorld]:
    """The API over SQLite only, for tests about the HTTP edge itself rather than the store."""
    w = open_world(sqlite_db.url, tmp_path, clock)
    yield w
    w.client.close()
    w.store.close()
