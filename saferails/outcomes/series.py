"""Weekly series for the ``did`` judge, read from the store for one target and its control group.

Controls (``choose_controls``): the target's active teammates first (a team-wide shock moves them with the
target), same role before other roles, then people of the same role elsewhere when the team gives fewer than
``k_min``; people who are targets of other monitored actions are excluded (their own change would leak into the
control path). Ordered by id within a tier so the choice is reproducible.

Weeks (``read_weekly``): ``pre`` consecutive windows of ``window`` length ending at ``pre_end`` (midnight UTC of
the execution day: strictly before the change) and ``post`` consecutive windows ending at ``post_end``. Per
person and window: ``degree_centrality`` (distinct partners / (active people - 1), as in ``orggraph.metrics``;
a control's ties to the target are left out) and ``burnout`` (the mean of the window's observations; NaN without one).

``SweepSeries``: the same controls and weeks for every check of one sweep from reads done once per sweep (the
employees, the targets of overlapping checks, and per period every person's weekly distinct partners and burnout
readings, one range query per week), instead of several queries per check. The functions above stay the
reference it is tested against.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from saferails.clock import as_utc
from saferails.org.tables import Employee
from saferails.orggraph.tables import Interaction, OutcomeCheck, Wellbeing
from saferails.outcomes.judges import MetricSeries


def choose_controls(session: Session, target: str, *, exclude: Sequence[str] = (), k: int = 10,
                    k_min: int = 5) -> list[str]:
    me = session.execute(sa.select(Employee.team_id, Employee.role).where(Employee.id == target)).first()
    if me is None:
        return []
    team, role = me
    banned = {target, *exclude}
    mates = session.execute(sa.select(Employee.id, Employee.role).where(
        Employee.team_id == team, Employee.active.is_(True)).order_by(Employee.id)).all()
    chosen = [p for p, r in sorted(mates, key=lambda m: (m[1] != role, m[0])) if p not in banned][:k]
    if len(chosen) < k_min:
        others = session.execute(sa.select(Employee.id).where(
            Employee.team_id != team, Employee.role == role, Employee.active.is_(True))
            .order_by(Employee.id).limit(k_min + len(banned))).scalars()
        chosen += [p for p in others if p not in banned][:k_min - len(chosen)]
    return chosen


def read_weekly(session: Session, people: Sequence[str], *, pre_end: datetime, pre: int, window: timedelta,
                post_end: datetime, post: int = 1) -> dict[str, np.ndarray]:
    """``{metric: array (len(people), pre + post)}``; the last ``post`` columns are the post windows.
    ``people[0]`` is the target: the others' ties to it are not counted."""
    starts = [pre_end - window * (pre - i) for i in range(pre)] + [post_end - window * (post - i)
                                                                    for i in range(post)]
    first, last = starts[0], post_end
    index = {p: i for i, p in enumerate(people)}
    active = session.execute(sa.select(sa.func.count()).select_from(Employee)
                             .where(Employee.active.is_(True))).scalar_one()
    partners: list[list[set[str]]] = [[set() for _ in starts] for _ in people]
    in_range = sa.and_(Interaction.occurred_at >= first, Interaction.occurred_at < last)
    rows = session.execute(sa.select(Interaction.person_a, Interaction.person_b, Interaction.occurred_at).where(
        in_range, sa.or_(Interaction.person_a.in_(list(people)), Interaction.person_b.in_(list(people))))).all()
    target = people[0] if people else None
    for a, b, when in rows:
        w = _week(as_utc(when), starts, window, post)
        if w is None:
            continue
        # A control's tie to the target is not counted: the change moves it too (an isolated target's partners
        # lose the target), and the control path must not carry the effect.
        if a in index and (b != target or a == target):
            partners[index[a]][w].add(b)
        if b in index and (a != target or b == target):
            partners[index[b]][w].add(a)
    degree = np.array([[len(s) for s in person] for person in partners], dtype=float) / max(active - 1, 1)
    sums = np.zeros((len(people), len(starts)))
    counts = np.zeros((len(people), len(starts)))
    obs = session.execute(sa.select(Wellbeing.person, Wellbeing.observed_at, Wellbeing.burnout_score).where(
        Wellbeing.observed_at >= first, Wellbeing.observed_at < last, Wellbeing.person.in_(list(people)))).all()
    for person, when, score in obs:
        w = _week(as_utc(when), starts, window, post)
        if w is not None:
            sums[index[person], w] += float(score)
            counts[index[person], w] += 1
    burnout = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return {"degree_centrality": degree, "burnout": burnout}


def _week(when: datetime, starts: list[datetime], window: timedelta, post: int = 1) -> int | None:
    """Index of the window holding ``when``: the pre windows are contiguous from ``starts[0]``, the ``post``
    windows (the last ones) contiguous from ``starts[-post]``; the post windows may overlap the pre-period's end
    or lie after a gap, and win when they hold ``when``."""
    first_post = len(starts) - post
    after = int((when - starts[first_post]) // window) if when >= starts[first_post] else -1
    if 0 <= after < post:
        return first_post + after
    pre = int((when - starts[0]) // window)
    return pre if 0 <= pre < first_post else None


def series_for(data: dict[str, np.ndarray], pre: int, post: int = 1) -> dict[str, MetricSeries]:
    """Row 0 is the target, the other rows its controls; the last ``post`` columns are after the change."""
    return {metric: MetricSeries(metric, values[0], values[1:], pre, post) for metric, values in data.items()}


# --- one sweep's shared reads -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _People:
    """The employees as ``choose_controls`` sees them, read once: (team, role) of everyone, the active ones by
    team and, in the database's id order, by role."""

    info: dict[str, tuple[str | None, str | None]]
    by_team: dict[str | None, list[tuple[str, str | None]]]
    by_role: dict[str | None, list[tuple[str, str | None]]]
    active: int


def _read_people(session: Session) -> _People:
    rows = session.execute(sa.select(Employee.id, Employee.team_id, Employee.role, Employee.active)
                           .order_by(Employee.id)).all()
    info: dict[str, tuple[str | None, str | None]] = {}
    by_team: dict[str | None, list[tuple[str, str | None]]] = {}
    by_role: dict[str | None, list[tuple[str, str | None]]] = {}
    active = 0
    for person, team, role, is_active in rows:
        info[person] = (team, role)
        if is_active:
            active += 1
            by_team.setdefault(team, []).append((person, role))
            by_role.setdefault(role, []).append((person, team))
    return _People(info, by_team, by_role, active)


@dataclass(frozen=True)
class _Panel:
    """Every person's weekly distinct-partner counts and burnout sums over one period, with the period's
    distinct pairs (to take a control's tie to the target out)."""

    people: dict[str, int]
    partners: np.ndarray  # (people, weeks) distinct partners
    pairs: np.ndarray  # sorted keys (low * n + high) * weeks + week of the distinct pairs
    burnout_sum: np.ndarray  # (people, weeks)
    burnout_count: np.ndarray  # (people, weeks)


def _spans(starts: list[datetime], window: timedelta, post: int) -> list[tuple[datetime, datetime, int]]:
    """``(start, end, week)`` ranges that together map a time to the window ``_week`` gives it: the ``post``
    windows (they win where they overlap), the pre windows less the post windows' span, all from ``starts[0]``
    on (where ``read_weekly`` starts reading). Disjoint, so one range query per span reads every row once and
    needs no per-row bucketing in the database."""
    first_post = len(starts) - post
    post_start, post_stop = starts[first_post], starts[first_post] + window * post
    spans = [(max(starts[first_post + j], starts[0]), starts[first_post + j] + window, first_post + j)
             for j in range(post)]
    spans = [span for span in spans if span[0] < span[1]]
    for week, start in enumerate(starts[:first_post]):
        stop = start + window
        spans += [(lo, hi, week) for lo, hi in ((start, min(stop, post_start)), (max(start, post_stop), stop))
                  if lo < hi]
    return spans


class _Codes(dict[str, int]):
    """Person -> row number; a name not seen before gets the next number (someone only named by interactions
    or readings)."""

    def __missing__(self, key: str) -> int:
        code = self[key] = len(self)
        return code


def _codes(index: _Codes, rows: Sequence[Any], column: int) -> np.ndarray:
    """The row numbers of the names in ``column`` of ``rows`` (``zip(*rows)`` cost several times this)."""
    return np.fromiter(map(index.__getitem__, map(itemgetter(column), rows)), dtype=np.int64, count=len(rows))


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` for integers by sorting: numpy 2's hash-based unique took seconds on millions of
    widely spread keys, a sort a tenth of a second."""
    ordered = np.sort(values)
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))] if ordered.size else ordered


def _driver_rows(connection: sa.Connection, statement: sa.Select[Any]) -> Sequence[Any]:
    """Every row of ``statement`` as the driver's own tuples. SQLAlchemy's Row per row cost as much as the
    driver's fetch itself here; the columns read this way (names, scores) need no result processing."""
    result = connection.execute(statement)
    try:
        rows: Sequence[Any] = result.cursor.fetchall()
    finally:
        result.close()
    return rows


def _read_panel(session: Session, starts: list[datetime], window: timedelta, post: int,
                known: Sequence[str]) -> _Panel:
    """The panel of ``starts`` (the pre windows, then the ``post`` windows), rows numbered from ``known``
    (the employees) on. One plain range query per span of ``_spans`` (on the ``occurred_at`` /
    ``observed_at`` indexes) fetched as the driver's tuples, names turned into row numbers through a dict as they
    arrive: bucketing every row with a CASE in SQLite, a Row object per row, and factorising millions of name
    strings each cost about as much as the read itself."""
    weeks = len(starts)
    index = _Codes({person: i for i, person in enumerate(known)})
    # Core, not ORM, execution: the ORM's per-row result processing cost more than the database here.
    connection = session.connection()
    a_parts, b_parts, w_parts = [], [], []
    who_parts, ow_parts, score_parts = [], [], []
    for lo, hi, week in _spans(starts, window, post):
        # Every row, de-duplicated below in numpy: SQLite's DISTINCT (a temporary B-tree of strings) cost more
        # than reading the duplicates.
        pairs = _driver_rows(connection, sa.select(Interaction.person_a, Interaction.person_b).where(
            Interaction.occurred_at >= lo, Interaction.occurred_at < hi))
        if pairs:
            a_parts.append(_codes(index, pairs, 0))
            b_parts.append(_codes(index, pairs, 1))
            w_parts.append(np.full(len(pairs), week, dtype=np.int64))
        # A person's readings added up in time order, whatever order the backend would return them in.
        obs = _driver_rows(connection, sa.select(Wellbeing.person, Wellbeing.burnout_score).where(
            Wellbeing.observed_at >= lo, Wellbeing.observed_at < hi)
            .order_by(Wellbeing.person, Wellbeing.observed_at))
        if obs:
            who_parts.append(_codes(index, obs, 0))
            ow_parts.append(np.full(len(obs), week, dtype=np.int64))
            score_parts.append(np.fromiter(map(float, map(itemgetter(1), obs)), dtype=float, count=len(obs)))
    n = max(len(index), 1)
    ca, cb, w = (np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
                 for parts in (a_parts, b_parts, w_parts))
    low, high = np.minimum(ca, cb), np.maximum(ca, cb)
    keys = _sorted_unique((low * n + high) * weeks + w)
    w_k, pair = keys % weeks, keys // weeks
    low, high = pair // n, pair % n
    partners = np.bincount(low * weeks + w_k, minlength=n * weeks)
    # A pair of one person with itself (the loaders refuse it) counts once, as a partner set would.
    partners += np.bincount(high[high != low] * weeks + w_k[high != low], minlength=n * weeks)
    cw, ow = (np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64) for parts in (who_parts, ow_parts))
    scores = np.concatenate(score_parts) if score_parts else np.zeros(0)
    sums = np.zeros(n * weeks)
    counts = np.zeros(n * weeks)
    np.add.at(sums, cw * weeks + ow, scores)
    np.add.at(counts, cw * weeks + ow, 1.0)
    return _Panel(dict(index), partners.reshape(n, weeks).astype(float), keys, sums.reshape(n, weeks),
                  counts.reshape(n, weeks))


class SweepSeries:
    """What the ``did`` checks of one sweep share, read from the store at first use and kept for the sweep:
    the employees, the targets of checks due from a given time on, and per period (pre-period end, weeks, window,
    post end) every person's weekly partner counts and burnout readings. :meth:`controls` and :meth:`weekly`
    return what ``choose_controls`` and ``read_weekly`` return for the store as read (tested equal), at the cost of
    a few queries per sweep instead of several per check. Not thread-safe; one per sweep."""

    def __init__(self) -> None:
        self._people: _People | None = None
        self._sorted_mates: dict[tuple[str | None, str | None], list[str]] = {}
        self._due_from: dict[datetime, frozenset[str]] = {}
        self._panels: dict[tuple[datetime, int, timedelta, datetime, int], _Panel] = {}
        self.panel_reads = 0
        self.read_seconds = 0.0  # reading the employees, due targets and panels

    def people(self, session: Session) -> _People:
        if self._people is None:
            started = time.perf_counter()
            self._people = _read_people(session)
            self.read_seconds += time.perf_counter() - started
        return self._people

    def targets_due_from(self, session: Session, since: datetime) -> frozenset[str]:
        """Targets of outcome checks due at or after ``since`` (their changes overlap a pre-period from then)."""
        if since not in self._due_from:
            started = time.perf_counter()
            self._due_from[since] = frozenset(session.execute(
                sa.select(OutcomeCheck.target).where(OutcomeCheck.due_at >= since)).scalars())
            self.read_seconds += time.perf_counter() - started
        return self._due_from[since]

    def controls(self, session: Session, target: str, *, exclude: frozenset[str] | set[str], k: int = 10,
                 k_min: int = 5) -> list[str]:
        """``choose_controls(session, target, exclude=exclude, k=k, k_min=k_min)``."""
        people = self.people(session)
        me = people.info.get(target)
        if me is None:
            return []
        team, role = me
        if (team, role) not in self._sorted_mates:
            mates = people.by_team.get(team, [])
            self._sorted_mates[team, role] = [p for p, _r in sorted(mates, key=lambda m: (m[1] != role, m[0]))]
        chosen: list[str] = []
        for person in self._sorted_mates[team, role]:
            if len(chosen) == k:
                break
            if person != target and person not in exclude:
                chosen.append(person)
        if len(chosen) < k_min:
            for person, other_team in people.by_role.get(role, []):
                if len(chosen) >= k_min:
                    break
                if other_team is not None and other_team != team and person != target and person not in exclude:
                    chosen.append(person)
        return chosen

    def weekly(self, session: Session, people: Sequence[str], *, pre_end: datetime, pre: int, window: timedelta,
               post_end: datetime, post: int = 1) -> dict[str, np.ndarray]:
        """``read_weekly`` with the same arguments, from the period's panel (read once per sweep)."""
        key = (as_utc(pre_end), pre, window, as_utc(post_end), post)
        if key not in self._panels:
            employees = list(self.people(session).info)
            started = time.perf_counter()
            starts = [key[0] - window * (pre - i) for i in range(pre)] + [key[3] - window * (post - i)
                                                                          for i in range(post)]
            self._panels[key] = _read_panel(session, starts, window, post, employees)
            self.panel_reads += 1
            self.read_seconds += time.perf_counter() - started
        panel = self._panels[key]
        weeks = pre + post
        rows = np.array([panel.people.get(p, -1) for p in people], dtype=np.int64)
        known = rows >= 0
        partners = np.zeros((len(people), weeks))
        partners[known] = panel.partners[rows[known]]
        sums = np.zeros((len(people), weeks))
        counts = np.zeros((len(people), weeks))
        sums[known], counts[known] = panel.burnout_sum[rows[known]], panel.burnout_count[rows[known]]
        if len(people) > 1 and rows[0] >= 0:
            # A control's tie to the target is not counted (as in ``read_weekly``).
            n, target = len(panel.people), int(rows[0])
            others = rows[1:]
            low, high = np.minimum(others, target), np.maximum(others, target)
            keys = ((low * n + high)[:, None] * weeks + np.arange(weeks)[None, :])
            at = np.searchsorted(panel.pairs, keys)
            tied = (at < panel.pairs.size) & (panel.pairs[np.minimum(at, panel.pairs.size - 1)] == keys)
            partners[1:] -= np.where(known[1:, None], tied, False)
        active = self.people(session).active
        degree = partners / max(active - 1, 1)
        burnout = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        return {"degree_centrality": degree, "burnout": burnout}
