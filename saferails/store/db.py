"""Engines, sessions and migrations.

SQLite is the embedded default: WAL journal, ``synchronous=FULL`` (the audit trail must survive a crash), a
busy timeout, foreign keys on, and every transaction opened with ``BEGIN IMMEDIATE`` so the writer lock is
taken up front: the check-then-write of a state transition cannot interleave with another writer (the SQLite
equivalent of ``SELECT ... FOR UPDATE``). PostgreSQL uses psycopg 3 and real row locks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from saferails.errors import StoreUnavailable

if TYPE_CHECKING:
    from saferails.audit.signing import AuditSigner

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
READ_ONLY = "saferails_read_only"


def create_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine configured for saferails' transaction discipline on either backend."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the driver so "begin" below decides how a transaction opens.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Readers (see ``read_transaction``) take no writer lock: in WAL mode they see a consistent snapshot
        # and never block or wait for writers.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


def session_factory(
    engine: Engine, *, audit_signer: AuditSigner | None = None, audit_sequencer: bool = False
) -> sessionmaker[Session]:
    """Sessions bound to ``engine``. With ``audit_signer`` every transaction that appends audit records also
    writes a checkpoint signed with it (``saferails.audit.checkpoints``); without one appends are not covered by
    a signature and ``verify_chain(..., key=...)`` reports them. With ``audit_sequencer`` (PostgreSQL) appends
    are written unchained and ``saferails.audit.sequencer`` chains them (and signs their checkpoints)."""
    factory = sessionmaker(engine, expire_on_commit=False)
    if audit_signer is not None:
        from saferails.audit.checkpoints import install_signer

        install_signer(factory, audit_signer)
    if audit_sequencer:
        from saferails.audit.chain import install_sequencer

        install_sequencer(factory, True)
    return factory


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception. Repositories never commit; this does."""
    try:
        session = factory()
    except sa.exc.OperationalError as exc:  # pragma: no cover - depends on the server being down
        raise StoreUnavailable(f"cannot open a session: {exc}") from exc
    try:
        with session.begin():
            yield session
    finally:
        session.close()


@contextmanager
def read_transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction for reading only: one consistent snapshot, no writer lock on SQLite (long reads such as
    ``audit verify`` do not stall writers), ``READ ONLY`` on PostgreSQL. Writing inside it fails."""
    engine = factory.kw["bind"]
    session = factory(bind=engine.execution_options(**{READ_ONLY: True}))
    try:
        with session.begin():
            if engine.dialect.name == "postgresql":
                session.execute(sa.text("SET TRANSACTION READ ONLY"))
            yield session
    finally:
        session.close()


def schema_heads() -> frozenset[str]:
    """The revisions ``alembic_version`` holds once the migrations shipped with this code are all applied, read
    from the ``revision``, ``down_revision`` and ``depends_on`` lines of the version files without importing
    Alembic or the migrations (what takes about a second in a fresh process). A revision another one depends on
    is not kept in ``alembic_version`` once its dependant is applied, so it counts as a parent here. A test checks
    it against what Alembic's own upgrade leaves in the table."""
    import ast
    import re

    assignment = re.compile(r"^(revision|down_revision|depends_on)\s*(?::[^=]*)?=\s*(.+)$", re.MULTILINE)
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for name, value in assignment.findall(path.read_text()):
            parsed = ast.literal_eval(value.strip())
            if name == "revision":
                revisions.add(parsed)
            elif parsed is not None:
                parents.update([parsed] if isinstance(parsed, str) else parsed)
    return frozenset(revisions - parents)


def at_heads(engine: Engine) -> bool:
    """True when the database's ``alembic_version`` rows are exactly :func:`schema_heads` (false when the table
    is missing, behind, ahead or on another branch set)."""
    try:
        with engine.connect() as conn:
            current = frozenset(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    except sa.exc.DBAPIError:
        return False
    return current == schema_heads()


def migrate(engine: Engine, revision: str = "heads") -> None:
    """Bring the schema to ``revision`` with Alembic (the same migrations on SQLite and PostgreSQL).

    Feature areas (audit guards, org data, workflow) branch from the foundation revision, so the default
    target is every head. A database already at every head is left alone without loading Alembic (what the
    upgrade would do anyway, a second sooner: every flow-run process opens the store); anything else, including
    a database ahead of this code, goes through Alembic as before.
    """
    if revision == "heads" and at_heads(engine):
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
