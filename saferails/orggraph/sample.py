"""A realistic sample organisation, deterministic by seed (the demo's world and the benchmark's).

Structure: ``size`` people in teams of 5-12; each team's first member leads it and reports to the lead of its
parent team (a tree with up to ``fanout`` child teams per team); team 0's lead reports to nobody. Interactions
over ``days`` days: every pair inside a team interacts on a day with probability ``p_team`` (dense), and every
person has ``cross_ties`` ties across teams: most to people in nearby teams of the tree (local structure), a
fraction ``rewire`` to anyone (the long-range shortcuts of a small world), plus every lead's tie to the parent
lead. A cross tie interacts on a day with probability ``p_cross``. Burnout: one observation per person every
``wellbeing_every_days`` days, a per-person level (Beta(2, 5), leads slightly higher) plus an AR(1) drift and
noise, clipped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from saferails.errors import InvalidInput
from saferails.org.tables import Employee, Role, Team
from saferails.orggraph.loading import insert_interactions, insert_wellbeing

MIN_SIZE, MAX_SIZE = 50, 20_000
_KINDS = np.array(["meeting", "message", "coedit"])
_KIND_P = [0.3, 0.5, 0.2]
_KIND_WEIGHT = np.array([1.0, 0.2, 0.5])


@dataclass(frozen=True)
class SampleOrg:
    """DataFrames ready for :func:`insert_sample` (or the loaders): teams, employees, interactions, wellbeing."""

    teams: pd.DataFrame
    employees: pd.DataFrame
    interactions: pd.DataFrame
    wellbeing: pd.DataFrame


def _team_sizes(rng: np.random.Generator, size: int) -> np.ndarray:
    count = max(round(size / 8.5), -(-size // 12))
    count = min(count, size // 5)
    sizes = np.full(count, 5)
    for _ in range(size - 5 * count):
        open_teams = np.flatnonzero(sizes < 12)
        sizes[rng.choice(open_teams)] += 1
    return sizes


def _pairs_within(members: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    pairs = []
    for start, n in zip(starts, sizes, strict=True):
        i, j = np.triu_indices(int(n), k=1)
        pairs.append(np.column_stack([i + start, j + start]))
    chosen: np.ndarray = members[np.concatenate(pairs)]
    return chosen


def generate_org(
    size: int,
    *,
    seed: int = 0,
    start: datetime | None = None,
    days: int = 14,
    fanout: int = 6,
    p_team: float = 0.35,
    cross_ties: int = 3,
    rewire: float = 0.1,
    p_cross: float = 0.15,
    wellbeing_every_days: int = 2,
) -> SampleOrg:
    """Generate an org of exactly ``size`` people (50..20,000; ``InvalidInput`` otherwise)."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise InvalidInput(f"sample organisation size must be between {MIN_SIZE} and {MAX_SIZE}, got {size}")
    if days < 1:
        raise InvalidInput("days must be at least 1")
    rng = np.random.default_rng(seed)
    start = (start or datetime(2026, 11, 1, tzinfo=UTC)).astimezone(UTC)
    sizes = _team_sizes(rng, size)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    team_of = np.repeat(np.arange(len(sizes)), sizes)
    ids = np.array([f"p{i:05d}" for i in range(size)])
    leads = starts
    parent_team = np.where(np.arange(len(sizes)) == 0, -1, (np.arange(len(sizes)) - 1) // fanout)
    manager = np.where(np.isin(np.arange(size), leads), -1, leads[team_of])
    lead_mask = manager == -1
    manager[leads[1:]] = leads[parent_team[1:]]
    teams = pd.DataFrame({"id": [f"t{t:04d}" for t in range(len(sizes))],
                          "name": [f"Team {t}" for t in range(len(sizes))]})
    employees = pd.DataFrame({
        "id": ids, "name": [f"Person {i}" for i in range(size)], "email": [f"{p}@example.org" for p in ids],
        "manager_id": [ids[m] if m >= 0 else None for m in manager], "team_id": teams["id"].to_numpy()[team_of],
        "role": np.where(lead_mask, "lead", "member"),
    })

    team_pairs = _pairs_within(np.arange(size), starts, sizes)
    # Cross ties: a nearby team in index order (tree neighbours are close in it) or, with ``rewire``, anyone.
    source = np.repeat(np.arange(size), cross_ties)
    offset = rng.integers(1, 4, size=source.size) * rng.choice([-1, 1], size=source.size)
    near_team = np.clip(team_of[source] + offset, 0, len(sizes) - 1)
    near = starts[near_team] + rng.integers(0, sizes[near_team])
    far = rng.integers(0, size, size=source.size)
    other = np.where(rng.random(source.size) < rewire, far, near)
    lead_ties = np.column_stack([leads[1:], leads[parent_team[1:]]])
    cross = np.vstack([np.column_stack([source, other]), lead_ties])
    cross = cross[team_of[cross[:, 0]] != team_of[cross[:, 1]]]
    cross = np.unique(np.sort(cross, axis=1), axis=0)

    frames = []
    for pairs, p in ((team_pairs, p_team), (cross, p_cross)):
        hits = rng.random((days, len(pairs))) < p
        day, edge = np.nonzero(hits)
        kind = rng.choice(3, size=day.size, p=_KIND_P)
        seconds = rng.integers(8 * 3600, 18 * 3600, size=day.size)
        frames.append(pd.DataFrame({
            "kind": _KINDS[kind], "person_a": ids[pairs[edge, 0]], "person_b": ids[pairs[edge, 1]],
            "occurred_at": pd.Timestamp(start) + pd.to_timedelta(day * 86400 + seconds, unit="s"),
            "weight": np.round(_KIND_WEIGHT[kind] * rng.uniform(0.5, 2.0, size=day.size), 3),
        }))
    interactions = pd.concat(frames, ignore_index=True).sort_values("occurred_at", ignore_index=True)

    steps = np.arange(0, days, max(1, wellbeing_every_days))
    level = np.clip(rng.beta(2, 5, size=size) + 0.05 * lead_mask, 0, 1)
    drift = np.zeros(size)
    scores = []
    for _ in steps:
        drift = 0.7 * drift + rng.normal(0, 0.02, size=size)
        scores.append(np.clip(level + drift + rng.normal(0, 0.01, size=size), 0, 1))
    wellbeing = pd.DataFrame({
        "person": np.tile(ids, len(steps)),
        "observed_at": np.repeat(pd.Timestamp(start) + pd.to_timedelta(steps * 86400 + 7 * 3600, unit="s"), size),
        "burnout_score": np.round(np.concatenate(scores), 4),
    })
    return SampleOrg(teams, employees, interactions, wellbeing)


def insert_sample(session: Session, org: SampleOrg) -> dict[str, int]:
    """Insert the sample (teams, employees managers-first, interactions, wellbeing). Never commits."""
    session.execute(sa.insert(Team), org.teams.to_dict("records"))
    known_roles = set(session.execute(sa.select(Role.id)).scalars())
    missing = sorted(set(org.employees["role"]) - known_roles)
    if missing:
        session.execute(sa.insert(Role), [{"id": r, "name": r} for r in missing])
    employees: list[dict[str, Any]] = org.employees.assign(active=True).to_dict("records")
    for employee in employees:
        if not isinstance(employee["manager_id"], str):
            employee["manager_id"] = None  # pandas gives NaN for a missing manager
    by_id = {e["id"]: e for e in employees}
    ordered: list[dict[str, Any]] = []
    placed: set[str] = set()

    def place(person: dict[str, Any]) -> None:
        chain = []
        while person["id"] not in placed:
            chain.append(person)
            placed.add(person["id"])
            if person["manager_id"] is None:
                break
            person = by_id[person["manager_id"]]
        ordered.extend(reversed(chain))

    for employee in employees:
        place(employee)
    for begin in range(0, len(ordered), 5000):
        session.execute(sa.insert(Employee), ordered[begin:begin + 5000])
    return {
        "teams": len(org.teams),
        "employees": len(ordered),
        "interactions": insert_interactions(session, org.interactions),
        "wellbeing": insert_wellbeing(session, org.wellbeing),
    }


def start_of(days_ago: int, now: datetime) -> datetime:
    """Midnight UTC ``days_ago`` days before ``now`` (where a sample should start to end at ``now``)."""
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(days=days_ago)


@dataclass(frozen=True)
class WeeklyPanel:
    """Weekly per-person metrics of a generated organisation (``generate_panel``): ``degree`` (distinct partners
    per week) and ``burnout`` (mean score per week), both (people, weeks); ``team`` and ``role`` per person;
    ``holiday_weeks`` and ``shocks`` say where the noise came from."""

    team: np.ndarray
    role: np.ndarray
    degree: np.ndarray
    burnout: np.ndarray
    holiday_weeks: np.ndarray
    shocks: int


def generate_panel(
    size: int,
    *,
    seed: int = 0,
    weeks: int = 10,
    p_shock: float = 0.04,
    holiday_rate: float = 0.08,
) -> WeeklyPanel:
    """A noisy weekly panel for outcome-judge benchmarks, deterministic by seed (50..20,000 people).

    Noise, all multiplicative on a person's own level, so relative thresholds see it as they would in life:

    * weekly seasonality: working days are drawn day by day (weekends quiet, Mondays and Fridays lighter), so a
      week's activity is the sum of its days;
    * holidays: each week has a ``holiday_rate`` chance of 1-3 organisation-wide days off;
    * team-wide shocks: with ``p_shock`` per team and week, a whole team's activity falls to 30-75% (an offsite,
      an incident, a deadline) and its burnout rises 5-30%, for that week only;
    * heavy-tailed individuals: each person's own weekly variability is log-normal (a few people, travelling or
      part-time, vary by half their level from week to week) with Student-t(3) weekly draws;
    * degree is binomial over the person's potential partners (teammates plus cross-team ties), so a small
      network is relatively noisier; burnout follows the person's level with an AR(1) drift.
    """
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise InvalidInput(f"sample organisation size must be between {MIN_SIZE} and {MAX_SIZE}, got {size}")
    if weeks < 3:
        raise InvalidInput("weeks must be at least 3")
    rng = np.random.default_rng(seed)
    sizes = _team_sizes(rng, size)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    team = np.repeat(np.arange(len(sizes)), sizes)
    role = np.where(np.isin(np.arange(size), starts), "lead", "member")
    potential = sizes[team] - 1 + rng.poisson(4, size=size) + 2 * (role == "lead")
    rate = rng.lognormal(np.log(0.45), 0.35, size=size)  # per working day, per potential partner
    vol = 0.05 * rng.lognormal(0.0, 0.6, size=size)  # individual week-to-week variability (heavy-tailed)
    day_weight = np.array([0.95, 1.0, 1.0, 1.0, 0.8, 0.08, 0.04])
    holidays = rng.random(weeks) < holiday_rate
    days_off = np.where(holidays, rng.integers(1, 4, size=weeks), 0)
    working = np.array([day_weight.sum() - np.sort(day_weight[:5])[::-1][:d].sum() if d else day_weight.sum()
                        for d in days_off])
    shock = rng.random((len(sizes), weeks)) < p_shock
    act_shock = np.where(shock, rng.uniform(0.3, 0.75, size=shock.shape), 1.0)
    burn_shock = np.where(shock, rng.uniform(1.05, 1.3, size=shock.shape), 1.0)
    indiv = np.exp(vol[:, None] * rng.standard_t(3, size=(size, weeks)))
    exposure = rate[:, None] * working[None, :] * act_shock[team] * indiv
    p_meet = 1 - np.exp(-exposure)
    degree = rng.binomial(potential[:, None], p_meet).astype(float)

    level = np.clip(rng.beta(4, 8, size=size) + 0.05 * (role == "lead"), 0.08, 1)
    drift = np.zeros(size)
    burnout = np.empty((size, weeks))
    season = 1 + 0.03 * np.sin(np.arange(weeks) * 2 * np.pi / 13)
    for w in range(weeks):
        drift = 0.6 * drift + rng.normal(0, 0.02, size=size) * (1 + vol * 4)
        noise = 0.5 * vol * rng.standard_t(3, size=size)
        burnout[:, w] = np.clip(level * (1 + drift + noise) * season[w] * burn_shock[team, w], 0.01, 1)
    return WeeklyPanel(team, role, degree, burnout, np.flatnonzero(holidays), int(shock.sum()))
