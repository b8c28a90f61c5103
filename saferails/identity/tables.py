"""The ``credentials`` table (migration ``0009_identity``): API tokens, stored as SHA-256 hashes only."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from saferails.store.tables import Base


class Credential(Base):
    """One token of one principal. The token is ``sr_<id>_<secret>``; only ``sha256(secret)`` is kept, so a copy
    of the table does not let anyone authenticate. ``revoked_at`` set or ``expires_at`` passed means dead."""

    __tablename__ = "credentials"
    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    principal_id: Mapped[str] = mapped_column(sa.ForeignKey("principals.id"))
    secret_hash: Mapped[str] = mapped_column(sa.String(64))
    label: Mapped[str] = mapped_column(sa.String(200), default="")
    created_by: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
