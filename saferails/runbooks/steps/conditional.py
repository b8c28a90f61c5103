"""conditional: evaluate the shared condition language over earlier outputs; the branch not taken is skipped
with a reason naming the condition's result. A condition that cannot be evaluated fails the step."""

from __future__ import annotations

from saferails.conditions import parse_condition
from saferails.errors import ConditionEvaluationError
from saferails.runbooks.definition import ConditionalConfig
from saferails.runbooks.lifecycle import COMPLETED, FAILED
from saferails.runbooks.steps.base import StepResult, StepRun


def start(run: StepRun) -> StepResult:
    config = run.step.config
    assert isinstance(config, ConditionalConfig)
    try:
        value = parse_condition(config.condition).evaluate(run.context)
    except ConditionEvaluationError as exc:
        return StepResult(state=FAILED, error=f"{exc.code}: {exc.message}").log(exc.message, "error")
    taken, other = (config.true_branch, config.false_branch) if value else (config.false_branch, config.true_branch)
    result = StepResult(state=COMPLETED, output={"result": value, "branch": taken})
    if other is not None:
        result.skip[other] = f"branch not taken: condition of {run.step.id!r} was {str(value).lower()}"
    result.evidence.append(("decision", {"condition": config.condition, "result": value, "branch": taken}))
    return result.log(f"condition is {str(value).lower()}; taking {taken or 'no branch'}")
