"""Every bad-input class is refused at validation, naming the step; the example loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from saferails.runbooks import RunbookInvalid, load_runbook, load_runbook_text, runbook_json_schema

EXAMPLE = Path(__file__).parents[2] / "examples" / "runbooks" / "investigate-threat.yaml"

HEAD = "id: rb\nname: RB\nversion: '1'\ninputs: {url: {type: string}}\nsteps:\n"
CALL = "  - id: {id}\n    type: call-service\n    depends_on: {deps}\n    config: {{url: '{url}'}}\n"


def call(step_id: str, deps: str = "[]", url: str = "{inputs.url}") -> str:
    return CALL.format(id=step_id, deps=deps, url=url)


BAD = {
    "malformed yaml": ("id: [unclosed", "not valid YAML"),
    "unknown step type": (HEAD + "  - id: s1\n    type: teleport\n    config: {}\n", "step 's1': unknown step type"),
    "duplicate ids": (HEAD + call("a") + call("a"), "step 'a': duplicate step id"),
    "unknown dependency": (HEAD + call("a", "[ghost]"), "step 'a': depends_on names unknown step 'ghost'"),
    "cycle": (HEAD + call("a", "[c]") + call("b", "[a]") + call("c", "[b]"), "dependency cycle a -> c -> b -> a"),
    "missing input": (HEAD + call("a", url="{inputs.nope}"), "step 'a': template {inputs.nope} references an input"),
    "non-dependency step reference": (
        HEAD + call("a") + call("b", url="{steps.a.output.x}"),
        "step 'b': template {steps.a.output.x} references step 'a', which is not a dependency",
    ),
    "branch target missing": (
        HEAD + call("a") + "  - id: c\n    type: conditional\n    depends_on: [a]\n    config:\n"
        "      condition: {field: steps.a.output.x, operator: eq, value: 1}\n      true_branch: zz\n",
        "step 'c': true_branch names unknown step 'zz'",
    ),
    "branch target not a dependent": (
        HEAD + call("a") + call("b") + "  - id: c\n    type: conditional\n    depends_on: [a]\n    config:\n"
        "      condition: {field: steps.a.output.x, operator: eq, value: 1}\n      true_branch: b\n",
        "step 'c': true_branch 'b' must list 'c' in its depends_on",
    ),
    "loop without a cap": (
        HEAD + "  - id: l\n    type: loop\n    config:\n      continue_while: {field: loop.last.more, operator: eq,"
        " value: true}\n      step: {id: inner, type: call-service, config: {url: '{inputs.url}'}}\n",
        "step 'l': a continue_while loop needs max_iterations",
    ),
    "loop cap above 1000": (
        HEAD + "  - id: l\n    type: loop\n    config:\n      continue_while: {field: loop.last.more, operator: eq,"
        " value: true}\n      max_iterations: 1001\n      step: {id: inner, type: call-service, config: {url: x}}\n",
        "step 'l': max_iterations 1001 is above the hard cap of 1000",
    ),
    "bad config field": (HEAD + "  - id: w\n    type: wait-for-event\n    config: {correlation_id: x}\n",
                         "step 'w': config.timeout"),
}


@pytest.mark.parametrize("case", sorted(BAD), ids=sorted(BAD))
def test_a_bad_runbook_is_refused_with_a_message_naming_the_problem(case: str) -> None:
    text, expected = BAD[case]
    with pytest.raises(RunbookInvalid) as err:
        load_runbook_text(text)
    assert err.value.code == "RUNBOOK_INVALID"
    assert expected in err.value.message


def test_the_seed_example_loads_and_the_json_schema_lists_every_step_type() -> None:
    defn = load_runbook(EXAMPLE)
    assert [s.id for s in defn.steps][:2] == ["enrich-indicators", "assess-risk"]
    assert "call-service" in str(runbook_json_schema())
