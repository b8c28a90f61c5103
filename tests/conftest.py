"""Shared fixtures: one migrated database per backend per test.

SQLite: a migrated template file is copied for each test. PostgreSQL: a database migrated once per run serves
as a TEMPLATE for the test databases (``CREATE DATABASE ... TEMPLATE``). After a test its database is reset to
the template's content (every table emptied, the rows the migrations seed and the sequences restored) and
reused, provided its schema is still the template's (same fingerprint: tables, columns, constraints, triggers
and whether they are enabled, functions, privileges, owners); otherwise it is dropped. Resetting takes tens of
milliseconds, while ``DROP DATABASE`` forces a checkpoint of the whole server (seconds on a busy machine). All
are dropped at the end.
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


# Everything a test could change in a database's definition (not its rows): a reused database must match the
# template exactly. Roles are server-wide and outside any one database.
_SCHEMA_FINGERPRINT = """
SELECT md5(string_agg(item, E'\n' ORDER BY item)) FROM (
  SELECT 'db:' || datdba::text || ':' || coalesce(datacl::text, '') AS item FROM pg_database
   WHERE datname = current_database()
  UNION ALL SELECT 'set:' || setrole::text || ':' || array_to_string(setconfig, ',') FROM pg_db_role_setting
   WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  UNION ALL SELECT 'ns:' || nspname || ':' || nspowner::text || ':' || coalesce(nspacl::text, '') FROM pg_namespace
  UNION ALL SELECT 'rel:' || n.nspname || '.' || c.relname || ':' || c.relkind::text || ':' || c.relowner::text || ':'
         || coalesce(c.relacl::text, '') || ':' || c.relrowsecurity::text || c.relforcerowsecurity::text
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
  UNION ALL SELECT 'col:' || a.attrelid::regclass::text || '.' || a.attname || ':' || format_type(a.atttypid,
         a.atttypmod) || ':' || a.attnotnull::text || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
     AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL SELECT 'con:' || conrelid::regclass::text || '.' || conname || ':' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
  UNION ALL SELECT 'idx:' || indexrelid::regclass::text || ':' || pg_get_indexdef(indexrelid) FROM pg_index
   WHERE indrelid::regclass::text NOT LIKE 'pg_%'
  UNION ALL SELECT 'trg:' || tgrelid::regclass::text || '.' || tgname || ':' || tgenabled::text || ':'
         || pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL SELECT 'fn:' || n.nspname || '.' || p.proname || ':' || md5(p.prosrc) || ':' || p.proowner::text || ':'
         || coalesce(p.proacl::text, '') FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  UNION ALL SELECT 'rule:' || ev_class::regclass::text || '.' || rulename || ':' || ev_enabled::text FROM pg_rewrite
   WHERE ev_class::regclass::text NOT LIKE 'pg_%' AND ev_class::regclass::text NOT LIKE 'information_schema.%'
  UNION ALL SELECT 'pol:' || polrelid::regclass::text || '.' || polname FROM pg_policy
  UNION ALL SELECT 'defacl:' || defaclrole::text || ':' || defaclobjtype::text || ':' || defaclacl::text
    FROM pg_default_acl
  UNION ALL SELECT 'ext:' || extname || ':' || extversion FROM pg_extension
) AS schema_items
"""

_USER_TABLES = """
SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables
 WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1
"""

_SEQUENCES = """
SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), last_value FROM pg_sequences
 WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1
"""


@dataclass
class _Pristine:
    """What a reset restores: the template's schema fingerprint, its tables, the rows its migrations seed (COPY
    text, which round-trips every type exactly) and its sequences' positions."""

    fingerprint: str
    tables: list[str]
    rows: dict[str, bytes]
    sequences: list[tuple[str, int | None]]


def read_pristine(url: str) -> _Pristine:
    engine = create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            fingerprint = str(conn.execute(sa.text(_SCHEMA_FINGERPRINT)).scalar_one())
            tables = [str(t) for t in conn.execute(sa.text(_USER_TABLES)).scalars()]
            sequences = [(str(n), v) for n, v in conn.execute(sa.text(_SEQUENCES)).tuples()]
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            rows: dict[str, bytes] = {}
            for table in tables:
                with cursor.copy(f"COPY {table} TO STDOUT") as copy:
                    data = b"".join(bytes(chunk) for chunk in copy)
                if data:
                    rows[table] = data
    finally:
        engine.dispose()
    return _Pristine(fingerprint, tables, rows, sequences)


class PgTemplates:
    def __init__(self) -> None:
        self.admin: Engine | None = None
        self.template: str | None = None
        self.pristine: _Pristine | None = None
        self.error: str | None = None
        self.created: list[str] = []
        self.clean: list[str] = []  # reset databases ready for the next test

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
        self.pristine = read_pristine(_pg_url(name))
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
        if self.clean:
            return _pg_url(self.clean.pop())
        name = f"saferails_t_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
        self._exec(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.created.append(name)
        return _pg_url(name)

    def release(self, url: str) -> None:
        """The test is done with ``url``: reset it for the next test, or drop it if its schema changed."""
        name = url.rsplit("/", 1)[1]
        self._exec(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        if self._reset(url):
            self.clean.append(name)
        else:
            self._exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self.created.remove(name)

    def _reset(self, url: str) -> bool:
        assert self.pristine is not None
        pristine = self.pristine
        engine = create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.begin() as conn:
                if conn.execute(sa.text(_SCHEMA_FINGERPRINT)).scalar_one() != pristine.fingerprint:
                    return False
                # Replica mode skips the (origin) triggers: the audit tables' append-only guards and the foreign
                # keys. DELETE, not TRUNCATE: on a test's few rows it is several times faster.
                conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
                for table in pristine.tables:
                    conn.execute(sa.text(f"DELETE FROM {table}"))
                cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                for table, data in pristine.rows.items():
                    with cursor.copy(f"COPY {table} FROM STDIN") as copy:
                        copy.write(data)
                for sequence, last_value in pristine.sequences:
                    conn.execute(sa.text("SELECT setval(CAST(:s AS regclass), :v, :called)"),
                                 {"s": sequence, "v": last_value or 1, "called": last_value is not None})
                # Planner statistics the last test's data left behind would steer the next test's plans.
                conn.execute(sa.text("DELETE FROM pg_catalog.pg_statistic WHERE starelid IN (SELECT oid FROM pg_class"
                                     " WHERE relnamespace = 'public'::regnamespace)"))
            return True
        except sa.exc.DBAPIError:
            return False  # e.g. a test left locks or objects the reset cannot clear: start afresh instead
        finally:
            engine.dispose()

    def close(self) -> None:
        for name in list(self.created):
            self._exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if self.admin is not None:
            self.admin.dispose()


@pytest.fixture(scope="session")
def _pg() -> Iterator[PgTemplates]:
    templates = PgTemplates()
    yield templates
    templates.close()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = create_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return path


def make_database(backend: str, tmp_path: Path, sqlite_template: Path, pg: PgTemplates) -> Database:
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
def db(request: pytest.FixtureRequest, tmp_path: Path, _sqlite_template: Path, _pg: PgTemplates) -> Iterator[Database]:
    """A fresh, migrated database; the test runs once on SQLite and once on PostgreSQL."""
    database = make_database(request.param, tmp_path, _sqlite_template, _pg)
    yield database
    database.engine.dispose()
    if database.backend == "postgresql":
        _pg.release(database.url)


@pytest.fixture
def postgresql_db(tmp_path: Path, _sqlite_template: Path, _pg: PgTemplates) -> Iterator[Database]:
    """A fresh migrated PostgreSQL database, for tests of what only PostgreSQL has (concurrent writers, roles)."""
    database = make_database("postgresql", tmp_path, _sqlite_template, _pg)
    yield database
    database.engine.dispose()
    _pg.release(database.url)


@pytest.fixture
def sqlite_db(tmp_path: Path, _sqlite_template: Path, _pg: PgTemplates) -> Iterator[Database]:
    """A fresh migrated SQLite database, for tests about the embedded default only."""
    database = make_database("sqlite", tmp_path, _sqlite_template, _pg)
    yield database
    database.engine.dispose()


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep generated keys and approval inboxes out of the checkout: a test that does not choose a data directory
    gets a fresh one (fixtures that set ``SAFERAILS_DATA_DIR`` themselves run later and win)."""
    monkeypatch.setenv("SAFERAILS_DATA_DIR", str(tmp_path_factory.mktemp("data")))
