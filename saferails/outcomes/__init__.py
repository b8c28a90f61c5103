"""Outcome monitoring: per-type rules, the judges that decide (``thresholds``, ``did``) and the monitor that rolls
back negative outcomes and records inconclusive ones for a person.

Names are imported on first use (PEP 562): loading a policy validates its ``outcomes`` section through
``saferails.outcomes.rules`` in every process that opens the store, and that must not pull in the monitor (pandas,
networkx through the org graph) or the judges (numpy) an action never needs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOMES = {
    **dict.fromkeys(("DiDJudge", "Judgement", "ThresholdJudge", "make_judge"), "judges"),
    **dict.fromkeys(("ACTOR", "CheckOutcome", "CheckView", "MonitorReport", "OutcomeMonitor"), "monitor"),
    **dict.fromkeys(("Finding", "MetricRule", "OutcomeRulesInvalid", "RuleBook", "TypeRules", "default_rulebook",
                     "load_rulebook"), "rules"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


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
