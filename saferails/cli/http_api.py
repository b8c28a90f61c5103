"""``saferails api serve``: the HTTP API (``saferails.http.server.serve``) on a host and port.

``--workers N`` starts N uvicorn worker processes; more than one needs the store on PostgreSQL (on SQLite, which
takes one writer at a time, it is refused with ``CONFIGURATION_INVALID``).

Serving needs no CLI credential: every request is authenticated by the API itself (by default with the store's
credentials, ``saferails.http.auth.IdentityAuthenticator``, plus OIDC tokens when ``SAFERAILS_OIDC_*`` is set;
``SAFERAILS_HTTP_AUTHENTICATOR`` names another).
"""

from __future__ import annotations

from typing import Annotated

import typer

from saferails.cli.common import Io, JsonFlag, run_offline

__all__ = ["register"]

app = typer.Typer(help="the HTTP API", no_args_is_help=False)


@app.command("serve")
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="default SAFERAILS_API_HOST (127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option("--port", help="default SAFERAILS_API_PORT (8000)")] = None,
    workers: Annotated[int, typer.Option(
        "--workers", help="uvicorn worker processes, each opening the store; more than 1 needs PostgreSQL")] = 1,
    as_json: JsonFlag = False,
) -> None:
    """serve the HTTP API until interrupted"""

    def command(io: Io) -> int:
        # Imported here: only this command pays for uvicorn and FastAPI.
        from saferails.http.server import serve as serve_http
        from saferails.settings import load_settings

        settings = load_settings()
        serve_http(host=host or settings.api_host, port=port or settings.api_port, workers=workers)
        return 0

    run_offline(ctx, as_json, command)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="api")
