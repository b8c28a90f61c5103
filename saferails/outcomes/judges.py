"""Outcome judges: decide, from weekly series, whether a change harmed its target.

Two judges, selectable per action type (``TypeRules.judge``):

``thresholds`` (seed 000 as written): the target's metric in the last pre-period week against the post-period,
relative change beyond the rule's threshold -> ``negative``. No control, no uncertainty. (The monitor applies the
same rule to its snapshot windows through ``rules.MetricRule``; this class is its form on weekly series, for the
benchmark.)

``did`` (the default): a difference in differences against a control group, standardised by the target's own
noise. Every unit's weekly series is divided by its own pre-period mean. The control path is the 20%-trimmed mean
of the controls' normalised series, week by week (a team-wide shock or a holiday moves both). The target's
sensitivity to that path is fitted over the pre-period by least squares pulled towards 1 with ``slope_prior``
pseudo-weeks (someone who already meets everyone they can loses less in a quiet week). The counterfactual for
each post week is ``1 + slope * (path - 1)`` plus the target's mean pre-period residual (its usual level, moved as
its controls moved); the effect is the post-period mean relative to the counterfactual's mean, minus 1 (relative,
as the thresholds are). Its noise level is the target's own pre-period residual spread, shrunk towards the
controls' median spread with ``prior_weeks`` pseudo-weeks (heavy-tailed people get their own, wider scale),
times ``sqrt(1/post + 1/pre)`` over the counterfactual; the interval is normal at ``confidence``. No random
draws: the same data always gives the same decision.

Decision per metric, with ``harm`` the effect oriented so that positive is harmful (a drop for ``drop`` rules),
``[lo, hi]`` the interval of ``harm`` and ``week_harms`` each post week's own harm against its counterfactual:

* ``negative`` (rolled back automatically): ``lo > 0`` (confidently harmful), ``harm >= min_share * threshold``
  (large) and every post week's harm ``>= week_share * threshold`` (lasting: one bad week, a trip or a sick day,
  does not roll a change back);
* ``inconclusive``: not negative but ``harm >= ask_from * threshold`` (a large effect the data cannot separate
  from that person's ordinary weeks: ask a person);
* ``ok``: otherwise.

``confidence`` (0.975), ``min_share`` (0.8), ``week_share`` (0.2), ``ask_from`` (0.8), ``prior_weeks`` and
``slope_prior`` were chosen on the benchmark's tuning organisations only (``bench/outcomes_quality.py``, seeds
0-7; held-out seeds 1000-1002 are reported separately). The goals hold from :data:`DEFAULT_POST_WEEKS` weeks
after the change (the policy's ``delay_days: 21``); with fewer weeks the judge rolls back less real harm.

The check's decision is the worst over its metrics (negative > inconclusive > ok). A metric without a usable
pre-period (a zero pre-period mean, missing weeks, fewer than 2 pre weeks or no controls) is ``inconclusive``
and says why: failing closed here means asking a person, not rolling back nor waving through. A metric with no
reading at all for the target (or only zeros) gives no finding (``ok``, noted), as in the seed's rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from statistics import NormalDist
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from saferails.errors import InvalidInput

# Re-exported: the defaults live apart so that validating a policy does not import numpy.
from saferails.outcomes.defaults import DEFAULT_CONFIDENCE as DEFAULT_CONFIDENCE
from saferails.outcomes.defaults import DEFAULT_JUDGE as DEFAULT_JUDGE
from saferails.outcomes.defaults import DEFAULT_POST_WEEKS as DEFAULT_POST_WEEKS

Verdict = Literal["ok", "negative", "inconclusive"]
SEVERITY: dict[str, int] = {"ok": 0, "inconclusive": 1, "negative": 2}
JUDGES = ("did", "thresholds")
FloatArray = NDArray[np.float64]


class OutcomeDataInvalid(InvalidInput):
    """The series handed to a judge do not line up (shapes, period lengths)."""

    code = "OUTCOME_DATA_INVALID"


@dataclass(frozen=True)
class MetricSeries:
    """Weekly values of one metric: ``target`` (weeks,), ``controls`` (k, weeks); the first ``pre`` weeks are
    the pre-period, the last ``post`` weeks the post-period (weeks in between, if any, are ignored)."""

    metric: str
    target: FloatArray
    controls: FloatArray
    pre: int
    post: int

    def __post_init__(self) -> None:
        weeks = self.target.shape[0] if self.target.ndim == 1 else -1
        if weeks < 0 or self.controls.ndim != 2 or self.controls.shape[1] != weeks:
            raise OutcomeDataInvalid(f"{self.metric}: target must be (weeks,) and controls (k, weeks)",
                                     metric=self.metric)
        if self.pre < 1 or self.post < 1 or self.pre + self.post > weeks:
            raise OutcomeDataInvalid(f"{self.metric}: pre ({self.pre}) + post ({self.post}) weeks exceed the "
                                     f"{weeks} weeks given", metric=self.metric)


@dataclass(frozen=True)
class RuleSpec:
    """What a judge checks on one metric: the harmful direction and the minimum effect that matters."""

    name: str
    metric: str
    direction: Literal["drop", "rise"]
    threshold: float


@dataclass(frozen=True)
class MetricDecision:
    rule: str
    metric: str
    verdict: Verdict
    effect: float | None  # relative change of the target net of the controls (did) or raw (thresholds)
    harm: float | None  # effect oriented so that positive is harmful
    interval: tuple[float, float] | None  # of the effect, at the judge's confidence
    threshold: float
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Judgement:
    """A judge's decision on one check, with everything needed to reproduce it."""

    verdict: Verdict
    method: str
    params: dict[str, Any]
    metrics: tuple[MetricDecision, ...]
    controls: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "method": self.method, "params": dict(self.params),
                "controls": list(self.controls),
                "metrics": [{**asdict(m), "interval": None if m.interval is None else list(m.interval)}
                            for m in self.metrics]}


def _worst(verdicts: Sequence[str]) -> Verdict:
    worst = max(verdicts, key=lambda v: SEVERITY[v], default="ok")
    return "negative" if worst == "negative" else "inconclusive" if worst == "inconclusive" else "ok"


class Judge(Protocol):
    @property
    def name(self) -> str: ...

    def judge(self, rules: Sequence[RuleSpec], series: Mapping[str, MetricSeries],
              controls: Sequence[str] = ()) -> Judgement: ...


@dataclass(frozen=True)
class ThresholdJudge:
    """Seed 000's rule as written: the target alone, last pre week against the post-period mean."""

    name: str = "thresholds"

    def judge(self, rules: Sequence[RuleSpec], series: Mapping[str, MetricSeries],
              controls: Sequence[str] = ()) -> Judgement:
        decisions = []
        for rule in rules:
            s = series.get(rule.metric)
            if s is None:
                decisions.append(MetricDecision(rule.name, rule.metric, "ok", None, None, None, rule.threshold,
                                                "no reading"))
                continue
            before = float(s.target[s.pre - 1])
            after = float(np.mean(s.target[-s.post:]))
            if not np.isfinite(before) or not np.isfinite(after) or before == 0:
                decisions.append(MetricDecision(rule.name, rule.metric, "ok", None, None, None, rule.threshold,
                                                "baseline is zero or missing"))
                continue
            change = (after - before) / before
            harm = -change if rule.direction == "drop" else change
            decisions.append(MetricDecision(rule.name, rule.metric, "negative" if harm > rule.threshold else "ok",
                                            change, harm, None, rule.threshold,
                                            details={"before": before, "after": after}))
        return Judgement(_worst([d.verdict for d in decisions]), self.name, {}, tuple(decisions), tuple(controls))


def _trimmed_mean(values: FloatArray, proportion: float = 0.2) -> FloatArray:
    """Column-wise trimmed mean of a (k, weeks) array (heavy-tailed people do not drag the control path)."""
    k = values.shape[0]
    cut = int(k * proportion)
    ordered = np.sort(values, axis=0)
    kept = ordered[cut:k - cut] if k - 2 * cut >= 1 else ordered
    result: FloatArray = kept.mean(axis=0)
    return result


@dataclass(frozen=True)
class DiDJudge:
    """Difference in differences against a control group, standardised by the target's own noise (module
    docstring). Parameters: ``confidence`` of the two-sided interval; ``prior_weeks`` of shrinkage of the target's
    noise level towards the controls' median; ``slope_prior`` pseudo-weeks pulling the target's sensitivity to
    the control path towards 1; ``min_share`` of the threshold the effect itself must reach for a rollback;
    ``week_share`` of the threshold every post week's own harm must reach for a rollback; ``ask_from`` (share of
    the threshold) from which an effect that is not confidently harmful goes to a person."""

    confidence: float = DEFAULT_CONFIDENCE
    prior_weeks: float = 4.0
    slope_prior: float = 2.0
    min_share: float = 0.8
    week_share: float = 0.2
    ask_from: float = 0.8
    name: str = "did"

    def __post_init__(self) -> None:
        if not 0.5 < self.confidence < 1 or self.prior_weeks < 0 or self.slope_prior < 0 \
                or not 0 < self.min_share <= 1 or not 0 <= self.week_share <= 1 or not 0 < self.ask_from <= 1:
            raise InvalidInput("did judge: confidence must be in (0.5, 1), prior_weeks >= 0, slope_prior >= 0, "
                               "0 < min_share <= 1, 0 <= week_share <= 1, 0 < ask_from <= 1")

    @property
    def params(self) -> dict[str, Any]:
        return {"confidence": self.confidence, "prior_weeks": self.prior_weeks, "slope_prior": self.slope_prior,
                "min_share": self.min_share, "week_share": self.week_share, "ask_from": self.ask_from,
                "interval": "normal, standardised by the target's pre-period residual spread shrunk towards the "
                            "controls' median spread",
                "control_path": "20% trimmed mean of pre-normalised controls, target's slope on it ridge-fitted "
                                "over the pre-period towards 1",
                "effect": "post-period mean relative to the counterfactual (the target's level moved as its "
                          "controls moved)"}

    def judge(self, rules: Sequence[RuleSpec], series: Mapping[str, MetricSeries],
              controls: Sequence[str] = ()) -> Judgement:
        decisions = []
        for rule in rules:
            s = series.get(rule.metric)
            if s is None:
                decisions.append(MetricDecision(rule.name, rule.metric, "inconclusive", None, None, None,
                                                rule.threshold, "no reading for this metric"))
                continue
            decisions.append(self._metric(rule, s))
        return Judgement(_worst([d.verdict for d in decisions]), self.name, self.params, tuple(decisions),
                         tuple(controls))

    def _metric(self, rule: RuleSpec, s: MetricSeries) -> MetricDecision:
        def unusable(note: str) -> MetricDecision:
            return MetricDecision(rule.name, rule.metric, "inconclusive", None, None, None, rule.threshold, note)

        target, controls = s.target.astype(float), s.controls.astype(float)
        if not np.nan_to_num(target).any():
            # As the seed's rule: no reading (or nothing but zeros: a target the org data does not know) gives no
            # finding, and says so (an org without wellbeing surveys must not send every check to a person).
            return MetricDecision(rule.name, rule.metric, "ok", None, None, None, rule.threshold, "no reading")
        if s.controls.shape[0] < 1:
            return unusable("no control group")
        if s.pre < 2:
            return unusable("fewer than 2 pre-period weeks")
        t_base = np.nanmean(target[:s.pre]) if np.isfinite(target[:s.pre]).any() else np.nan
        if not np.isfinite(t_base) or t_base <= 0:
            return unusable("the target's pre-period mean is zero or missing")
        c_base = np.nanmean(np.where(np.isfinite(controls[:, :s.pre]), controls[:, :s.pre], np.nan), axis=1) \
            if np.isfinite(controls[:, :s.pre]).any() else np.full(controls.shape[0], np.nan)
        usable = np.isfinite(c_base) & (c_base > 0) & np.isfinite(controls).all(axis=1)
        if not usable.any():
            return unusable("no control with a usable pre-period")
        if not np.isfinite(target[:s.pre]).all() or not np.isfinite(target[-s.post:]).all():
            return unusable("the target has missing weeks")
        y_t = target / t_base
        y_c = controls[usable] / c_base[usable, None]
        path = _trimmed_mean(y_c)
        # The target's sensitivity to what moves its controls (a holiday or a team deadline): a person already
        # meeting everyone they can loses less in a quiet week than one who meets few. Fitted on the pre-period,
        # pulled towards 1 with ``slope_prior`` pseudo-weeks (a quiet pre-period says nothing about it).
        x = path[:s.pre] - path[:s.pre].mean()
        r = y_t[:s.pre] - y_t[:s.pre].mean()
        slope = float(np.clip((x @ r + self.slope_prior) / (x @ x + self.slope_prior), 0.0, 2.0)) \
            if self.slope_prior > 0 or x @ x > 0 else 1.0
        resid = y_t - 1 - slope * (path - 1)
        pre_r = resid[:s.pre]
        # The counterfactual: what the target would have shown after the change without it (its usual level,
        # moved as its controls moved). The effect is relative to it, as the thresholds are.
        expected = 1 + slope * (path[-s.post:] - 1) + float(pre_r.mean())
        base = max(float(expected.mean()), 1e-9)
        effect = float(y_t[-s.post:].mean()) / base - 1
        # Noise level: the target's own pre-period spread (per week), shrunk towards the controls' median spread.
        own = float(np.std(pre_r, ddof=1))
        c_resid = y_c - path
        pop = float(np.median(np.std(c_resid[:, :s.pre], axis=1, ddof=1)))
        dof = s.pre - 1
        weekly = float(np.sqrt((dof * own**2 + self.prior_weeks * pop**2) / (dof + self.prior_weeks)))
        scale = weekly * float(np.sqrt(1 / s.post + 1 / s.pre)) / base
        z = _normal_quantile(1 - (1 - self.confidence) / 2)
        low, high = effect - z * scale, effect + z * scale
        sign = -1.0 if rule.direction == "drop" else 1.0
        harm = sign * effect
        harm_lo = min(sign * low, sign * high)
        # Every post week on its own (a week's residual against its own counterfactual): a lasting harm shows
        # in each of them, one bad week (a trip, a sick day) does not.
        week_harms = sign * (y_t[-s.post:] / np.maximum(expected, 1e-9) - 1)
        steady = float(week_harms.min()) >= self.week_share * rule.threshold
        if harm_lo > 0 and harm >= rule.threshold * self.min_share and steady:
            verdict: Verdict = "negative"
        elif harm >= rule.threshold * self.ask_from:
            verdict = "inconclusive"
        else:
            verdict = "ok"
        details = {"target_change": float(y_t[-s.post:].mean() - 1),
                   "control_change": float(path[-s.post:].mean() - path[:s.pre].mean()), "slope": slope,
                   "expected_after": base, "week_harms": [round(float(v), 4) for v in week_harms],
                   "noise_sd": weekly, "own_sd": own, "controls_sd": pop, "effect_sd": scale,
                   "z": float(harm / scale) if scale > 0 else None, "controls_used": int(usable.sum()),
                   "pre_weeks": s.pre, "post_weeks": s.post,
                   # What the evidence shows a person: both normalised to their own pre-period mean (1 = usual),
                   # and the band the middle half of the controls spans, week by week.
                   "target_series": [round(float(v), 4) for v in y_t],
                   "control_series": [round(float(v), 4) for v in path],
                   "control_low": [round(float(v), 4) for v in np.quantile(y_c, 0.25, axis=0)],
                   "control_high": [round(float(v), 4) for v in np.quantile(y_c, 0.75, axis=0)]}
        return MetricDecision(rule.name, rule.metric, verdict, effect, harm, (low, high), rule.threshold,
                              details=details)


@lru_cache(maxsize=64)
def _normal_quantile(level: float) -> float:
    return float(NormalDist().inv_cdf(level))


def make_judge(name: str, *, confidence: float = DEFAULT_CONFIDENCE) -> Judge:
    """The judge called ``name`` (one of :data:`JUDGES`); ``InvalidInput`` otherwise."""
    if name == "did":
        return DiDJudge(confidence=confidence)
    if name == "thresholds":
        return ThresholdJudge()
    raise InvalidInput(f"unknown outcome judge {name!r}; known: {', '.join(JUDGES)}", judge=name)


def match_controls(target: int, team: NDArray[Any], role: NDArray[Any], activity: FloatArray, *,
                   k: int = 10, k_min: int = 5, exclude: Sequence[int] = ()) -> NDArray[np.int64]:
    """Indices of up to ``k`` control people for ``target``: its teammates first (a team-wide shock moves them
    with the target), same role before other roles, nearest pre-period ``activity`` (log ratio) first; when the
    team gives fewer than ``k_min``, people of the same role in other teams, nearest activity first. ``exclude``
    (other changes' targets, the target's own team changes) are never controls."""
    n = team.shape[0]
    banned = np.zeros(n, dtype=bool)
    banned[target] = True
    banned[list(exclude)] = True
    log_act = np.log(np.maximum(activity, 1e-9))
    distance = np.abs(log_act - log_act[target])
    mates = np.flatnonzero((team == team[target]) & ~banned)
    order = np.lexsort((distance[mates], role[mates] != role[target]))
    chosen: NDArray[np.int64] = mates[order][:k].astype(np.int64)
    if chosen.size < k_min:
        others = np.flatnonzero((team != team[target]) & (role == role[target]) & ~banned)
        extra = others[np.argsort(distance[others], kind="stable")][:k_min - chosen.size]
        chosen = np.concatenate([chosen, extra.astype(np.int64)])
    return chosen
