"""Hypothesis: invariants of the policy engine and the condition language over random policies and requests."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from saferails.conditions import parse_condition
from saferails.errors import ConditionEvaluationError, ConditionInvalid, PolicyInvalid
from saferails.policy import (
    ActionRequest,
    Decision,
    DenyCode,
    Outcome,
    Policy,
    PolicyEngine,
    Principal,
    load_policy_text,
    parse_policy,
    policy_to_yaml,
)

ACTION_TYPES = ["send_email", "make_payment", "move_file", "reassign_manager", "wire", "noop"]
FIELDS = ["action_type", "impact", "priority", "tenant", "params.amount", "params.to", "proposer.groups", "nope.x"]
NAMES = ["alice", "bob", "carol", "dan"]
GROUPS = ["approvers", "finance", "staff"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 2000),
    st.floats(-10, 10, allow_nan=False),
    st.sampled_from(ACTION_TYPES + GROUPS + ["high", "low", "x@external.com"]),
)


@st.composite
def leaves(draw: st.DrawFn) -> dict[str, Any]:
    field = draw(st.sampled_from(FIELDS))
    operator = draw(st.sampled_from(["eq", "ne", "gt", "lt", "gte", "lte", "in", "contains", "exists"]))
    if operator == "exists":
        return {"field": field, "operator": operator, "value": draw(st.booleans())}
    if operator == "in":
        return {"field": field, "operator": operator, "value": draw(st.lists(scalars, max_size=3))}
    if operator in {"gt", "lt", "gte", "lte"}:
        value: Any = draw(st.one_of(st.integers(-5, 2000), st.sampled_from(["high", "m"])))
        return {"field": field, "operator": operator, "value": value}
    return {"field": field, "operator": operator, "value": draw(scalars)}


conditions = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.builds(lambda items: {"all": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda items: {"any": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda item: {"not": item}, inner),
    ),
    max_leaves=6,
)


@st.composite
def approvals(draw: st.DrawFn) -> dict[str, Any]:
    users = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=3))
    groups = draw(st.lists(st.sampled_from(GROUPS), unique=True, max_size=2))
    minimum = draw(st.integers(1, 3))
    if not groups and minimum > len(users):
        groups = ["approvers"]
    return {
        "approvers": {"users": users, "groups": groups},
        "min_approvals": minimum,
        "timeout": draw(st.sampled_from(["30s", "15m", "24h", "7d", "PT1H"])),
        "timeout_action": draw(st.sampled_from(["fail", "approve", "reject"])),
        "require_codes": draw(st.booleans()),
        "codes_waiver_reason": "generated",
    }


@st.composite
def rules(draw: st.DrawFn, index: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["blocked", "requires_kyc", "rate_limit", "requires_approval"]))
    rule: dict[str, Any] = {"id": f"r{index}", "kind": kind}
    has_types, has_when = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
    if has_types:
        rule["action_types"] = draw(st.lists(st.sampled_from(ACTION_TYPES), min_size=1, max_size=3, unique=True))
    if has_when:
        rule["when"] = draw(conditions)
    if kind == "rate_limit":
        per_hour, per_day = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
        limits = {"per_hour": draw(st.integers(1, 60))} if per_hour else {}
        rule["limits"] = limits | ({"per_day": draw(st.integers(1, 600))} if per_day else {})
    if kind == "requires_approval" and draw(st.booleans()):
        rule["approval"] = draw(approvals())
    return rule


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    count = draw(st.integers(0, 6))
    return parse_policy(
        {
            "version": "prop-1",
            "on_rate_limit_store_error": draw(st.sampled_from(["deny", "allow"])),
            "impact": {
                "default": draw(st.sampled_from(["low", "medium", "high"])),
                "types": draw(
                    st.dictionaries(st.sampled_from(ACTION_TYPES), st.sampled_from(["low", "medium", "high"]))
                ),
            },
            "approval_defaults": draw(approvals()),
            "rules": [draw(rules(i)) for i in range(count)],
        }
    )


requests = st.builds(
    ActionRequest,
    action_type=st.sampled_from(ACTION_TYPES),
    target=st.sampled_from(["emp_1", "file.txt"]),
    params=st.fixed_dictionaries(
        {}, optional={"amount": scalars, "to": st.lists(st.sampled_from(["a@x.com", "x@external.com"]), max_size=2)}
    ),
    proposer=st.builds(
        Principal,
        id=st.sampled_from(NAMES),
        groups=st.frozensets(st.sampled_from(GROUPS), max_size=2),
        kyc_verified=st.booleans(),
    ),
    tenant=st.sampled_from(["default", "acme"]),
    priority=st.integers(0, 10),
)


class RandomCounter:
    """A counter answering a fixed count, optionally failing, optionally offering ``oldest_since``."""

    def __init__(self, count: int, fails: bool) -> None:
        self._count, self._fails = count, fails

    def count(self, proposer: str, action_type: str, since: datetime) -> int:
        if self._fails:
            raise TimeoutError("store timed out")
        return self._count


class RandomOldestCounter(RandomCounter):
    def oldest_since(self, proposer: str, action_type: str, since: datetime) -> datetime | None:
        return since + timedelta(minutes=1)


counters = st.builds(
    lambda count, fails, oldest: (RandomOldestCounter if oldest else RandomCounter)(count, fails),
    st.integers(0, 700),
    st.booleans(),
    st.booleans(),
)
moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC))


def _could_match(rule_types: tuple[str, ...] | None, when: Any, request: ActionRequest, engine: PolicyEngine) -> bool:
    """True when the rule matches, or its condition fails to evaluate (which the engine must also deny)."""
    if rule_types is not None and request.action_type not in rule_types:
        return False
    if when is None:
        return True
    try:
        return bool(when.evaluate(request.context(engine.classify(request.action_type))))
    except ConditionEvaluationError:
        return True


@given(policies(), requests, counters, moments)
def test_evaluate_never_raises_and_always_returns_a_serialisable_decision(
    policy: Policy, request: ActionRequest, counter: RandomCounter, now: datetime
) -> None:
    decision = PolicyEngine(policy).evaluate(request, now=now, counter=counter)
    assert isinstance(decision, Decision)
    assert decision.policy_version == "prop-1" and decision.policy_fingerprint == policy.fingerprint
    assert Decision.from_dict(json.loads(json.dumps(decision.to_dict()))) == decision
    assert decision.explanation.startswith(decision.outcome.name)


@given(policies(), requests, counters, moments)
def test_a_request_matching_a_blocked_rule_is_never_allowed(
    policy: Policy, request: ActionRequest, counter: RandomCounter, now: datetime
) -> None:
    engine = PolicyEngine(policy)
    decision = engine.evaluate(request, now=now, counter=counter)
    blocked = [r for r in policy.rules if r.kind == "blocked" and _could_match(r.action_types, r.when, request, engine)]
    if blocked:
        assert decision.outcome is Outcome.DENY
        assert decision.code in {DenyCode.ACTION_BLOCKED, DenyCode.POLICY_EVALUATION_FAILED}


@given(policies(), requests, counters, moments)
def test_needs_approval_always_carries_a_requirement_of_at_least_one_approval(
    policy: Policy, request: ActionRequest, counter: RandomCounter, now: datetime
) -> None:
    decision = PolicyEngine(policy).evaluate(request, now=now, counter=counter)
    if decision.outcome is Outcome.NEEDS_APPROVAL:
        assert decision.approval is not None
        assert decision.approval.min_approvals >= 1
        assert decision.approval.rule_ids
        assert decision.approval.users or decision.approval.groups
    else:
        assert decision.approval is None


@given(policies(), requests, moments)
def test_a_catch_all_block_denies_every_request(policy: Policy, request: ActionRequest, now: datetime) -> None:
    freeze = {"id": "freeze", "kind": "blocked", "when": {"field": "action_type", "operator": "exists"}}
    data = policy.model_dump(mode="json")
    frozen = parse_policy({**data, "rules": [*data["rules"], freeze]})
    decision = PolicyEngine(frozen).evaluate(request, now=now, counter=RandomCounter(0, fails=False))
    assert decision.outcome is Outcome.DENY


@given(policies())
def test_every_valid_policy_round_trips_through_yaml_with_its_fingerprint(policy: Policy) -> None:
    again = load_policy_text(policy_to_yaml(policy))
    assert again == policy and again.fingerprint == policy.fingerprint


@given(conditions, st.fixed_dictionaries({}, optional={f: scalars for f in ["action_type", "impact", "priority"]}))
def test_conditions_round_trip_and_evaluate_to_a_bool_or_a_typed_error(data: Any, context: dict[str, Any]) -> None:
    parsed = parse_condition(data)
    assert parse_condition(parsed.to_data()) == parsed
    with contextlib.suppress(ConditionEvaluationError):
        assert isinstance(parsed.evaluate(context), bool)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(
                st.sampled_from(["all", "any", "not", "field", "operator", "value", "rules"]), st.text(max_size=5)
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


@given(json_values)
def test_arbitrary_data_is_either_a_condition_or_refused_with_condition_invalid(data: Any) -> None:
    with contextlib.suppress(ConditionInvalid):
        parse_condition(data)


@given(json_values)
def test_arbitrary_data_is_either_a_policy_or_refused_with_policy_invalid(data: Any) -> None:
    with contextlib.suppress(PolicyInvalid):
        parse_policy({"version": "v", "rules": [data]} if isinstance(data, dict) else data)
