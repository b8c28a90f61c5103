"""Outcome monitoring: per-type rules, the judges that decide (``thresholds``, ``did``) and the monitor that rolls
back negative outcomes and records inconclusive ones for a person."""

from saferails.outcomes.judges import DiDJudge, Judgement, ThresholdJudge, make_judge
from saferails.outcomes.monitor import ACTOR, CheckOutcome, CheckView, MonitorReport, OutcomeMonitor
from saferails.outcomes.rules import (
    Finding,
    MetricRule,
    OutcomeRulesInvalid,
    RuleBook,
    TypeRules,
    default_rulebook,
    load_rulebook,
)

__all__ = [
    "ACTOR",
    "CheckOutcome",
    "CheckView",
    "DiDJudge",
    "Finding",
    "Judgement",
    "MetricRule",
    "MonitorReport",
    "OutcomeMonitor",
    "OutcomeRulesInvalid",
    "RuleBook",
    "ThresholdJudge",
    "TypeRules",
    "default_rulebook",
    "load_rulebook",
    "make_judge",
]
