"""``saferails policy show|check``: the policy in force, and what it would decide for an action.

``policy check`` exits 0 when the action would be allowed or would need approval, and 6 (with
``error[CODE]: ...`` on stderr, the refusal's code) when the policy would deny it, as ``propose`` does."""

from __future__ import annotations

from typing import TextIO

import typer

from saferails.api import Store
from saferails.cli.actions import ActionType, Param, ParamsJson, Priority, Proposer, Reason, Target, Tenant, proposal
from saferails.cli.common import Io, JsonFlag, principal_of, run
from saferails.errors import PolicyRefusal
from saferails.policy import Decision, policy_to_yaml

__all__ = ["register"]

app = typer.Typer(help="show and try the policy", no_args_is_help=False)


@app.command("show")
def show(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """the policy in force: YAML, version, fingerprint"""

    def command(store: Store, io: Io) -> int:
        policy = store.policy
        source = str(store.settings.policy_path or "bundled default")
        data = {"version": policy.version, "fingerprint": policy.fingerprint, "source": source,
                "policy": policy.model_dump(mode="json")}

        def text(stream: TextIO) -> None:
            stream.write(f"# version: {policy.version}\n# fingerprint: {policy.fingerprint}\n# source: {source}\n")
            stream.write(policy_to_yaml(policy))

        io.result(data, text)
        return 0

    run(ctx, as_json, command)


@app.command("check")
def check(
    ctx: typer.Context, action_type: ActionType, target: Target, proposer: Proposer = None, param: Param = None,
    params_json: ParamsJson = None, reason: Reason = "", tenant: Tenant = "default", priority: Priority = 5,
    as_json: JsonFlag = False,
) -> None:
    """what would this action get, and why (writes nothing)"""
    fields = {"action_type": action_type, "target": target, "reason": reason, "tenant": tenant, "priority": priority}

    def command(store: Store, io: Io) -> int:
        # A dry run writes nothing: any proposer may be asked about (default: the caller).
        who = proposer or principal_of(ctx).id
        decision: Decision = store.actions.check(proposal(fields | {"proposer": who}, param, params_json))
        io.result(decision.to_dict() | {"explanation": decision.explanation},
                  lambda s: s.write(decision.explanation + "\n"))
        return 0 if decision.code is None else io.error(_refusal(decision))

    run(ctx, as_json, command)


def _refusal(decision: Decision) -> PolicyRefusal:
    """The typed refusal a DENY would be at ``propose`` (same code, so the same exit code)."""
    code = str(decision.code)
    cls = next((c for c in PolicyRefusal.__subclasses__() if c.code == code), PolicyRefusal)
    deciding = next((r for r in decision.reasons if r.fired and r.code == decision.code), None)
    why = f"rule {deciding.rule_id}: {deciding.message}" if deciding else code
    retry = f"; retry after {decision.retry_after.isoformat()}" if decision.retry_after else ""
    return cls(f"the policy would refuse this action: {why}{retry}", decision_code=code,
               rule_id=deciding.rule_id if deciding else None)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="policy")
