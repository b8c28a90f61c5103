"""``saferails org|outcomes|sweep ...``: org data, a person's metrics over time, due checks and sweeps run now.

The Python API (each function takes an open :class:`~saferails.api.Store` and reads time from ``store.clock``, so
a ManualClock moves it) and the CLI commands over it:

- :func:`load_org_data` (``org load``): employees, interactions and wellbeing CSV files (or DataFrames) in ONE
  transaction; any bad row refuses everything (``ORG_DATA_INVALID`` naming row and column), nothing written.
- :func:`generate_sample_org` (``org generate``): a sample org (``saferails.orggraph.sample``) ending at the last
  midnight; refused with ``ORG_SAMPLE_EXISTS`` when its people or teams are already in the store.
- :func:`person_metrics` (``org metrics``): one row per window end from ``start`` to ``end`` every ``step``, each
  the person's metrics over the ``window`` before it, from shared snapshots (computed once per window content).
- :func:`due_checks` (``outcomes due``): outcome checks a monitor run now would take.
- :func:`run_sweep` (``sweep run expire|recover|outcomes``): a sweep through the core, now. ``recover`` has no
  Prefect probe here (the core never imports Prefect): it resolves actions stuck in ``executing`` and re-runs
  approved actions that never had a flow run; the scheduled flow (``flows/sweeps.py``) also probes paused runs.

CLI contract as every other command: tables by default, one JSON document with ``--json``, errors as
``error[CODE]: message`` with the error class's exit code. Sweep progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TextIO

import pandas as pd
import sqlalchemy as sa
from pydantic import ValidationError

from saferails import cli_output as out
from saferails.api import Store
from saferails.clock import as_utc
from saferails.errors import InvalidInput, NotFound
from saferails.execution import ExecutionService
from saferails.org.repository import EmployeeIn, OrgData, OrgRepository, RoleIn, TeamIn
from saferails.org.tables import Employee, Role, Team
from saferails.orggraph.errors import OrgDataInvalid
from saferails.orggraph.loading import Source as CsvSource
from saferails.orggraph.loading import insert_interactions, insert_wellbeing
from saferails.orggraph.metrics import MetricParams, Window
from saferails.orggraph.sample import generate_org, insert_sample, start_of
from saferails.orggraph.snapshots import SnapshotCache, default_cache
from saferails.orggraph.tables import Interaction, Wellbeing
from saferails.outcomes.monitor import CheckOutcome, CheckView, OutcomeMonitor, floor_hour
from saferails.policy.model import parse_duration
from saferails.store.db import transaction
from saferails.sweeps import ExpireSweep, RecoverSweep, SweepProgress

__all__ = [
    "MAX_POINTS",
    "SWEEPS",
    "MetricPoint",
    "OrgSampleExists",
    "add_org_commands",
    "due_checks",
    "generate_sample_org",
    "load_org_data",
    "person_metrics",
    "run_org_command",
    "run_sweep",
]

SWEEPS = ("expire", "recover", "outcomes")
MAX_POINTS = 400
EMPLOYEE_OPTIONAL = ("manager_id", "team_id", "role")


class OrgSampleExists(InvalidInput):
    """``org generate`` would insert people or teams the store already holds (a sample was generated before)."""

    code = "ORG_SAMPLE_EXISTS"


# --- Python API ---------------------------------------------------------------------------------------------


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
) -> list[MetricPoint]:
    """One point per window end ``start, start + step, ... <= end`` (default: the last 14 days up to the current
    whole hour). Raises ``NotFound`` for a person no employee, interaction or reading names; ``InvalidInput``
    for non-positive durations, ``end < start`` or more than ``MAX_POINTS`` points."""
    end = as_utc(end) if end is not None else floor_hour(store.clock.now())
    start = as_utc(start) if start is not None else end - timedelta(days=14)
    if window <= timedelta(0) or step <= timedelta(0):
        raise InvalidInput("window and step must be positive durations")
    if end < start:
        raise InvalidInput(f"--to ({end.isoformat()}) is before --from ({start.isoformat()})")
    count = int((end - start) / step) + 1
    if count > MAX_POINTS:
        raise InvalidInput(f"{count} points requested; at most {MAX_POINTS} (use a larger --step)")
    if not _person_known(store, person):
        raise NotFound("person", person)
    cache = cache or default_cache()
    params = params or MetricParams()
    points = []
    for n in range(count):
        snapshot = cache.get(store.sessions, Window.ending(start + n * step, window), params, store.clock.now())
        m = snapshot.metrics(person)
        points.append(MetricPoint(start + n * step, float(m["degree_centrality"]), int(m["degree"]),
                                  float(m["betweenness"]), float(m["clustering"]),
                                  None if m["burnout"] is None else float(m["burnout"]), snapshot.hash))
    return points


def _monitor(store: Store, execution: ExecutionService | None = None) -> OutcomeMonitor:
    return OutcomeMonitor(store.sessions, store.clock, execution or ExecutionService(store.sessions, store.clock))


def due_checks(store: Store, *, limit: int = 100) -> list[CheckView]:
    """Outcome checks a monitor run now would take (due pending ones and expired claims), earliest first.
    Checks exist once a monitor run scheduled them (``run_sweep(store, "outcomes")`` or the hourly flow)."""
    if limit < 1:
        raise InvalidInput("--limit must be at least 1")
    return _monitor(store).due(limit=limit)


def run_sweep(
    store: Store,
    name: str,
    *,
    limit: int | None = None,
    execution: ExecutionService | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    worker_id: str | None = None,
) -> dict[str, Any]:
    """Run one sweep now and return its report as JSON-ready data: ``sweep``, counts and ``items`` (one per
    handled action: ``action_id``, ``outcome``, ``state``, ``detail``). ``limit`` caps the items of ``expire``
    and the checks scheduled and decided by ``outcomes`` (``recover`` runs until nothing is due). Raises
    ``InvalidInput`` for an unknown sweep or a limit below 1."""
    if name not in SWEEPS:
        raise InvalidInput(f"unknown sweep {name!r}; known: {', '.join(SWEEPS)}")
    if limit is not None and limit < 1:
        raise InvalidInput("--limit must be at least 1")
    worker = worker_id or f"cli:{socket.gethostname()}:{os.getpid()}"

    def progress(p: SweepProgress) -> None:
        if on_progress is not None:
            on_progress(p.sweep, p.done, p.total)

    if name == "expire":
        return ExpireSweep(store.actions, worker_id=worker).run(max_items=limit, on_progress=progress).to_dict()
    execution = execution or ExecutionService(store.sessions, store.clock)
    if name == "recover":
        return RecoverSweep(store.actions, execution, worker_id=worker).run(on_progress=progress).to_dict()
    monitor = _monitor(store, execution)

    def checked(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress("outcomes", done, total)

    scheduled = monitor.schedule(limit=limit or 1000)
    report = monitor.run_due(worker_id=worker, limit=limit or 1000, progress=checked)
    items = [{"action_id": o.action_id, "outcome": o.state, "state": _action_state(o), "flow_run_id": None,
              "detail": o.note or _findings(o.findings)} for o in report.outcomes]
    return {"sweep": "outcomes", "scheduled": scheduled, **report.as_dict(), "items": items}


def _action_state(outcome: CheckOutcome) -> str | None:
    """The action's state after the check, where the outcome tells it (a kept action with no note is completed)."""
    if outcome.state == "negative":
        return outcome.rollback_state
    return "completed" if outcome.state == "ok" and not outcome.note else None


def _findings(findings: list[dict[str, Any]]) -> str:
    fired = [f"{f['rule']} {f['change']:+.0%}" for f in findings if f.get("change") is not None]
    return ", ".join(fired)


# --- CLI ----------------------------------------------------------------------------------------------------


class Io(Protocol):
    """What the CLI's output object offers (``saferails.cli._Io``)."""

    stdout: TextIO
    stderr: TextIO
    json: bool

    def result(self, data: Any, text: Callable[[TextIO], object]) -> None: ...


Handler = Callable[[Store, argparse.Namespace, Io], int]
POINT_COLUMNS = ("window end", "degree_centrality", "degree", "betweenness", "clustering", "burnout")
CHECK_COLUMNS = ("check", "action", "type", "target", "state", "due")
ITEM_COLUMNS = ("action", "outcome", "state", "detail")


def _iso(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no timezone (e.g. 2026-11-22T10:00:00Z)")
    return parsed


def _duration(value: str) -> timedelta:
    try:
        parsed = parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not isinstance(parsed, timedelta):
        raise argparse.ArgumentTypeError(f"expected a duration like 12h or 7d, got {value!r}")
    return parsed


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def cmd_load(store: Store, args: argparse.Namespace, io: Io) -> int:
    counts = load_org_data(store, employees=args.employees, interactions=args.interactions, wellbeing=args.wellbeing)
    io.result(counts, lambda s: s.write("loaded " + ", ".join(f"{n} {kind}" for kind, n in counts.items()) + "\n"))
    return 0


def cmd_generate(store: Store, args: argparse.Namespace, io: Io) -> int:
    counts = generate_sample_org(store, args.size, seed=args.seed, days=args.days)
    io.result(counts | {"seed": args.seed, "days": args.days},
              lambda s: s.write(f"sample org (seed {args.seed}): {counts['employees']} people in {counts['teams']} "
                                f"teams, {counts['interactions']} interactions and {counts['wellbeing']} burnout "
                                f"readings over {args.days} days\n"))
    return 0


def cmd_metrics(store: Store, args: argparse.Namespace, io: Io) -> int:
    points = person_metrics(store, args.person, start=args.start, end=args.end, window=args.window, step=args.step)
    rows = [[p.window_end, _number(p.degree_centrality), p.degree, _number(p.betweenness), _number(p.clustering),
             _number(p.burnout)] for p in points]

    window = _window_text(args.window)

    def text(stream: TextIO) -> None:
        stream.write(f"{args.person}: metrics over the {window} before each time\n")
        out.render_table(POINT_COLUMNS, rows, stream)

    io.result({"person": args.person, "window": window, "points": [asdict(p) for p in points]}, text)
    return 0


def cmd_due(store: Store, args: argparse.Namespace, io: Io) -> int:
    checks = due_checks(store, limit=args.limit)
    rows = [[out.short_id(c.id), out.short_id(c.action_id), c.action_type, c.target, c.state, c.due_at]
            for c in checks]
    io.result([asdict(c) for c in checks],
              lambda s: out.render_table(CHECK_COLUMNS, rows, s, empty="(no outcome checks due)"))
    return 0


def cmd_sweep(store: Store, args: argparse.Namespace, io: Io) -> int:
    def progress(sweep: str, done: int, total: int) -> None:
        io.stderr.write(f"{sweep}: {done}/{total}\n")

    report = run_sweep(store, args.sweep, limit=args.limit, on_progress=None if io.json else progress)
    rows = [[out.short_id(i["action_id"]), i["outcome"], i["state"] or "-", i["detail"] or "-"]
            for i in report["items"]]

    def text(stream: TextIO) -> None:
        counts = {k: v for k, v in report.items() if isinstance(v, int) and not isinstance(v, bool)}
        stream.write(f"{args.sweep} sweep: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + "\n")
        out.render_table(ITEM_COLUMNS, rows, stream, empty="(nothing to do)")

    io.result(report, text)
    return 0


def add_org_commands(subparsers: Any) -> None:
    """Add ``org``, ``outcomes`` and ``sweep`` to the CLI's subparsers; each command sets ``handler``."""
    subs: dict[str, Any] = {}
    for name, help_text in (("org", "org data and a person's graph metrics"),
                            ("outcomes", "outcome checks of executed interventions"),
                            ("sweep", "run a scheduled sweep now")):
        group: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text, description=help_text)
        subs[name] = group.add_subparsers(dest=f"{name}_command", required=True, parser_class=type(group))

    def command(group: str, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = subs[group].add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        return p

    p = command("org", "load", cmd_load, "load CSV files in one transaction (a bad row refuses all)")
    p.add_argument("--employees", metavar="CSV", help="id,name,email[,manager_id,team_id,role]")
    p.add_argument("--interactions", metavar="CSV", help="kind,person_a,person_b,occurred_at[,weight]")
    p.add_argument("--wellbeing", metavar="CSV", help="person,observed_at,burnout_score")
    p = command("org", "generate", cmd_generate, "insert a sample org ending at the last midnight (UTC)")
    p.add_argument("--size", type=int, required=True, help="50..20000 people")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--days", type=int, default=14, help="days of interactions")
    p = command("org", "metrics", cmd_metrics, "a person's degree, betweenness, clustering and burnout over time")
    p.add_argument("person")
    p.add_argument("--from", dest="start", type=_iso, metavar="ISO", help="first window end (default: --to - 14d)")
    p.add_argument("--to", dest="end", type=_iso, metavar="ISO", help="last window end (default: this hour)")
    p.add_argument("--window", type=_duration, default=timedelta(days=7), help="window length (default 7d)")
    p.add_argument("--step", type=_duration, default=timedelta(days=1), help="between window ends (default 1d)")
    p = command("outcomes", "due", cmd_due, "outcome checks a monitor run now would decide")
    p.add_argument("--limit", type=int, default=100)
    p = command("sweep", "run", cmd_sweep, "run a sweep now: expire approvals, recover actions, or check outcomes")
    p.add_argument("sweep", choices=SWEEPS)
    p.add_argument("--limit", type=int, help="expire: items; outcomes: checks scheduled and decided")


def run_org_command(store: Store, args: argparse.Namespace, io: Io) -> int:
    """Dispatch a parsed ``org``/``outcomes``/``sweep`` command (the handler set by ``add_org_commands``)."""
    handler: Handler = args.handler
    return handler(store, args, io)


def _window_text(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
