"""Graph metrics of one interaction window.

Contract: the graph of a window ``[start, end)`` has a node for every active employee and every person named by
an interaction in the window, and an undirected edge for every pair that interacted, weighted by the sum of the
interaction weights. Per person: ``degree_centrality`` (networkx: distinct partners / (n - 1)), ``degree``,
``strength`` (sum of edge weights), ``clustering`` (unweighted local clustering), ``betweenness`` (normalised as
networkx does; exact or RK-estimated, see ``orggraph.betweenness``) and ``burnout`` (the mean of the person's
burnout observations in the window, pandas; None without observations). Degree and clustering are exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from importlib import metadata
from typing import Any

import networkx as nx
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from saferails.clock import as_utc
from saferails.errors import InvalidInput
from saferails.org.tables import Employee
from saferails.orggraph.betweenness import betweenness
from saferails.orggraph.tables import Interaction, Wellbeing


@dataclass(frozen=True)
class MetricParams:
    """How metrics are computed; part of every snapshot's hash, so changing one means a new snapshot.
    ``exact_limit``: largest graph given exact betweenness (networkx needed 3-12 s at 1,000 nodes here)."""

    exact_limit: int = 1000
    epsilon: float = 0.03
    delta: float = 0.1
    seed: int = 0
    neighbours_kept: int = 20

    def __post_init__(self) -> None:
        if not (0 < self.epsilon < 1 and 0 < self.delta < 1 and self.exact_limit >= 0 and self.neighbours_kept >= 0):
            raise InvalidInput("metric parameters out of range: 0 < epsilon, delta < 1; limits >= 0")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Window:
    """A half-open time window ``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    @classmethod
    def ending(cls, end: datetime, length: timedelta) -> Window:
        end = as_utc(end)
        return cls(end - length, end)

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


@dataclass(frozen=True)
class WindowData:
    people: list[str]
    edges: pd.DataFrame  # person_a, person_b, weight, interactions; sorted
    wellbeing: pd.DataFrame  # person, observed_at, burnout_score; sorted


def read_window(session: Session, window: Window) -> WindowData:
    """Everything the metrics of ``window`` depend on, in a canonical order (so it can be hashed)."""
    return read_windows(session, [window])[0]


def read_windows(session: Session, windows: Sequence[Window]) -> list[WindowData]:
    """:func:`read_window` of each window, in order, with the people and the wellbeing observations read once for
    all of them (the observations' times are what costs: a series of overlapping windows would read and parse
    each one several times). Each result equals what :func:`read_window` alone returns (same rows, same order,
    same types), so the snapshot hashes are the same."""
    if not windows:
        return []
    people = sorted(session.execute(sa.select(Employee.id).where(Employee.active.is_(True))).scalars())
    first, last = min(w.start for w in windows), max(w.end for w in windows)
    obs = session.execute(
        sa.select(Wellbeing.person, Wellbeing.observed_at, Wellbeing.burnout_score)
        .where(Wellbeing.observed_at >= first, Wellbeing.observed_at < last)
        .order_by(Wellbeing.person, Wellbeing.observed_at)
    ).all()
    all_wellbeing = pd.DataFrame.from_records([tuple(r) for r in obs], columns=WELLBEING_COLUMNS)
    # SQLite gives naive UTC times, PostgreSQL aware ones: compare on one aware copy, keep the frame as read.
    observed = pd.to_datetime(all_wellbeing["observed_at"], utc=True)
    found = []
    for window in windows:
        inside = (observed >= pd.Timestamp(window.start)) & (observed < pd.Timestamp(window.end))
        wellbeing = all_wellbeing[inside.to_numpy()].reset_index(drop=True)
        found.append(WindowData(people, _edges(session, window), wellbeing))
    return found


WELLBEING_COLUMNS = ["person", "observed_at", "burnout_score"]


def _edges(session: Session, window: Window) -> pd.DataFrame:
    """The window's aggregated edges. Summed by the database, per window: the same sums and the same order
    (the database's collation) whoever reads them, which the snapshot hash depends on."""
    in_window = sa.and_(Interaction.occurred_at >= window.start, Interaction.occurred_at < window.end)
    rows = session.execute(
        sa.select(Interaction.person_a, Interaction.person_b, sa.func.sum(Interaction.weight), sa.func.count())
        .where(in_window)
        .group_by(Interaction.person_a, Interaction.person_b)
        .order_by(Interaction.person_a, Interaction.person_b)
    ).all()
    # Tuples, not Row objects: pandas inspects each Row (hasattr per row), ten times slower.
    return pd.DataFrame.from_records([tuple(r) for r in rows],
                                     columns=["person_a", "person_b", "weight", "interactions"])


def build_graph(people: list[str], edges: pd.DataFrame) -> nx.Graph:
    graph = nx.Graph()
    graph.add_nodes_from(people)
    graph.add_weighted_edges_from(
        zip(edges["person_a"].tolist(), edges["person_b"].tolist(), edges["weight"].astype(float).tolist(),
            strict=True)
    )
    return graph


def burnout_by_person(wellbeing: pd.DataFrame) -> dict[str, float]:
    """Mean burnout score per person over the window's observations."""
    if wellbeing.empty:
        return {}
    means = wellbeing.groupby("person")["burnout_score"].mean()
    return {str(k): float(v) for k, v in means.items()}


def library_versions() -> dict[str, str]:
    versions = {}
    for package in ("networkx", "numpy", "pandas"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions


@dataclass(frozen=True)
class ComputedMetrics:
    persons: dict[str, dict[str, Any]]
    algorithm: str
    params: dict[str, Any]
    nodes: int
    edges: int


def compute_metrics(data: WindowData, params: MetricParams) -> ComputedMetrics:
    """Every person's metrics (see the module contract). ``algorithm`` names the betweenness method."""
    graph = build_graph(data.people, data.edges)
    degree_c = nx.degree_centrality(graph) if graph.number_of_nodes() > 1 else dict.fromkeys(graph.nodes, 0.0)
    clustering = nx.clustering(graph)
    between = betweenness(graph, exact_limit=params.exact_limit, epsilon=params.epsilon, delta=params.delta,
                          seed=params.seed)
    burnout = burnout_by_person(data.wellbeing)
    persons: dict[str, dict[str, Any]] = {}
    for node in graph.nodes:
        adjacent = graph[node]
        top = sorted(adjacent, key=lambda other: (-adjacent[other]["weight"], other))[: params.neighbours_kept]
        persons[str(node)] = {
            "degree_centrality": float(degree_c[node]),
            "degree": len(adjacent),
            "strength": round(float(sum(attrs["weight"] for attrs in adjacent.values())), 9),
            "clustering": float(clustering[node]),
            "betweenness": float(between.values.get(node, 0.0)),
            "burnout": burnout.get(str(node)),
            "neighbours": [str(other) for other in top],
        }
    for person, score in burnout.items():
        persons.setdefault(person, {**empty_metrics(), "burnout": score})
    return ComputedMetrics(persons, f"networkx-degree+clustering; betweenness={between.algorithm}",
                           {**params.as_dict(), "betweenness": between.params}, graph.number_of_nodes(),
                           graph.number_of_edges())


def empty_metrics() -> dict[str, Any]:
    """The metrics of someone absent from a window: no ties, no observations."""
    return {"degree_centrality": 0.0, "degree": 0, "strength": 0.0, "clustering": 0.0, "betweenness": 0.0,
            "burnout": None, "neighbours": []}
