"""``saferails agent list|show|register|pause|resume|set-budget|actions``: the fleet controls (seed 003).

``pause``, ``resume`` and ``set-budget`` propose the action (``pause_agent``, ``resume_agent``, ``set_budget``)
as the authenticated principal (permission ``operate``; ``--actor`` is accepted only with that principal's own id,
as ``--proposer`` is for ``saferails propose``), so the policy and the approval gate apply exactly as for
``saferails propose``: an action the policy lets run is executed at once and the result printed; one that needs
approval is printed waiting (approve it with ``saferails approve``, then ``saferails execute``); a refusal exits 6
with its code. ``register`` needs ``operate`` too; ``actions`` (the audit record) needs ``read_audit``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from saferails.actions.models import ActionView, Proposal
from saferails.agents.audit import ActionAuditQuery
from saferails.agents.repository import AgentView
from saferails.api import Store, refusal_for
from saferails.cli import output as out
from saferails.cli.common import Io, JsonFlag, acting_as, principal_of, run
from saferails.errors import InvalidInput
from saferails.identity import Permission

__all__ = ["register"]

app = typer.Typer(help="agent fleet controls: pause agents, cap their budgets", no_args_is_help=False)

AgentId = Annotated[str, typer.Argument(metavar="AGENT")]
# Who acts is the authenticated principal: a name here must be its own (an agent must not pause its peers as olga).
Actor = Annotated[str | None, typer.Option("--actor", help="who proposes the control action: only your own id")]
Tenant = Annotated[str, typer.Option("--tenant", help="workspace")]
Reason = Annotated[str, typer.Option("--reason")]
Scope = Annotated[str, typer.Option("--scope", help="agent | department | fleet (then AGENT names the department "
                                                    "or the workspace)")]
COLUMNS = ("id", "tenant", "department", "status", "paused_until", "budget", "spent")


def _row(a: AgentView) -> list[Any]:
    budget = "-" if a.budget_amount is None else f"{a.budget_amount} {a.budget_currency}/{a.budget_period}"
    until = "-" if a.paused_until is None else a.paused_until.isoformat()
    return [a.id, a.tenant, a.department or "-", a.status, until, budget, a.spent_in_period or "-"]


@app.command("list")
def list_agents(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
    department: Annotated[str | None, typer.Option("--department")] = None,
    status: Annotated[str | None, typer.Option("--status", help="active | paused | retired")] = None,
    as_json: JsonFlag = False,
) -> None:
    """the registered agents, their status and budget"""

    def command(store: Store, io: Io) -> int:
        agents = store.agents.list(tenant=tenant, department=department, status=status)
        return io.table([a.to_dict() for a in agents], COLUMNS, [_row(a) for a in agents])

    run(ctx, as_json, command)


@app.command("show")
def show(ctx: typer.Context, agent_id: AgentId, as_json: JsonFlag = False) -> None:
    """one agent"""

    def command(store: Store, io: Io) -> int:
        agent = store.agents.get(agent_id)
        return io.table(agent.to_dict(), COLUMNS, [_row(agent)])

    run(ctx, as_json, command)


@app.command("register")
def register_agent(
    ctx: typer.Context, agent_id: AgentId, tenant: Tenant = "default",
    department: Annotated[str, typer.Option("--department")] = "",
    actor: Actor = None, as_json: JsonFlag = False,
) -> None:
    """register an agent (its id is the principal id it proposes under)"""

    def command(store: Store, io: Io) -> int:
        who = acting_as(principal_of(ctx), actor, "--actor")
        agent = store.agents.register(agent_id, tenant=tenant, department=department, actor=who)
        return io.table(agent.to_dict(), COLUMNS, [_row(agent)])

    run(ctx, as_json, command, permission=Permission.OPERATE)


def _control(ctx: typer.Context, as_json: bool, action_type: str, target: str, params: dict[str, Any],
             actor: str | None, tenant: str, reason: str) -> None:
    def command(store: Store, io: Io) -> int:
        who = acting_as(principal_of(ctx), actor, "--actor")
        try:
            proposal = Proposal(action_type=action_type, target=target, params=params, proposer=who,
                                reason=reason, tenant=tenant)
        except ValueError as exc:
            raise InvalidInput(f"invalid proposal: {exc}") from None
        action: ActionView = store.actions.propose(proposal)
        refusal = refusal_for(action)
        if refusal is None and action.state == "approved":
            action = store.execution.execute(action.id)
        io.result(action.to_dict() | {"explanation": out.explanation(action)},
                  lambda stream: out.render_action(action, stream))
        if refusal is not None:
            return io.error(refusal)
        return 8 if action.state == "failed" else 0

    run(ctx, as_json, command, permission=Permission.OPERATE)


@app.command("pause")
def pause(
    ctx: typer.Context, target: AgentId, reason: Reason, actor: Actor = None,
    minutes: Annotated[int, typer.Option("--minutes", help="1 .. 43200")] = 30,
    scope: Scope = "agent", tenant: Tenant = "default", as_json: JsonFlag = False,
) -> None:
    """pause an agent, a department or the whole fleet (the kill switch needs two approvals)"""
    _control(ctx, as_json, "pause_agent", target,
             {"scope": scope, "duration_minutes": minutes, "reason": reason}, actor, tenant, reason)


@app.command("resume")
def resume(
    ctx: typer.Context, target: AgentId, actor: Actor = None, reason: Reason = "", scope: Scope = "agent",
    tenant: Tenant = "default", as_json: JsonFlag = False,
) -> None:
    """resume paused agents before their pause runs out"""
    _control(ctx, as_json, "resume_agent", target, {"scope": scope, "reason": reason}, actor, tenant, reason)


@app.command("set-budget")
def set_budget(
    ctx: typer.Context, agent_id: AgentId,
    amount: Annotated[str, typer.Option("--amount", help="decimal, e.g. 1000.00")],
    currency: Annotated[str, typer.Option("--currency", help="ISO 4217, e.g. EUR")],
    period: Annotated[str, typer.Option("--period", help="day | week | month")] = "month",
    reason: Reason = "", tenant: Tenant = "default", actor: Actor = None, as_json: JsonFlag = False,
) -> None:
    """cap what an agent may spend (purchases, payments) per period"""
    _control(ctx, as_json, "set_budget", agent_id, {"amount": amount, "currency": currency, "period": period},
             actor, tenant, reason)


AUDIT_COLUMNS = ("created_at", "action_id", "action_type", "workspace", "scope", "target", "actor", "status",
                 "can_rollback", "rolled_back_at")


@app.command("actions")
def actions(
    ctx: typer.Context,
    workspace: Annotated[str | None, typer.Option("--workspace", help="tenant")] = None,
    scope: Annotated[str | None, typer.Option("--scope", help="agent | department | fleet")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="who proposed it")] = None,
    action_type: Annotated[str | None, typer.Option("--type", help="pause_agent | resume_agent | set_budget")] = None,
    limit: Annotated[int, typer.Option("--limit", help="1 .. 500")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """the audit record of the fleet controls, newest first (the playbook's fields; --json for all of them)"""

    def command(store: Store, io: Io) -> int:
        records = store.agents.actions(ActionAuditQuery(workspace=workspace, scope=scope, actor=actor,
                                                        action_type=action_type, limit=limit))
        data = [r.to_dict() for r in records]
        return io.table(data, AUDIT_COLUMNS, [["-" if d[c] is None else d[c] for c in AUDIT_COLUMNS] for d in data])

    # The audit record, as over HTTP (audit:read): not for agents.
    run(ctx, as_json, command, permission=Permission.READ_AUDIT)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="agent")
