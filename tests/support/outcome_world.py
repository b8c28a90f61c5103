"""A small crafted org for outcome tests: two teams, interactions before and after an action, and the real
services."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from itertools import combinations
from typing import Any

import sqlalchemy as sa

from saferails.actions.service import Proposal
from saferails.clock import ManualClock
from saferails.execution import ExecutionService
from saferails.handlers import HandlerSettings
from saferails.org import OrgRepository
from saferails.orggraph import SnapshotCache, insert_interactions, insert_wellbeing
from saferails.outcomes import OutcomeMonitor, load_rulebook
from saferails.outcomes.rules import SEED_000_TYPES
from saferails.policy import load_policy_text
from saferails.store.db import transaction
from saferails.store.tables import AuditRecord
from tests.support.approvals import coded_service

SEED_RULE = load_rulebook({t: {"judge": "thresholds"} for t in SEED_000_TYPES})

OPEN_POLICY = 'version: "outcome-test"\nimpact: {default: low}\nrules: []\n'
TEAM_A = ["ma", "t", "a1", "a2", "a3", "a4"]
TEAM_B = ["mb", "n", "b1", "b2", "b3", "b4"]


class World:
    def __init__(self, db: Any, clock: ManualClock) -> None:
        self.db = db
        self.clock = clock
        self.executed_on = clock.now()
        self.actions = coded_service(db.sessions, load_policy_text(OPEN_POLICY), clock)
        self.executor = ExecutionService(db.sessions, clock, HandlerSettings(), sleeper=lambda _s: None)
        self.cache = SnapshotCache()
        self.monitor = self.new_monitor()
        employees = [{"id": p, "name": p, "email": f"{p}@example.org", "team_id": team, "role": "member",
                      "manager_id": None if p.startswith("m") else manager}
                     for team, manager, people in (("A", "ma", TEAM_A), ("B", "mb", TEAM_B)) for p in people]
        with transaction(db.sessions) as session:
            OrgRepository(session).insert({"teams": [{"id": "A"}, {"id": "B"}],
                                           "roles": [{"id": "member"}, {"id": "lead"}], "employees": employees})

    def new_monitor(self, cache: SnapshotCache | None = None) -> OutcomeMonitor:
        """A monitor with seed 000's rule as written (``thresholds``, 7 days): this world has a week of data."""
        return OutcomeMonitor(self.db.sessions, self.clock, self.executor, SEED_RULE, cache=cache or self.cache)

    def day(self, offset: int, hour: int = 10) -> datetime:
        midnight = self.executed_on.replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight + timedelta(days=offset, hours=hour)

    def interact(self, pairs: Iterable[tuple[str, str]], days: Iterable[int]) -> None:
        rows = [{"kind": "message", "person_a": a, "person_b": b, "occurred_at": self.day(d), "weight": 1.0}
                for d in days for a, b in pairs]
        with transaction(self.db.sessions) as session:
            insert_interactions(session, _frame(rows))

    def burnout(self, person: str, score: float, days: Iterable[int]) -> None:
        rows = [{"person": person, "observed_at": self.day(d, hour=7), "burnout_score": score} for d in days]
        with transaction(self.db.sessions) as session:
            insert_wellbeing(session, _frame(rows))

    def teams_as_usual(self, days: Iterable[int], *, without: str | None = None) -> None:
        days = list(days)
        for team in (TEAM_A, TEAM_B):
            self.interact([p for p in combinations(team, 2) if without not in p], days)
        self.interact([("ma", "mb")], days)

    def execute(self, action_type: str, target: str, params: dict[str, Any]) -> str:
        action = self.actions.propose(Proposal(action_type=action_type, target=target, params=params,
                                               proposer="agent-7", reason="test"))
        assert self.executor.execute(action.id).state == "completed"
        return action.id

    def events(self, action_id: str) -> list[str]:
        with transaction(self.db.sessions) as session:
            stmt = sa.select(AuditRecord.event).where(AuditRecord.entity_id == action_id).order_by(AuditRecord.sequence)
            return list(session.execute(stmt).scalars())

    def manager_of(self, person: str) -> str | None:
        with transaction(self.db.sessions) as session:
            return OrgRepository(session).require_employee(person).manager_id


def _frame(rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows)
