"""audit sequencer: on PostgreSQL writers may append audit records unchained, a sequencer chains them later

Revision ID: 0012_audit_sequencer
Revises: 0011_fleet_audit (and needs 0009: it replaces trigger functions of 0002 and 0009)

PostgreSQL (SQLite keeps chaining inline: it has one writer at a time anyway; it only gets the ``mac`` column).

- ``audit_log_sequence``: where sequence numbers come from for records written unchained
  (``saferails.audit.sequencer``). A rolled-back transaction leaves a gap; the hash links, not consecutive
  numbers, prove that nothing is missing.
- ``audit_log.prev_hash`` and ``hash`` may be NULL: a record written unchained has neither until the sequencer
  chains it. The record's content and number are final when it is inserted.
- ``audit_log.mac``: the writer's HMAC of an unchained record under a key derived from the audit signing key;
  the sequencer chains (and so signs) only records whose MAC holds, so a record inserted by someone holding the
  database credentials but not the key is never vouched for. NULL for records chained inline.
- The append-only trigger now lets exactly one UPDATE through per record: setting ``prev_hash`` and ``hash`` of
  an unchained record, every other column unchanged. A chained record never changes again; DELETE and TRUNCATE
  are still refused. The application role gets UPDATE on those two columns only (``saferails.store.roles``).
- The deferred head check at commit ignores unchained records above the head: the head must name the newest
  CHAINED record.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_audit_sequencer"
down_revision = "0011_fleet_audit"
branch_labels = None
depends_on = "0009"  # replaces functions 0002 and 0009 create

LOG_MESSAGE = "audit_log is append-only"
CONSISTENT_MESSAGE = "audit_head must name the newest audit record"

POSTGRESQL_UP = [
    "CREATE SEQUENCE audit_log_sequence AS bigint",
    """SELECT setval('audit_log_sequence',
        GREATEST((SELECT coalesce(max(sequence), 0) FROM audit_log), (SELECT coalesce(max(sequence), 0) FROM audit_head))
        + 1, false)""",
    "ALTER TABLE audit_log ALTER COLUMN prev_hash DROP NOT NULL",
    "ALTER TABLE audit_log ALTER COLUMN hash DROP NOT NULL",
    "CREATE INDEX ix_audit_unchained ON audit_log (sequence) WHERE hash IS NULL",
    f"""CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND OLD.hash IS NULL AND OLD.prev_hash IS NULL
           AND NEW.hash IS NOT NULL AND NEW.prev_hash IS NOT NULL
           AND (NEW.sequence, NEW.occurred_at, NEW.actor, NEW.event, NEW.entity_type, NEW.entity_id,
                NEW.action_type, NEW.target, NEW.tenant, NEW.details, NEW.mac)
               IS NOT DISTINCT FROM
               (OLD.sequence, OLD.occurred_at, OLD.actor, OLD.event, OLD.entity_type, OLD.entity_id,
                OLD.action_type, OLD.target, OLD.tenant, OLD.details, OLD.mac) THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION '{LOG_MESSAGE}' USING ERRCODE = 'restrict_violation', DETAIL = TG_OP || ' refused';
    END
    $$""",
    f"""CREATE OR REPLACE FUNCTION audit_head_consistent() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        head_sequence bigint;
        head_hash varchar;
    BEGIN
        SELECT sequence, hash INTO head_sequence, head_hash FROM audit_head WHERE id = NEW.id;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM audit_log WHERE sequence = head_sequence AND hash = head_hash)
           OR EXISTS (SELECT 1 FROM audit_log WHERE sequence > head_sequence AND hash IS NOT NULL) THEN
            RAISE EXCEPTION '{CONSISTENT_MESSAGE}' USING ERRCODE = 'restrict_violation',
                DETAIL = 'head ' || head_sequence || ' does not match the last record';
        END IF;
        RETURN NULL;
    END
    $$""",
]

POSTGRESQL_DOWN = [
    f"""CREATE OR REPLACE FUNCTION audit_head_consistent() RETURNS trigger LANGUAGE plpgsql AS $$
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
    f"""CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{LOG_MESSAGE}' USING ERRCODE = 'restrict_violation', DETAIL = TG_OP || ' refused';
    END
    $$""",
    "DROP INDEX IF EXISTS ix_audit_unchained",
    # Fails while unchained records remain: run the sequencer first.
    "ALTER TABLE audit_log ALTER COLUMN hash SET NOT NULL",
    "ALTER TABLE audit_log ALTER COLUMN prev_hash SET NOT NULL",
    "DROP SEQUENCE IF EXISTS audit_log_sequence",
]


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("mac", sa.String(length=64), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRESQL_UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRESQL_DOWN:
            op.execute(statement)
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("mac")
