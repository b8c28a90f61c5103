"""The lifecycle machinery refuses unsound graphs, and the action lifecycle allows exactly its transitions."""

from __future__ import annotations

import itertools

import pytest

from saferails.actions import lifecycle as lc
from saferails.errors import GuardRejected, InvalidTransition, LifecycleDefinitionError
from saferails.lifecycle import StateMachine, Transition

M = lc.ACTION_MACHINE

ALLOWED = {
    ("proposed", "pending_approval"),
    ("proposed", "approved"),
    ("proposed", "blocked"),
    ("pending_approval", "approved"),
    ("pending_approval", "rejected"),
    ("pending_approval", "timed_out"),
    ("pending_approval", "cancelled"),
    ("approved", "executing"),
    ("approved", "cancelled"),
    ("executing", "completed"),
    ("executing", "failed"),
    ("completed", "rolling_back"),
    ("failed", "rolling_back"),
    ("rolling_back", "rolled_back"),
    ("rolling_back", "rollback_failed"),
    ("rollback_failed", "rolling_back"),
}

PERMISSIVE = lc.ActionFacts(
    decision_outcome=lc.NEEDS_APPROVAL,
    min_approvals=1,
    valid_approvals=1,
    rejections=1,
    deadline_passed=True,
    timeout_action="approve",
    not_before_passed=True,
)

PAIRS = list(itertools.product(M.states, M.states))


def _facts_for(source: str, target: str) -> lc.ActionFacts:
    outcome = {"pending_approval": lc.NEEDS_APPROVAL, "approved": lc.ALLOW, "blocked": lc.DENY}.get(target)
    if source == "proposed" and outcome is not None:
        return lc.ActionFacts(outcome, 1, 1, 1, True, "approve", True)
    return PERMISSIVE


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_every_pair_of_action_states_is_allowed_exactly_when_the_lifecycle_says_so(source: str, target: str) -> None:
    if (source, target) in ALLOWED:
        assert M.check(source, target, _facts_for(source, target)).target == target
    else:
        with pytest.raises(InvalidTransition) as err:
            M.check(source, target, PERMISSIVE)
        assert err.value.code == "INVALID_TRANSITION"
        assert source in err.value.message and target in err.value.message
        assert err.value.details["current_state"] == source and err.value.details["target_state"] == target


def test_an_action_needing_approval_cannot_execute_without_a_quorum() -> None:
    facts = lc.ActionFacts(lc.NEEDS_APPROVAL, 2, 1, 0, False, "fail", True)
    with pytest.raises(GuardRejected) as err:
        M.check("approved", "executing", facts)
    assert err.value.code == "TRANSITION_GUARD_FAILED"
    assert "1 of 2" in err.value.message


def test_a_denied_action_can_never_execute_whatever_its_approvals() -> None:
    facts = lc.ActionFacts(lc.DENY, 0, 5, 0, True, "approve", True)
    with pytest.raises(GuardRejected):
        M.check("approved", "executing", facts)


def test_a_scheduled_action_does_not_execute_before_its_time() -> None:
    facts = lc.ActionFacts(lc.ALLOW, 0, 0, 0, False, None, False)
    with pytest.raises(GuardRejected, match="scheduled for later"):
        M.check("approved", "executing", facts)


def test_timing_out_requires_the_deadline_to_have_passed() -> None:
    facts = lc.ActionFacts(lc.NEEDS_APPROVAL, 1, 0, 0, False, "fail", True)
    with pytest.raises(GuardRejected, match="deadline"):
        M.check("pending_approval", "timed_out", facts)


def test_a_rolled_back_action_has_no_way_out() -> None:
    assert M.allowed_targets("rolled_back") == ()
    assert M.is_final("rolled_back")


def test_a_machine_with_a_dead_end_is_refused_naming_the_state() -> None:
    with pytest.raises(LifecycleDefinitionError, match=r"dead ends.*'stuck'"):
        StateMachine.define(
            "x",
            initial="a",
            final=["done"],
            transitions=[Transition("a", "stuck", "go"), Transition("a", "done", "finish")],
        )


def test_a_machine_with_an_unreachable_state_is_refused_naming_the_state() -> None:
    with pytest.raises(LifecycleDefinitionError, match=r"unreachable.*'island'"):
        StateMachine.define(
            "x",
            initial="a",
            final=["done"],
            states=["a", "done", "island"],
            transitions=[Transition("a", "done", "finish"), Transition("island", "done", "finish")],
        )


def test_a_machine_with_a_cycle_that_never_finishes_is_refused() -> None:
    with pytest.raises(LifecycleDefinitionError, match=r"no final state is reachable.*'loop1', 'loop2'"):
        StateMachine.define(
            "x",
            initial="a",
            final=["done"],
            transitions=[
                Transition("a", "done", "f"),
                Transition("a", "loop1", "l"),
                Transition("loop1", "loop2", "l"),
                Transition("loop2", "loop1", "l"),
            ],
        )


def test_a_transition_to_an_unknown_state_is_refused() -> None:
    with pytest.raises(LifecycleDefinitionError, match="unknown states"):
        StateMachine(
            entity_type="x",
            states=("a", "done"),
            initial="a",
            final=frozenset({"done"}),
            transitions=(Transition("a", "done", "f"), Transition("a", "ghost", "g")),
        )


def test_the_action_machine_describes_itself_for_user_interfaces() -> None:
    described = M.describe()
    assert described["initial"] == "proposed"
    assert {t["from"] + "->" + t["to"] for t in described["transitions"]} == {f"{a}->{b}" for a, b in ALLOWED}
