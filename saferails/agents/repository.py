"""Reading and changing agents inside the caller's transaction.

Every state change goes through ``saferails.transitions.transition`` (entity ``agent``), so the new state, its
audit record and its outbox event commit together; field changes without a state change (a budget) are audited
with ``transitions.record_event``. Handlers (``saferails.handlers.agents``), the service and the auto-resume sweep
all use these functions, so there is one way to pause, resume or budget an agent.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from saferails import transitions
from saferails.actions import lifecycle as alc
from saferails.agents.lifecycle import ACTIVE, AGENT_MACHINE, PAUSED
from saferails.agents.tables import Agent
from saferails.clock import as_utc
from saferails.errors import InvalidInput, NotFound
from saferails.store.tables import Action
from saferails.transitions import AuditSubject, EntityKind

ENTITY = "agent"
PERIODS = ("day", "week", "month")
SCOPES = ("agent", "department", "fleet")
# Proposals whose cost counts against the budget, and the parameter holding it.
COST_PARAMS: dict[str, str] = {"make_purchase": "max_total", "make_payment": "amount"}
# Actions that no longer spend: refused, withdrawn, failed or undone.
_NOT_SPENDING = (alc.BLOCKED, alc.REJECTED, alc.TIMED_OUT, alc.CANCELLED, alc.FAILED, alc.ROLLED_BACK)


def _payload(row: Agent) -> dict[str, Any]:
    return {"agent_id": row.id, "tenant": row.tenant, "department": row.department, "state": row.state}


AGENT_KIND = transitions.register_entity(
    EntityKind(
        entity_type=ENTITY,
        model=Agent,
        machine=AGENT_MACHINE,
        event_prefix="Agent",
        audit_subject=lambda r: AuditSubject(None, r.id, r.tenant),
        payload=_payload,
    )
)


@dataclass(frozen=True)
class AgentView:
    """An agent as edges show it. ``status`` is the lifecycle state; amounts are decimal strings."""

    id: str
    tenant: str
    department: str
    display_name: str
    status: str
    paused_until: datetime | None
    pause_reason: str | None
    paused_by_action: str | None
    budget_amount: str | None
    budget_currency: str | None
    budget_period: str | None
    spent_in_period: str | None = None

    @classmethod
    def from_row(cls, row: Agent, spent: Decimal | None = None) -> AgentView:
        return cls(
            id=row.id,
            tenant=row.tenant,
            department=row.department,
            display_name=row.display_name,
            status=row.state,
            paused_until=None if row.paused_until is None else as_utc(row.paused_until),
            pause_reason=row.pause_reason,
            paused_by_action=row.paused_by_action,
            budget_amount=row.budget_amount,
            budget_currency=row.budget_currency,
            budget_period=row.budget_period,
            spent_in_period=None if spent is None else str(spent),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "department": self.department,
            "display_name": self.display_name,
            "status": self.status,
            "paused_until": None if self.paused_until is None else self.paused_until.isoformat(),
            "pause_reason": self.pause_reason,
            "paused_by_action": self.paused_by_action,
            "budget": None if self.budget_amount is None else {
                "amount": self.budget_amount, "currency": self.budget_currency, "period": self.budget_period,
                "spent_in_period": self.spent_in_period,
            },
        }


def period_start(period: str, now: datetime) -> datetime:
    """Start (UTC) of the budget period holding ``now``: the day, the ISO week (Monday) or the month."""
    day = as_utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise InvalidInput(f"unknown budget period {period!r}; one of {', '.join(PERIODS)}")


def _decimal(text: Any) -> Decimal:
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        raise InvalidInput(f"not a decimal amount: {text!r}") from None
    if not value.is_finite():
        raise InvalidInput(f"not a finite amount: {text!r}")
    return value


def proposal_cost(action_type: str, params: dict[str, Any]) -> tuple[Decimal, str] | None:
    """What a proposal would spend, with its currency; None for action types that spend nothing."""
    key = COST_PARAMS.get(action_type)
    if key is None:
        return None
    return _decimal(params[key]), str(params["currency"])


class AgentRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, agent_id: str) -> Agent | None:
        return self.session.get(Agent, agent_id)

    def exists(self, agent_id: str) -> bool:
        """Whether ``agent_id`` is a registered agent (a Core query: no ORM row is built)."""
        return self.session.execute(_AGENT_EXISTS, {"agent_id": agent_id}).first() is not None

    def require(self, agent_id: str) -> Agent:
        row = self.get(agent_id)
        if row is None:
            raise NotFound(ENTITY, agent_id)
        return row

    def list(self, *, tenant: str | None = None, department: str | None = None, state: str | None = None,
             limit: int = 1000) -> builtins.list[Agent]:
        stmt = sa.select(Agent).order_by(Agent.tenant, Agent.department, Agent.id).limit(limit)
        if tenant is not None:
            stmt = stmt.where(Agent.tenant == tenant)
        if department is not None:
            stmt = stmt.where(Agent.department == department)
        if state is not None:
            stmt = stmt.where(Agent.state == state)
        return list(self.session.execute(stmt).scalars())

    def in_scope(self, scope: str, target: str, *, state: str, tenant: str) -> builtins.list[Agent]:
        """The agents of workspace ``tenant`` that ``scope``/``target`` names, in ``state``, locked for this
        transaction (ordered by id, so two concurrent scope changes lock in the same order). ``agent``: the agent
        ``target``; ``department``: every agent of that department; ``fleet``: every agent of the workspace
        (``target`` must name ``tenant``: an action of one workspace never reaches another's agents)."""
        stmt = (sa.select(Agent).where(Agent.state == state, Agent.tenant == tenant).order_by(Agent.id)
                .with_for_update())
        if scope == "agent":
            stmt = stmt.where(Agent.id == target)
        elif scope == "department":
            stmt = stmt.where(Agent.department == target)
        elif scope == "fleet":
            if target != tenant:
                return []
        else:
            raise InvalidInput(f"unknown scope {scope!r}; one of {', '.join(SCOPES)}")
        return list(self.session.execute(stmt.execution_options(populate_existing=True)).scalars())

    def spent(self, row: Agent, now: datetime) -> Decimal:
        """Spent in the current budget period: what was recorded outside saferails plus the cost of every
        purchase and payment the agent proposed in the period that is still spending (pending, approved,
        executing, completed). Amounts in another currency than the budget's are not comparable and are
        refused at proposal time, so none is counted here."""
        if row.budget_period is None:
            return Decimal(0)
        since = period_start(row.budget_period, now)
        stmt = sa.select(Action.action_type, Action.params).where(
            Action.proposer == row.id,
            Action.action_type.in_(tuple(COST_PARAMS)),
            Action.created_at >= since,
            Action.state.not_in(_NOT_SPENDING),
        )
        total = _decimal(row.spent_outside or "0")
        for action_type, params in self.session.execute(stmt):
            cost = proposal_cost(action_type, params)
            if cost is not None and cost[1] == row.budget_currency:
                total += cost[0]
        return total


def pause(session: Session, row: Agent, *, until: datetime, reason: str, actor: str, now: datetime,
          action_id: str | None) -> Agent:
    """Move an active agent to ``paused`` until ``until`` (audited, with the reason and the pausing action)."""
    result: Agent = transitions.transition(
        session, ENTITY, row.id, PAUSED, actor=actor, event="agent_paused", now=now,
        details={"paused_until": until.isoformat(), "reason": reason, "action_id": action_id},
        changes={"paused_until": until, "pause_reason": reason, "paused_by_action": action_id},
        locked_row=row,
    )
    return result


def resume(session: Session, row: Agent, *, actor: str, now: datetime, reason: str, event: str = "agent_resumed",
           action_id: str | None = None) -> Agent:
    """Move a paused agent back to ``active`` (audited with what the pause was)."""
    details = {"reason": reason, "action_id": action_id, "was_paused_until":
               None if row.paused_until is None else as_utc(row.paused_until).isoformat(),
               "pause_reason": row.pause_reason, "paused_by_action": row.paused_by_action}
    result: Agent = transitions.transition(
        session, ENTITY, row.id, ACTIVE, actor=actor, event=event, now=now, details=details,
        changes={"paused_until": None, "pause_reason": None, "paused_by_action": None}, locked_row=row,
    )
    return result


def budget_of(row: Agent) -> dict[str, str] | None:
    if row.budget_amount is None:
        return None
    return {"amount": row.budget_amount, "currency": str(row.budget_currency), "period": str(row.budget_period)}


def set_budget(session: Session, row: Agent, budget: dict[str, str] | None, *, actor: str, now: datetime,
               action_id: str | None, event: str = "agent_budget_set") -> None:
    """Replace the agent's budget (None removes it), audited with the previous one."""
    before = budget_of(row)
    row.budget_amount = None if budget is None else str(_decimal(budget["amount"]))
    row.budget_currency = None if budget is None else budget["currency"]
    row.budget_period = None if budget is None else budget["period"]
    row.version += 1
    row.updated_at = now
    session.flush()
    transitions.record_event(session, ENTITY, row, actor=actor, event=event, now=now,
                             details={"before": before, "after": budget_of(row), "action_id": action_id})


_AGENT_EXISTS = sa.select(Agent.__table__.c.id).where(Agent.__table__.c.id == sa.bindparam("agent_id"))
