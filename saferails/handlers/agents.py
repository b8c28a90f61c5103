"""Seed 003's fleet controls as handlers (store-local: the change commits with the action's ``completed`` state).

``target`` names what ``scope`` selects: an agent id (``agent``), a department (``department``) or a workspace,
i.e. a tenant (``fleet``). Every result and rollback result carries the playbook's audit fields that the action's
own records do not already hold (``workspace``, ``scope``, ``can_rollback``, ``affected``); the action's audit
trail holds the actor, parameters, status, error, and the started / completed / rolled-back times.

- ``pause_agent``: pause every active agent in scope until now + ``duration_minutes``; each paused agent's actions
  waiting for approval, or approved and not started (scheduled ones included), are **cancelled** with the reason
  (audited on each action), so nothing it asked for can be approved or start while it is stopped. Rollback
  resumes exactly the agents this action paused that are still held by it (a pause that already ran out, or was
  replaced, is left alone); cancelled actions stay cancelled.
- ``resume_agent``: resume every paused agent in scope; rollback pauses again those still active, with their
  previous end time and reason.
- ``set_budget``: replace the target agent's budget; rollback restores the previous one, refusing
  (``RollbackConflict``) if the budget was changed since.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from saferails import transitions
from saferails.actions import lifecycle as alc
from saferails.actions.types import PauseAgentParams, ResumeAgentParams, SetBudgetParams
from saferails.agents import repository as agents
from saferails.agents.lifecycle import ACTIVE, PAUSED, RETIRED
from saferails.agents.repository import AgentRepository
from saferails.clock import as_utc
from saferails.errors import InvalidParams
from saferails.handlers.base import (
    ExecutionOutcome,
    HandlerContext,
    RollbackConflict,
    StoreLocal,
    parse_params,
)
from saferails.store.tables import Action


def _actor(ctx: HandlerContext) -> str:
    return f"action:{ctx.action_id}"


def _workspace(ctx: HandlerContext) -> str:
    """The workspace (tenant) of the action being run: the only one whose agents it may reach."""
    row = ctx.session.get(Action, ctx.action_id)
    return row.tenant if row is not None else "default"


def _check_scope(ctx: HandlerContext, action_type: str, scope: str, target: str) -> None:
    repo = AgentRepository(ctx.session)
    tenant = _workspace(ctx)
    if scope == "agent":
        row = repo.get(target)
        if row is None or row.state == RETIRED or row.tenant != tenant:
            raise InvalidParams(action_type, [f"target: {target!r} is not a registered, unretired agent of "
                                              f"workspace {tenant!r}"])
    elif scope == "department" and not repo.list(tenant=tenant, department=target, limit=1):
        raise InvalidParams(action_type, [f"target: no agent in department {target!r} of workspace {tenant!r}"])
    elif scope == "fleet" and (target != tenant or not repo.list(tenant=tenant, limit=1)):
        raise InvalidParams(action_type, [f"target: the fleet target is the action's workspace {tenant!r}, "
                                          f"got {target!r}"])


def _cancel_pending(ctx: HandlerContext, agent_id: str, reason: str, now: datetime) -> list[str]:
    ids = ctx.session.execute(
        # Waiting for approval, or approved and not started yet (scheduled for later, or its run not yet there):
        # nothing a stopped agent asked for may start while it is stopped.
        sa.select(Action.id).where(Action.proposer == agent_id,
                                   Action.state.in_((alc.PENDING_APPROVAL, alc.APPROVED)))
        .order_by(Action.id)
    ).scalars().all()
    for action_id in ids:
        transitions.transition(ctx.session, "action", action_id, alc.CANCELLED, actor=_actor(ctx),
                               event="cancelled", now=now, changes={"decided_at": now},
                               details={"reason": f"agent {agent_id} paused: {reason}", "paused_by": ctx.action_id})
    return list(ids)


class PauseAgentHandler(StoreLocal):
    action_type = "pause_agent"

    def validate(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> None:
        p = parse_params(self.action_type, PauseAgentParams, params)
        _check_scope(ctx, self.action_type, p.scope, target)

    def capture(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> dict[str, Any]:
        p = parse_params(self.action_type, PauseAgentParams, params)
        active = AgentRepository(ctx.session).in_scope(p.scope, target, state=ACTIVE, tenant=_workspace(ctx))
        return {"scope": p.scope, "target": target, "active_agents": [a.id for a in active]}

    def preview(self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any],
                ) -> dict[str, Any]:
        p = parse_params(self.action_type, PauseAgentParams, params)
        names = pre_state["active_agents"]
        return {"summary": f"pause {len(names)} agent(s) ({p.scope} {target}) for {p.duration_minutes} min: "
                           f"{p.reason}", "agents": names}

    def execute(self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any],
                idempotency_key: str) -> ExecutionOutcome:
        p = parse_params(self.action_type, PauseAgentParams, params)
        now = ctx.clock.now()
        until = now + timedelta(minutes=p.duration_minutes)
        paused, cancelled = [], {}
        for row in AgentRepository(ctx.session).in_scope(p.scope, target, state=ACTIVE, tenant=_workspace(ctx)):
            agents.pause(ctx.session, row, until=until, reason=p.reason, actor=_actor(ctx), now=now,
                         action_id=ctx.action_id)
            paused.append(row.id)
            cancelled[row.id] = _cancel_pending(ctx, row.id, p.reason, now)
        result = {"workspace": _workspace(ctx), "scope": p.scope, "target": target,
                  "new_status": PAUSED, "resume_at": until.isoformat(), "reason": p.reason, "affected": paused,
                  "approvals_cancelled": cancelled, "can_rollback": bool(paused)}
        return ExecutionOutcome(result=result, rollback_data={"scope": p.scope, "target": target, "paused": paused})

    def rollback(self, ctx: HandlerContext, target: str, rollback_data: dict[str, Any]) -> dict[str, Any]:
        now = ctx.clock.now()
        repo = AgentRepository(ctx.session)
        resumed, left = [], []
        for agent_id in rollback_data["paused"]:
            rows = repo.in_scope("agent", agent_id, state=PAUSED, tenant=_workspace(ctx))
            if rows and rows[0].paused_by_action == ctx.action_id:
                agents.resume(ctx.session, rows[0], actor=_actor(ctx), now=now, action_id=ctx.action_id,
                              reason=f"pause rolled back: {ctx.reason}", event="agent_pause_rolled_back")
                resumed.append(agent_id)
            else:
                left.append(agent_id)
        return {"scope": rollback_data["scope"], "target": target, "resumed": resumed,
                "left_alone": left, "rolled_back_at": now.isoformat()}


class ResumeAgentHandler(StoreLocal):
    action_type = "resume_agent"

    def validate(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> None:
        p = parse_params(self.action_type, ResumeAgentParams, params)
        _check_scope(ctx, self.action_type, p.scope, target)

    def capture(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> dict[str, Any]:
        p = parse_params(self.action_type, ResumeAgentParams, params)
        rows = AgentRepository(ctx.session).in_scope(p.scope, target, state=PAUSED, tenant=_workspace(ctx))
        return {"scope": p.scope, "target": target, "paused_agents": [a.id for a in rows]}

    def preview(self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any],
                ) -> dict[str, Any]:
        names = pre_state["paused_agents"]
        return {"summary": f"resume {len(names)} paused agent(s)", "agents": names}

    def execute(self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any],
                idempotency_key: str) -> ExecutionOutcome:
        p = parse_params(self.action_type, ResumeAgentParams, params)
        now = ctx.clock.now()
        previous = []
        for row in AgentRepository(ctx.session).in_scope(p.scope, target, state=PAUSED, tenant=_workspace(ctx)):
            previous.append({"agent_id": row.id, "reason": row.pause_reason or "",
                             "until": None if row.paused_until is None else as_utc(row.paused_until).isoformat(),
                             "paused_by_action": row.paused_by_action})
            agents.resume(ctx.session, row, actor=_actor(ctx), now=now, reason=p.reason, action_id=ctx.action_id)
        result = {"workspace": _workspace(ctx), "scope": p.scope, "target": target,
                  "new_status": ACTIVE, "affected": [x["agent_id"] for x in previous],
                  "can_rollback": bool(previous)}
        return ExecutionOutcome(result=result, rollback_data={"scope": p.scope, "previous": previous})

    def rollback(self, ctx: HandlerContext, target: str, rollback_data: dict[str, Any]) -> dict[str, Any]:
        now = ctx.clock.now()
        repaused, skipped = [], []
        for item in rollback_data["previous"]:
            until = None if item["until"] is None else datetime.fromisoformat(item["until"])
            rows = AgentRepository(ctx.session).in_scope("agent", item["agent_id"], state=ACTIVE,
                                                         tenant=_workspace(ctx))
            if rows and until is not None and until > now:
                agents.pause(ctx.session, rows[0], until=until, reason=item["reason"], actor=_actor(ctx), now=now,
                             action_id=item["paused_by_action"])
                repaused.append(item["agent_id"])
            else:
                skipped.append(item["agent_id"])
        return {"repaused": repaused, "skipped": skipped, "rolled_back_at": now.isoformat()}


class SetBudgetHandler(StoreLocal):
    action_type = "set_budget"

    def validate(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> None:
        parse_params(self.action_type, SetBudgetParams, params)
        _check_scope(ctx, self.action_type, "agent", target)

    def _budget(self, params: dict[str, Any]) -> dict[str, str]:
        p = parse_params(self.action_type, SetBudgetParams, params)
        return {"amount": str(p.amount), "currency": p.currency, "period": p.period}

    def capture(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"agent_id": target, "budget": agents.budget_of(AgentRepository(ctx.session).require(target))}

    def preview(self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any],
                ) -> dict[str, Any]:
        new = self._budget(params)
        return {"summary": f"budget of {target}: {pre_state['budget']} -> {new}",
                "changes": {"budget": {"from": pre_state["budget"], "to": new}}}

    def execute(self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any],
                idempotency_key: str) -> ExecutionOutcome:
        repo, tenant = AgentRepository(ctx.session), _workspace(ctx)
        row = repo.in_scope("agent", target, state=ACTIVE, tenant=tenant) or \
            repo.in_scope("agent", target, state=PAUSED, tenant=tenant)
        if not row:
            raise InvalidParams(self.action_type, [f"target: {target!r} is not a registered, unretired agent"])
        previous = agents.budget_of(row[0])
        new = self._budget(params)
        agents.set_budget(ctx.session, row[0], new, actor=_actor(ctx), now=ctx.clock.now(), action_id=ctx.action_id)
        applied = agents.budget_of(row[0])
        result = {"workspace": row[0].tenant, "scope": "agent", "target": target, "budget": applied,
                  "previous": previous, "affected": [target], "can_rollback": True}
        return ExecutionOutcome(result=result, rollback_data={"agent_id": target, "restore": previous,
                                                              "expected": applied})

    def rollback(self, ctx: HandlerContext, target: str, rollback_data: dict[str, Any]) -> dict[str, Any]:
        row = AgentRepository(ctx.session).require(str(rollback_data["agent_id"]))
        current = agents.budget_of(row)
        if current != rollback_data["expected"]:
            raise RollbackConflict(f"the budget of {row.id} is now {current}, not {rollback_data['expected']}: "
                                   "changed since the action ran")
        agents.set_budget(ctx.session, row, rollback_data["restore"], actor=_actor(ctx), now=ctx.clock.now(),
                          action_id=ctx.action_id, event="agent_budget_restored")
        return {"agent_id": row.id, "budget": rollback_data["restore"], "rolled_back_at": ctx.clock.now().isoformat()}
