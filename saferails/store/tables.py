"""SQLAlchemy 2 typed schema of the saferails store (the record of truth; Prefect only runs the flows).

Kept portable between SQLite and PostgreSQL: JSON columns via ``sa.JSON`` (JSONB on PostgreSQL through a
variant), timezone-aware timestamps (SQLite gives them back naive: read through ``clock.as_utc``), string UUIDs.
Schema changes go through Alembic migrations in ``store/migrations``; this module is what they are written from.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TZDateTime = sa.DateTime(timezone=True)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONType, list[Any]: JSONType, datetime: TZDateTime}


class Principal(Base):
    """A person or agent that proposes or approves actions. Groups authorise approvers; KYC gates purchases."""

    __tablename__ = "principals"
    id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    display_name: Mapped[str] = mapped_column(sa.String(200), default="")
    email: Mapped[str | None] = mapped_column(sa.String(320))
    groups: Mapped[list[Any]] = mapped_column(default=list)
    kyc_verified: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]
    # Identity (migration 0009_identity): roles from saferails.identity.Role; only an admin changes them.
    roles: Mapped[list[Any]] = mapped_column(default=list)
    tenant: Mapped[str] = mapped_column(sa.String(100), default="default")
    disabled_at: Mapped[datetime | None]


class PolicyDocument(Base):
    """Every policy document a decision was made under, by fingerprint, so a decision names its exact text."""

    __tablename__ = "policy_documents"
    fingerprint: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    version: Mapped[str] = mapped_column(sa.String(100))
    document: Mapped[str] = mapped_column(sa.Text)
    first_seen_at: Mapped[datetime]


# The predicate of the partial index on pending approvals. A query uses that index only if its WHERE holds this
# very comparison with the literal (a bound parameter does not match): see ``saferails.sweeps.expire``.
PENDING_ONLY = sa.text("state = 'pending_approval'")
PENDING_WITH_RUN = sa.text("state = 'pending_approval' AND flow_run_id IS NOT NULL")


class Action(Base):
    """A proposed change to the world: an org intervention (seed 000), an agent action (seed 001), an operator
    action (seed 003) or a runbook step's effect. ``state`` follows ``ACTION_MACHINE``."""

    __tablename__ = "actions"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    action_type: Mapped[str] = mapped_column(sa.String(100))
    target: Mapped[str] = mapped_column(sa.String(500))
    params: Mapped[dict[str, Any]]
    proposer: Mapped[str] = mapped_column(sa.String(200))
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    tenant: Mapped[str] = mapped_column(sa.String(100), default="default")
    priority: Mapped[int] = mapped_column(default=5)
    scheduled_for: Mapped[datetime | None]
    idempotency_key: Mapped[str] = mapped_column(sa.String(200))
    action_hash: Mapped[str] = mapped_column(sa.String(64))
    impact: Mapped[str] = mapped_column(sa.String(10))
    state: Mapped[str] = mapped_column(sa.String(30))
    decision: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Approval requirement copied from the decision so sweeps can filter on it without parsing JSON.
    min_approvals: Mapped[int] = mapped_column(default=0)
    approval_deadline: Mapped[datetime | None]
    timeout_action: Mapped[str | None] = mapped_column(sa.String(10))
    pre_state: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    rollback_data: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(sa.Text)
    flow_run_id: Mapped[str | None] = mapped_column(sa.String(36))
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    executed_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    rolled_back_at: Mapped[datetime | None]
    # Seed 003's audit record (migration 0011_fleet_audit): what the action acts on (agent, department, fleet;
    # None for actions without a scope) and the proposer's groups when the policy decided (its "actor role").
    scope: Mapped[str | None] = mapped_column(sa.String(20))
    actor_role: Mapped[str | None] = mapped_column(sa.String(500))

    __table_args__ = (
        sa.UniqueConstraint("tenant", "idempotency_key", name="uq_actions_tenant_idempotency_key"),
        # The expire sweep's due query and count (migration 0012_sweep_indexes): only pending rows, in the
        # sweep's order, so its cost follows the pending approvals, not the table.
        sa.Index("ix_actions_pending_deadline", "approval_deadline", "id", sqlite_where=PENDING_ONLY,
                 postgresql_where=PENDING_ONLY),
        # The recover sweep's query for pending actions whose paused run may be gone (migration
        # 0013_recover_index): only those rows, in the sweep's (updated_at, id) order.
        sa.Index("ix_actions_pending_run", "updated_at", "id", sqlite_where=PENDING_WITH_RUN,
                 postgresql_where=PENDING_WITH_RUN),
        sa.Index("ix_actions_rate", "proposer", "action_type", "created_at"),
        sa.Index("ix_actions_target", "target"),
        sa.Index("ix_actions_state_priority", "state", "priority", "scheduled_for"),
        # The playbook's queries, newest first: by workspace (and scope), by actor, by type.
        sa.Index("ix_actions_tenant_scope_created", "tenant", "scope", "created_at"),
        sa.Index("ix_actions_tenant_created", "tenant", "created_at"),
        sa.Index("ix_actions_type_created", "action_type", "created_at"),
    )


class Approval(Base):
    """One approver's decision on one action. Unique per (action, approver): an approver counts once."""

    __tablename__ = "approvals"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    action_id: Mapped[str] = mapped_column(sa.ForeignKey("actions.id"))
    approver: Mapped[str] = mapped_column(sa.String(200))
    decision: Mapped[str] = mapped_column(sa.String(10))  # approve | reject
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    action_hash: Mapped[str] = mapped_column(sa.String(64))
    channel: Mapped[str] = mapped_column(sa.String(30), default="api")  # api | cli | prefect-ui
    created_at: Mapped[datetime]

    __table_args__ = (sa.UniqueConstraint("action_id", "approver", name="uq_approvals_action_approver"),)


class AuditRecord(Base):
    """Append-only, hash-chained audit trail. The database refuses UPDATE and DELETE (and TRUNCATE on
    PostgreSQL; INSERT OR REPLACE on SQLite) through triggers installed by migration; ``hash`` covers every other
    column and ``prev_hash``. Each appending transaction also writes a signed ``AuditCheckpoint``."""

    __tablename__ = "audit_log"
    sequence: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    occurred_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(sa.String(200))
    event: Mapped[str] = mapped_column(sa.String(100))
    entity_type: Mapped[str] = mapped_column(sa.String(50))
    entity_id: Mapped[str | None] = mapped_column(sa.String(100))
    action_type: Mapped[str | None] = mapped_column(sa.String(100))
    target: Mapped[str | None] = mapped_column(sa.String(500))
    tenant: Mapped[str] = mapped_column(sa.String(100), default="default")
    # Canonical JSON text, not a JSON column: the hash covers exactly these bytes on every backend.
    details: Mapped[str] = mapped_column(sa.Text)
    # NULL only on PostgreSQL, for a record written unchained until the sequencer chains it (migration 0012, which
    # also adds the partial index ix_audit_unchained on sequence WHERE hash IS NULL there).
    prev_hash: Mapped[str | None] = mapped_column(sa.String(64))
    hash: Mapped[str | None] = mapped_column(sa.String(64))
    # The writer's HMAC of a record written unchained (``saferails.audit.sequencer``); not part of the hash.
    mac: Mapped[str | None] = mapped_column(sa.String(64))

    __table_args__ = (
        # Pages are ordered by sequence, so each filter index ends in it (no sort of all matching rows per page).
        sa.Index("ix_audit_occurred_at", "occurred_at"),
        sa.Index("ix_audit_entity", "entity_id", "sequence"),
        sa.Index("ix_audit_action_type", "action_type", "sequence"),
        sa.Index("ix_audit_target", "target", "sequence"),
        sa.Index("ix_audit_actor", "actor", "sequence"),
        sa.Index("ix_audit_tenant", "tenant", "sequence"),
    )


class AuditHead(Base):
    """The single row holding the chain head. Appenders lock it, which serialises the chain across writers. It
    only moves forward, and on PostgreSQL must name the newest record when the transaction commits."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(primary_key=True)
    sequence: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"))
    hash: Mapped[str] = mapped_column(sa.String(64))


class AuditCheckpoint(Base):
    """A signed statement that the chain head moved from ``prev_sequence``/``prev_hash`` to
    ``sequence``/``hash``: written in the transaction that appended those records, signed with the Ed25519 key
    named by ``key_id`` (kept outside the database). Append-only like ``audit_log``."""

    __tablename__ = "audit_checkpoints"
    sequence: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    hash: Mapped[str] = mapped_column(sa.String(64))
    prev_sequence: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"))
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    signed_at: Mapped[datetime]
    key_id: Mapped[str] = mapped_column(sa.String(80))
    # Base64 of the 64-byte Ed25519 signature over the canonical encoding (``saferails.audit.checkpoints``).
    signature: Mapped[str] = mapped_column(sa.String(100))


class OutboxEvent(Base):
    """Transactional outbox: written in the same transaction as the state change it announces."""

    __tablename__ = "outbox_events"
    # Autoincrementing position gives dispatchers a total order; ``id`` is the stable event id for dedup.
    position: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    id: Mapped[str] = mapped_column(sa.String(36), unique=True)
    event_type: Mapped[str] = mapped_column(sa.String(100))
    aggregate_type: Mapped[str] = mapped_column(sa.String(50))
    aggregate_id: Mapped[str] = mapped_column(sa.String(100))
    payload: Mapped[dict[str, Any]]
    correlation_id: Mapped[str | None] = mapped_column(sa.String(100))
    actor: Mapped[str] = mapped_column(sa.String(200))
    tenant: Mapped[str] = mapped_column(sa.String(100), default="default")
    created_at: Mapped[datetime]
    available_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    dead_lettered_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(sa.String(100))
    claimed_until: Mapped[datetime | None]

    __table_args__ = (sa.Index("ix_outbox_pending", "processed_at", "dead_lettered_at", "available_at"),)
