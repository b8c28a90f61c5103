"""Shared fixtures: one migrated database per backend per test.

SQLite: a migrated template file is copied for each test. PostgreSQL: a database migrated once per run serves
as a TEMPLATE for one fresh database per test (``CREATE DATABASE ... TEMPLATE``); all are dropped at the end.
PostgreSQL URL: ``SAFERAILS_TEST_PG_URL`` (default the local server). When it cannot be reached the PostgreSQL
cases are skipped, except under ``CI=true`` where that is an error: CI must prove the PostgreSQL path.
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from saferails.store.db import create_engine, migrate, session_factory

PG_ADMIN_URL = os.environ.get("SAFERAILS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = ["sqlite", "postgresql"]
_counter = itertools.count()

# The shared fixtures (clock, smtp_server, webhook_receiver) live in tests/support.
pytest_plugins = ["tests.support"]


@dataclass
class Database:
    backend: str
    url: str
    engine: Engine
    sessions: sessionmaker[Session]


def _pg_url(dbname: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname


class _PgTemplates:
    def __init__(self) -> None:
        self.admin: Engine | None = None
        self.template: str | None = None
        self.error: str | None = None
        self.created: list[str] = []

    def ensure(self) -> None:
        if self.template is not None or self.error is not None:
            return
        try:
            self.admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with self.admin.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            self.error = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"
            return
        name = f"saferails_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self._exec(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        engine = create_engine(_pg_url(name), poolclass=sa.pool.NullPool)
        migrate(engine)
        engine.dispose()
        self.template = name

    def _exec(self, sql: str) -> None:
        assert self.admin is not None
        with self.admin.connect() as conn:
            conn.execute(sa.text(sql))

    def fresh(self) -> str:
        self.ensure()
        if self.error is not None:
            if IN_CI:
                pytest.fail(f"{self.error} (CI=true: the PostgreSQL tests must run)")
            pytest.skip(self.error)
        name = f"saferails_t_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
        self._exec(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.created.append(name)
        return _pg_url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.remove(name)

    def close(self) -> None:
        for name in list(self.created):
            self._exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if self.admin is not None:
            self.admin.dispose()


@pytest.fixture(scope="session")
def _pg() -> Iterator[_PgTemplates]:
    templates = _PgTemplates()
    yield templates
    templates.close()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = create_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return path


def make_database(backend: str, tmp_path: Path, sqlite_template: Path, pg: _PgTemplates) -> Database:
    if backend == "sqlite":
        path = tmp_path / f"saferails-{next(_counter)}.db"
        shutil.copy(sqlite_template, path)
        url = f"sqlite:///{path}"
        engine = create_engine(url)
    else:
        url = pg.fresh()
        engine = create_engine(url, pool_size=10, max_overflow=10)
    return Database(backend, url, engine, session_factory(engine))


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path, _sqlite_template: Path, _pg: _PgTemplates) -> Iterator[Database]:
    """A fresh, migrated database; the test runs once on SQLite and once on PostgreSQL."""
    database = make_database(request.param, tmp_path, _sqlite_template, _pg)
    yield database
    database.engine.dispose()
    if database.backend == "postgresql":
        _pg.drop(database.url)


@pytest.fixture
def sqlite_db(tmp_path: Path, _sqlite_template: Path, _pg: _PgTemplates) -> Iterator[Database]:
    """A fresh migrated SQLite database, for tests about the embedded default only."""
    database = make_database("sqlite", tmp_path, _sqlite_template, _pg)
    yield database
    database.engine.dispose()
