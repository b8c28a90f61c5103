"""audit checkpoints: signed chain heads, and guards that REPLACE cannot get past

Revision ID: 0009
Revises: 0002

``audit_checkpoints`` holds one Ed25519-signed checkpoint per transaction that appended audit records
(``saferails.audit.checkpoints``); it is append-only like ``audit_log``.

SQLite: ``INSERT OR REPLACE`` / ``REPLACE INTO`` deletes the conflicting row without firing DELETE triggers
(unless ``PRAGMA recursive_triggers`` is on, which a raw connection does not set), so 0002's UPDATE/DELETE
triggers alone let anyone swap a record, the head or a checkpoint. A BEFORE INSERT trigger that aborts when the
key already exists closes that on every connection: it fires before the conflict is resolved.

PostgreSQL: REPLACE does not exist (``ON CONFLICT DO UPDATE`` fires the UPDATE triggers). The head row must also
stay consistent: a deferred constraint trigger checks at commit that ``audit_head`` names the newest record and
its hash, so a role allowed to UPDATE the head (the application role) can move it only to the record it
appended. Triggers bind roles that do not own the tables; see ``saferails.store.roles``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0002"
branch_labels = None
depends_on = None

LOG_MESSAGE = "audit_log is append-only"
HEAD_MESSAGE = "audit_head only moves forward"
CHECKPOINT_MESSAGE = "audit_checkpoints is append-only"
CONSISTENT_MESSAGE = "audit_head must name the newest audit record"

SQLITE_UP = [
    f"""CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log
    WHEN EXISTS (SELECT 1 FROM audit_log WHERE sequence = NEW.sequence)
    BEGIN SELECT RAISE(ABORT, '{LOG_MESSAGE}'); END""",
    f"""CREATE TRIGGER audit_head_no_replace BEFORE INSERT ON audit_head
    WHEN EXISTS (SELECT 1 FROM audit_head)
    BEGIN SELECT RAISE(ABORT, '{HEAD_MESSAGE}'); END""",
    f"""CREATE TRIGGER audit_checkpoints_no_replace BEFORE INSERT ON audit_checkpoints
    WHEN EXISTS (SELECT 1 FROM audit_checkpoints WHERE sequence = NEW.sequence)
    BEGIN SELECT RAISE(ABORT, '{CHECKPOINT_MESSAGE}'); END""",
    f"""CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, '{CHECKPOINT_MESSAGE}'); END""",
    f"""CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, '{CHECKPOINT_MESSAGE}'); END""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS audit_checkpoints_no_delete",
    "DROP TRIGGER IF EXISTS audit_checkpoints_no_update",
    "DROP TRIGGER IF EXISTS audit_checkpoints_no_replace",
    "DROP TRIGGER IF EXISTS audit_head_no_replace",
    "DROP TRIGGER IF EXISTS audit_log_no_replace",
]

POSTGRESQL_UP = [
    f"""CREATE FUNCTION audit_checkpoints_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{CHECKPOINT_MESSAGE}' USING ERRCODE = 'restrict_violation', DETAIL = TG_OP || ' refused';
    END
    $$""",
    """CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_append_only()""",
    """CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoints_append_only()""",
    # Checked at commit against the head as it is then (it may move several times in one transaction).
    f"""CREATE FUNCTION audit_head_consistent() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        head_sequence bigint;
        head_hash varchar;
    BEGIN
        SELECT sequence, hash INTO head_sequence, head_hash FROM audit_head WHERE id = NEW.id;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM audit_log WHERE sequence = head_sequence AND hash = head_hash)
           OR EXISTS (SELECT 1 FROM audit_log WHERE sequence > head_sequence) THEN
            RAISE EXCEPTION '{CONSISTENT_MESSAGE}' USING ERRCODE = 'restrict_violation',
                DETAIL = 'head ' || head_sequence || ' does not match the last record';
        END IF;
        RETURN NULL;
    END
    $$""",
    """CREATE CONSTRAINT TRIGGER audit_head_consistent AFTER UPDATE ON audit_head
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_head_consistent()""",
]
POSTGRESQL_DOWN = [
    "DROP TRIGGER IF EXISTS audit_head_consistent ON audit_head",
    "DROP FUNCTION IF EXISTS audit_head_consistent()",
    "DROP TRIGGER IF EXISTS audit_checkpoints_no_truncate ON audit_checkpoints",
    "DROP TRIGGER IF EXISTS audit_checkpoints_append_only ON audit_checkpoints",
    "DROP FUNCTION IF EXISTS audit_checkpoints_append_only()",
]


def _statements(up: bool) -> list[str]:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        return SQLITE_UP if up else SQLITE_DOWN
    if dialect == "postgresql":
        return POSTGRESQL_UP if up else POSTGRESQL_DOWN
    raise NotImplementedError(f"audit guards are written for sqlite and postgresql, not {dialect}")


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column(
            "sequence", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False
        ),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("prev_sequence", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(length=80), nullable=False),
        sa.Column("signature", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name="pk_audit_checkpoints"),
    )
    for statement in _statements(up=True):
        op.execute(statement)


def downgrade() -> None:
    for statement in _statements(up=False):
        op.execute(statement)
    op.drop_table("audit_checkpoints")
