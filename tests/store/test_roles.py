"""PostgreSQL roles: migrated as the owner, the application role writes through the normal path but cannot
rewrite, empty, alter or un-trigger the audit tables."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from saferails import audit
from saferails.actions.service import ActionService, Proposal
from saferails.audit.checkpoints import install_signer
from saferails.audit.sequencer import sequence_pending
from saferails.audit.signing import AuditSigner
from saferails.audit.verify import verify_chain
from saferails.clock import ManualClock
from saferails.errors import ConfigurationError
from saferails.policy import default_policy
from saferails.store.db import create_engine, migrate, read_transaction, session_factory, transaction
from saferails.store.roles import RoleUrls, init_roles

PG_ADMIN_URL = os.environ.get("SAFERAILS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"


@dataclass
class Roles:
    urls: RoleUrls
    owner: str
    app: str
    admin_url: str


def _admin() -> sa.Engine:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        if IN_CI:
            pytest.fail(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    return engine


@pytest.fixture
def roles() -> Iterator[Roles]:
    """A fresh empty database and two roles with names unique to this run; all dropped afterwards."""
    admin = _admin()
    tag = uuid.uuid4().hex[:8]
    database, owner, app = f"saferails_roles_{tag}", f"sr_owner_{tag}", f"sr_app_{tag}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    admin_url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database
    try:
        urls = init_roles(admin_url, owner=owner, app=app)
        yield Roles(urls, owner, app, admin_url)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            for role in (app, owner):
                conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


def _refused(engine: sa.Engine, sql: str) -> str:
    with pytest.raises(sa.exc.DBAPIError) as info, engine.begin() as conn:
        conn.execute(sa.text(sql))
    return str(info.value.orig)


def _append(sessions: Any, clock: ManualClock, n: int) -> None:
    with transaction(sessions) as session:
        audit.append(session, audit.AuditEntry(actor=f"u{n}", event="noted", entity_type="test"), now=clock.now())


def test_the_application_role_uses_the_normal_write_path(roles: Roles, clock: ManualClock) -> None:
    signer = AuditSigner.generate()
    engine = create_engine(roles.urls.app_url, poolclass=sa.pool.NullPool)
    try:
        migrate(engine)  # open_store upgrades on start: a schema already at head needs no privilege to "upgrade"
        sessions = session_factory(engine, audit_signer=signer)
        service = ActionService(sessions, default_policy(), clock)
        action = service.propose(
            Proposal(
                action_type="send_email",
                target="agent-mailbox",
                proposer="agent-7",
                params={"to": ["x@example.com"], "subject": "hello", "body": "thanks"},
            )
        )
        _append(sessions, clock, 1)

        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_user")).scalar_one() == roles.app
        with read_transaction(sessions) as session:
            report = verify_chain(session, key=signer.verifier)
        assert action.state in {"approved", "pending_approval", "blocked"}
        assert report.ok, report.problem
        assert report.records_checked >= 2 and report.signed_through == report.head_sequence
    finally:
        engine.dispose()


REFUSED = [
    ("UPDATE audit_log SET actor = 'mallory'", r"append-only|permission denied"),
    ("DELETE FROM audit_log", r"append-only|permission denied"),
    ("TRUNCATE audit_log", r"permission denied"),
    ("TRUNCATE audit_head", r"permission denied"),
    ("TRUNCATE audit_checkpoints", r"permission denied"),
    ("UPDATE audit_checkpoints SET key_id = 'x'", r"permission denied"),
    ("DELETE FROM audit_checkpoints", r"permission denied"),
    ("DELETE FROM audit_head", r"permission denied"),
    (f"INSERT INTO audit_head (id, sequence, hash) VALUES (2, 0, '{'0' * 64}')", r"permission denied"),
    ("UPDATE audit_head SET sequence = 0", r"only moves forward"),
    ("UPDATE audit_head SET sequence = sequence + 1", r"must name the newest audit record"),
    ("ALTER TABLE audit_log DISABLE TRIGGER USER", r"must be owner"),
    ("ALTER TABLE audit_log ADD COLUMN note text", r"must be owner"),
    ("DROP TRIGGER audit_log_append_only ON audit_log", r"must be owner"),
    ("DROP TRIGGER audit_head_consistent ON audit_head", r"must be owner"),
    ("DROP TABLE audit_checkpoints", r"must be owner"),
    ("SET session_replication_role = replica", r"permission denied"),
    ("CREATE TABLE audit_shadow (x int)", r"permission denied"),
    ("SET ROLE {owner}", r"permission denied"),
]


def test_the_application_role_cannot_rewrite_empty_alter_or_untrigger_the_audit_tables(
    roles: Roles, clock: ManualClock
) -> None:
    signer = AuditSigner.generate()
    engine = create_engine(roles.urls.app_url, poolclass=sa.pool.NullPool)
    try:
        sessions = session_factory(engine)
        install_signer(sessions, signer)
        for n in range(3):
            _append(sessions, clock, n)

        problems = []
        for sql, expected in REFUSED:
            statement = sql.format(owner=roles.owner)
            message = _refused(engine, statement)
            if not re.search(expected, message):
                problems.append(f"{statement}: {message.splitlines()[0]}")

        assert problems == []
        with read_transaction(sessions) as session:
            report = verify_chain(session, key=signer.verifier)
        assert report.ok and report.records_checked == 3
    finally:
        engine.dispose()


SEQUENCED_REFUSED = [
    # Only prev_hash and hash of audit_log may be updated, once per record, nothing else with them.
    ("UPDATE audit_log SET actor = 'mallory', prev_hash = 'x', hash = 'y' WHERE hash IS NULL", r"permission denied"),
    ("UPDATE audit_log SET hash = 'y' WHERE hash IS NOT NULL", r"append-only"),
    ("UPDATE audit_log SET prev_hash = NULL, hash = NULL", r"append-only"),
    ("DELETE FROM audit_log WHERE hash IS NULL", r"permission denied"),
    ("SELECT setval('audit_log_sequence', 1)", r"permission denied"),
]


def test_the_application_role_runs_the_sequencer_and_still_cannot_rewrite(roles: Roles, clock: ManualClock) -> None:
    signer = AuditSigner.generate()
    engine = create_engine(roles.urls.app_url, poolclass=sa.pool.NullPool)
    try:
        sessions = session_factory(engine, audit_signer=signer, audit_sequencer=True)
        for n in range(3):
            _append(sessions, clock, n)
        assert sequence_pending(sessions, now=clock.now()).chained == 3
        _append(sessions, clock, 3)  # one left unchained for the refusals below
        problems = []
        for sql, expected in SEQUENCED_REFUSED:
            message = _refused(engine, sql)
            if not re.search(expected, message):
                problems.append(f"{sql}: {message.splitlines()[0]}")
        assert problems == []
        assert sequence_pending(sessions, now=clock.now()).chained == 1
        with read_transaction(sessions) as session:
            report = verify_chain(session, key=signer.verifier)
        assert report.ok and report.records_checked == 4 and report.signed_through == 4, report
    finally:
        engine.dispose()


def test_the_owner_owns_every_table_and_init_roles_is_idempotent(roles: Roles) -> None:
    again = init_roles(roles.admin_url, owner=roles.owner, app=roles.app)

    engine = sa.create_engine(roles.admin_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            owners = set(
                conn.execute(sa.text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")).scalars()
            )
            privileges = set(
                conn.execute(
                    sa.text(
                        "SELECT privilege_type FROM information_schema.role_table_grants "
                        "WHERE grantee = :app AND table_name = 'audit_log'"
                    ),
                    {"app": roles.app},
                ).scalars()
            )
    finally:
        engine.dispose()
    assert again == roles.urls
    assert owners == {roles.owner}
    assert privileges == {"SELECT", "INSERT"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"owner": "same", "app": "same"}, "different"),
        ({"owner": "Robert'); DROP", "app": "x"}, "must match"),
    ],
    ids=["one role twice", "an unsafe name"],
)
def test_unusable_role_arguments_are_refused_before_touching_the_server(kwargs: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        init_roles("postgresql+psycopg://nobody@127.0.0.1:1/none", **kwargs)
