"""Fixtures of the outcome tests: the crafted world on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from outcome_world import World

from saferails.clock import ManualClock


@pytest.fixture
def world(db: Any, clock: ManualClock) -> World:
    return World(db, clock)
