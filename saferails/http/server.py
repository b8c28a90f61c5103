"""Serve the HTTP API with uvicorn: ``serve(host=..., port=..., workers=..., authenticator=...)``.

Each worker process builds its own app with :func:`build_app`: it opens the store from the ``SAFERAILS_*``
settings (``saferails.settings.load_settings``; more than one worker needs ``SAFERAILS_DATABASE_URL`` on
PostgreSQL: :func:`serve` refuses several workers over SQLite, which serialises writers) and its authenticator:
by default the store's own principals and credentials (:class:`saferails.http.auth.IdentityAuthenticator`: the
tokens ``saferails init`` and ``saferails credential issue`` print), plus OIDC bearer tokens when
``SAFERAILS_OIDC_*`` is set (``saferails.http.oidc``), or the one named by ``SAFERAILS_HTTP_AUTHENTICATOR``
(``module:function``, a function taking the open ``Store`` and returning an ``Authenticator``).
``SAFERAILS_PUBLIC_URL`` is the origin browsers use (the approval page only accepts form posts from it; default:
the origin each request was addressed to). Every request is authenticated; there is no anonymous mode.

The CLI's ``saferails api serve --host --port --workers`` calls :func:`serve`.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import cast

import uvicorn
from fastapi import FastAPI

from saferails.api import Store, open_store
from saferails.errors import ConfigurationError
from saferails.http.app import create_app
from saferails.http.auth import Authenticator, IdentityAuthenticator
from saferails.http.oidc import BearerAuthenticator, from_settings
from saferails.settings import load_settings

AUTHENTICATOR_ENV = "SAFERAILS_HTTP_AUTHENTICATOR"
PUBLIC_URL_ENV = "SAFERAILS_PUBLIC_URL"

AuthenticatorFactory = Callable[[Store], Authenticator]


def load_authenticator_factory(spec: str) -> AuthenticatorFactory:
    """Import ``module:function``; ``ConfigurationError`` if it is malformed or missing."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"{AUTHENTICATOR_ENV} must look like 'package.module:function', got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load the authenticator factory {spec!r}: {exc}") from exc
    if not callable(factory):
        raise ConfigurationError(f"the authenticator factory {spec!r} is not callable")
    return cast(AuthenticatorFactory, factory)


def identity_authenticator(store: Store) -> Authenticator:
    """The default authenticator factory: the store's API keys (its identity service), and JWT bearer tokens
    from the identity provider when ``SAFERAILS_OIDC_*`` is configured (``saferails.http.oidc``)."""
    api_keys = IdentityAuthenticator(store.identity)
    oidc = from_settings(store.settings, store.clock, store.identity)
    return api_keys if oidc is None else BearerAuthenticator(api_keys, oidc)


def build_app() -> FastAPI:
    """The app of one worker, from the environment (uvicorn calls this with ``factory=True``). The store is
    closed when the worker shuts down."""
    settings = load_settings()
    factory = (load_authenticator_factory(settings.http_authenticator) if settings.http_authenticator
               else identity_authenticator)
    store = open_store(settings)
    try:
        app = create_app(store, factory(store), public_url=settings.public_url, execute_approved=True)
    except BaseException:
        store.close()
        raise

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            app.state.executor.close()
            store.close()

    app.router.lifespan_context = lifespan
    return app


def serve(*, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, log_level: str = "info") -> None:
    """Run the API until interrupted. Settings (``SAFERAILS_HTTP_AUTHENTICATOR``, ``SAFERAILS_PUBLIC_URL``, the
    store's) are checked and the authenticator imported before listening, so a misconfiguration fails here, not
    per request; each worker process reads the same environment."""
    if workers < 1:
        raise ConfigurationError(f"workers must be at least 1, got {workers}")
    settings = load_settings()
    if workers > 1 and settings.is_sqlite:
        # SQLite takes one writer at a time: worker processes would queue on its lock and time out under load
        # ("database is locked") instead of serving in parallel.
        raise ConfigurationError(
            f"--workers {workers} needs PostgreSQL (SAFERAILS_DATABASE_URL=postgresql://...): SQLite serialises "
            "writers, so more worker processes only wait on its lock; serve SQLite with one worker",
            workers=workers)
    spec = settings.http_authenticator
    if spec:
        load_authenticator_factory(spec)
    uvicorn.run("saferails.http.server:build_app", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, proxy_headers=False)
