"""Queries over actions, approvals and principals. Takes a session, never commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from saferails.actions.lifecycle import BLOCKED
from saferails.agents.tables import Agent
from saferails.clock import as_utc
from saferails.store.tables import Action, Approval, Principal

MAX_PAGE = 1000
MAX_OFFSET = 10**12  # beyond any table; larger offsets would overflow the drivers' 64-bit parameters


@dataclass(frozen=True)
class ActionFilter:
    states: tuple[str, ...] = ()
    action_type: str | None = None
    target: str | None = None
    proposer: str | None = None
    tenant: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    limit: int = 50
    offset: int = 0


class ActionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, action_id: str) -> Action | None:
        return self.session.get(Action, action_id)

    def approvals(self, action_id: str) -> list[Approval]:
        stmt = sa.select(Approval).where(Approval.action_id == action_id).order_by(Approval.created_at)
        return list(self.session.execute(stmt).scalars())

    def approvals_for(self, action_ids: list[str]) -> dict[str, list[Approval]]:
        out: dict[str, list[Approval]] = {i: [] for i in action_ids}
        if action_ids:
            stmt = sa.select(Approval).where(Approval.action_id.in_(action_ids)).order_by(Approval.created_at)
            for row in self.session.execute(stmt).scalars():
                out[row.action_id].append(row)
        return out

    def by_idempotency_key(self, tenant: str, key: str) -> Action | None:
        stmt = sa.select(Action).where(Action.tenant == tenant, Action.idempotency_key == key)
        return self.session.execute(stmt).scalar_one_or_none()

    def by_idempotency_keys(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Action]:
        """The actions holding any of ``keys`` ((tenant, idempotency key)), in ONE query."""
        if not keys:
            return {}
        stmt = sa.select(Action).where(sa.tuple_(Action.tenant, Action.idempotency_key).in_(sorted(keys)))
        return {(row.tenant, row.idempotency_key): row for row in self.session.execute(stmt).scalars()}

    def list(self, f: ActionFilter) -> list[Action]:
        stmt = sa.select(Action)
        if f.states:
            stmt = stmt.where(Action.state.in_(f.states))
        if f.action_type:
            stmt = stmt.where(Action.action_type == f.action_type)
        if f.target:
            stmt = stmt.where(Action.target == f.target)
        if f.proposer:
            stmt = stmt.where(Action.proposer == f.proposer)
        if f.tenant:
            stmt = stmt.where(Action.tenant == f.tenant)
        if f.created_after:
            stmt = stmt.where(Action.created_at >= f.created_after)
        if f.created_before:
            stmt = stmt.where(Action.created_at < f.created_before)
        stmt = stmt.order_by(Action.priority, Action.created_at, Action.id)
        stmt = stmt.limit(max(1, min(f.limit, MAX_PAGE))).offset(max(0, min(f.offset, MAX_OFFSET)))
        return list(self.session.execute(stmt).scalars())

    # --- rate-limit counting: the policy's RateLimitCounter over this store ---------------------------------
    # Refused proposals (state blocked) do not consume the budget: only accepted ones count. The statements are
    # built once (module level), so each call only binds values to an already compiled statement.
    def count(self, proposer: str, action_type: str, since: datetime) -> int:
        params = {"proposer": proposer, "action_type": action_type, "since": since}
        return int(self.session.execute(_RATE_COUNT, params).scalar_one())

    def oldest_since(self, proposer: str, action_type: str, since: datetime) -> datetime | None:
        params = {"proposer": proposer, "action_type": action_type, "since": since}
        value = self.session.execute(_RATE_OLDEST, params).scalar_one()
        return None if value is None else as_utc(value)

    # --- principals -----------------------------------------------------------------------------------------
    def principal(self, principal_id: str) -> Principal | None:
        return self.session.get(Principal, principal_id)

    def proposers(self, ids: set[str]) -> tuple[dict[str, PrincipalFacts], set[str]]:
        """What proposing reads about the proposers ``ids``, in ONE Core query on the transaction's connection
        (no ORM row, no autoflush): the stored principals among them (unknown ids are absent), and which of them
        are registered agents."""
        if not ids:
            return {}, set()
        principals: dict[str, PrincipalFacts] = {}
        agents: set[str] = set()
        for row in self.session.connection().execute(_PROPOSERS, {"ids": sorted(ids)}):
            if row.agent:
                agents.add(row.id)
            else:
                principals[row.id] = PrincipalFacts(row.id, row.groups or [], bool(row.kyc_verified), row.roles or [])
        return principals, agents


@dataclass(frozen=True)
class PrincipalFacts:
    """The columns of a stored principal that proposing reads (see ``approvers.StoredPrincipal``)."""

    id: str
    groups: list[Any]
    kyc_verified: bool
    roles: list[Any]


# Core statements over the tables' columns (not the mapped attributes): the session runs them without the ORM's
# compile and load steps, and without autoflush (callers count rows already written).
_ACTIONS = Action.__table__.c
_PRINCIPAL_COLUMNS = Principal.__table__.c


def _rate_window(column: sa.ColumnElement[Any]) -> sa.Select[Any]:
    return sa.select(column).select_from(Action.__table__).where(
        _ACTIONS.proposer == sa.bindparam("proposer"),
        _ACTIONS.action_type == sa.bindparam("action_type"),
        _ACTIONS.created_at >= sa.bindparam("since", type_=_ACTIONS.created_at.type),
        _ACTIONS.state != BLOCKED,
    )


_RATE_COUNT = _rate_window(sa.func.count())
_RATE_OLDEST = _rate_window(sa.func.min(_ACTIONS.created_at))
_AGENT_COLUMNS = Agent.__table__.c
# The stored principals among the ids, then the registered agents among them (``agent`` tells the two apart).
_PROPOSERS = sa.union_all(
    sa.select(sa.literal(False).label("agent"), _PRINCIPAL_COLUMNS.id, _PRINCIPAL_COLUMNS.groups,
              _PRINCIPAL_COLUMNS.kyc_verified, _PRINCIPAL_COLUMNS.roles)
    .where(_PRINCIPAL_COLUMNS.id.in_(sa.bindparam("ids", expanding=True))),
    sa.select(sa.literal(True).label("agent"), _AGENT_COLUMNS.id, sa.null(), sa.null(), sa.null())
    .where(_AGENT_COLUMNS.id.in_(sa.bindparam("ids", expanding=True))),
)
