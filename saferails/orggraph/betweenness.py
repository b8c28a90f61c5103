"""Betweenness centrality: exact (Brandes, networkx) up to ``exact_limit`` nodes, above that the
Riondato-Kornaropoulos estimator (RK, WSDM 2014) with a stated error bound.

RK bound: draw ``r = ceil((c / eps^2) * (floor(log2(VD - 2)) + 1 + ln(1 / delta)))`` ordered node pairs (u, v)
uniformly (c = 0.5, VD the vertex diameter: nodes on the longest shortest path); for each, pick one shortest
u-v path uniformly at random (balanced bidirectional BFS, ``_Csr.sample_path``) and add ``1 / r`` to each
interior node. Then with probability at least
``1 - delta``, for EVERY node at once, ``|estimate - b(v)| <= eps`` where ``b(v)`` is betweenness normalised by
``n (n - 1)`` ordered pairs. VD is bounded from above by ``2 * ecc + 1`` (one BFS per connected component), which
only makes ``r`` larger, so the guarantee holds. Results are returned on networkx's normalised scale
(``x n / (n - 2)``), so the stated bound there is ``eps * n / (n - 2)``. The bound is additive: a relative rule
on betweenness is only meaningful for values well above it (the default outcome rules do not use betweenness).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

RK_CONSTANT = 0.5


@dataclass(frozen=True)
class BetweennessResult:
    values: dict[str, float]
    algorithm: str  # "brandes-exact" | "riondato-kornaropoulos"
    params: dict[str, Any]


class _Csr:
    def __init__(self, graph: nx.Graph) -> None:
        self.nodes: list[str] = list(graph.nodes)
        index = {node: i for i, node in enumerate(self.nodes)}
        self.n = len(self.nodes)
        edges = np.array([(index[a], index[b]) for a, b in graph.edges], dtype=np.int64).reshape(-1, 2)
        src = np.concatenate([edges[:, 0], edges[:, 1]])
        dst = np.concatenate([edges[:, 1], edges[:, 0]])
        order = np.argsort(src, kind="stable")
        self.indices = dst[order]
        self.indptr = np.zeros(self.n + 1, dtype=np.int64)
        np.add.at(self.indptr, src + 1, 1)
        self.indptr = np.cumsum(self.indptr)
        self.degree = np.diff(self.indptr)
        # Scratch for ``_step``'s de-duplication: only the entries of the level at hand are read, so it is
        # never cleared (``owner[x] == position`` holds for the last occurrence of x in the level only).
        self._owner = np.zeros(self.n, dtype=np.int64)

    def neighbours(self, node: int) -> np.ndarray:
        return self.indices[self.indptr[node]:self.indptr[node + 1]]

    def bfs(self, source: int, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Distances (-1 unreachable) and shortest-path counts from ``source``, level by level; stops after the
        level that reaches ``stop``."""
        dist = np.full(self.n, -1, dtype=np.int64)
        sigma = np.zeros(self.n)
        dist[source], sigma[source] = 0, 1.0
        frontier = np.array([source], dtype=np.int64)
        level = 0
        while frontier.size and (stop is None or dist[stop] < 0):
            begin, counts = self.indptr[frontier], self.indptr[frontier + 1] - self.indptr[frontier]
            total = int(counts.sum())
            if total == 0:
                break
            offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            src = np.repeat(frontier, counts)
            dst = self.indices[np.repeat(begin, counts) + offsets]
            fresh = dist[dst] < 0
            src, dst = src[fresh], dst[fresh]
            # A boolean mark instead of np.unique: O(n) instead of a sort of every edge of the level.
            mark = np.zeros(self.n, dtype=bool)
            mark[dst] = True
            nxt = np.flatnonzero(mark)
            dist[nxt] = level + 1
            sigma += np.bincount(dst, weights=sigma[src], minlength=self.n)
            frontier, level = nxt, level + 1
        return dist, sigma

    def _step(self, frontier: np.ndarray, dist: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """Expand ``frontier`` (all at one distance) by one level in place: the new nodes' distances and
        shortest-path counts; returns the new level. Costs the frontier's edges, not the graph's size."""
        begin, counts = self.indptr[frontier], self.indptr[frontier + 1] - self.indptr[frontier]
        total = int(counts.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64)
        offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        src = np.repeat(frontier, counts)
        dst = self.indices[np.repeat(begin, counts) + offsets]
        fresh = dist[dst] < 0
        src, dst = src[fresh], dst[fresh]
        # np.unique without its hashing or a sort of every edge: mark each node's last position, keep those
        # positions, sort the (fewer) distinct nodes. The same sorted level as np.unique gives.
        positions = np.arange(dst.size)
        self._owner[dst] = positions
        nxt = np.sort(dst[self._owner[dst] == positions])
        dist[nxt] = dist[frontier[0]] + 1
        np.add.at(sigma, dst, sigma[src])
        return nxt

    def _walk(self, start: int, dist: np.ndarray, sigma: np.ndarray, draws: np.ndarray) -> list[int]:
        """A shortest path from ``start`` back to the search's source (excluded ``start``, included source),
        each predecessor drawn with probability proportional to its shortest-path count: uniform over the
        shortest paths."""
        path, current = [], start
        for draw in draws:
            if dist[current] == 0:
                break
            preds = self.neighbours(current)
            preds = preds[dist[preds] == dist[current] - 1]
            if preds.size > 1:
                cumulative = np.cumsum(sigma[preds])
                current = int(preds[min(int(np.searchsorted(cumulative, draw * cumulative[-1], side="right")),
                                        preds.size - 1)])
            else:
                current = int(preds[0])
            path.append(current)
        return path

    def sample_path(self, u: int, v: int, draws: np.ndarray) -> list[int]:
        """The interior nodes of one shortest u-v path drawn uniformly at random ([] if none, or adjacent).

        Balanced bidirectional BFS (as in KADABRA, Borassi & Natale 2016): the side whose frontier has fewer
        edges grows by one level until a new level touches the other side. Then every shortest path crosses
        exactly one node ``x`` of that meeting set, ``sigma_u(x) * sigma_v(x)`` of them; drawing ``x`` in that
        proportion and walking back to each end by predecessors weighted by their counts gives each shortest
        path probability ``1 / sum(sigma_u * sigma_v)``: the uniform draw RK asks for, at the cost of two small
        balls instead of one BFS over most of a small-world graph. ``draws``: uniform numbers, at least the
        path's length + 1."""
        degree = self.degree
        dists = (np.full(self.n, -1, dtype=np.int64), np.full(self.n, -1, dtype=np.int64))
        sigmas = (np.zeros(self.n), np.zeros(self.n))
        frontiers = [np.array([u], dtype=np.int64), np.array([v], dtype=np.int64)]
        for side, node in ((0, u), (1, v)):
            dists[side][node], sigmas[side][node] = 0, 1.0
        while True:
            side = 0 if int(degree[frontiers[0]].sum()) <= int(degree[frontiers[1]].sum()) else 1
            frontiers[side] = self._step(frontiers[side], dists[side], sigmas[side])
            if frontiers[side].size == 0:
                return []  # that side's component is exhausted: no path
            meet = frontiers[side][dists[1 - side][frontiers[side]] >= 0]
            if meet.size:
                break
        weights = np.cumsum(sigmas[0][meet] * sigmas[1][meet])
        x = int(meet[min(int(np.searchsorted(weights, draws[0] * weights[-1], side="right")), meet.size - 1)])
        half = (len(draws) - 1) // 2
        path = [x, *self._walk(x, dists[0], sigmas[0], draws[1:1 + half]),
                *self._walk(x, dists[1], sigmas[1], draws[1 + half:])]
        return [node for node in path if node not in (u, v)]


def vertex_diameter_bound(csr: _Csr) -> int:
    """An upper bound on the vertex diameter: ``2 * ecc(v) + 1`` for one node v per connected component."""
    seen = np.zeros(csr.n, dtype=bool)
    bound = 1
    degree = np.diff(csr.indptr)
    for node in range(csr.n):
        if seen[node] or degree[node] == 0:
            continue
        dist, _ = csr.bfs(node)
        reached = dist >= 0
        seen |= reached
        bound = max(bound, 2 * int(dist[reached].max()) + 1)
    return bound


def rk_sample_size(vertex_diameter: int, epsilon: float, delta: float) -> int:
    return math.ceil(
        (RK_CONSTANT / epsilon**2) * (math.floor(math.log2(max(vertex_diameter - 2, 1))) + 1 + math.log(1 / delta))
    )


def rk_betweenness(graph: nx.Graph, *, epsilon: float, delta: float, seed: int) -> BetweennessResult:
    """The RK estimate (see the module docstring), on networkx's normalised scale."""
    csr = _Csr(graph)
    n = csr.n
    vd = vertex_diameter_bound(csr) if n > 2 else 1
    samples = rk_sample_size(vd, epsilon, delta)
    params: dict[str, Any] = {"epsilon": epsilon, "delta": delta, "seed": seed, "vertex_diameter_bound": vd,
                              "samples": samples, "c": RK_CONSTANT,
                              "bound_networkx_scale": epsilon * n / (n - 2) if n > 2 else 0.0}
    if n <= 2:
        return BetweennessResult({node: 0.0 for node in csr.nodes}, "riondato-kornaropoulos", params)
    rng = np.random.default_rng(seed)
    estimate = np.zeros(n)
    sources = rng.integers(0, n, size=samples)
    targets = (sources + rng.integers(1, n, size=samples)) % n
    draws = rng.random(size=(samples, 2 * vd + 3))
    for k, (u, v) in enumerate(zip(sources.tolist(), targets.tolist(), strict=True)):
        for node in csr.sample_path(u, v, draws[k]):
            estimate[node] += 1.0
    scale = n / (n - 2) / samples
    return BetweennessResult({node: float(estimate[i] * scale) for i, node in enumerate(csr.nodes)},
                             "riondato-kornaropoulos", params)


def betweenness(graph: nx.Graph, *, exact_limit: int, epsilon: float, delta: float, seed: int) -> BetweennessResult:
    """Exact betweenness up to ``exact_limit`` nodes, the RK estimate above (normalised as networkx does)."""
    if graph.number_of_nodes() <= exact_limit:
        values = nx.betweenness_centrality(graph, normalized=True)
        return BetweennessResult({str(k): float(v) for k, v in values.items()}, "brandes-exact",
                                 {"exact_limit": exact_limit})
    result = rk_betweenness(graph, epsilon=epsilon, delta=delta, seed=seed)
    return BetweennessResult(result.values, result.algorithm, {**result.params, "exact_limit": exact_limit})
