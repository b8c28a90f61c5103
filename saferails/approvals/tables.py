"""The ``approval_codes`` table (migration ``0005``): one row per (action, approver) holding only a keyed hash of
the one-time code, never the code itself."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from saferails.store.tables import Base


class ApprovalCode(Base):
    """A one-time approval code issued to one approver for one version (``action_hash``) of one action.

    ``code_hash`` is HMAC-SHA256 over the code and its binding (action, approver, action hash), keyed by a key
    derived from the approval secret: a copy of the table does not reveal or let anyone check a code without
    the secret. ``used_at`` set means spent; a re-issue replaces the row.
    """

    __tablename__ = "approval_codes"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    action_id: Mapped[str] = mapped_column(sa.ForeignKey("actions.id"))
    approver: Mapped[str] = mapped_column(sa.String(200))
    action_hash: Mapped[str] = mapped_column(sa.String(64))
    code_hash: Mapped[str] = mapped_column(sa.String(64))
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]

    __table_args__ = (sa.UniqueConstraint("action_id", "approver", name="uq_approval_codes_action_approver"),)
