"""Read the audit trail: filters, a time range and keyset pagination over ``sequence``.

Pages are cut by sequence number, never by offset: a cursor names the last record a page returned, so records
appended while a reader pages through never shift, duplicate or hide records on later pages.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from saferails.clock import as_utc
from saferails.errors import AuditChainBroken, InvalidInput
from saferails.store.tables import AuditRecord

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100

# Equality filters: AuditQuery field name == audit_log column name.
_FILTERS = ("entity_id", "entity_type", "action_type", "target", "actor", "tenant", "event")


class AuditQueryInvalid(InvalidInput):
    """An audit query was malformed (limit out of range, naive or inverted time range, mixed cursors)."""

    code = "AUDIT_QUERY_INVALID"


@dataclass(frozen=True)
class AuditQuery:
    """What to read. Every given filter must match (AND); ``None`` means any.

    ``start`` (inclusive) and ``end`` (exclusive) bound ``occurred_at`` and must be timezone-aware.
    ``entity_id`` is the action id for action records. Ascending order (oldest first) pages with
    ``after_sequence``; ``descending=True`` (newest first) pages with ``before_sequence``. Pass the previous
    page's ``next_cursor`` as that cursor. ``limit`` is 1..1000. Raises ``AuditQueryInvalid`` when constructed
    with bad values.
    """

    start: datetime | None = None
    end: datetime | None = None
    entity_id: str | None = None
    entity_type: str | None = None
    action_type: str | None = None
    target: str | None = None
    actor: str | None = None
    tenant: str | None = None
    event: str | None = None
    limit: int = DEFAULT_LIMIT
    after_sequence: int | None = None
    before_sequence: int | None = None
    descending: bool = False

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise AuditQueryInvalid(f"invalid audit query: {'; '.join(problems)}", problems=problems)


def _problems(q: AuditQuery) -> list[str]:
    problems = []
    if isinstance(q.limit, bool) or not isinstance(q.limit, int) or not 1 <= q.limit <= MAX_LIMIT:
        problems.append(f"limit must be an integer from 1 to {MAX_LIMIT}, got {q.limit!r}")
    for name in ("start", "end"):
        value = getattr(q, name)
        if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
            problems.append(f"{name} must be a timezone-aware datetime, got {value!r}")
    if not problems and q.start is not None and q.end is not None and q.start >= q.end:
        problems.append(f"start ({q.start.isoformat()}) must be before end ({q.end.isoformat()})")
    for name in _FILTERS:
        value = getattr(q, name)
        if value is not None and (not isinstance(value, str) or not value):
            problems.append(f"{name} must be a non-empty string when given, got {value!r}")
    for name in ("after_sequence", "before_sequence"):
        value = getattr(q, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            problems.append(f"{name} must be a non-negative integer, got {value!r}")
    if q.descending and q.after_sequence is not None:
        problems.append("after_sequence pages ascending queries; use before_sequence with descending=True")
    if not q.descending and q.before_sequence is not None:
        problems.append("before_sequence pages descending queries; use after_sequence or set descending=True")
    return problems


@dataclass(frozen=True)
class AuditRecordView:
    """One audit record as callers see it: ``details`` parsed, ``occurred_at`` timezone-aware UTC. ``prev_hash``
    and ``hash`` are None for a record written unchained that the sequencer has not chained yet (PostgreSQL with
    ``audit_sequencer``): its ``sequence`` is already its place in the chain."""

    sequence: int
    occurred_at: datetime
    actor: str
    event: str
    entity_type: str
    entity_id: str | None
    action_type: str | None
    target: str | None
    tenant: str
    details: dict[str, Any]
    prev_hash: str | None
    hash: str | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["occurred_at"] = self.occurred_at.isoformat()
        return data


@dataclass(frozen=True)
class AuditPage:
    """One page of records in the query's order. ``next_cursor`` is None on the last page."""

    records: list[AuditRecordView]
    next_cursor: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"records": [r.to_dict() for r in self.records], "next_cursor": self.next_cursor}


_VIEW_COLUMNS = tuple(getattr(AuditRecord, f.name) for f in fields(AuditRecordView))


def query_audit(session: Session, query: AuditQuery) -> AuditPage:
    """Read one page of audit records matching ``query``. Reads only; the caller owns the transaction.

    Raises ``AuditChainBroken`` if a returned record's details are not JSON (the chain writes only canonical JSON,
    so that record was altered: ``verify_chain`` names it).
    """
    stmt = sa.select(*_VIEW_COLUMNS)
    if query.start is not None:
        stmt = stmt.where(AuditRecord.occurred_at >= query.start.astimezone(UTC))
    if query.end is not None:
        stmt = stmt.where(AuditRecord.occurred_at < query.end.astimezone(UTC))
    for name in _FILTERS:
        value = getattr(query, name)
        if value is not None:
            stmt = stmt.where(getattr(AuditRecord, name) == value)
    if query.descending:
        if query.before_sequence is not None:
            stmt = stmt.where(AuditRecord.sequence < query.before_sequence)
        stmt = stmt.order_by(AuditRecord.sequence.desc())
    else:
        if query.after_sequence is not None:
            stmt = stmt.where(AuditRecord.sequence > query.after_sequence)
        stmt = stmt.order_by(AuditRecord.sequence)
    # One row more than asked tells whether another page exists without a second query.
    rows = session.execute(stmt.limit(query.limit + 1)).all()
    records = [_view(row) for row in rows[: query.limit]]
    more = len(rows) > query.limit
    return AuditPage(records=records, next_cursor=records[-1].sequence if more else None)


def _view(row: sa.Row[Any]) -> AuditRecordView:
    try:
        details = json.loads(row.details)
    except ValueError:
        details = None
    if not isinstance(details, dict):
        raise AuditChainBroken(
            f"audit record {row.sequence} has details that are not a JSON object (run verify_chain)",
            sequence=row.sequence,
        )
    return AuditRecordView(
        sequence=int(row.sequence),
        occurred_at=as_utc(row.occurred_at),
        actor=row.actor,
        event=row.event,
        entity_type=row.entity_type,
        entity_id=row.entity_id,
        action_type=row.action_type,
        target=row.target,
        tenant=row.tenant,
        details=details,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )
