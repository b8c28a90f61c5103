"""Weekly series for the ``did`` judge, read from the store for one target and its control group.

Controls (``choose_controls``): the target's active teammates first (a team-wide shock moves them with the
target), same role before other roles, then people of the same role elsewhere when the team gives fewer than
``k_min``; people who are targets of other monitored actions are excluded (their own change would leak into the
control path). Ordered by id within a tier so the choice is reproducible.

Weeks (``read_weekly``): ``pre`` consecutive windows of ``window`` length ending at ``pre_end`` (midnight UTC of
the execution day: strictly before the change) and ``post`` consecutive windows ending at ``post_end``. Per
person and window: ``degree_centrality`` (distinct partners / (active people - 1), as in ``orggraph.metrics``;
a control's ties to the target are left out) and ``burnout`` (the mean of the window's observations; NaN without one).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from saferails.clock import as_utc
from saferails.org.tables import Employee
from saferails.orggraph.tables import Interaction, Wellbeing
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
