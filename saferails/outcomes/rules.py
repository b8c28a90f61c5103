"""Per-action-type outcome rules: what counts as a negative outcome, and when to look.

Defaults: a drop of more than 30% in the target's degree centrality is ``isolation``; a rise of more than 20% in
its burnout score is ``increased_burnout`` (seed 000's thresholds, the minimum effect that matters); the ``did``
judge decides, 21 days after execution, from 24 weekly windows before it and the three after (seed 000's own
rule, ``judge: thresholds``, looks 7 days after and compares the 7-day window before execution with the latest
7 days). Changes are relative to the baseline; a baseline of 0 or
a missing reading gives no finding (a relative change from nothing is undefined), and says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from saferails.errors import InvalidInput
from saferails.outcomes.defaults import DEFAULT_CONFIDENCE, DEFAULT_JUDGE, DEFAULT_POST_WEEKS

SEED_000_TYPES = (
    "reassign_manager",
    "team_restructure",
    "role_change",
    "reduce_meetings",
    "redistribute_tasks",
    "schedule_focus_time",
)
METRICS = ("degree_centrality", "degree", "strength", "clustering", "betweenness", "burnout")


class OutcomeRulesInvalid(InvalidInput):
    code = "OUTCOME_RULES_INVALID"


@dataclass(frozen=True)
class Finding:
    rule: str
    metric: str
    before: float | None
    after: float | None
    change: float | None  # relative: (after - before) / before
    negative: bool
    note: str = ""


@dataclass(frozen=True)
class MetricRule:
    """Negative when ``metric`` moves in ``direction`` by more than ``threshold`` (relative to the baseline)."""

    name: str
    metric: str
    direction: Literal["drop", "rise"]
    threshold: float

    def evaluate(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> Finding:
        b, a = before.get(self.metric), after.get(self.metric)
        if b is None or a is None:
            return Finding(self.name, self.metric, b, a, None, False, "no reading")
        if b == 0:
            return Finding(self.name, self.metric, b, a, None, False, "baseline is zero")
        change = (float(a) - float(b)) / float(b)
        moved = -change if self.direction == "drop" else change
        return Finding(self.name, self.metric, float(b), float(a), change, moved > self.threshold)


ISOLATION = MetricRule("isolation", "degree_centrality", "drop", 0.30)
INCREASED_BURNOUT = MetricRule("increased_burnout", "burnout", "rise", 0.20)


@dataclass(frozen=True)
class TypeRules:
    """One action type's outcome settings. ``judge`` names the decision method (``saferails.outcomes.judges``:
    ``thresholds`` is seed 000's rule as written, ``did`` the difference in differences against matched
    controls, the default); ``pre_weeks`` and ``confidence`` are the ``did`` judge's pre-period and interval
    level, and its post-period is every whole ``window`` from the change to the check (``delay`` 21 days: three);
    the rules' thresholds are the minimum effect that matters for either judge."""

    delay: timedelta = timedelta(days=7 * DEFAULT_POST_WEEKS)
    window: timedelta = timedelta(days=7)
    rules: tuple[MetricRule, ...] = (ISOLATION, INCREASED_BURNOUT)
    judge: Literal["thresholds", "did"] = DEFAULT_JUDGE
    pre_weeks: int = 24
    confidence: float = DEFAULT_CONFIDENCE

    def evaluate(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Finding]:
        return [rule.evaluate(before, after) for rule in self.rules]


@dataclass(frozen=True)
class RuleBook:
    """Rules by action type; a type without an entry is not monitored."""

    by_type: Mapping[str, TypeRules] = field(default_factory=dict)

    def for_type(self, action_type: str) -> TypeRules | None:
        return self.by_type.get(action_type)

    @property
    def monitored_types(self) -> list[str]:
        return sorted(self.by_type)


def default_rulebook() -> RuleBook:
    """Seed 000's intervention types, each with the isolation and burnout rules, the ``did`` judge and a 21-day
    delay."""
    return RuleBook({action_type: TypeRules() for action_type in SEED_000_TYPES})


class _RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    metric: Literal["degree_centrality", "degree", "strength", "clustering", "betweenness", "burnout"]
    direction: Literal["drop", "rise"]
    threshold: float = Field(gt=0)


class _TypeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delay_days: float | None = Field(default=None, gt=0)  # None: 21 for did, 7 for thresholds
    window_days: float = Field(default=7, gt=0)
    rules: list[_RuleIn] | None = None
    judge: Literal["thresholds", "did"] = DEFAULT_JUDGE
    pre_weeks: int = Field(default=24, ge=2, le=52)
    confidence: float = Field(default=DEFAULT_CONFIDENCE, gt=0.5, lt=1)


def load_rulebook(document: Mapping[str, Any], *, base: RuleBook | None = None) -> RuleBook:
    """Rules from a mapping ``{action_type: {delay_days, window_days, judge, pre_weeks, confidence, rules:
    [{name, metric, direction, threshold}]}}`` (e.g. a policy's ``outcomes`` section) over ``base`` (default:
    :func:`default_rulebook`). A type mapped to ``None`` is not monitored. Raises ``OutcomeRulesInvalid`` naming
    the type and field."""
    merged = dict((base or default_rulebook()).by_type)
    for action_type, spec in document.items():
        if spec is None:
            merged.pop(action_type, None)
            continue
        try:
            parsed = _TypeIn.model_validate(spec)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise OutcomeRulesInvalid(f"outcome rules for {action_type!r}: {where}: {first['msg']}",
                                      action_type=action_type, field=where) from None
        rules = (
            tuple(MetricRule(r.name, r.metric, r.direction, r.threshold) for r in parsed.rules)
            if parsed.rules is not None
            else TypeRules().rules
        )
        delay = parsed.delay_days if parsed.delay_days is not None else \
            7 * DEFAULT_POST_WEEKS if parsed.judge == "did" else 7
        merged[action_type] = TypeRules(timedelta(days=delay), timedelta(days=parsed.window_days), rules,
                                        parsed.judge, parsed.pre_weeks, parsed.confidence)
    return RuleBook(merged)
