"""Outcome-judge quality: a labelled benchmark (issue "outcome checks that catch harm and spare good changes").

Generated organisations (``saferails.orggraph.sample.generate_panel``: weekly seasonality, holidays, team-wide
shocks, heavy-tailed individual variability) get interventions with known ground truth, applied to the post
week of randomly chosen targets:

* ``neutral``: nothing changes;
* ``beneficial``: focus time lowers the target's burnout by 10-40%;
* ``isolating``: the target loses 10-80% of its weekly partners;
* ``burnout``: the target's burnout rises 5-60%.

Each case is judged by the seed's ``thresholds`` rule and by the ``did`` judge (controls matched by team, role
and prior activity; 24 pre-period weeks), with a one-, two- and three-week post-period (``delay_days`` 7, 14, 21).
A case's TRUE effect is what the intervention did to the measured metric over the post-period (the changed panel
against the same panel unchanged), so "harm at least the threshold" is decided by the data the judge sees, not by
the drawn size. Reported per judge, separately for the organisations the judge was tuned on (seeds 0-7) and
held-out ones (seeds 1000-1002, never used to choose a parameter): false rollbacks (neutral or beneficial judged
``negative``), detection (true harm at least the threshold judged ``negative``), inconclusive (all cases), harm at
least the threshold rolled back or sent to a person, and the rollbacks of harm below the threshold; then the
held-out quality table (judge x organisation size x kind: share rolled back, share asked) and the goal figures
with verdicts. ``--full`` adds 20,000-person organisations and times 1,000 decisions on 20,000 people (control
matching plus judging; not the monitor's store read).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.common import BenchArgs, Result
from saferails.orggraph.sample import WeeklyPanel, generate_panel
from saferails.outcomes.judges import (
    DEFAULT_POST_WEEKS,
    DiDJudge,
    Judge,
    MetricSeries,
    RuleSpec,
    ThresholdJudge,
    match_controls,
)

AREA = "outcomes_quality"
PRE_WEEKS, POST_WEEKS = 24, 1
POSTS = (1, 2, 3)  # post-period weeks measured: the policy's delay_days / 7
GOAL_POST = DEFAULT_POST_WEEKS  # the goal figures: did with delay_days 21, its default (README "Which judge")
RULES = (RuleSpec("isolation", "degree_centrality", "drop", 0.30),
         RuleSpec("increased_burnout", "burnout", "rise", 0.20))
KINDS = ("neutral", "beneficial", "isolating", "burnout")
TUNED_SEEDS = tuple(range(8))
HELD_OUT_SEEDS = (1000, 1001, 1002)


@dataclass(frozen=True)
class Case:
    kind: str
    size: float  # the drawn magnitude (fraction), 0 for neutral
    target: int
    effect: float = 0.0  # the TRUE relative change of the rule's metric over the post-period, oriented as harm


@dataclass
class Tally:
    cases: int = 0
    false_rollbacks: int = 0
    good: int = 0  # neutral + beneficial
    detected: int = 0
    harmful: int = 0  # harm at least the threshold
    inconclusive: int = 0
    harmful_asked: int = 0  # harm at least the threshold judged inconclusive (a person decides)
    small_harm: int = 0
    small_harm_rolled_back: int = 0
    seconds: float = 0.0

    def add(self, case: Case, verdict: str) -> None:
        self.cases += 1
        self.inconclusive += verdict == "inconclusive"
        if case.kind in ("neutral", "beneficial"):
            self.good += 1
            self.false_rollbacks += verdict == "negative"
            return
        threshold = 0.30 if case.kind == "isolating" else 0.20
        if case.effect >= threshold:
            self.harmful += 1
            self.detected += verdict == "negative"
            self.harmful_asked += verdict == "inconclusive"
        else:
            self.small_harm += 1
            self.small_harm_rolled_back += verdict == "negative"

    def merge(self, other: Tally) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def figures(self) -> dict[str, float]:
        return {"false_rollback_rate": self.false_rollbacks / max(self.good, 1),
                "detection_rate": self.detected / max(self.harmful, 1),
                "inconclusive_rate": self.inconclusive / max(self.cases, 1),
                "detected_or_asked_rate": (self.detected + self.harmful_asked) / max(self.harmful, 1),
                "small_harm_rollback_rate": self.small_harm_rolled_back / max(self.small_harm, 1),
                "cases": self.cases}


def make_cases(panel: WeeklyPanel, per_kind: int, seed: int, post: int = POST_WEEKS) -> tuple[WeeklyPanel, list[Case]]:
    """Apply ``per_kind`` interventions of each kind to distinct random targets in the panel's last ``post``
    weeks.
    Returns the changed panel (the input is not modified) and the cases."""
    rng = np.random.default_rng([seed, 7])
    people = panel.degree.shape[0]
    targets = rng.choice(people, size=min(people, per_kind * len(KINDS)), replace=False)
    degree, burnout = panel.degree.copy(), panel.burnout.copy()
    cases = []
    for i, target in enumerate(targets):
        kind = KINDS[i % len(KINDS)]
        size = {"neutral": 0.0, "beneficial": rng.uniform(0.1, 0.4), "isolating": rng.uniform(0.1, 0.8),
                "burnout": rng.uniform(0.05, 0.6)}[kind]
        if kind == "isolating":
            # Exactly that share of the week's partners is lost. The partners lose the target too, but the
            # monitor does not count a control's ties to the target (saferails.outcomes.series), so that
            # spill-over never reaches the control path and is not modelled here.
            degree[target, -post:] -= np.round(size * degree[target, -post:])
        elif kind == "burnout":
            burnout[target, -post:] = np.minimum(1.0, burnout[target, -post:] * (1 + size))
        elif kind == "beneficial":
            burnout[target, -post:] *= 1 - size
        cases.append(Case(kind, float(size), int(target), _true_harm(kind, panel, degree, burnout, int(target), post)))
    changed = WeeklyPanel(panel.team, panel.role, degree, burnout, panel.holiday_weeks, panel.shocks)
    return changed, cases


def _true_harm(kind: str, panel: WeeklyPanel, degree: np.ndarray, burnout: np.ndarray, target: int,
               post: int) -> float:
    """The realised relative change of the harmed metric over the post-period (a drop in degree, a rise in
    burnout), against the unchanged panel: rounding of lost partners and burnout's ceiling of 1 make it differ
    from the drawn size."""
    if kind == "isolating":
        before = float(panel.degree[target, -post:].sum())
        return 0.0 if before == 0 else 1 - float(degree[target, -post:].sum()) / before
    if kind == "burnout":
        return float(burnout[target, -post:].sum() / panel.burnout[target, -post:].sum()) - 1
    return 0.0


def judge_case(judge: Judge, panel: WeeklyPanel, target: int, exclude: list[int], post: int = POST_WEEKS) -> str:
    weeks = PRE_WEEKS + post
    degree, burnout = panel.degree[:, -weeks:], panel.burnout[:, -weeks:]
    controls = match_controls(target, panel.team, panel.role, degree[:, :PRE_WEEKS].mean(axis=1), exclude=exclude)
    series = {"degree_centrality": MetricSeries("degree_centrality", degree[target], degree[controls],
                                                PRE_WEEKS, post),
              "burnout": MetricSeries("burnout", burnout[target], burnout[controls], PRE_WEEKS, post)}
    return judge.judge(RULES, series).verdict


def evaluate(sizes: list[int], seeds: tuple[int, ...], per_kind: int,
             judges: dict[str, Judge], post: int = POST_WEEKS,
             cells: Counter[tuple[str, int, str, str]] | None = None) -> dict[str, Tally]:
    """Run every judge on every (size, seed) organisation with a ``post``-week post-period (the policy's
    ``delay_days`` / 7); one tally per judge. ``cells`` (when given) counts ``(judge, size, kind, verdict)``."""
    tallies = {name: Tally() for name in judges}
    for size in sizes:
        for seed in seeds:
            panel, cases = make_cases(generate_panel(size, seed=seed, weeks=PRE_WEEKS + post + 1),
                                      min(per_kind, size // 8), seed, post)
            targets = [c.target for c in cases]
            for name, judge in judges.items():
                start = time.perf_counter()
                for case in cases:
                    verdict = judge_case(judge, panel, case.target, targets, post)
                    tallies[name].add(case, verdict)
                    if cells is not None:
                        cells[(name, size, case.kind, verdict)] += 1
                tallies[name].seconds += time.perf_counter() - start
    return tallies


def time_decisions(people: int, checks: int) -> float:
    """Seconds to match controls and judge ``checks`` due checks on a ``people``-person organisation."""
    panel = generate_panel(people, seed=4242, weeks=PRE_WEEKS + POST_WEEKS)
    panel, cases = make_cases(panel, checks // len(KINDS), 4242)
    judge = DiDJudge()
    targets = [c.target for c in cases]
    start = time.perf_counter()
    for case in cases:
        judge_case(judge, panel, case.target, targets)
    return time.perf_counter() - start


def _results(split: str, tallies: dict[str, Tally], sizes: list[int]) -> list[Result]:
    out = []
    for name, tally in tallies.items():
        fig = tally.figures()
        details: dict[str, Any] = {**fig, "sizes": sizes, "judge_seconds": round(tally.seconds, 2)}
        for metric in ("false_rollback_rate", "detection_rate", "inconclusive_rate", "detected_or_asked_rate",
                       "small_harm_rollback_rate"):
            out.append(Result(AREA, f"{split} {name}: {metric.replace('_', ' ')}", "memory",
                              round(100 * fig[metric], 2), "%", int(fig["cases"]), details=details))
    return out


def _table(cells: Counter[tuple[str, int, str, str]], judges: list[str], sizes: list[int]) -> list[Result]:
    """The held-out quality table: per judge, organisation size and kind, the share rolled back (value) and the
    share sent to a person (note)."""
    out = []
    for name in judges:
        for size in sizes:
            for kind in KINDS:
                n = sum(cells[(name, size, kind, v)] for v in ("ok", "negative", "inconclusive"))
                if n == 0:
                    continue
                rolled = 100 * cells[(name, size, kind, "negative")] / n
                asked = 100 * cells[(name, size, kind, "inconclusive")] / n
                out.append(Result(AREA, f"table {name} {size:>6,} people {kind}: rolled back", "memory",
                                  round(rolled, 1), "%", n, f"asked a person {asked:.1f}%"))
    return out


def _goals(did: Tally, seed_rule: Tally, post: int) -> list[Result]:
    """The issue's goals on the held-out organisations, each beside the seed rule's figure from the same run."""
    d, t = did.figures(), seed_rule.figures()
    goals = (("false rollbacks", "false_rollback_rate", "<=", 0.01), ("detection of harm >= threshold",
             "detection_rate", ">=", 0.95), ("inconclusive", "inconclusive_rate", "<=", 0.05))
    out = []
    for label, key, op, goal in goals:
        met = d[key] <= goal if op == "<=" else d[key] >= goal
        out.append(Result(AREA, f"GOAL held-out did ({post}-week post): {label}", "memory",
                          round(100 * d[key], 2), "%", int(d["cases"]),
                          f"goal {op} {100 * goal:.0f}%: {'MET' if met else 'NOT MET'}; "
                          f"seed rule {100 * t[key]:.2f}%"))
    return out


def run(args: BenchArgs) -> list[Result]:
    sizes = [200, 1000] if args.quick else [200, 1000, 5000]
    if args.full:
        sizes.append(20_000)
    per_kind = args.size(250, 60)
    judges: dict[str, Judge] = {"thresholds": ThresholdJudge(), "did": DiDJudge()}
    results: list[Result] = []
    for post in POSTS:
        for split, seeds in (("tuned", TUNED_SEEDS[:2] if args.quick else TUNED_SEEDS), ("held-out", HELD_OUT_SEEDS)):
            cells: Counter[tuple[str, int, str, str]] = Counter()
            tallies = evaluate(sizes, seeds, per_kind, judges, post, cells)
            results += _results(f"{split}, {post}-week post", tallies, sizes)
            if split == "held-out" and post == GOAL_POST:
                table, goals = _table(cells, list(judges), sizes), _goals(tallies["did"], tallies["thresholds"], post)
    results += table + goals
    if args.full:
        seconds = time_decisions(20_000, 1000)
        results.append(Result(AREA, "did: decide 1,000 due checks on 20,000 people", "memory", round(seconds, 2),
                              "s", 1000, note="goal <= 44 s (control matching + did judge)"))
    return results
