"""Fixtures of the outcome tests: the crafted world on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from saferails.clock import ManualClock
from tests.support.outcome_world import World


@pytest.fixture
def world(db: Any, clock: ManualClock) -> World:
    return World(db, clock)
