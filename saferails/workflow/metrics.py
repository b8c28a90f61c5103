"""Prometheus metrics with seed 004's names, plus action and approval counts read from the store on scrape.

Counters live in a ``WorkflowMetrics`` (its own ``CollectorRegistry``, so tests and embedders do not share the
process-global one); ``METRICS`` is the default instance the services increment. Gauges that describe the
store (``active_tasks_total``, ``saferails_actions_total``, ``saferails_pending_approvals``) are computed by a
collector at scrape time, so every process serving /metrics reports the same truth.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from saferails.store.tables import Action
from saferails.workflow.machines import TASK_MACHINE
from saferails.workflow.tables import Task


class WorkflowMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.transitions = Counter(
            "workflow_transition_total",
            "Task and action-plan transitions by outcome",
            ["entity_type", "result"],
            registry=self.registry,
        )
        self.trigger_evaluations = Counter(
            "automation_trigger_evaluations_total",
            "Automation trigger evaluations by outcome",
            ["trigger_id", "outcome"],
            registry=self.registry,
        )
        self.sla_breaches = Counter("sla_records_breached_total", "SLA records marked breached", registry=self.registry)
        self.outbox_processed = Counter(
            "outbox_events_processed_total",
            "Outbox events handled by dispatchers",
            ["event_type", "status"],
            registry=self.registry,
        )
        self._store: StoreCollector | None = None

    def watch_store(self, sessions: sessionmaker[Session]) -> None:
        """Report store gauges from ``sessions`` on every scrape (replaces a previously watched store)."""
        if self._store is not None:
            self.registry.unregister(self._store)
        self._store = StoreCollector(sessions)
        self.registry.register(self._store)


class StoreCollector(Collector):
    """Scrape-time gauges read from the store; a scrape that cannot reach the store reports nothing."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def describe(self) -> list[Any]:
        # Returning nothing keeps registration from calling collect() (and the database) eagerly.
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self.sessions() as session:
                tasks: dict[str, int] = {
                    state: n
                    for state, n in session.execute(sa.select(Task.state, sa.func.count()).group_by(Task.state))
                }
                actions: dict[str, int] = {
                    state: n
                    for state, n in session.execute(sa.select(Action.state, sa.func.count()).group_by(Action.state))
                }
        except sa.exc.SQLAlchemyError:
            return
        active = GaugeMetricFamily("active_tasks_total", "Tasks by state", labels=["state"])
        for state in TASK_MACHINE.states:
            active.add_metric([state], float(tasks.get(state, 0)))
        yield active
        by_state = GaugeMetricFamily("saferails_actions_total", "Actions by state", labels=["state"])
        for state, count in sorted(actions.items()):
            by_state.add_metric([state], float(count))
        yield by_state
        pending = float(actions.get("pending_approval", 0))
        yield GaugeMetricFamily("saferails_pending_approvals", "Actions waiting for approval", value=pending)


METRICS = WorkflowMetrics()
