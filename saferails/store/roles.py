"""PostgreSQL roles: an owner that migrates, an application role that cannot rewrite the audit trail.

Triggers make ``audit_log`` append-only only for roles that do not own it: a table's owner can disable or drop
its triggers, truncate it, or drop it. By default the role that ran the migrations is the application's own
role, so the agent's database credentials would be enough to rewrite the trail. ``init_roles`` separates them:

- the **owner** role runs the migrations and owns every table (it is used for ``migrate`` only);
- the **application** role connects at run time with only what the write path needs: SELECT, INSERT, UPDATE,
  DELETE on ordinary tables; on ``audit_log`` and ``audit_checkpoints`` only SELECT and INSERT (plus UPDATE of
  ``audit_log.prev_hash``/``hash``, which migration 0012 allows once per record: chaining a record written
  unchained, ``saferails.audit.sequencer``); on
  ``audit_head`` only SELECT and UPDATE (appending advances the head row with an UPDATE; migration 0002 lets it
  move only forward and 0009 checks at commit that it names the newest record). No TRUNCATE, no REFERENCES or
  TRIGGER, no CREATE on the schema, not superuser, not a member of the owner: it cannot ALTER, DROP or DISABLE
  TRIGGER on anything, nor set ``session_replication_role``.

Neither role is a superuser; a superuser (the admin that runs ``init_roles``) can still do anything, which is why
the signed checkpoints (``saferails.audit.checkpoints``) exist as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from saferails.errors import ConfigurationError

APPEND_ONLY_TABLES = ("audit_log", "audit_checkpoints")
HEAD_TABLE = "audit_head"
SEQUENCED_TABLE = "audit_log"
READ_ONLY_TABLES = ("alembic_version",)
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class RoleSetupInvalid(ConfigurationError):
    """``init_roles`` was given unusable arguments (bad role names, the same role twice, a non-PostgreSQL URL, an
    application role that is the administrator or a superuser)."""

    code = "DB_ROLE_SETUP_INVALID"


@dataclass(frozen=True)
class RoleUrls:
    """Where to connect as each role: ``owner_url`` for ``migrate`` only, ``app_url`` for everything else."""

    owner_url: str
    app_url: str


def init_roles(
    admin_url: str,
    *,
    owner: str = "saferails_owner",
    app: str = "saferails_app",
    owner_password: str | None = None,
    app_password: str | None = None,
    migrate_schema: bool = True,
) -> RoleUrls:
    """Create (or correct) the owner and application roles for the database named in ``admin_url``, migrate
    the schema as the owner, and grant the application role only what it needs. Idempotent.

    ``admin_url`` connects as a role that may create roles and grant on the database (usually ``postgres``).
    Existing roles keep their passwords unless one is given; both are forced to LOGIN, NOSUPERUSER, NOCREATEDB,
    NOCREATEROLE, NOBYPASSRLS. Tables, sequences and functions already in schema ``public`` (e.g. created earlier
    by the application role or the admin) are handed to the owner, so the application role owns nothing
    afterwards. With ``migrate_schema`` the schema is brought to every head as the owner before the grants.
    Returns the URLs to use (``admin_url`` with user and password replaced). Raises ``RoleSetupInvalid`` for bad
    arguments; database errors propagate as ``sqlalchemy.exc.DBAPIError``.
    """
    url = make_url(admin_url)
    if url.get_backend_name() != "postgresql":
        raise RoleSetupInvalid(f"database roles are for PostgreSQL, not {url.get_backend_name()}")
    for name in (owner, app):
        if not _ROLE_NAME.match(name):
            raise RoleSetupInvalid(f"role name {name!r} must match {_ROLE_NAME.pattern}", role=name)
    if owner == app:
        raise RoleSetupInvalid("the owner and the application role must be different roles", role=owner)
    database = url.database
    if not database:
        raise RoleSetupInvalid("admin_url must name the database the roles are for")
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            admin = conn.execute(sa.text("SELECT current_user")).scalar_one()
            if app == admin:
                raise RoleSetupInvalid(f"the application role {app!r} cannot be the administrator", role=app)
            for name, password in ((owner, owner_password), (app, app_password)):
                _ensure_role(conn, name, password)
            if _is_member(conn, app, owner):  # a member could SET ROLE to the owner
                conn.execute(sa.text(f"REVOKE {owner} FROM {app}"))
            conn.execute(sa.text(f'GRANT CONNECT, TEMPORARY ON DATABASE "{database}" TO {owner}, {app}'))
            conn.execute(sa.text(f"GRANT USAGE, CREATE ON SCHEMA public TO {owner}"))
            conn.execute(sa.text(f"GRANT USAGE ON SCHEMA public TO {app}"))
            conn.execute(sa.text(f"REVOKE CREATE ON SCHEMA public FROM {app}, PUBLIC"))
            _hand_over_to_owner(conn, owner)
            conn.execute(
                sa.text(
                    f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
                    f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}"
                )
            )
            conn.execute(
                sa.text(
                    f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
                    f"GRANT USAGE, SELECT ON SEQUENCES TO {app}"
                )
            )
    finally:
        engine.dispose()
    owner_url = url.set(username=owner, password=owner_password)
    if migrate_schema:
        from saferails.store.db import create_engine, migrate

        owner_engine = create_engine(owner_url.render_as_string(hide_password=False), poolclass=sa.pool.NullPool)
        try:
            migrate(owner_engine)
        finally:
            owner_engine.dispose()
    grant_app_privileges(admin_url, app=app)
    return RoleUrls(
        owner_url=owner_url.render_as_string(hide_password=False),
        app_url=url.set(username=app, password=app_password).render_as_string(hide_password=False),
    )


def grant_app_privileges(url: str | URL, *, app: str) -> None:
    """(Re)apply the application role's privileges on every table and sequence in schema ``public``: run it
    after each migration (as the owner or an admin). New tables get full DML by default privilege; the audit
    tables are narrowed here, so running it is what makes a new migration's audit table append-only for ``app``.
    """
    if not _ROLE_NAME.match(app):
        raise RoleSetupInvalid(f"role name {app!r} must match {_ROLE_NAME.pattern}", role=app)
    engine = sa.create_engine(make_url(url), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
            ).scalars()
            for table in list(tables):
                conn.execute(sa.text(f'REVOKE ALL ON TABLE public."{table}" FROM {app}, PUBLIC'))
                if table in APPEND_ONLY_TABLES:
                    privileges = "SELECT, INSERT"
                elif table == HEAD_TABLE:
                    privileges = "SELECT, UPDATE"
                elif table in READ_ONLY_TABLES:
                    privileges = "SELECT"
                else:
                    privileges = "SELECT, INSERT, UPDATE, DELETE"
                conn.execute(sa.text(f'GRANT {privileges} ON TABLE public."{table}" TO {app}'))
                if table == SEQUENCED_TABLE:
                    # The audit sequencer chains records written unchained; migration 0012's trigger lets each
                    # record be chained once and never changed after.
                    conn.execute(sa.text(f'GRANT UPDATE (prev_hash, hash) ON TABLE public."{table}" TO {app}'))
            conn.execute(sa.text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app}"))
    finally:
        engine.dispose()


def _ensure_role(conn: sa.Connection, name: str, password: str | None) -> None:
    attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION"
    exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).first() is not None
    verb = "ALTER" if exists else "CREATE"
    conn.execute(sa.text(f"{verb} ROLE {name} WITH {attributes}"))
    if password is not None:
        # Bound parameters are not allowed in utility statements; quote_literal escapes on the server.
        literal = conn.execute(sa.text("SELECT quote_literal(:p)"), {"p": password}).scalar_one()
        conn.execute(sa.text(f"ALTER ROLE {name} WITH PASSWORD {literal}"))


def _is_member(conn: sa.Connection, member: str, role: str) -> bool:
    return bool(conn.execute(sa.text("SELECT pg_has_role(:m, :r, 'MEMBER')"), {"m": member, "r": role}).scalar_one())


def _hand_over_to_owner(conn: sa.Connection, owner: str) -> None:
    """Every table, sequence and function in ``public`` becomes the owner's (whoever created it)."""
    objects = conn.execute(
        sa.text(
            """
            SELECT 'TABLE' AS kind, format('public.%I', c.relname) AS name
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
               AND pg_get_userbyid(c.relowner) <> :owner
            UNION ALL
            SELECT 'SEQUENCE', format('public.%I', c.relname)
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind = 'S' AND pg_get_userbyid(c.relowner) <> :owner
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))
            UNION ALL
            SELECT 'FUNCTION', format('public.%I(%s)', p.proname, pg_get_function_identity_arguments(p.oid))
              FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> :owner
            """
        ),
        {"owner": owner},
    ).all()
    for kind, name in objects:
        conn.execute(sa.text(f"ALTER {kind} {name} OWNER TO {owner}"))
