"""The ``agents`` table (migration ``0010_agents``): the fleet, its pauses and budgets.

Money is kept as decimal strings (``Decimal`` text), identically on SQLite and PostgreSQL: no float ever touches
an amount.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from saferails.store.tables import Base


class Agent(Base):
    """One agent. ``id`` is the principal id it proposes under. ``state`` follows ``AGENT_MACHINE``;
    ``paused_by_action`` names the action whose pause holds it (a rollback only resumes its own pauses)."""

    __tablename__ = "agents"
    id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    tenant: Mapped[str] = mapped_column(sa.String(100), default="default")
    department: Mapped[str] = mapped_column(sa.String(200), default="")
    display_name: Mapped[str] = mapped_column(sa.String(200), default="")
    state: Mapped[str] = mapped_column(sa.String(20))
    version: Mapped[int]
    paused_until: Mapped[datetime | None]
    pause_reason: Mapped[str | None] = mapped_column(sa.Text)
    paused_by_action: Mapped[str | None] = mapped_column(sa.String(36))
    budget_amount: Mapped[str | None] = mapped_column(sa.String(40))
    budget_currency: Mapped[str | None] = mapped_column(sa.String(3))
    budget_period: Mapped[str | None] = mapped_column(sa.String(10))
    spent_outside: Mapped[str] = mapped_column(sa.String(40), default="0")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        sa.Index("ix_agents_tenant_department", "tenant", "department"),
        sa.Index("ix_agents_state_paused_until", "state", "paused_until"),
    )
