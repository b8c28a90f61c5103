"""loop: run the inline call-service step once per item of ``iterate_over``, or repeatedly while
``continue_while`` holds (checked after each iteration, over ``loop.last``, ``loop.index`` and
``loop.outputs``). The hard cap of 1000 iterations (and the step's ``max_iterations``) is enforced here too: a
list longer than the cap, or a condition still true at the cap, fails the step with a message saying so.
Output: ``{"iterations": n, "outputs": [...]}``; the first failed iteration fails the step."""

from __future__ import annotations

from typing import Any

from saferails.conditions import parse_condition
from saferails.errors import ConditionEvaluationError, SaferailsError
from saferails.runbooks.definition import MAX_LOOP_ITERATIONS, CallServiceConfig, LoopConfig
from saferails.runbooks.lifecycle import COMPLETED, FAILED
from saferails.runbooks.steps import call_service
from saferails.runbooks.steps.base import StepResult, StepRun
from saferails.runbooks.templating import render

KEY = "{execution.id}-{step.id}-{loop.index}"


def start(run: StepRun) -> StepResult:
    config = run.step.config
    assert isinstance(config, LoopConfig)
    inner = config.step.config
    assert isinstance(inner, CallServiceConfig)
    cap = min(config.max_iterations or MAX_LOOP_ITERATIONS, MAX_LOOP_ITERATIONS)
    result = StepResult(state=FAILED)
    items: list[Any] | None = None
    if config.iterate_over is not None:
        try:
            resolved = render(config.iterate_over, run.context)
        except SaferailsError as exc:
            result.error = exc.message
            return result.log(exc.message, "error")
        if not isinstance(resolved, list):
            result.error = f"iterate_over resolved to {type(resolved).__name__}, not a list"
            return result.log(result.error, "error")
        if len(resolved) > cap:
            result.error = f"iterate_over has {len(resolved)} items, above the loop cap of {cap}"
            return result.log(result.error, "error")
        items = resolved
    condition = parse_condition(config.continue_while, root="continue_while") if config.continue_while else None
    outputs: list[Any] = []
    index = 0
    while True:
        loop_ctx = {"index": index, "outputs": outputs, **({"last": outputs[-1]} if outputs else {})}
        if items is not None:
            if index >= len(items):
                break
            loop_ctx["item"] = items[index]
        context = {**run.context, "loop": loop_ctx}
        one = call_service.call(run, inner, context, KEY)
        result.logs.extend((lvl, f"[iteration {index}] {msg}", data) for lvl, msg, data in one.logs)
        if one.state != COMPLETED:
            result.error = f"iteration {index} failed: {one.error}"
            return result.log(result.error, "error")
        outputs.append(one.output)
        index += 1
        if condition is not None:
            after = {**run.context, "loop": {"index": index, "outputs": outputs, "last": outputs[-1]}}
            try:
                again = condition.evaluate(after)
            except ConditionEvaluationError as exc:
                result.error = exc.message
                return result.log(exc.message, "error")
            if not again:
                break
            if index >= cap:
                result.error = f"loop {run.step.id!r} reached max_iterations ({cap}) while continue_while still held"
                return result.log(result.error, "error", iterations=index)
    result.state, result.error = COMPLETED, None
    result.output = {"iterations": index, "outputs": outputs}
    result.evidence.append(("loop", {"iterations": index}))
    return result.log(f"loop finished after {index} iteration(s)")
