"""``saferails db upgrade|init-roles``: migrate the schema and say where it is; set up PostgreSQL roles."""

from __future__ import annotations

import secrets
from typing import Annotated

import sqlalchemy as sa
import typer

from saferails.api import Store
from saferails.cli.common import Io, JsonFlag, run_offline, run_unauthenticated
from saferails.store.roles import init_roles

__all__ = ["register"]

app = typer.Typer(help="database maintenance", no_args_is_help=False)


@app.command("upgrade")
def upgrade(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """migrate the schema to the latest revision (needs the database URL, no credential)"""

    def command(store: Store, io: Io) -> int:
        # Opening the store migrated it to every head; report where the schema is now.
        with store.engine.connect() as conn:
            heads = sorted(str(r[0]) for r in conn.execute(sa.text("SELECT version_num FROM alembic_version")))
        url = store.engine.url.render_as_string(hide_password=True)
        io.result({"database": url, "revisions": heads},
                  lambda s: s.write(f"{url}: schema at revision(s) {', '.join(heads)}\n"))
        return 0

    run_unauthenticated(ctx, as_json, command, opening="migrating the schema")


@app.command("init-roles")
def init_roles_command(
    ctx: typer.Context,
    admin_url: Annotated[str, typer.Option("--admin-url", metavar="URL",
                                           help="PostgreSQL URL of a role that may create roles, naming the database")],
    owner: Annotated[str, typer.Option("--owner", help="the role that owns the tables and runs migrations")]
    = "saferails_owner",
    app_role: Annotated[str, typer.Option("--app", help="the role the application connects as")] = "saferails_app",
    as_json: JsonFlag = False,
) -> None:
    """create the owner role (migrations) and the application role (INSERT/SELECT on the audit tables only)"""

    def command(io: Io) -> int:
        # New passwords each time: the URLs are shown once, here; existing roles get the new passwords.
        urls = init_roles(admin_url, owner=owner, app=app_role, owner_password=secrets.token_urlsafe(24),
                          app_password=secrets.token_urlsafe(24))
        data = {"owner_url": urls.owner_url, "app_url": urls.app_url}
        io.result(data, lambda s: s.write(
            f"owner (migrations: SAFERAILS_DATABASE_URL for `saferails db upgrade`): {urls.owner_url}\n"
            f"application (SAFERAILS_DATABASE_URL for everything else): {urls.app_url}\n"
            "these passwords are shown once; after each later migration run this again to re-grant\n"))
        return 0

    run_offline(ctx, as_json, command)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="db")
