"""The org-data application functions: load CSV files, generate a sample org, a person's metrics over time.

Each takes an open :class:`~saferails.api.Store` and reads time from ``store.clock`` (a ManualClock moves it).
The CLI (``saferails org ...``) only calls these.

- :func:`load_org_data`: employees, interactions and wellbeing CSV files (or DataFrames) in ONE transaction; any
  bad row refuses everything (``ORG_DATA_INVALID`` naming row and column), nothing written.
- :func:`generate_sample_org`: a sample org (``saferails.orggraph.sample``) ending at the last midnight; refused
  with ``ORG_SAMPLE_EXISTS`` when its people or teams are already in the store.
- :func:`person_metrics`: one row per window end from ``start`` to ``end`` every ``step``, each the person's
  metrics over the ``window`` before it, from shared snapshots (computed once per window content).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa
from pydantic import ValidationError

from saferails.clock import as_utc
from saferails.errors import InvalidInput, NotFound
from saferails.org.repository import EmployeeIn, OrgData, OrgRepository, RoleIn, TeamIn
from saferails.org.tables import Employee, Role, Team
from saferails.orggraph.errors import OrgDataInvalid
from saferails.orggraph.loading import Source as CsvSource
from saferails.orggraph.loading import insert_interactions, insert_wellbeing
from saferails.orggraph.metrics import MetricParams, Window
from saferails.orggraph.sample import generate_org, insert_sample, start_of
from saferails.orggraph.snapshots import SnapshotCache, default_cache
from saferails.orggraph.tables import Interaction, Wellbeing
from saferails.store.db import transaction

if TYPE_CHECKING:
    from saferails.api import Store

__all__ = ["MAX_POINTS", "MetricPoint", "OrgSampleExists", "generate_sample_org", "load_org_data", "person_metrics"]

MAX_POINTS = 400
EMPLOYEE_OPTIONAL = ("manager_id", "team_id", "role")


class OrgSampleExists(InvalidInput):
    """``org generate`` would insert people or teams the store already holds (a sample was generated before)."""

    code = "ORG_SAMPLE_EXISTS"



def _employees(source: CsvSource) -> list[EmployeeIn]:
    try:
        frame = source if isinstance(source, pd.DataFrame) else pd.read_csv(source, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise OrgDataInvalid(f"not a readable CSV file: {exc}", column="*") from None
    for column in ("id", "name", "email"):
        if column not in frame.columns:
            raise OrgDataInvalid("required column is missing", column=column)
    known = [c for c in (*EMPLOYEE_OPTIONAL, "id", "name", "email") if c in frame.columns]
    people: list[EmployeeIn] = []
    for row, record in enumerate(frame[known].to_dict("records"), start=1):
        cleaned = {k: (str(v).strip() or None) if k in EMPLOYEE_OPTIONAL else str(v).strip() for k, v in
                   record.items() if not (k in EMPLOYEE_OPTIONAL and pd.isna(v))}
        try:
            people.append(EmployeeIn.model_validate(cleaned))
        except ValidationError as exc:
            error = exc.errors()[0]
            column = str(error["loc"][0]) if error["loc"] else "*"
            raise OrgDataInvalid(error["msg"], column=column, row=row, value=record.get(column)) from None
    ids = [p.id for p in people]
    duplicated = pd.Series(ids).duplicated()
    if bool(duplicated.any()):
        first = int(duplicated.to_numpy().nonzero()[0][0])
        raise OrgDataInvalid("a second employee with the same id", column="id", row=first + 1, value=ids[first])
    return people


def _existing(session: sa.orm.Session, model: Any, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for begin in range(0, len(ids), 1000):
        found.update(session.execute(sa.select(model.id).where(model.id.in_(ids[begin:begin + 1000]))).scalars())
    return found


def _insert_employees(session: sa.orm.Session, people: list[EmployeeIn]) -> int:
    ids = [p.id for p in people]
    clash = _existing(session, Employee, ids)
    if clash:
        first = next(i for i, p in enumerate(people) if p.id in clash)
        raise OrgDataInvalid("already in the store", column="id", row=first + 1, value=people[first].id)
    managers = sorted({p.manager_id for p in people if p.manager_id} - set(ids))
    unknown = set(managers) - _existing(session, Employee, managers)
    if unknown:
        first = next(i for i, p in enumerate(people) if p.manager_id in unknown)
        raise OrgDataInvalid("no such employee in the file or the store", column="manager_id", row=first + 1,
                             value=people[first].manager_id)
    teams = sorted({p.team_id for p in people if p.team_id})
    roles = sorted({p.role for p in people if p.role})
    new_teams = sorted(set(teams) - _existing(session, Team, teams))
    new_roles = sorted(set(roles) - _existing(session, Role, roles))
    OrgRepository(session).insert(OrgData(teams=[TeamIn(id=t) for t in new_teams],
                                          roles=[RoleIn(id=r) for r in new_roles], employees=people))
    return len(people)


def load_org_data(
    store: Store,
    *,
    employees: CsvSource | None = None,
    interactions: CsvSource | None = None,
    wellbeing: CsvSource | None = None,
) -> dict[str, int]:
    """Insert what is given, employees first, in one transaction; returns rows inserted per kind. Employees'
    teams and roles that the store lacks are created (named by their id). Raises ``OrgDataInvalid`` (nothing
    written) for a bad row, an id already stored, or a manager neither in the file nor the store; ``InvalidInput``
    when nothing is given."""
    if employees is None and interactions is None and wellbeing is None:
        raise InvalidInput("give at least one of employees, interactions, wellbeing")
    for kind, source in (("employees", employees), ("interactions", interactions), ("wellbeing", wellbeing)):
        if isinstance(source, str | Path) and not Path(source).is_file():
            raise InvalidInput(f"{kind}: no such file {str(source)!r}")
    people = _employees(employees) if employees is not None else None
    counts: dict[str, int] = {}
    with transaction(store.sessions) as session:
        if people is not None:
            counts["employees"] = _insert_employees(session, people)
        if interactions is not None:
            counts["interactions"] = insert_interactions(session, interactions)
        if wellbeing is not None:
            counts["wellbeing"] = insert_wellbeing(session, wellbeing)
    return counts


def generate_sample_org(store: Store, size: int, *, seed: int = 0, days: int = 14) -> dict[str, int]:
    """Generate a ``size``-person org (50..20,000) whose ``days`` of interactions end at the last midnight UTC of
    ``store.clock`` and insert it; returns rows inserted per kind. Deterministic by ``seed``."""
    org = generate_org(size, seed=seed, days=days, start=start_of(days, store.clock.now()))
    with transaction(store.sessions) as session:
        teams = [str(t) for t in org.teams["id"]]
        taken = sorted(_existing(session, Team, teams) | _existing(session, Employee, list(org.employees["id"])))
        if taken:
            raise OrgSampleExists(f"the store already holds {len(taken)} of the sample's teams/people "
                                  f"(e.g. {taken[0]}): a sample org was generated here before", taken=len(taken))
        return insert_sample(session, org)


@dataclass(frozen=True)
class MetricPoint:
    """A person's metrics over ``[window_end - window, window_end)``; ``burnout`` None without readings."""

    window_end: datetime
    degree_centrality: float
    degree: int
    betweenness: float
    clustering: float
    burnout: float | None
    snapshot_hash: str


def _person_known(store: Store, person: str) -> bool:
    with transaction(store.sessions) as session:
        checks = (sa.select(Employee.id).where(Employee.id == person),
                  sa.select(Interaction.id).where(sa.or_(Interaction.person_a == person,
                                                         Interaction.person_b == person)),
                  sa.select(Wellbeing.person).where(Wellbeing.person == person))
        return any(session.execute(stmt.limit(1)).first() is not None for stmt in checks)


def person_metrics(
    store: Store,
    person: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    window: timedelta = timedelta(days=7),
    step: timedelta = timedelta(days=1),
    cache: SnapshotCache | None = None,
    params: MetricParams | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[MetricPoint]:
    """One point per window end ``start, start + step, ... <= end`` (default: the 14 days up to
    :func:`default_end`); ``on_progress(done, total)`` is called after each point. Raises ``NotFound`` for a person no
    employee, interaction or reading names; ``InvalidInput`` for non-positive durations, ``end < start`` or more
    than ``MAX_POINTS`` points."""
    if window <= timedelta(0) or step <= timedelta(0):
        raise InvalidInput("window and step must be positive durations")
    end = as_utc(end) if end is not None else default_end(as_utc(store.clock.now()), step)
    start = as_utc(start) if start is not None else end - timedelta(days=14)
    if end < start:
        raise InvalidInput(f"--to ({end.isoformat()}) is before --from ({start.isoformat()})")
    count = int((end - start) / step) + 1
    if count > MAX_POINTS:
        raise InvalidInput(f"{count} points requested; at most {MAX_POINTS} (use a larger --step)")
    if not _person_known(store, person):
        raise NotFound("person", person)
    cache = cache or default_cache()
    params = params or MetricParams()
    ends = [start + n * step for n in range(count)]
    points = []
    for begin in range(0, count, _CHUNK):
        chunk = ends[begin:begin + _CHUNK]
        snapshots = cache.get_many(store.sessions, [Window.ending(e, window) for e in chunk], params,
                                   store.clock.now())
        for window_end, snapshot in zip(chunk, snapshots, strict=True):
            m = snapshot.metrics(person)
            points.append(MetricPoint(window_end, float(m["degree_centrality"]), int(m["degree"]),
                                      float(m["betweenness"]), float(m["clustering"]),
                                      None if m["burnout"] is None else float(m["burnout"]), snapshot.hash))
            if on_progress is not None:
                on_progress(len(points), count)
    return points


_CHUNK = 8
"""Windows read per transaction: few enough for the progress bar to move, enough to share the reading."""


def default_end(now: datetime, step: timedelta) -> datetime:
    """The last window end by default: ``now`` rounded down to a whole multiple of ``step`` since the Unix epoch
    (midnight UTC for whole days, the hour for hours). Asked again later the same day, or the next day, the
    series ends on the same boundaries, so its windows are the snapshots already computed (one new window a day
    for ``--step 1d``) instead of a new series every hour."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return now - (now - epoch) % step
