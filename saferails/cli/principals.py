"""``saferails principal add``: create or update a principal (groups, email, KYC)."""

from __future__ import annotations

from typing import Annotated

import typer

from saferails.api import Store
from saferails.cli.common import Io, JsonFlag, run

__all__ = ["register"]

app = typer.Typer(help="manage principals", no_args_is_help=False)


@app.command("add")
def add(
    ctx: typer.Context,
    principal_id: Annotated[str, typer.Argument(metavar="ID")],
    group: Annotated[list[str] | None, typer.Option("--group", help="repeatable")] = None,
    email: Annotated[str | None, typer.Option("--email")] = None,
    kyc: Annotated[bool, typer.Option("--kyc", help="the principal's identity is verified (KYC)")] = False,
    actor: Annotated[str, typer.Option("--actor")] = "cli:admin",
    as_json: JsonFlag = False,
) -> None:
    """create or update a principal"""
    groups = sorted(set(group or ()))

    def command(store: Store, io: Io) -> int:
        store.actions.upsert_principal(principal_id, email=email, groups=groups, kyc_verified=kyc, actor=actor)
        data = {"id": principal_id, "groups": groups, "email": email, "kyc_verified": kyc}
        io.result(data, lambda s: s.write(f"principal {principal_id}: groups {', '.join(groups) or '-'}, "
                                          f"kyc {'verified' if kyc else 'not verified'}\n"))
        return 0

    run(ctx, as_json, command)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="principal")
