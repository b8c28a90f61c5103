"""wait-for-event: wait for an event delivered with a matching correlation id (``RunbookService.send_event``,
the CLI or a Prefect event) and, optionally, a payload matching ``match`` (a condition over
``event.payload``). The timeout is measured by the clock from when the step started waiting."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from saferails.conditions import parse_condition
from saferails.errors import ConditionEvaluationError, SaferailsError
from saferails.runbooks.definition import WaitForEventConfig, parse_duration
from saferails.runbooks.lifecycle import AWAITING_EVENT, COMPLETED, FAILED
from saferails.runbooks.steps.base import StepResult, StepRun
from saferails.runbooks.templating import render

# (correlation id, payload, actor, received at) as the engine reads them from the store.
Event = tuple[str, dict[str, Any], str, datetime]


def start(run: StepRun) -> StepResult:
    config = run.step.config
    assert isinstance(config, WaitForEventConfig)
    try:
        correlation_id = str(render(config.correlation_id, run.context))
    except SaferailsError as exc:
        return StepResult(state=FAILED, error=exc.message).log(exc.message, "error")
    deadline = run.now() + parse_duration(config.timeout)
    return StepResult(state=AWAITING_EVENT, correlation_id=correlation_id, wait_deadline=deadline).log(
        f"waiting for an event with correlation id {correlation_id!r} until {deadline.isoformat()}"
    )


def poll(run: StepRun, correlation_id: str, deadline: datetime, events: Sequence[Event]) -> StepResult | None:
    """The first matching event completes the step; past the deadline it fails; otherwise None (waiting)."""
    config = run.step.config
    assert isinstance(config, WaitForEventConfig)
    condition = parse_condition(config.match, root="match") if config.match else None
    for cid, payload, actor, received in events:
        if cid != correlation_id:
            continue
        event = {"correlation_id": cid, "payload": payload, "actor": actor}
        try:
            matched = condition is None or condition.evaluate({**run.context, "event": event})
        except ConditionEvaluationError as exc:
            return StepResult(state=FAILED, error=exc.message).log(exc.message, "error")
        if matched:
            result = StepResult(state=COMPLETED, output=payload)
            result.evidence.append(("event", {**event, "received_at": received.isoformat()}))
            return result.log(f"event {correlation_id!r} from {actor} matched")
    if run.now() >= deadline:
        message = f"no matching event {correlation_id!r} arrived before {deadline.isoformat()} (step timed out)"
        return StepResult(state=FAILED, error=message).log(message, "error")
    return None
