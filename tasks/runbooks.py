"""Tasks of the runbook flow. Each calls ``saferails.runbooks.RunbookService`` over the process runtime
(``blocks.settings``) and returns plain values; the store decides every step's state, the flow only waits.

The service is built once per installed runtime (same sessions, clock and ActionService as the action flow), so
a step's approval is an ordinary action that ``flows.approval_gate`` and ``flows.api.approve`` already handle.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from blocks.settings import Runtime, current_runtime
from saferails.actions.models import ActionView
from saferails.runbooks.lifecycle import AWAITING_APPROVAL, EXECUTION_FINAL, SKIPPED, STEP_WAITING
from saferails.runbooks.service import RunbookService
from saferails.runbooks.views import ExecutionView, StepView
from tasks.actions import request_markdown

FLOW_ACTOR = "system:runbook-flow"

_lock = threading.Lock()
_cached: tuple[Runtime, RunbookService] | None = None


def runbook_service() -> RunbookService:
    """The RunbookService over the current runtime (rebuilt when another runtime is installed)."""
    global _cached
    rt = current_runtime()
    with _lock:
        if _cached is None or _cached[0] is not rt:
            _cached = (rt, RunbookService(rt.sessions, rt.clock, rt.actions, executor=rt.execution,
                                               egress=rt.settings.egress))
        return _cached[1]


def is_final(view: ExecutionView) -> bool:
    return view.state in EXECUTION_FINAL


def steps_awaiting_approval(view: ExecutionView) -> list[StepView]:
    return [s for s in view.steps if s.state == AWAITING_APPROVAL and s.approval_action_id]


@task(name="run-runbook-steps")
def run_steps(execution_id: str) -> ExecutionView:
    """Run every ready step until the execution is final or each runnable step waits (approval, event, pause)."""
    view = runbook_service().run(execution_id)
    waiting = [f"{s.step_id}={s.state}" for s in view.steps if s.state in STEP_WAITING]
    get_run_logger().info("execution %s is %s%s", execution_id, view.state,
                          f" (waiting: {', '.join(waiting)})" if waiting else "")
    return view


@task(name="read-runbook-execution")
def read_execution(execution_id: str) -> ExecutionView:
    return runbook_service().status(execution_id)


@task(name="step-approval-request")
def step_approval_request(view: ExecutionView, step: StepView) -> tuple[ActionView, str]:
    """The step's approval action and the markdown shown above the pause form: the step's rendered prompt, the
    execution's context (who started it, under which legal basis), then the action request as for any action."""
    action = current_runtime().actions.get(str(step.approval_action_id))
    # The step proposes its approval with the prompt rendered (inputs, earlier outputs) as the action's reason;
    # the definition's prompt is still a template ("{inputs.indicator}").
    prompt = action.reason
    basis = view.context.get("legal_basis") or {}
    legal = f"{basis['authority']} / {basis['classification']} / {basis['retention_days']} days" if basis else "-"
    rows = [
        ("Runbook", f"`{view.runbook_id}` v{view.runbook_version}"),
        ("Execution", f"`{view.id}`"),
        ("Step", f"`{step.step_id}`"),
        ("Tenant", view.tenant),
        ("Started by", view.initiated_by),
        ("Legal basis", legal),
        ("Inputs", f"`{_json(view.inputs)}`"),
    ]
    table = "\n".join(f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows)
    head = f"## Runbook step `{step.step_id}` needs approval\n\n> {prompt or '(no prompt)'}"
    return action, f"{head}\n\n| | |\n|---|---|\n{table}\n\n{request_markdown(action, {})}"


@task(name="runbook-summary-artifact")
def summary_artifact(execution_id: str) -> str:
    """Write the execution's outcome (each step's state, attempts, output or error, then the evidence) as a
    markdown artifact keyed by the execution; returns the markdown."""
    svc = runbook_service()
    view = svc.status(execution_id)
    evidence = svc.evidence(execution_id)
    rows = [f"| `{s.step_id}` | {s.state} | {s.attempts} | {_cell(_step_result(s))} |" for s in view.steps]
    lines = [
        f"## Runbook `{view.runbook_id}` v{view.runbook_version}: {view.state}",
        "",
        f"Execution `{view.id}`, tenant `{view.tenant}`, started by {view.initiated_by}.",
        "",
        "| Step | State | Attempts | Output / reason |",
        "|---|---|---|---|",
        *rows,
        "",
        f"### Evidence ({len(evidence)})",
        "",
        *(f"- `{e.step_id}` {e.kind}: {_cell(_json(e.content))}" for e in evidence),
    ]
    markdown = "\n".join(lines)
    create_markdown_artifact(markdown=markdown, key=f"runbook-{execution_id}",
                             description=f"saferails runbook {view.runbook_id}: {view.state}")
    return markdown


def _step_result(step: StepView) -> str:
    if step.state == SKIPPED:
        return f"skipped: {step.skip_reason}"
    if step.error:
        return f"error: {step.error}"
    return _json(step.output) if step.output is not None else "-"


def _cell(text: str, width: int = 160) -> str:
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@task(name="deliver-runbook-event")
def deliver_event(correlation_id: str, payload: dict[str, Any], actor: str, tenant: str = "default") -> str:
    """Store an event for the ``tenant``'s executions waiting on ``correlation_id`` (matched on their next
    advance); returns the event id."""
    return runbook_service().send_event(correlation_id, payload, actor=actor, tenant=tenant)
