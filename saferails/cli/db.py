"""``saferails db upgrade``: migrate the schema to the latest revision and say where it is."""

from __future__ import annotations

import sqlalchemy as sa
import typer

from saferails.api import Store
from saferails.cli.common import Io, JsonFlag, run

__all__ = ["register"]

app = typer.Typer(help="database maintenance", no_args_is_help=False)


@app.command("upgrade")
def upgrade(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """migrate the schema to the latest revision"""

    def command(store: Store, io: Io) -> int:
        # Opening the store migrated it to every head; report where the schema is now.
        with store.engine.connect() as conn:
            heads = sorted(str(r[0]) for r in conn.execute(sa.text("SELECT version_num FROM alembic_version")))
        url = store.engine.url.render_as_string(hide_password=True)
        io.result({"database": url, "revisions": heads},
                  lambda s: s.write(f"{url}: schema at revision(s) {', '.join(heads)}\n"))
        return 0

    run(ctx, as_json, command, opening="migrating the schema")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="db")
