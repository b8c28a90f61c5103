"""Fixtures for the workflow tests: a service and a private metrics registry over the shared ``db`` fixture
(every test runs on SQLite and on PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from saferails.clock import ManualClock
from saferails.workflow.metrics import WorkflowMetrics
from saferails.workflow.service import WorkflowService


@pytest.fixture
def metrics() -> WorkflowMetrics:
    return WorkflowMetrics()


@pytest.fixture
def svc(db: Any, clock: ManualClock, metrics: WorkflowMetrics) -> WorkflowService:
    return WorkflowService(db.sessions, clock, metrics=metrics)
