"""The agent service: register, list and read agents; the standing the policy asks about.

Pausing, resuming and budgets are actions (``pause_agent``, ``resume_agent``, ``set_budget``): proposed through
``ActionService.propose`` so that the policy and the approval gate apply, executed by their handlers. The only
direct state change here is the automatic end of a pause (``resume_due``, the auto-resume sweep's body).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from saferails import transitions
from saferails.agents.audit import ActionAuditQuery, ActionAuditRecord, query_actions
from saferails.agents.repository import ENTITY, AgentRepository, AgentView, proposal_cost
from saferails.agents.tables import Agent
from saferails.boundary import identifier_problem, typed_errors
from saferails.clock import Clock, SystemClock, as_utc
from saferails.errors import InvalidInput
from saferails.policy.rules import AgentFacts
from saferails.store.db import read_transaction, transaction


def agent_facts(session: Session, proposer: str, action_type: str, params: Mapping[str, Any], now: datetime,
                ) -> AgentFacts | None:
    """The policy's ``AgentLookup`` over the store, inside the proposing transaction: what the ``agent_controls``
    rule needs about ``proposer`` (None when it is not a registered agent)."""
    repo = AgentRepository(session)
    row = repo.get(proposer)
    if row is None:
        return None
    cost = proposal_cost(action_type, dict(params))
    return AgentFacts(
        agent_id=row.id,
        status=row.state,
        paused_until=None if row.paused_until is None else as_utc(row.paused_until),
        pause_reason=row.pause_reason,
        budget=None if row.budget_amount is None else Decimal(row.budget_amount),
        currency=row.budget_currency,
        period=row.budget_period,
        spent=repo.spent(row, now) if cost is not None and row.budget_amount is not None else Decimal(0),
        cost=None if cost is None else cost[0],
        cost_currency=None if cost is None else cost[1],
    )


class AgentService:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock | None = None) -> None:
        self.sessions = sessions
        self.clock: Clock = clock or SystemClock()

    def register(self, agent_id: str, *, tenant: str = "default", department: str = "", display_name: str = "",
                 actor: str = "system:admin") -> AgentView:
        """Register an active agent (audited ``agent_registered``). ``InvalidInput`` for a bad or taken id."""
        for name, value in (("agent id", agent_id), ("tenant", tenant)):
            problem = identifier_problem(value)
            if problem is not None:
                raise InvalidInput(f"{name}: {problem}")
        if len(department) > 200 or any(c in department for c in "\r\n\x00"):
            raise InvalidInput("department: at most 200 characters on one line")
        now = self.clock.now()
        with transaction(self.sessions) as session:
            if session.get(Agent, agent_id) is not None:
                raise InvalidInput(f"agent {agent_id!r} is already registered", agent_id=agent_id)
            row = Agent(id=agent_id, tenant=tenant, department=department, display_name=display_name or agent_id,
                        spent_outside="0")
            transitions.create(session, ENTITY, row, actor=actor, event="agent_registered", now=now,
                               details={"tenant": tenant, "department": department})
            return AgentView.from_row(row)

    def get(self, agent_id: str) -> AgentView:
        with read_transaction(self.sessions) as session:
            repo = AgentRepository(session)
            row = repo.require(agent_id)
            return AgentView.from_row(row, repo.spent(row, self.clock.now()))

    def list(self, *, tenant: str | None = None, department: str | None = None, status: str | None = None,
             ) -> builtins.list[AgentView]:
        now = self.clock.now()
        with read_transaction(self.sessions) as session:
            repo = AgentRepository(session)
            return [AgentView.from_row(r, repo.spent(r, now))
                    for r in repo.list(tenant=tenant, department=department, state=status)]

    def actions(self, query: ActionAuditQuery, tenants: frozenset[str] | None = None,
                ) -> builtins.list[ActionAuditRecord]:
        """The playbook's audit records of the fleet controls (``saferails.agents.audit``), newest first;
        ``tenants`` (None: all) limits them to the workspaces a caller may see."""
        with read_transaction(self.sessions) as session:
            return query_actions(session, query, tenants)

    def resume_due(self) -> builtins.list[str]:
        """Resume every paused agent whose ``paused_until`` has passed (by this service's clock), each audited
        ``agent_pause_expired``; the ids resumed. The body of ``saferails.sweeps.agents.AutoResumeSweep``."""
        from saferails.sweeps.agents import AutoResumeSweep  # the sweep builds on this package, not the reverse

        report = AutoResumeSweep(self.sessions, self.clock).run()
        return [item.action_id for item in report.items if item.outcome == "resolved"]


# Bad input (a NUL byte PostgreSQL will not store, an id outside the identifier charset) is a typed error.
for _name in ("register", "get", "list", "actions", "resume_due"):
    setattr(AgentService, _name, typed_errors(getattr(AgentService, _name)))
