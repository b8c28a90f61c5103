"""Seed 003's operator actions as Prefect deployments: ``pause-agent``, ``resume-agent``, ``set-budget``.

Each flow takes ONE typed parameter, a pydantic model, so Prefect's Run > Custom run form is the confirmation
dialog: the reason is required, the duration is a whole number of minutes with bounds, the scope is a choice, and
the server refuses a run whose parameters do not validate against that schema. The flow then hands the proposal to
THE action flow (``flows.action_flow.action_flow``, as a subflow): the policy decides, a department- or fleet-wide
pause waits in the approval gate, and the run ends in the action's own final state (Completed, "Blocked",
"Rejected", Failed...).

Who pressed the button: open-source Prefect records no user, so the proposal is made under :data:`PROPOSER`;
the approval gate's one-time codes still prove who approved. Anyone who can reach the Prefect UI can therefore
pause one agent at once (stopping is the safe direction); the default policy's rule
``unattributed-controls-need-approval`` holds resuming agents and setting budgets from here for approval, and a
department or fleet pause is HIGH impact anyway. Expose the Prefect UI to operators only.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from prefect import flow
from prefect.client.schemas.objects import State
from pydantic import BaseModel, ConfigDict, Field

from flows.action_flow import action_flow

PROPOSER = "prefect-ui"
MAX_DURATION_MINUTES = 43_200  # PauseAgentParams' bound: 30 days


def _workspace() -> Any:
    return Field(default="default", min_length=1, max_length=100,
                 description="The workspace (tenant) whose agents this acts on.")


def _reason() -> Any:
    return Field(min_length=1, max_length=1000, description="Why (required; recorded in the audit trail).")


class _Form(BaseModel):
    """Fields are declared in each form, in the order the Prefect form shows them; each has ``reason`` and
    ``workspace``."""

    model_config = ConfigDict(extra="forbid")


class PauseAgentForm(_Form):
    """Pause an agent, its department, or the whole fleet of a workspace."""

    scope: Literal["agent", "department", "fleet"] = Field(
        default="agent", description="agent: one agent; department: every agent of it; fleet: every agent of the "
                                     "workspace (the kill switch). Department and fleet are HIGH impact: approval.")
    target: str = Field(min_length=1, max_length=200,
                        description="The agent id (scope agent), the department (scope department), or the "
                                    "workspace again (scope fleet).")
    duration_minutes: int = Field(default=30, ge=1, le=MAX_DURATION_MINUTES,
                                  description="How long, in minutes (1 to 43,200); the pause then ends by itself.")
    reason: str = _reason()
    workspace: str = _workspace()


class ResumeAgentForm(_Form):
    """Resume paused agents before their pause runs out."""

    scope: Literal["agent", "department", "fleet"] = Field(default="agent",
                                                           description="What to resume: as for a pause.")
    target: str = Field(min_length=1, max_length=200, description="The agent id, the department or the workspace.")
    reason: str = _reason()
    workspace: str = _workspace()


class SetBudgetForm(_Form):
    """Cap what one agent may spend (purchases, payments) per period."""

    agent_id: str = Field(min_length=1, max_length=200, description="The agent whose budget this sets.")
    amount: Decimal = Field(ge=0, le=Decimal("1e12"), max_digits=16, decimal_places=2,
                            description="The most it may spend per period.")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR.")
    period: Literal["day", "week", "month"] = "month"
    reason: str = _reason()
    workspace: str = _workspace()


def _run(action_type: str, target: str, params: dict[str, Any], form: PauseAgentForm | ResumeAgentForm | SetBudgetForm,
         ) -> State[Any]:
    proposal = {"action_type": action_type, "target": target, "params": params, "proposer": PROPOSER,
                "reason": form.reason, "tenant": form.workspace}
    # The subflow's final state becomes this run's: a refusal or a failure does not show as a green run. Returned
    # as it is, Prefect counts it as one of this run's states and sums them up ("All states completed."), losing
    # the name ("Blocked") and the message; a fresh state with the same type, name and message is taken as is.
    state: State[Any] = action_flow(proposal=proposal, return_state=True)
    return State(type=state.type, name=state.name, message=state.message)


@flow(name="pause-agent", validate_parameters=True)
def pause_agent(request: PauseAgentForm) -> State[Any]:
    """Pause what ``request`` names (the ``pause_agent`` action, through policy and the approval gate)."""
    return _run("pause_agent", request.target, {"scope": request.scope, "duration_minutes": request.duration_minutes,
                                                "reason": request.reason}, request)


@flow(name="resume-agent", validate_parameters=True)
def resume_agent(request: ResumeAgentForm) -> State[Any]:
    """Resume what ``request`` names (the ``resume_agent`` action)."""
    return _run("resume_agent", request.target, {"scope": request.scope, "reason": request.reason}, request)


@flow(name="set-budget", validate_parameters=True)
def set_budget(request: SetBudgetForm) -> State[Any]:
    """Set one agent's budget (the ``set_budget`` action; its rollback restores the previous budget)."""
    return _run("set_budget", request.agent_id, {"amount": str(request.amount), "currency": request.currency,
                                                 "period": request.period}, request)


OPERATOR_FLOWS = (("pause-agent", pause_agent), ("resume-agent", resume_agent), ("set-budget", set_budget))

__all__ = ["OPERATOR_FLOWS", "PROPOSER", "PauseAgentForm", "ResumeAgentForm", "SetBudgetForm", "pause_agent",
           "resume_agent", "set_budget"]
