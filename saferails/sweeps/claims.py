"""Claims: how several sweep workers split the due items of one sweep without ever taking the same one.

A claim is a row in ``sweep_claims`` keyed by (sweep, item id) with a lease (``claimed_until``). The items
themselves are not changed, so any table with a single-column primary key can be swept (actions today).

``claim_due`` runs inside the caller's short claim transaction, which the caller commits before processing:

* PostgreSQL: ``SELECT <key> ... WHERE <due> AND NOT EXISTS (live claim) ORDER BY ... LIMIT n FOR UPDATE OF
  <table> SKIP LOCKED``: concurrent claimers skip the rows another claimer is taking instead of waiting.
* SQLite: the same SELECT without the lock clause: every saferails transaction opens with ``BEGIN IMMEDIATE``,
  so claim transactions are already serialised and the second claimer sees the first one's claims.

On both, the claim rows are then written with ``INSERT ... ON CONFLICT DO UPDATE ... WHERE claimed_until <=
now RETURNING item_id``: the conflict check reads the latest committed claim, so it is the arbiter even when
two claimers' snapshots overlap, and only the ids it returns are the caller's. A crashed worker's claims lapse
when their lease runs out; processing an item must therefore be safe to repeat (sweeps re-check state under
the row lock through ``saferails.transitions``).

A sweep that handles a whole batch inside one transaction (the expire sweep) needs no claim rows: ``lock_due``
takes the same due rows locked in that transaction (a rollback leaves them due at once), and only the items it
could not handle are ``hold``-ed for a lease so the next batch does not pick them up again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql.functions import FunctionElement

from saferails import transitions
from saferails.errors import InvalidInput
from saferails.store.tables import Base


class SweepClaim(Base):
    """One worker's lease on one item of one sweep."""

    __tablename__ = "sweep_claims"
    sweep: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    item_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    claimed_by: Mapped[str] = mapped_column(sa.String(100))
    claimed_at: Mapped[datetime]
    claimed_until: Mapped[datetime]

    __table_args__ = (sa.Index("ix_sweep_claims_until", "sweep", "claimed_until"),)


class unselective(FunctionElement[bool]):
    """``unselective(<condition>)``: the condition, marked for SQLite's planner as true for most rows (SQLite's
    ``likely()``; PostgreSQL gets the bare condition). Wrapping a partial index's own predicate keeps the index
    usable while SQLite, which has no statistics until ``ANALYZE``, stops preferring another index that starts
    with the same column (it would read every pending row and sort them for each batch)."""

    # Not Boolean: SQLite (no native booleans) would get ``likely(...) = 1``, which matches no partial index.
    type = sa.types.NullType()  # type: ignore[assignment]
    name = "unselective"
    inherit_cache = True


@compiles(unselective)
def _unselective_default(element: unselective, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(next(iter(element.clauses)), **kw))


@compiles(unselective, "sqlite")
def _unselective_sqlite(element: unselective, compiler: Any, **kw: Any) -> str:
    return f"likely({compiler.process(next(iter(element.clauses)), **kw)})"


def _key_column(model: type[Any]) -> sa.ColumnElement[Any]:
    keys = sa.inspect(model).primary_key
    if len(keys) != 1:
        raise InvalidInput(f"{model.__name__} must have a single-column primary key to be swept")
    column: sa.ColumnElement[Any] = getattr(model, keys[0].key)
    return column


def due_query(
    model: type[Any],
    where: Sequence[sa.ColumnElement[bool]],
    order_by: Sequence[Any],
    limit: int,
    now: datetime,
    *,
    sweep: str,
    dialect: str,
    rows: bool = False,
    columns: Sequence[sa.ColumnElement[Any]] | None = None,
) -> sa.Select[Any]:
    """The SELECT ``claim_due`` (key only) and ``lock_due`` (``rows=True``: whole rows, or ``columns``) run,
    exposed so tests and benchmarks can EXPLAIN it: the due rows no live claim of ``sweep`` holds, locked ``FOR
    UPDATE SKIP LOCKED`` on PostgreSQL."""
    key = _key_column(model)
    live = sa.select(SweepClaim.item_id).where(
        SweepClaim.sweep == sweep, SweepClaim.item_id == key, SweepClaim.claimed_until > now
    )
    selected: Sequence[Any] = [key] if not rows else [model] if columns is None else columns
    stmt = sa.select(*selected).where(*where, ~sa.exists(live)).order_by(*order_by).limit(limit)
    if dialect == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True, of=model)
    return stmt


def _upsert(dialect: str) -> Any:
    """INSERT a claim, or take over a lapsed one (``claimed_until <= :now``); RETURNING the ids won."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = cast(sa.Table, SweepClaim.__table__)
    stmt = insert(table)
    return stmt.on_conflict_do_update(
        index_elements=[table.c.sweep, table.c.item_id],
        set_={"claimed_by": stmt.excluded.claimed_by, "claimed_at": stmt.excluded.claimed_at,
              "claimed_until": stmt.excluded.claimed_until},
        where=table.c.claimed_until <= sa.bindparam("now", type_=table.c.claimed_until.type),
    ).returning(table.c.item_id)


_UPSERTS = {"postgresql": _upsert("postgresql"), "sqlite": _upsert("sqlite")}


def _check(limit: int, lease: timedelta) -> None:
    if limit < 1 or lease <= timedelta(0):
        raise InvalidInput(f"claim limit must be >= 1 and lease positive (got {limit}, {lease})")


def claim_due(
    session: Session,
    model: type[Any],
    where: Sequence[sa.ColumnElement[bool]],
    order_by: Sequence[Any],
    limit: int,
    worker_id: str,
    lease: timedelta,
    now: datetime,
    *,
    sweep: str,
) -> list[str]:
    """Claim up to ``limit`` items of ``model`` matching ``where`` (in ``order_by`` order) that no live claim of
    ``sweep`` holds, for ``worker_id`` until ``now + lease``. Returns the claimed ids (possibly fewer than
    selected: an id another worker claimed in the meantime is not returned). Never commits."""
    _check(limit, lease)
    dialect = session.get_bind().dialect.name
    ids = [str(i) for i in session.execute(due_query(model, where, order_by, limit, now, sweep=sweep,
                                                     dialect=dialect)).scalars()]
    return hold(session, sweep, ids, worker_id, lease, now)


def hold(session: Session, sweep: str, item_ids: Sequence[str], worker_id: str, lease: timedelta,
         now: datetime) -> list[str]:
    """Claim ``item_ids`` of ``sweep`` for ``worker_id`` until ``now + lease`` unless a live claim holds them
    already; returns the ids won, in the given order. Never commits."""
    if not item_ids:
        return []
    _check(1, lease)
    # executemany with RETURNING (SQLAlchemy's insertmanyvalues): one cached statement, whatever the batch size
    # (a VALUES list built per call would be compiled anew for every batch).
    upsert = _UPSERTS[session.get_bind().dialect.name]
    rows = [{"sweep": sweep, "item_id": i, "claimed_by": worker_id, "claimed_at": now, "claimed_until": now + lease,
             "now": now} for i in item_ids]
    won = {str(i) for i in session.connection().execute(upsert, rows).scalars()}
    return [i for i in item_ids if i in won]


def lock_due(
    session: Session,
    model: type[Any],
    where: Sequence[sa.ColumnElement[bool]],
    order_by: Sequence[Any],
    limit: int,
    now: datetime,
    *,
    sweep: str,
    columns: Sequence[sa.ColumnElement[Any]] | None = None,
) -> dict[str, Any]:
    """Lock up to ``limit`` rows of ``model`` matching ``where`` (in ``order_by`` order) that no live claim of
    ``sweep`` holds, for the rest of the caller's transaction, with ONE statement; returns them by id, in order:
    mapped rows, or with ``columns`` (``transitions.stored_columns``) ``transitions.Stored`` rows of just those
    columns, read without the ORM.

    For a sweep that handles its items inside that same transaction: no claim row is written, because the row
    locks already keep other workers off (PostgreSQL: ``FOR UPDATE ... SKIP LOCKED``, so a concurrent worker
    takes the next rows instead of waiting; SQLite: the transaction holds the writer lock). If the transaction
    rolls back (the worker crashed), the rows are due again at once. Fresh copies replace any stale ones in the
    session (``populate_existing``). Never commits."""
    if limit < 1:
        raise InvalidInput(f"claim limit must be >= 1 (got {limit})")
    key = str(_key_column(model).key)
    stmt = due_query(model, where, order_by, limit, now, sweep=sweep, dialect=session.get_bind().dialect.name,
                     rows=True, columns=columns)
    if columns is not None:
        return transitions.stored_rows(session, stmt, key=key)
    return {str(getattr(row, key)): row
            for row in session.execute(stmt.execution_options(populate_existing=True)).scalars()}


def release(session: Session, sweep: str, item_ids: Sequence[str], worker_id: str) -> int:
    """Drop ``worker_id``'s claims on ``item_ids`` (done with them). Returns how many were dropped."""
    if not item_ids:
        return 0
    result = session.execute(
        sa.delete(SweepClaim).where(
            SweepClaim.sweep == sweep, SweepClaim.item_id.in_(list(item_ids)), SweepClaim.claimed_by == worker_id
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def purge_lapsed(session: Session, sweep: str, now: datetime) -> int:
    """Delete the lapsed claims of ``sweep`` (left by crashed workers or kept as "recently checked" marks)."""
    result = session.execute(
        sa.delete(SweepClaim).where(SweepClaim.sweep == sweep, SweepClaim.claimed_until <= now)
    )
    return int(getattr(result, "rowcount", 0) or 0)




def explain(session: Session, stmt: sa.Select[Any]) -> list[str]:
    """The backend's plan for ``stmt`` (``EXPLAIN QUERY PLAN`` on SQLite, ``EXPLAIN`` on PostgreSQL), one line
    per row: how a test or benchmark shows which index a sweep's due query uses."""
    dialect = session.get_bind().dialect
    compiled = stmt.compile(dialect=dialect)
    conn = session.connection()
    if dialect.name == "sqlite":
        positional = tuple(compiled.params[name] for name in compiled.positiontup or ())
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), positional).all()
        return [str(r[-1]) for r in rows]
    rows = conn.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params).all()
    return [str(r[0]) for r in rows]


__all__ = ["SweepClaim", "claim_due", "due_query", "explain", "hold", "lock_due", "purge_lapsed", "release",
           "unselective"]
