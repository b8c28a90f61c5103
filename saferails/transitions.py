"""The one function that changes state.

Every state change of every entity (actions, tasks, action plans, runbook executions) goes through
``transition``: lock the row, check the transition against the entity's state machine (guards included),
write the new state, append the audit record and the outbox event. It runs inside the caller's transaction and
never commits, so the four writes land together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from saferails import audit, outbox
from saferails.errors import ConcurrentModification, InvalidInput, NotFound, SaferailsError
from saferails.lifecycle import StateMachine


@dataclass(frozen=True)
class AuditSubject:
    action_type: str | None = None
    target: str | None = None
    tenant: str = "default"


def _row_itself(_session: Session, row: Any, _now: datetime) -> Any:
    return row


def _no_payload(_row: Any) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class EntityKind:
    """How one entity type plugs into ``transition``.

    Outbox event types are ``{event_prefix}StateChanged`` for transitions (seed 004's ``TaskStateChanged``) and
    the CamelCased audit event otherwise, prefixed unless it already starts with the prefix
    (``action_proposed`` -> ``ActionProposed``, ``created`` on a task -> ``TaskCreated``).

    ``subject`` builds what the guards see (the row, or facts derived from it such as the number of valid
    approvals); ``audit_subject`` names the action type / target / tenant for audit queries; ``payload`` is the
    entity snapshot put in every outbox event so consumers need not read the row back. ``columns`` names every
    column those three (and ``subjects``) read besides ``id``, ``state`` and ``version``: what a ``Stored`` row of
    the kind must hold (empty: every column).
    """

    entity_type: str
    model: type[Any]
    machine: StateMachine
    event_prefix: str
    audit_subject: Callable[[Any], AuditSubject]
    subject: Callable[[Session, Any, datetime], Any] = _row_itself
    payload: Callable[[Any], dict[str, Any]] = _no_payload
    extra: Mapping[str, Any] = field(default_factory=dict)
    # What the guards see for many rows at once (one query for the batch instead of one per row); defaults to
    # ``subject`` row by row. Must agree with ``subject`` for every row.
    subjects: Callable[[Session, Sequence[Any], datetime], list[Any]] | None = None
    columns: tuple[str, ...] = ()

    def subjects_of(self, session: Session, rows: Sequence[Any], now: datetime) -> list[Any]:
        if self.subjects is not None:
            return self.subjects(session, rows, now)
        return [self.subject(session, row, now) for row in rows]


_KINDS: dict[str, EntityKind] = {}


def register_entity(kind: EntityKind) -> EntityKind:
    """Register an entity kind (idempotent for the same object)."""
    existing = _KINDS.get(kind.entity_type)
    if existing is not None and existing is not kind:
        raise InvalidInput(f"entity type {kind.entity_type!r} is already registered")
    _KINDS[kind.entity_type] = kind
    return kind


def entity_kind(entity_type: str) -> EntityKind:
    try:
        return _KINDS[entity_type]
    except KeyError:
        raise InvalidInput(f"unknown entity type {entity_type!r}", known=sorted(_KINDS)) from None


def registered_kinds() -> dict[str, EntityKind]:
    return dict(_KINDS)


def lock_row(session: Session, kind: EntityKind, entity_id: str) -> Any:
    """Load and lock one row for the rest of the transaction (FOR UPDATE on PostgreSQL; on SQLite the
    transaction already holds the writer lock). ``populate_existing`` discards any stale copy in the session."""
    stmt = (
        sa.select(kind.model)
        .where(kind.model.id == entity_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    row = session.execute(stmt).scalar_one_or_none()
    if row is None:
        raise NotFound(kind.entity_type, entity_id)
    return row


def lock_rows(
    session: Session, kind: EntityKind, entity_ids: Sequence[str], *,
    columns: Sequence[sa.ColumnElement[Any]] | None = None,
) -> dict[str, Any]:
    """Load and lock many rows in ONE statement (``FOR UPDATE`` on PostgreSQL, taken in id order so two batches
    never deadlock on each other); returns the rows found by id (missing ids are simply absent): mapped rows, or
    with ``columns`` (``stored_columns``) ``Stored`` rows of just those columns, read without the ORM."""
    wanted = sorted(set(entity_ids))
    if not wanted:
        return {}
    model = kind.model
    if columns is not None:
        return stored_rows(session, sa.select(*columns).where(model.id.in_(wanted)).order_by(model.id)
                           .with_for_update())
    stmt = (
        sa.select(model)
        .where(model.id.in_(wanted))
        .order_by(model.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {str(row.id): row for row in session.execute(stmt).scalars()}


class Stored:
    """A row already in the store, read with a Core SELECT of some of its columns (``stored_columns``) instead
    of the ORM: plain attributes, none of the ORM's per-row loading and bookkeeping. ``transition_many`` treats
    it like a mapped row the caller holds locked: its changes go out with the batch's set-based UPDATE and are
    then set on it (``version`` included). It never enters the session: a mapped copy of the same row that the
    session may hold is not updated. Reading a column that was not selected is an AttributeError naming it."""

    id: Any
    state: str
    version: int

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"a stored row holds no column {name!r} (select it: EntityKind.columns or extra)")


def stored_columns(kind: EntityKind, extra: Sequence[str] = ()) -> list[sa.ColumnElement[Any]]:
    """The columns to SELECT for ``Stored`` rows of ``kind``: ``id``, ``state``, ``version``, what its callbacks
    read (``EntityKind.columns``; every column when it names none) and ``extra``, each once."""
    table = kind.model.__table__
    names = ("id", "state", "version", *(kind.columns or table.columns.keys()), *extra)
    return [table.columns[name] for name in dict.fromkeys(names)]


def stored_rows(session: Session, stmt: sa.Select[Any], *, key: str = "id") -> dict[str, Stored]:
    """Run ``stmt`` (a SELECT of columns, ``key`` among them) and return its rows as ``Stored`` by key, in
    order."""
    result = session.connection().execute(stmt)
    names = list(result.keys())
    out: dict[str, Stored] = {}
    for values in result:
        row = Stored()
        row.__dict__ = dict(zip(names, values, strict=True))
        out[str(row.__dict__[key])] = row
    return out


@dataclass(frozen=True, slots=True)
class New:
    """One entity to create in a batch (the arguments of ``create`` for one row)."""

    row: Any
    actor: str
    event: str
    details: Mapping[str, Any] | None = None
    correlation_id: str | None = None


class Draft:
    """A new row of ``model`` built without the ORM: plain attributes, one per column of the model's table (those
    not given hold their scalar column default, else None), none of the ORM's per-attribute bookkeeping.
    ``create_many`` and ``transition_many`` treat it like a mapped row, but it never enters the session:
    ``insert_drafts`` writes it, in whatever state it has reached by then, with ONE cached executemany INSERT for
    the batch. Nothing reads it back from the store before that. A name that is not a column is a TypeError."""

    def __init__(self, model: type[Any], **columns: Any) -> None:
        _, defaults = _draft_insert(model)
        unknown = set(columns) - set(defaults)
        if unknown:
            raise TypeError(f"{model.__name__} has no columns {sorted(unknown)}")
        self.__dict__.update(defaults)
        self.__dict__.update(columns)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"a draft row has no column {name!r}")


def add_new(session: Session, entity_type: str, row: Any, *, now: datetime) -> Any:
    """Put ``row`` in its machine's initial state at version 1, without its records yet (``create_many`` writes
    them): a mapped row joins the session (calling this first lets a batch see its own rows in a flush), a
    ``Draft`` waits for ``insert_drafts``."""
    kind = entity_kind(entity_type)
    row.state = kind.machine.initial
    row.version = 1
    row.created_at = now
    row.updated_at = now
    if not isinstance(row, Draft):
        session.add(row)
    return row


def insert_drafts(session: Session, entity_type: str, drafts: Sequence[Draft]) -> None:
    """Write ``drafts`` of ``entity_type`` (created with ``create_many``, possibly transitioned since) inside the
    caller's transaction: ONE executemany INSERT of a cached statement per set of columns left out. A column
    that is None and has no default is left out of its row, so it is SQL NULL (passing None would store a JSON
    column's ``null``, not NULL, unlike the ORM)."""
    if not drafts:
        return
    insert, defaults = _draft_insert(entity_kind(entity_type).model)
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for draft in drafts:
        values = draft.__dict__
        row = {key: values[key] for key in defaults if values[key] is not None or defaults[key] is not None}
        groups.setdefault(tuple(row), []).append(row)
    connection = session.connection()
    for rows in groups.values():
        connection.execute(insert, rows)


_DRAFT_INSERTS: dict[type[Any], tuple[sa.Insert, dict[str, Any]]] = {}


def _draft_insert(model: type[Any]) -> tuple[sa.Insert, dict[str, Any]]:
    """The model's cached INSERT (one statement object, so its compiled form is reused) and column defaults."""
    cached = _DRAFT_INSERTS.get(model)
    if cached is None:
        table = model.__table__
        defaults = {
            column.key: column.default.arg if column.default is not None and column.default.is_scalar else None
            for column in table.columns
        }
        cached = _DRAFT_INSERTS[model] = (sa.insert(table), defaults)
    return cached


def create_many(session: Session, entity_type: str, news: Sequence[New], *, now: datetime) -> list[Any]:
    """Insert new entities in their machine's initial state, with their audit records and outbox events written
    as one multi-row INSERT each. Returns the rows in order."""
    kind = entity_kind(entity_type)
    for new in news:
        add_new(session, entity_type, new.row, now=now)
    _record_many(session, kind, [_Record(n.row, n.actor, n.event, n.details or _NO_DETAILS, None, n.correlation_id)
                                 for n in news], now=now)
    return [n.row for n in news]


def create(
    session: Session,
    entity_type: str,
    row: Any,
    *,
    actor: str,
    event: str,
    now: datetime,
    details: Mapping[str, Any] | None = None,
    correlation_id: str | None = None,
) -> Any:
    """Insert a new entity in its machine's initial state, with its audit record and outbox event."""
    return create_many(session, entity_type, [New(row, actor, event, details, correlation_id)], now=now)[0]


@dataclass(frozen=True, slots=True)
class Change:
    """One requested state change in a batch (the arguments of ``transition`` for one entity)."""

    entity_id: str
    target: str
    actor: str
    event: str
    details: Mapping[str, Any] | None = None
    changes: Mapping[str, Any] | None = None
    expected_version: int | None = None
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    """What became of one ``Change``: ``row`` (changed) or ``error`` (nothing written for it)."""

    entity_id: str
    row: Any | None = None
    error: SaferailsError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class _Record:
    row: Any
    actor: str
    event: str
    details: Mapping[str, Any]  # the caller's, not copied: ``_record_many`` copies it once
    change: tuple[str, str] | None
    correlation_id: str | None


_NO_DETAILS: Mapping[str, Any] = {}


def transition_many(
    session: Session,
    entity_type: str,
    changes: Sequence[Change],
    *,
    now: datetime,
    locked_rows: Mapping[str, Any] | None = None,
) -> list[Applied]:
    """Apply many changes to entities of one type inside the caller's transaction (never commits).

    The rows are locked in one statement (``locked_rows`` skips that for rows the caller already holds: mapped
    rows, or ``Stored`` rows read without the ORM), every change is checked against the machine with what its
    guards see (``EntityKind.subjects``: one query per batch, no autoflush in between), and the states, audit
    records (chained in order) and outbox events of the changes that pass are written with set-based statements.
    A change that fails (``NotFound``, ``ConcurrentModification``, ``InvalidTransition``, ``GuardRejected``, a
    duplicate id in the batch) is returned with its typed error and leaves its row exactly as it was; the others
    go ahead. Results are in the order of ``changes``. Errors that are not saferails errors (the database
    failing) propagate: the caller's transaction must then be rolled back.
    """
    kind = entity_kind(entity_type)
    rows: dict[str, Any] = dict(locked_rows or {})
    missing = [c.entity_id for c in changes if c.entity_id not in rows]
    if missing:
        rows.update(lock_rows(session, kind, missing))
    results: list[Applied | None] = [None] * len(changes)
    staged: list[tuple[int, Change, Any]] = []
    seen: set[str] = set()
    for index, change in enumerate(changes):
        row = rows.get(change.entity_id)
        if row is None:
            results[index] = Applied(change.entity_id, error=NotFound(kind.entity_type, change.entity_id))
            continue
        if change.entity_id in seen:
            results[index] = Applied(change.entity_id, error=InvalidInput(
                f"{entity_type} {change.entity_id} appears twice in one batch", entity_id=change.entity_id))
            continue
        seen.add(change.entity_id)
        if change.expected_version is not None and row.version != change.expected_version:
            results[index] = Applied(change.entity_id, error=ConcurrentModification(
                f"{entity_type} {change.entity_id} is at version {row.version}, expected {change.expected_version}",
                entity_id=change.entity_id,
            ))
            continue
        staged.append((index, change, row))
    # Only the rows whose transition has guards need what the guards see (an unguarded one, such as
    # ``executing -> completed``, costs no query); an edge missing from the graph is refused below either way.
    guarded = [row for _, change, row in staged if _guarded(kind, row.state, change.target)]
    with session.no_autoflush:  # the subjects' queries must not flush half-decided rows one by one
        seen_by_guards = dict(zip(map(id, guarded), kind.subjects_of(session, guarded, now) if guarded else [],
                                  strict=True))
    subjects = [seen_by_guards.get(id(row)) for _, _, row in staged]
    records: list[_Record] = []
    writes: list[tuple[Any, dict[str, Any]]] = []
    # Changes that share their ``changes`` mapping and target (a batch of timeouts) share one values dict, so
    # ``_write_states`` groups them without comparing values row by row.
    shared: dict[tuple[int, str], dict[str, Any]] = {}
    for (index, change, row), subject in zip(staged, subjects, strict=True):
        source = row.state
        try:
            # Guards judge the entity as it is, before ``changes`` (a retry's reset clears the very
            # ``halted_by`` its guard asks about).
            kind.machine.check(source, change.target, subject, entity_id=change.entity_id)
        except SaferailsError as exc:
            results[index] = Applied(change.entity_id, error=exc)
            continue
        values = shared.get((id(change.changes), change.target))
        if values is None:
            values = shared[(id(change.changes), change.target)] = {
                **(change.changes or {}), "state": change.target, "updated_at": now}
        writes.append((row, values))
        results[index] = Applied(change.entity_id, row=row)
        records.append(_Record(row, change.actor, change.event, change.details or _NO_DETAILS,
                               (source, change.target), change.correlation_id))
    _write_states(session, kind, writes)
    _record_many(session, kind, records, now=now)
    return [r for r in results if r is not None]


def _guarded(kind: EntityKind, source: str, target: str) -> bool:
    edge = kind.machine.transition_for(source, target)
    return edge is not None and bool(edge.guards)


def _write_states(session: Session, kind: EntityKind, writes: Sequence[tuple[Any, dict[str, Any]]]) -> None:
    """Write each row's new values and ``version + 1``. Rows already in the database that get the same values
    (a batch of timeouts: same state, same ``decided_at``) share ONE ``UPDATE ... WHERE id IN (...)``; a mapped
    row is then told the values as committed, so the session does not write them again, and a ``Stored`` row
    gets them set. A row not yet written (a ``Draft``, or a mapped row created in this transaction) just gets its
    attributes set: its INSERT carries them."""
    model = kind.model
    groups: dict[Any, tuple[dict[str, Any], list[Any]]] = {}
    keys: dict[int, Any] = {}  # id(values) -> group key: rows sharing one values dict are compared once
    for row, values in writes:
        unwritten = isinstance(row, Draft) or (not isinstance(row, Stored) and not sa.inspect(row).persistent)
        if unwritten:
            for attribute, value in values.items():
                setattr(row, attribute, value)
            row.version += 1
            continue
        key = keys.get(id(values))
        if key is None:
            try:
                key = tuple((name, type(value), value) for name, value in values.items())
                hash(key)
            except TypeError:  # an unhashable value (a JSON document): these rows get a statement of their own
                key = id(values)
            keys[id(values)] = key
        groups.setdefault(key, (values, []))[1].append(row)
    for values, rows in groups.values():
        session.execute(
            sa.update(model)
            .where(model.id.in_([r.id for r in rows]))
            .values({**values, "version": model.version + 1})
            .execution_options(synchronize_session=False)
        )
        for row in rows:
            if isinstance(row, Stored):
                row.__dict__.update(values)
                row.version += 1
                continue
            for attribute, value in values.items():
                set_committed_value(row, attribute, value)
            set_committed_value(row, "version", row.version + 1)


def transition(
    session: Session,
    entity_type: str,
    entity_id: str,
    target: str,
    *,
    actor: str,
    event: str,
    now: datetime,
    details: Mapping[str, Any] | None = None,
    changes: Mapping[str, Any] | None = None,
    expected_version: int | None = None,
    correlation_id: str | None = None,
    locked_row: Any | None = None,
) -> Any:
    """Move ``entity_id`` to ``target``: ``transition_many`` with one change. Raises ``NotFound``,
    ``InvalidTransition``, ``GuardRejected`` or ``ConcurrentModification``; on any raise nothing has been written
    by this call and the row is as it was.

    ``changes`` are column values written together with the state (e.g. ``result``, ``rollback_data``).
    Guards see the entity as it is, before ``changes`` are applied.
    ``locked_row`` skips the lookup when the caller already holds the row locked in this transaction (it created
    it, or locked it with ``lock_row``).
    """
    change = Change(entity_id, target, actor, event, details, changes, expected_version, correlation_id)
    locked = None if locked_row is None else {entity_id: locked_row}
    (applied,) = transition_many(session, entity_type, [change], now=now, locked_rows=locked)
    if applied.error is not None:
        raise applied.error
    return applied.row


def record_event(
    session: Session,
    entity_type: str,
    row: Any,
    *,
    actor: str,
    event: str,
    now: datetime,
    details: Mapping[str, Any] | None = None,
    correlation_id: str | None = None,
) -> None:
    """Audit and announce something that happened to an entity without changing its state (an approval that
    does not yet reach the quorum, a rollback attempt that failed, a notification sent)."""
    kind = entity_kind(entity_type)
    _record_many(session, kind, [_Record(row, actor, event, details or _NO_DETAILS, None, correlation_id)], now=now)


@contextmanager
def batched(session: Session) -> Iterator[None]:
    """Inside the block, the audit records and outbox events written on ``session`` (by ``create*``,
    ``transition*``, ``record_event`` or ``audit.append`` directly) are kept and written at its end, in order,
    as one INSERT per table (two transitions of one proposal cost two statements instead of four). Nothing in
    the block may read them back. On an exception nothing is written (the caller's transaction rolls back).
    Nested blocks join the outer one. No savepoint may be rolled back inside the block: the records kept for its
    work would still be written."""
    with audit.deferred(session), outbox.deferred(session):
        yield


def _record_many(session: Session, kind: EntityKind, records: Sequence[_Record], *, now: datetime) -> None:
    """The audit records and outbox events of ``records``, in order: one INSERT each for the whole batch (or
    kept for the end of the enclosing ``batched`` block)."""
    if not records:
        return
    entries: list[audit.AuditEntry] = []
    events: list[outbox.DomainEvent] = []
    for record in records:
        row = record.row
        subject = kind.audit_subject(row)
        audit_details = dict(record.details)  # the one copy: the audit record and the event each take it
        if record.change is not None:
            audit_details["from_state"], audit_details["to_state"] = record.change
        else:
            audit_details.setdefault("state", row.state)
        entries.append(audit.AuditEntry(
            actor=record.actor,
            event=record.event,
            entity_type=kind.entity_type,
            entity_id=str(row.id),
            action_type=subject.action_type,
            target=subject.target,
            tenant=subject.tenant,
            details=audit_details,
        ))
        events.append(outbox.DomainEvent(
            event_type=_event_type(kind.event_prefix, record.event, state_changed=record.change is not None),
            aggregate_type=kind.entity_type,
            aggregate_id=str(row.id),
            actor=record.actor,
            payload={**kind.payload(row), **audit_details, "event": record.event},
            tenant=subject.tenant,
            correlation_id=record.correlation_id,
        ))
    audit.append_many(session, entries, now=now)
    outbox.append_many(session, events, now=now)


def _event_type(prefix: str, event: str, *, state_changed: bool) -> str:
    if state_changed:
        return f"{prefix}StateChanged"
    camel = "".join(part.capitalize() for part in event.split("_"))
    return camel if camel.startswith(prefix) else prefix + camel
