"""Outcome monitoring: per-type rules and the monitor that rolls back negative outcomes."""

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
    "Finding",
    "MetricRule",
    "MonitorReport",
    "OutcomeMonitor",
    "OutcomeRulesInvalid",
    "RuleBook",
    "TypeRules",
    "default_rulebook",
    "load_rulebook",
]
