"""A store with a small fleet: workspace ``acme`` (departments ``sales``, ``ops``), approvers with real codes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from saferails.actions.models import ActionView, Proposal
from saferails.agents import AgentService
from saferails.api import Store, open_store
from saferails.clock import ManualClock
from saferails.settings import Settings
from tests.support.approvals import CodeInbox

SECRET = b"f" * 32 + b"-fleet-test-approval-secret"


@dataclass
class Fleet:
    store: Store
    clock: ManualClock
    inbox: CodeInbox
    agents: AgentService

    def propose(self, action_type: str, target: str, params: dict[str, Any], proposer: str = "olga",
                tenant: str = "acme") -> ActionView:
        return self.store.actions.propose(Proposal(action_type=action_type, target=target, params=params,
                                                   proposer=proposer, reason="test", tenant=tenant))

    def approve(self, action_id: str, approver: str) -> ActionView:
        return self.store.actions.approve(action_id, approver, code=self.inbox.code_for(action_id, approver))

    def run(self, action_type: str, target: str, params: dict[str, Any]) -> ActionView:
        """Propose as the operator and execute (the action must be auto-approved)."""
        action = self.propose(action_type, target, params)
        assert action.state == "approved", action.decision
        return self.store.execution.execute(action.id)

    def status(self, agent_id: str) -> str:
        return self.agents.get(agent_id).status


def open_fleet(database_url: str, tmp_path: Path, clock: ManualClock) -> Fleet:
    inbox = CodeInbox()
    settings = Settings(database_url=database_url, policy_path=None, approval_secret=SECRET, data_dir=tmp_path)
    store = open_store(settings, clock=clock, notifier=inbox)
    for name, groups, kyc in (("olga", ["operators"], False), ("bob", ["approvers"], False),
                              ("carol", ["approvers"], False), ("buyer-1", ["agents"], True),
                              ("sales-2", ["agents"], True), ("ops-1", ["agents"], True)):
        store.actions.upsert_principal(name, email=f"{name}@example.com", groups=groups, kyc_verified=kyc)
    agents = AgentService(store.sessions, clock)
    agents.register("buyer-1", tenant="acme", department="sales")
    agents.register("sales-2", tenant="acme", department="sales")
    agents.register("ops-1", tenant="acme", department="ops")
    return Fleet(store, clock, inbox, agents)


@pytest.fixture
def fleet(db: Any, tmp_path: Path, clock: ManualClock) -> Iterator[Fleet]:
    """The fleet over a fresh database, once on SQLite and once on PostgreSQL."""
    f = open_fleet(db.url, tmp_path, clock)
    yield f
    f.store.close()


@pytest.fixture
def sqlite_fleet(sqlite_db: Any, tmp_path: Path, clock: ManualClock) -> Iterator[Fleet]:
    f = open_fleet(sqlite_db.url, tmp_path, clock)
    yield f
    f.store.close()
