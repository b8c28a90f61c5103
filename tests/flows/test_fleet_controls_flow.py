"""Seed 003's operator buttons in Prefect: the typed deployment forms and a run through policy and the gate."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import PrefectHTTPStatusError

from blocks.settings import Runtime
from flows.fleet_controls import PROPOSER, PauseAgentForm, pause_agent, resume_agent, set_budget

pytestmark = pytest.mark.flow


def _schema(flow: Any, name: str) -> dict[str, Any]:
    """The parameter schema Prefect stores for the deployment and renders as the Custom run form."""
    schema: dict[str, Any] = dict(flow.to_deployment(name=name)._parameter_openapi_schema.model_dump())
    assert schema["required"] == ["request"]
    (form,) = schema["definitions"].values()
    return dict(form)


def test_each_operator_deployment_has_a_typed_form() -> None:
    pause = _schema(pause_agent, "pause-agent")
    assert list(pause["properties"]) == ["scope", "target", "duration_minutes", "reason", "workspace"]
    assert pause["required"] == ["target", "reason"]
    assert pause["properties"]["scope"]["enum"] == ["agent", "department", "fleet"]
    duration = pause["properties"]["duration_minutes"]
    assert (duration["type"], duration["minimum"], duration["maximum"]) == ("integer", 1, 43_200)
    assert pause["properties"]["reason"]["minLength"] == 1
    assert pause["additionalProperties"] is False

    resume = _schema(resume_agent, "resume-agent")
    assert resume["required"] == ["target", "reason"] and resume["properties"]["scope"]["enum"][2] == "fleet"
    budget = _schema(set_budget, "set-budget")
    assert set(budget["required"]) == {"agent_id", "amount", "currency", "reason"}
    assert budget["properties"]["period"]["enum"] == ["day", "week", "month"]


def test_the_server_refuses_a_custom_run_without_a_reason() -> None:
    deployment = pause_agent.to_deployment(name="pause-agent")
    assert isinstance(deployment, RunnerDeployment)  # sync context: not a coroutine
    deployment_id = deployment.apply()
    assert isinstance(deployment_id, UUID)
    with get_client(sync_client=True) as client:
        with pytest.raises(PrefectHTTPStatusError) as refused:
            client.create_flow_run_from_deployment(deployment_id, parameters={"request": {"target": "a-1"}})
        assert refused.value.response.status_code in (409, 422)
        with pytest.raises(PrefectHTTPStatusError):
            client.create_flow_run_from_deployment(deployment_id, parameters={
                "request": {"target": "a-1", "reason": "r", "duration_minutes": 0}})


def test_a_pause_from_prefect_is_proposed_decided_and_executed_like_any_action(
        runtime: Runtime, flow_runs_finished: None) -> None:
    runtime.agents.register("a-1", tenant="default", department="eng")
    state = pause_agent(request=PauseAgentForm(target="a-1", duration_minutes=45, reason="from the Prefect UI"),
                        return_state=True)
    # The run says the action's outcome in its own words, as the action flow's run does.
    assert (state.type.value, state.name, state.message) == ("COMPLETED", "Completed", "pause_agent on a-1 completed")
    (action,) = runtime.actions.list()
    assert (action.action_type, action.proposer, action.state, action.reason) == (
        "pause_agent", PROPOSER, "completed", "from the Prefect UI")
    assert action.params == {"scope": "agent", "duration_minutes": 45, "reason": "from the Prefect UI"}
    assert runtime.agents.get("a-1").status == "paused"

    # An unknown target is refused by the handler's checks before anything is recorded; the run is not green.
    bad = pause_agent(request=PauseAgentForm(target="ghost", reason="r"), return_state=True)
    assert bad.type.value != "COMPLETED" or bad.name != "Completed"
    assert runtime.agents.get("a-1").status == "paused"
