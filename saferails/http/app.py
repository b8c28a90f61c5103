"""``create_app(store, authenticator)``: the FastAPI application over an open store.

Routes: ``routes`` (JSON API under ``/api/v1`` and the seed aliases), ``agents`` (the fleet controls),
``approval_page`` (the e-mail link page) and ``agents_page`` (``/agents``, the operator's buttons). Behaviour
every route shares: problem+json errors (``problems``), a request id echoed as ``X-Request-ID``, a body size limit
(413), ``Idempotency-Key`` on POST (``idempotency``). OpenAPI at ``/openapi.json``, docs at ``/docs``.
"""

from __future__ import annotations

from fastapi import FastAPI

from saferails.api import Store
from saferails.http import agents, agents_page, approval_page, audit, principals, routes, watch
from saferails.http import aliases as alias_routes
from saferails.http import runbooks as runbook_routes
from saferails.http import workflow as workflow_routes
from saferails.http.auth import Authenticator
from saferails.http.executor import Executor
from saferails.http.idempotency import IdempotencyCache
from saferails.http.problems import EdgeMiddleware, install_error_handlers
from saferails.http.writers import SerialWrites

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def create_app(
    store: Store,
    authenticator: Authenticator,
    *,
    public_url: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    idempotency: IdempotencyCache | None = None,
    execute_approved: bool = False,
) -> FastAPI:
    """The HTTP API over ``store``, authenticating callers with ``authenticator``.

    ``public_url`` is the origin browsers use to reach the API (``https://saferails.example.com``); the approval
    page only accepts form posts from it. Default: the origin each request was addressed to, right unless a
    reverse proxy rewrites the Host. The app never closes ``store``: its owner does.

    ``execute_approved``: approved actions that no flow run owns are executed right after the request that
    approved them (``saferails.http.executor``; ``app.state.executor``, which the owner closes). The server
    (``saferails.http.server.build_app``) turns it on; without it they wait for an operator or the recover sweep.
    """
    app = FastAPI(
        title="saferails",
        version="1",
        summary="Safety rails for AI agents: propose actions, approve them, audit and undo.",
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    install_error_handlers(app)
    executor = Executor(store) if execute_approved else None
    app.state.executor = executor
    page = approval_page.ApprovalPage(store, public_url, executor)
    app.include_router(approval_page.build_router(page))
    api = routes.Api(store, authenticator, idempotency or IdempotencyCache(store.clock), executor)
    app.include_router(routes.build_router(api))
    app.include_router(agents.build_router(api))
    app.include_router(alias_routes.build_router(api))
    app.include_router(runbook_routes.build_router(api))
    app.include_router(workflow_routes.build_router(api))
    app.include_router(audit.build_router(api))
    app.include_router(principals.build_router(api))
    app.include_router(watch.build_router(watch.Watch(api)))
    if store.engine.dialect.name == "sqlite":
        app.add_middleware(SerialWrites)
    app.include_router(agents_page.build_router())
    app.add_middleware(EdgeMiddleware, max_body_bytes=max_body_bytes)
    return app
