"""Helpers for handler tests: a seeded org and the services (the SMTP mailbox is ``tests.support.Mailbox``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from saferails.actions.models import ActionView
from saferails.actions.service import ActionService, Proposal
from saferails.clock import ManualClock
from saferails.execution import ExecutionService
from saferails.handlers import HandlerSettings
from saferails.org import OrgRepository
from saferails.policy import load_policy_text
from saferails.resilience import BreakerRegistry
from saferails.store.db import transaction
from tests.support import Mailbox, free_port
from tests.support.approvals import coded_service

__all__ = ["OPEN_POLICY", "SENDER", "START", "Mailbox", "World", "free_port", "make_world", "org_document"]

# Everything is allowed without approval: these tests are about effects, not about the gate.
OPEN_POLICY = 'version: "handlers-test"\nimpact: {default: low}\nrules: []\n'
SENDER = "agent@saferails.test"


START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def org_document() -> dict[str, Any]:
    monday = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    meetings = [
        {
            "id": f"m{i}",
            "title": f"sync {i}",
            "organizer_id": "mgr",
            "start_at": monday + timedelta(days=i % 5, hours=i),
            "end_at": monday + timedelta(days=i % 5, hours=i, minutes=90),
            "attendees": ["ann", "ben"],
        }
        for i in range(6)
    ]
    return {
        "teams": [{"id": "platform", "name": "Platform"}, {"id": "data", "name": "Data"}],
        "roles": [{"id": "engineer"}, {"id": "lead"}, {"id": "director"}],
        "employees": [
            {"id": "boss", "name": "Bo", "email": "bo@example.com", "team_id": "platform", "role": "director"},
            {
                "id": "mgr",
                "name": "Mo",
                "email": "mo@example.com",
                "manager_id": "boss",
                "team_id": "platform",
                "role": "lead",
            },
            {
                "id": "mgr2",
                "name": "Mia",
                "email": "mia@example.com",
                "manager_id": "boss",
                "team_id": "data",
                "role": "lead",
            },
            {
                "id": "ann",
                "name": "Ann",
                "email": "ann@example.com",
                "manager_id": "mgr",
                "team_id": "platform",
                "role": "engineer",
            },
            {
                "id": "ben",
                "name": "Ben",
                "email": "ben@example.com",
                "manager_id": "mgr",
                "team_id": "platform",
                "role": "engineer",
            },
            {
                "id": "cy",
                "name": "Cy",
                "email": "cy@example.com",
                "manager_id": "mgr",
                "team_id": "platform",
                "role": "engineer",
            },
        ],
        "meetings": meetings,
        "tasks": [
            {
                "id": f"t{i}",
                "title": f"task {i}",
                "assignee_id": "ann",
                "status": "done" if i == 4 else "open",
                "created_at": START - timedelta(days=10 - i),
            }
            for i in range(6)
        ],
    }


@dataclass
class World:
    db: Any
    clock: ManualClock
    actions: ActionService
    executor: ExecutionService
    settings: HandlerSettings
    sleeps: list[float]

    def propose(self, action_type: str, target: str, params: dict[str, Any], **extra: Any) -> ActionView:
        return self.actions.propose(
            Proposal(action_type=action_type, target=target, params=params, proposer="agent-7", **extra)
        )

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        with transaction(self.db.sessions) as session:
            return OrgRepository(session).snapshot()

    def balance(self, account: str, currency: str) -> int:
        with transaction(self.db.sessions) as session:
            return OrgRepository(session).balance_minor(account, currency)


def make_world(db: Any, clock: ManualClock, settings: HandlerSettings, **executor_options: Any) -> World:
    with transaction(db.sessions) as session:
        OrgRepository(session).insert(org_document())
    sleeps: list[float] = []
    actions = coded_service(db.sessions, load_policy_text(OPEN_POLICY), clock)
    executor = ExecutionService(
        db.sessions,
        clock,
        settings,
        sleeper=sleeps.append,
        breaker_registry=executor_options.pop("breaker_registry", BreakerRegistry(clock)),
        **executor_options,
    )
    return World(db, clock, actions, executor, settings, sleeps)
