"""Org graph tables (migration ``0006``), declared on the shared ``Base``.

``interactions`` are undirected and stored normalised (``person_a < person_b``) so one pair is one edge whatever
the order it was reported in. People are employee ids but carry no foreign key: interaction feeds often name
people before HR data arrives, and the graph treats any id as a node. ``metric_snapshots`` caches the metrics of
one graph snapshot, one row per person plus a header row (``person = "*"``). ``outcome_checks`` are the outcome
monitor's work items, one per monitored action.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from saferails.store.tables import Base, JSONType

SNAPSHOT_HEADER = "*"
CHECK_STATES = ("pending", "claimed", "ok", "negative", "inconclusive", "error")
INTERACTION_KINDS = ("meeting", "message", "coedit")


class Interaction(Base):
    __tablename__ = "interactions"
    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    kind: Mapped[str] = mapped_column(sa.String(20))
    person_a: Mapped[str] = mapped_column(sa.String(100))
    person_b: Mapped[str] = mapped_column(sa.String(100))
    occurred_at: Mapped[datetime]
    weight: Mapped[float] = mapped_column(sa.Float)

    __table_args__ = (
        sa.Index("ix_interactions_occurred_at", "occurred_at"),
        sa.Index("ix_interactions_person_a", "person_a", "occurred_at"),
        sa.Index("ix_interactions_person_b", "person_b", "occurred_at"),
    )


class Wellbeing(Base):
    """One burnout observation: ``burnout_score`` in [0, 1] (higher is worse)."""

    __tablename__ = "wellbeing"
    person: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    observed_at: Mapped[datetime] = mapped_column(primary_key=True)
    burnout_score: Mapped[float] = mapped_column(sa.Float)

    __table_args__ = (sa.Index("ix_wellbeing_observed_at", "observed_at"),)


class MetricSnapshotRow(Base):
    __tablename__ = "metric_snapshots"
    snapshot_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    person: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    metrics: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class OutcomeCheck(Base):
    """``state``: pending -> claimed -> ok | negative | inconclusive | error (inconclusive -> ok | negative by a
    person). A claim expires at ``claimed_until`` so a crashed worker's checks are taken again. ``baseline`` and
    ``result`` hold the metrics before and after."""

    __tablename__ = "outcome_checks"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    action_id: Mapped[str] = mapped_column(sa.ForeignKey("actions.id"), unique=True)
    action_type: Mapped[str] = mapped_column(sa.String(100))
    target: Mapped[str] = mapped_column(sa.String(500))
    due_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(sa.String(20))
    baseline: Mapped[dict[str, Any]]
    baseline_snapshot_hash: Mapped[str] = mapped_column(sa.String(64))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    claimed_by: Mapped[str | None] = mapped_column(sa.String(100))
    claimed_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    decided_at: Mapped[datetime | None]
    algorithm: Mapped[str | None] = mapped_column(sa.String(200))
    library_versions: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    snapshot_hash: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime]

    __table_args__ = (sa.Index("ix_outcome_checks_due", "state", "due_at"),)
