"""``saferails propose|show|list|approve|reject|cancel|execute|rollback``: the action lifecycle.

``propose`` of an action the policy refuses prints the recorded (blocked) action and then fails with the
refusal's code (exit 6). ``execute`` and ``rollback`` print the action and exit 8 when its handler failed (the
failure is recorded, not raised).

Who acts is the authenticated principal (``saferails.cli.common.run``): the proposer of ``propose``, the approver
of ``approve``/``reject``, the actor of ``cancel``/``execute``/``rollback``. ``--proposer``, ``--approver`` and
``--actor`` are still accepted for scripts, but only with the principal's own id (anything else is refused with
``PERMISSION_DENIED``, exit 7). Permissions: ``propose`` needs the agent role, ``approve``/``reject`` approver,
``execute``/``rollback`` operator; ``cancel`` is the proposer's own or an operator's; reading needs ``read``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TextIO

import typer

from saferails.actions import lifecycle as lc
from saferails.actions.models import ActionView, Proposal
from saferails.actions.repository import ActionFilter
from saferails.api import Store, refusal_for
from saferails.audit.query import MAX_LIMIT, AuditQuery, AuditRecordView, query_audit
from saferails.cli import output as out
from saferails.cli.common import Io, JsonFlag, acting_as, iso_time, params, principal_of, resolve, run
from saferails.errors import ExecutionError, InvalidInput, RollbackError
from saferails.identity import Permission, require
from saferails.store.db import read_transaction

__all__ = ["ActionType", "Param", "ParamsJson", "Priority", "Proposer", "Reason", "Target", "Tenant", "proposal",
           "register"]

ActionType = Annotated[str, typer.Argument(metavar="TYPE", help="action type, e.g. send_email")]
Target = Annotated[str, typer.Option("--target")]
Param = Annotated[list[str] | None, typer.Option("--param", metavar="KEY=VALUE",
                                                 help="one parameter; repeat (JSON if [..] {..})")]
ParamsJson = Annotated[str | None, typer.Option("--params-json", metavar="JSON",
                                                help="all parameters as one JSON object")]
Proposer = Annotated[str | None, typer.Option(
    "--proposer", help="must be the authenticated principal (the default)")]
Reason = Annotated[str, typer.Option("--reason")]
Tenant = Annotated[str, typer.Option("--tenant")]
Priority = Annotated[int, typer.Option("--priority", help="1 (most urgent) .. 10")]
ActionId = Annotated[str, typer.Argument(metavar="ID", help="action id, or its first 4+ characters")]
Approver = Annotated[str | None, typer.Option(
    "--approver", help="must be the authenticated principal (the default)")]
Code = Annotated[str | None, typer.Option("--code", help="one-time approval code")]
Actor = Annotated[str | None, typer.Option("--actor", help="must be the authenticated principal (the default)")]


def proposal(fields: dict[str, Any], param: list[str] | None, params_json: str | None) -> Proposal:
    """A ``Proposal`` from the options' values; ``InvalidInput`` naming what the model refused."""
    try:
        return Proposal(**fields, params=params(param, params_json))
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        raise InvalidInput(f"invalid proposal: {exc}") from None


def _action_text(action: ActionView) -> Any:
    return lambda stream: out.render_action(action, stream)


def _decided(action: ActionView, io: Io) -> int:
    io.result(action.to_dict(), _action_text(action))
    return 0


def audit_trail(store: Store, action_id: str) -> list[AuditRecordView]:
    """Every audit record of one action, oldest first."""
    records: list[AuditRecordView] = []
    cursor: int | None = None
    with read_transaction(store.sessions) as session:
        while True:
            page = query_audit(session, AuditQuery(entity_type="action", entity_id=action_id, limit=MAX_LIMIT,
                                                   after_sequence=cursor))
            records.extend(page.records)
            cursor = page.next_cursor
            if cursor is None:
                return records


def propose(
    ctx: typer.Context, action_type: ActionType, target: Target, proposer: Proposer = None, param: Param = None,
    params_json: ParamsJson = None, reason: Reason = "", tenant: Tenant = "default", priority: Priority = 5,
    scheduled_for: Annotated[datetime | None, typer.Option(
        "--scheduled-for", parser=iso_time, metavar="ISO", help="not before this time (with timezone)")] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    as_json: JsonFlag = False,
) -> None:
    """propose an action; prints the policy's decision"""
    fields = {"action_type": action_type, "target": target, "reason": reason,
              "tenant": tenant, "priority": priority, "scheduled_for": scheduled_for,
              "idempotency_key": idempotency_key}

    def command(store: Store, io: Io) -> int:
        who = acting_as(principal_of(ctx), proposer, "--proposer")
        action = store.actions.propose(proposal(fields | {"proposer": who}, param, params_json))
        io.result(action.to_dict() | {"explanation": out.explanation(action)}, _action_text(action))
        refusal = refusal_for(action)
        return 0 if refusal is None else io.error(refusal)

    run(ctx, as_json, command, permission=Permission.PROPOSE_ACTION)


def show(ctx: typer.Context, action_id: ActionId, as_json: JsonFlag = False) -> None:
    """an action, its approvals, the decision and its audit trail"""

    def command(store: Store, io: Io) -> int:
        action = store.actions.get(resolve(store.sessions, "action", action_id))
        records = audit_trail(store, action.id)

        def text(stream: TextIO) -> None:
            out.render_action(action, stream)
            stream.write("\naudit trail:\n")
            out.render_table(out.AUDIT_COLUMNS, out.audit_rows(records), stream)

        io.result(action.to_dict() | {"explanation": out.explanation(action), "audit": [r.to_dict() for r in records]},
                  text)
        return 0

    run(ctx, as_json, command)


def list_actions(
    ctx: typer.Context,
    state: Annotated[list[str] | None, typer.Option("--state", help="repeatable")] = None,
    pending: Annotated[bool, typer.Option("--pending", help="only actions waiting for approval")] = False,
    action_type: Annotated[str | None, typer.Option("--type")] = None,
    target: Annotated[str | None, typer.Option("--target")] = None,
    proposer: Annotated[str | None, typer.Option("--proposer")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    offset: Annotated[int, typer.Option("--offset")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """list actions (most urgent first)"""
    states = tuple(state or ()) + ((lc.PENDING_APPROVAL,) if pending else ())

    def command(store: Store, io: Io) -> int:
        unknown = sorted(set(states) - set(lc.ACTION_MACHINE.states))
        if unknown:
            known = ", ".join(sorted(lc.ACTION_MACHINE.states))
            raise InvalidInput(f"unknown state(s) {', '.join(unknown)}; known: {known}")
        actions = store.actions.list(ActionFilter(states=states, action_type=action_type, target=target,
                                                  proposer=proposer, tenant=tenant, limit=limit, offset=offset))
        return io.table([a.to_dict() for a in actions], out.ACTION_COLUMNS, out.action_rows(actions),
                        empty="(no actions)")

    run(ctx, as_json, command)


def _decide(ctx: typer.Context, as_json: bool, approver: str | None,
            decide: Callable[[Store, str], ActionView]) -> None:
    """An approver's decision, as the authenticated principal: applied, then the action."""

    def command(store: Store, io: Io) -> int:
        action = decide(store, acting_as(principal_of(ctx), approver, "--approver"))
        return _decided(action, io)

    run(ctx, as_json, command, permission=Permission.DECIDE_ACTION)


def approve(ctx: typer.Context, action_id: ActionId, approver: Approver = None, code: Code = None,
            reason: Reason = "", as_json: JsonFlag = False) -> None:
    """approve a pending action (as the authenticated principal)"""
    _decide(ctx, as_json, approver, lambda store, who: store.actions.approve(
        resolve(store.sessions, "action", action_id), who, reason=reason, code=code, channel="cli"))


def reject(ctx: typer.Context, action_id: ActionId, reason: Reason, approver: Approver = None, code: Code = None,
           as_json: JsonFlag = False) -> None:
    """reject a pending action (as the authenticated principal)"""
    _decide(ctx, as_json, approver, lambda store, who: store.actions.reject(
        resolve(store.sessions, "action", action_id), who, reason=reason, code=code, channel="cli"))


def cancel(ctx: typer.Context, action_id: ActionId, reason: Reason, actor: Actor = None,
           as_json: JsonFlag = False) -> None:
    """withdraw an action that has not started executing (its proposer, or an operator)"""

    def command(store: Store, io: Io) -> int:
        principal = principal_of(ctx)
        who = acting_as(principal, actor, "--actor")
        full_id = resolve(store.sessions, "action", action_id)
        if not (store.actions.get(full_id).proposer == who and principal.can(Permission.PROPOSE_ACTION)):
            require(principal, Permission.OPERATE)
        return _decided(store.actions.cancel(full_id, who, reason=reason), io)

    run(ctx, as_json, command)


def execute(ctx: typer.Context, action_id: ActionId, actor: Actor = None, as_json: JsonFlag = False) -> None:
    """execute an approved action now (in this process, through its handler)"""

    def command(store: Store, io: Io) -> int:
        action = store.execution.execute(resolve(store.sessions, "action", action_id),
                                         acting_as(principal_of(ctx), actor, "--actor"))
        _decided(action, io)
        # A handler failure is recorded (state failed, error kept), not raised: the exit code and stderr say so.
        if action.state == "failed":
            return io.error(ExecutionError(f"action {action.id} failed: {action.error or 'no error recorded'}",
                                           action_id=action.id))
        return 0

    run(ctx, as_json, command, permission=Permission.OPERATE)


def rollback(ctx: typer.Context, action_id: ActionId, reason: Reason, actor: Actor = None,
             as_json: JsonFlag = False) -> None:
    """restore an action's captured pre-state through its handler"""

    def command(store: Store, io: Io) -> int:
        action = store.execution.rollback(resolve(store.sessions, "action", action_id),
                                          acting_as(principal_of(ctx), actor, "--actor"), reason=reason)
        _decided(action, io)
        if action.state == "rollback_failed":
            return io.error(RollbackError(f"rollback of action {action.id} failed: "
                                          f"{action.error or 'no error recorded'}", action_id=action.id))
        return 0

    run(ctx, as_json, command, permission=Permission.OPERATE)


def register(app: typer.Typer) -> None:
    """Add the action commands at the top level of ``app``."""
    app.command("propose")(propose)
    app.command("show")(show)
    app.command("list")(list_actions)
    for name, function in (("approve", approve), ("reject", reject), ("cancel", cancel), ("execute", execute),
                           ("rollback", rollback)):
        app.command(name)(function)
