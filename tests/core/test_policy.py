"""The policy engine: a decision for every seed default, precedence, combination, fail-closed, validation, YAML."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import yaml

from saferails.errors import PolicyInvalid
from saferails.policy import (
    ActionRequest,
    ApprovalRequirement,
    ApproverStanding,
    Decision,
    DenyCode,
    Impact,
    Outcome,
    Policy,
    PolicyEngine,
    Principal,
    default_policy,
    judge_approver,
    load_policy,
    load_policy_text,
    parse_policy,
    policy_to_yaml,
)

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
ALICE = Principal("alice", groups=frozenset({"staff"}))


class InMemoryCounter:
    """A RateLimitCounter over a list of (proposer, action_type, time) events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, datetime]] = []

    def record(self, action_type: str, times: int, *, at: datetime = NOW, proposer: str = "alice") -> None:
        self.events.extend((proposer, action_type, at) for _ in range(times))

    def _since(self, proposer: str, action_type: str, since: datetime) -> list[datetime]:
        return [t for p, a, t in self.events if p == proposer and a == action_type and t >= since]

    def count(self, proposer: str, action_type: str, since: datetime) -> int:
        return len(self._since(proposer, action_type, since))


class OldestAwareCounter(InMemoryCounter):
    """Also offers the optional ``oldest_since`` lookup."""

    def oldest_since(self, proposer: str, action_type: str, since: datetime) -> datetime | None:
        return min(self._since(proposer, action_type, since), default=None)


class UnavailableCounter:
    def count(self, proposer: str, action_type: str, since: datetime) -> int:
        raise ConnectionError("redis is down")


def request(action_type: str, *, proposer: Principal = ALICE, **params: Any) -> ActionRequest:
    return ActionRequest(action_type=action_type, target="emp_123", params=params, proposer=proposer)


def decide(
    action_type: str,
    *,
    policy: Policy | None = None,
    counter: Any = None,
    proposer: Principal = ALICE,
    **params: Any,
) -> Decision:
    engine = PolicyEngine(policy or default_policy())
    return engine.evaluate(
        request(action_type, proposer=proposer, **params), now=NOW, counter=counter or InMemoryCounter()
    )


def policy_of(*rules: dict[str, Any], **top: Any) -> Policy:
    return parse_policy({"version": "test-1", **top, "rules": list(rules)})


def fired_ids(decision: Decision) -> list[str]:
    return [r.rule_id for r in decision.reasons if r.fired]


# --- seed 000: intervention impact ----------------------------------------------------------------------------

SEED_000 = [
    ("reassign_manager", Impact.HIGH, Outcome.NEEDS_APPROVAL),
    ("team_restructure", Impact.HIGH, Outcome.NEEDS_APPROVAL),
    ("role_change", Impact.HIGH, Outcome.NEEDS_APPROVAL),
    ("reduce_meetings", Impact.MEDIUM, Outcome.ALLOW),
    ("redistribute_tasks", Impact.MEDIUM, Outcome.ALLOW),
    ("schedule_focus_time", Impact.MEDIUM, Outcome.ALLOW),
    ("send_kudos", Impact.LOW, Outcome.ALLOW),
]


@pytest.mark.parametrize(("action_type", "impact", "outcome"), SEED_000, ids=[t for t, _, _ in SEED_000])
def test_each_intervention_type_gets_its_seed_impact_and_outcome(
    action_type: str, impact: Impact, outcome: Outcome
) -> None:
    decision = decide(action_type)
    assert PolicyEngine(default_policy()).classify(action_type) is impact
    assert (decision.impact, decision.outcome, decision.code) == (impact, outcome, None)
    assert decision.reasons[0].rule_id == f"impact:{impact}"


def test_a_high_impact_intervention_needs_one_approver_from_the_approvers_group_within_24_hours() -> None:
    decision = decide("reassign_manager")
    assert decision.approval == ApprovalRequirement(
        users=frozenset(),
        groups=frozenset({"approvers"}),
        min_approvals=1,
        timeout=timedelta(hours=24),
        timeout_action="fail",
        require_codes=True,
        rule_ids=("high-impact-needs-approval",),
    )
    assert fired_ids(decision) == ["impact:high", "high-impact-needs-approval"]


def test_an_unknown_action_type_is_low_impact_and_allowed() -> None:
    decision = decide("water_the_plants")
    assert (decision.outcome, decision.impact, decision.approval, decision.retry_after) == (
        Outcome.ALLOW,
        Impact.LOW,
        None,
        None,
    )
    assert decision.explanation.startswith("ALLOW by policy 2026.11.1")


# --- seed 001: agent action rules -----------------------------------------------------------------------------


def test_the_50th_email_in_an_hour_is_allowed() -> None:
    counter = InMemoryCounter()
    counter.record("send_email", 49, at=NOW - timedelta(minutes=30))
    assert decide("send_email", counter=counter).outcome is Outcome.ALLOW


def test_the_51st_email_in_an_hour_is_refused_with_a_retry_time() -> None:
    counter = InMemoryCounter()
    counter.record("send_email", 50, at=NOW - timedelta(minutes=30))
    decision = decide("send_email", counter=counter)
    assert (decision.outcome, decision.code) == (Outcome.DENY, DenyCode.RATE_LIMITED)
    assert decision.retry_after == NOW + timedelta(hours=1)
    assert decision.deciding is not None
    assert decision.deciding.message == "send_email: 50 in the last hour, limit 50 per hour"


def test_with_an_oldest_event_lookup_retry_after_is_when_the_oldest_email_leaves_the_hour() -> None:
    counter = OldestAwareCounter()
    counter.record("send_email", 1, at=NOW - timedelta(minutes=50))
    counter.record("send_email", 49, at=NOW - timedelta(minutes=5))
    decision = decide("send_email", counter=counter)
    assert decision.code is DenyCode.RATE_LIMITED
    assert decision.retry_after == NOW + timedelta(minutes=10)


def test_above_the_limit_retry_after_stays_conservative_even_with_an_oldest_event_lookup() -> None:
    counter = OldestAwareCounter()
    counter.record("send_email", 60, at=NOW - timedelta(minutes=50))
    assert decide("send_email", counter=counter).retry_after == NOW + timedelta(hours=1)


def test_emails_older_than_an_hour_do_not_count_against_the_hourly_limit() -> None:
    counter = InMemoryCounter()
    counter.record("send_email", 60, at=NOW - timedelta(hours=2))
    assert decide("send_email", counter=counter).outcome is Outcome.ALLOW


def test_the_501st_email_in_a_day_is_refused_until_the_day_window_clears() -> None:
    counter = InMemoryCounter()
    counter.record("send_email", 499, at=NOW - timedelta(hours=5))
    assert decide("send_email", counter=counter).outcome is Outcome.ALLOW
    counter.record("send_email", 1, at=NOW - timedelta(hours=5))
    decision = decide("send_email", counter=counter)
    assert decision.code is DenyCode.RATE_LIMITED
    assert decision.retry_after == NOW + timedelta(days=1)
    assert "500 in the last day, limit 500 per day" in decision.explanation


def test_rate_limits_count_per_proposer() -> None:
    counter = InMemoryCounter()
    counter.record("send_email", 50, proposer="bob")
    assert decide("send_email", counter=counter).outcome is Outcome.ALLOW


@pytest.mark.parametrize(("action_type", "limit"), [("create_calendar_event", 100), ("create_document", 200)])
def test_calendar_events_and_documents_have_daily_limits(action_type: str, limit: int) -> None:
    counter = InMemoryCounter()
    counter.record(action_type, limit - 1, at=NOW - timedelta(hours=20))
    assert decide(action_type, counter=counter).outcome is Outcome.ALLOW
    counter.record(action_type, 1, at=NOW - timedelta(hours=20))
    decision = decide(action_type, counter=counter)
    assert decision.code is DenyCode.RATE_LIMITED
    assert f"{limit} in the last day, limit {limit} per day" in decision.explanation


def test_a_file_move_needs_approval() -> None:
    decision = decide("move_file", source="/a", destination="/b")
    assert (decision.outcome, decision.impact) == (Outcome.NEEDS_APPROVAL, Impact.LOW)
    assert decision.approval is not None and decision.approval.rule_ids == ("file-moves-need-approval",)


def test_a_payment_is_blocked_even_for_a_kyc_verified_proposer() -> None:
    decision = decide("make_payment", proposer=Principal("alice", kyc_verified=True), amount=10)
    assert (decision.outcome, decision.code) == (Outcome.DENY, DenyCode.ACTION_BLOCKED)
    assert decision.explanation.splitlines()[0] == (
        "DENY (ACTION_BLOCKED) by policy 2026.11.1: rule payments-blocked: make_payment is blocked"
    )


def test_a_purchase_is_denied_without_kyc_and_allowed_with_it() -> None:
    refused = decide("make_purchase", item="laptop")
    assert (refused.outcome, refused.code) == (Outcome.DENY, DenyCode.KYC_REQUIRED)
    assert "alice is not verified" in refused.explanation
    allowed = decide("make_purchase", proposer=Principal("alice", kyc_verified=True), item="laptop")
    assert allowed.outcome is Outcome.ALLOW


def test_decisions_carry_the_default_policy_version_and_fingerprint() -> None:
    decision = decide("send_email")
    assert decision.policy_version == "2026.11.1"
    assert decision.policy_fingerprint == default_policy().fingerprint
    assert len(decision.policy_fingerprint) == 64


# --- precedence and combination -------------------------------------------------------------------------------

EVERYTHING_ON_WIRE: list[dict[str, Any]] = [
    {"id": "wire-approval", "kind": "requires_approval", "action_types": ["wire"]},
    {"id": "wire-limit", "kind": "rate_limit", "action_types": ["wire"], "limits": {"per_hour": 1}},
    {"id": "wire-kyc", "kind": "requires_kyc", "action_types": ["wire"]},
    {"id": "wire-blocked", "kind": "blocked", "action_types": ["wire"]},
]


def test_blocked_beats_kyc_beats_rate_limit_beats_approval_and_every_fired_rule_is_listed() -> None:
    counter = InMemoryCounter()
    counter.record("wire", 1)
    outcomes = []
    for dropped in range(len(EVERYTHING_ON_WIRE)):
        rules = EVERYTHING_ON_WIRE[: len(EVERYTHING_ON_WIRE) - dropped]
        decision = decide("wire", policy=policy_of(*rules), counter=counter)
        assert fired_ids(decision) == ["impact:low", *(r["id"] for r in rules)]
        outcomes.append((decision.outcome, decision.code))
    assert outcomes == [
        (Outcome.DENY, DenyCode.ACTION_BLOCKED),
        (Outcome.DENY, DenyCode.KYC_REQUIRED),
        (Outcome.DENY, DenyCode.RATE_LIMITED),
        (Outcome.NEEDS_APPROVAL, None),
    ]


def test_a_blocked_decision_has_no_retry_time_even_when_a_rate_limit_also_fired() -> None:
    counter = InMemoryCounter()
    counter.record("wire", 1)
    decision = decide("wire", policy=policy_of(*EVERYTHING_ON_WIRE), counter=counter)
    assert decision.retry_after is None


def test_several_approval_rules_combine_into_the_strictest_requirement() -> None:
    policy = policy_of(
        {
            "id": "finance",
            "kind": "requires_approval",
            "action_types": ["wire"],
            "approval": {"approvers": {"users": ["carol", "dan"]}, "min_approvals": 2, "timeout_action": "approve"},
        },
        {
            "id": "big",
            "kind": "requires_approval",
            "when": {"field": "params.amount", "operator": "gt", "value": 1000},
            "approval": {"approvers": {"groups": ["cfo"]}, "timeout": "30m", "timeout_action": "reject"},
        },
        {
            "id": "audit",
            "kind": "requires_approval",
            "action_types": ["wire"],
            "approval": {"timeout": "2h", "require_codes": False, "codes_waiver_reason": "read-only audit"},
        },
        approval_defaults={"require_codes": False, "codes_waiver_reason": "test", "timeout_action": "approve"},
    )
    decision = decide("wire", policy=policy, amount=5000)
    assert decision.outcome is Outcome.NEEDS_APPROVAL
    assert decision.approval == ApprovalRequirement(
        users=frozenset({"carol", "dan"}),
        groups=frozenset({"cfo", "approvers"}),
        min_approvals=2,
        timeout=timedelta(minutes=30),
        timeout_action="reject",
        require_codes=False,
        rule_ids=("finance", "big", "audit"),
        codes_waiver="test; read-only audit",
    )


def test_fail_is_the_most_conservative_timeout_action_and_codes_win_if_any_rule_wants_them() -> None:
    base: dict[str, Any] = {
        "users": frozenset({"u"}),
        "groups": frozenset(),
        "min_approvals": 1,
        "timeout": timedelta(hours=1),
    }
    combined = ApprovalRequirement.combine(
        [
            ApprovalRequirement(**base, timeout_action="approve", require_codes=False, rule_ids=("a",)),
            ApprovalRequirement(**base, timeout_action="fail", require_codes=True, rule_ids=("b",)),
            ApprovalRequirement(**base, timeout_action="reject", require_codes=False, rule_ids=("c",)),
        ]
    )
    assert (combined.timeout_action, combined.require_codes, combined.rule_ids) == ("fail", True, ("a", "b", "c"))


def test_an_approval_requirement_authorises_listed_users_and_members_of_listed_groups() -> None:
    requirement = decide("reassign_manager").approval
    assert requirement is not None
    assert judge_approver(requirement, Principal("zoe", groups=frozenset({"approvers"})), "agent") == "authorised"
    assert judge_approver(requirement, Principal("approvers"), "agent") == "not_listed"
    named = ApprovalRequirement(frozenset({"carol"}), frozenset(), 1, timedelta(hours=1), "fail", True, ("r",))
    assert judge_approver(named, Principal("carol"), "agent") is ApproverStanding.AUTHORISED
    assert judge_approver(named, Principal("dan", frozenset({"approvers"})), "agent") is ApproverStanding.NOT_LISTED


def test_the_proposer_is_never_an_authorised_approver_even_when_listed() -> None:
    named = ApprovalRequirement(frozenset({"carol"}), frozenset({"approvers"}), 1, timedelta(hours=1), "fail", True,
                                ("r",))
    carol = Principal("carol", frozenset({"approvers"}))
    assert judge_approver(named, carol, proposer="carol") is ApproverStanding.PROPOSER


def test_an_action_without_an_approval_requirement_authorises_nobody() -> None:
    assert judge_approver(None, Principal("carol", frozenset({"approvers"})), "agent") is ApproverStanding.NOT_LISTED


def test_when_conditions_see_params_proposer_tenant_and_priority() -> None:
    policy = policy_of(
        {
            "id": "staff-weekend",
            "kind": "requires_approval",
            "action_types": ["send_email"],
            "when": {
                "all": [
                    {"field": "proposer.groups", "operator": "contains", "value": "staff"},
                    {"field": "params.to.0", "operator": "contains", "value": "@external"},
                    {"field": "tenant", "operator": "eq", "value": "default"},
                    {"field": "priority", "operator": "lte", "value": 5},
                    {"field": "proposer.kyc_verified", "operator": "eq", "value": False},
                ]
            },
        }
    )
    assert decide("send_email", policy=policy, to=["x@external.com"]).outcome is Outcome.NEEDS_APPROVAL
    assert decide("send_email", policy=policy, to=["x@internal.com"]).outcome is Outcome.ALLOW
    assert decide("make_call", policy=policy, to=["x@external.com"]).outcome is Outcome.ALLOW


def test_an_explicit_catch_all_rule_matches_every_action_type() -> None:
    policy = policy_of({"id": "freeze", "kind": "blocked", "when": {"field": "action_type", "operator": "exists"}})
    assert decide("anything_at_all", policy=policy).code is DenyCode.ACTION_BLOCKED


# --- fail closed ----------------------------------------------------------------------------------------------


def test_a_condition_type_error_denies_with_policy_evaluation_failed_naming_the_rule() -> None:
    policy = policy_of(
        {"id": "big", "kind": "requires_approval", "when": {"field": "params.amount", "operator": "gt", "value": 100}},
        {"id": "mails", "kind": "requires_approval", "action_types": ["send_email"]},
    )
    decision = decide("send_email", policy=policy, amount="lots")
    assert (decision.outcome, decision.code) == (Outcome.DENY, DenyCode.POLICY_EVALUATION_FAILED)
    assert decision.deciding is not None and decision.deciding.rule_id == "big"
    assert "ConditionEvaluationError" in decision.deciding.message and "'params.amount'" in decision.deciding.message
    assert fired_ids(decision) == ["impact:low", "big", "mails"]
    assert decision.approval is None


class ExplodingParams(Mapping[str, Any]):
    """Parameters whose every lookup fails, standing in for a bug anywhere under evaluation."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("bug in params")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("bug in params")

    def __len__(self) -> int:
        return 1


def test_any_exception_during_evaluation_denies_instead_of_escaping() -> None:
    policy = policy_of({"id": "peek", "kind": "blocked", "when": {"field": "params.x", "operator": "exists"}})
    req = ActionRequest("send_email", "t", ExplodingParams(), ALICE)
    decision = PolicyEngine(policy).evaluate(req, now=NOW, counter=InMemoryCounter())
    assert decision.code is DenyCode.POLICY_EVALUATION_FAILED
    assert "RuntimeError: bug in params" in decision.explanation


def test_a_naive_now_denies_as_an_evaluation_failure() -> None:
    decision = PolicyEngine(default_policy()).evaluate(
        request("send_kudos"), now=datetime(2026, 1, 1), counter=InMemoryCounter()
    )
    assert (decision.code, decision.impact) == (DenyCode.POLICY_EVALUATION_FAILED, Impact.HIGH)
    assert "timezone-aware" in decision.explanation


def test_an_unavailable_rate_limit_store_denies_when_the_policy_says_deny() -> None:
    decision = decide("send_email", counter=UnavailableCounter())
    assert (decision.outcome, decision.code) == (Outcome.DENY, DenyCode.RATE_LIMIT_STORE_UNAVAILABLE)
    assert decision.retry_after is None
    assert "ConnectionError: redis is down" in decision.explanation


def test_an_unavailable_rate_limit_store_skips_the_limit_when_the_policy_says_allow() -> None:
    policy = default_policy().model_copy(update={"on_rate_limit_store_error": "allow"})
    decision = decide("send_email", policy=policy, counter=UnavailableCounter())
    assert decision.outcome is Outcome.ALLOW
    skipped = [r for r in decision.reasons if r.rule_id == "email-rate-limit"]
    assert len(skipped) == 1 and skipped[0].fired is False and skipped[0].outcome is None
    assert "unavailable" in skipped[0].message and "on_rate_limit_store_error: allow" in skipped[0].message


def test_a_counter_returning_nonsense_counts_as_an_unavailable_store() -> None:
    class Nonsense:
        def count(self, proposer: str, action_type: str, since: datetime) -> int:
            return "many"  # type: ignore[return-value]

    assert decide("send_email", counter=Nonsense()).code is DenyCode.RATE_LIMIT_STORE_UNAVAILABLE


def test_decisions_refuse_inconsistent_construction() -> None:
    with pytest.raises(ValueError, match="approval"):
        Decision(Outcome.NEEDS_APPROVAL, Impact.LOW, None, (), "v", "f")
    with pytest.raises(ValueError, match="code"):
        Decision(Outcome.DENY, Impact.LOW, None, (), "v", "f")
    with pytest.raises(ValueError, match="retry_after"):
        Decision(Outcome.DENY, Impact.LOW, DenyCode.ACTION_BLOCKED, (), "v", "f", retry_after=NOW)


@pytest.mark.parametrize("action_type", ["reassign_manager", "make_payment", "send_email", "move_file", "send_kudos"])
def test_a_decision_serialises_to_json_and_back(action_type: str) -> None:
    counter = OldestAwareCounter()
    counter.record("send_email", 50, at=NOW - timedelta(minutes=1))
    decision = decide(action_type, counter=counter)
    data = json.loads(json.dumps(decision.to_dict()))
    assert Decision.from_dict(data) == decision
    if decision.approval is not None:
        assert data["approval"]["timeout_seconds"] == 86400


# --- validation -----------------------------------------------------------------------------------------------

RATE = {"id": "r1", "kind": "rate_limit", "action_types": ["send_email"]}
APPROVE = {"id": "a1", "kind": "requires_approval", "action_types": ["move_file"]}

INVALID_RULES: list[tuple[str, list[dict[str, Any]], dict[str, Any], str]] = [
    ("duplicate-id", [APPROVE, {**APPROVE, "action_types": ["x"]}], {}, "rule 'a1': duplicate rule id"),
    ("unknown-kind", [{**APPROVE, "kind": "maybe"}], {}, "rule 'a1' (rules[0]).kind: Input should be"),
    ("rate-limit-without-limits", [RATE], {}, "rule 'r1': a rate_limit rule needs limits"),
    ("rate-limit-with-empty-limits", [{**RATE, "limits": {}}], {}, "rule 'r1': a rate_limit rule needs limits"),
    ("zero-limit", [{**RATE, "limits": {"per_hour": 0}}], {}, "rule 'r1': limits.per_hour must be a positive"),
    ("negative-limit", [{**RATE, "limits": {"per_day": -5}}], {}, "rule 'r1': limits.per_day must be a positive"),
    ("limit-not-int", [{**RATE, "limits": {"per_day": "50"}}], {}, "rule 'r1' (rules[0]).limits.per_day"),
    ("min-approvals-zero", [{**APPROVE, "approval": {"min_approvals": 0}}], {}, "rule 'a1': approval: min_approvals"),
    (
        "more-approvals-than-users",
        [{**APPROVE, "approval": {"approvers": {"users": ["carol"]}, "min_approvals": 2}}],
        {},
        "rule 'a1': approval: min_approvals is 2 but only 1 users may approve",
    ),
    ("nobody-can-approve", [{**APPROVE, "approval": {"approvers": {}}}], {}, "rule 'a1': approval: approvers names"),
    ("matches-nothing", [{"id": "vague", "kind": "blocked"}], {}, "rule 'vague': says neither action_types nor when"),
    ("empty-action-types", [{**APPROVE, "action_types": []}], {}, "rule 'a1': action_types must list"),
    (
        "malformed-condition",
        [{**APPROVE, "when": {"all": [{"field": "a", "operator": "regex", "value": 1}]}}],
        {},
        "rule 'a1': when.all[0].operator: unknown operator 'regex'",
    ),
    ("condition-not-a-mapping", [{**APPROVE, "when": "impact == high"}], {}, "rule 'a1': when: expected a mapping"),
    ("zero-timeout", [{**APPROVE, "approval": {"timeout": "0s"}}], {}, "rule 'a1': approval: timeout must be positive"),
    ("bad-timeout", [{**APPROVE, "approval": {"timeout": "soon"}}], {}, "rule 'a1' (rules[0]).approval.timeout"),
    ("bad-timeout-action", [{**APPROVE, "approval": {"timeout_action": "shrug"}}], {}, "rule 'a1' (rules[0])"),
    ("unknown-rule-key", [{**APPROVE, "colour": "red"}], {}, "rule 'a1' (rules[0]).colour: Extra inputs"),
    ("approval-on-blocked", [{**RATE, "kind": "blocked", "approval": {}}], {}, "rule 'r1': approval is only allowed"),
    ("limits-on-approval", [{**APPROVE, "limits": {"per_hour": 1}}], {}, "rule 'a1': limits is only allowed"),
    ("bad-rule-id", [{**APPROVE, "id": "has space"}], {}, "rule 'has space': id must start"),
    ("unknown-impact-level", [], {"impact": {"types": {"x": "critical"}}}, "impact.types.x: Input should be"),
    ("unknown-default-impact", [], {"impact": {"default": "huge"}}, "impact.default: Input should be"),
    ("defaults-timeout", [], {"approval_defaults": {"timeout": "-1h"}}, "approval_defaults.timeout"),
    ("defaults-zero-timeout", [], {"approval_defaults": {"timeout": 0}}, "approval_defaults: timeout must be positive"),
    ("unknown-top-level-key", [], {"rulez": []}, "rulez: Extra inputs are not permitted"),
    ("bad-store-setting", [], {"on_rate_limit_store_error": "maybe"}, "on_rate_limit_store_error: Input should be"),
]


@pytest.mark.parametrize(
    ("rules", "top", "message"), [case[1:] for case in INVALID_RULES], ids=[case[0] for case in INVALID_RULES]
)
def test_every_invalid_policy_is_refused_naming_the_rule_or_field(
    rules: list[dict[str, Any]], top: dict[str, Any], message: str
) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy({"version": "v1", **top, "rules": rules})
    assert message in caught.value.message
    assert caught.value.code == "POLICY_INVALID"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: []\n", "version: Field required"),
        ("version: ' '\n", "version: must be a non-empty string"),
        ("version: 2026.11\n", "version: Input should be a valid string"),
        ("- 1\n- 2\n", "the policy document must be a mapping, got list"),
        ("", "the policy document must be a mapping, got nothing"),
        ("version: [unclosed\n", "policy is not valid YAML"),
        ("version: a\nversion: b\n", "line 2: duplicate key 'version'"),
    ],
    ids=["no-version", "blank-version", "numeric-version", "a-list", "empty", "bad-yaml", "duplicate-key"],
)
def test_malformed_policy_text_is_refused(text: str, message: str) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_text(text)
    assert message in caught.value.message


def test_a_missing_policy_file_is_refused_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(PolicyInvalid, match="cannot read policy file"):
        load_policy(tmp_path / "nope.yaml")


# --- YAML -----------------------------------------------------------------------------------------------------


def test_the_packaged_default_policy_file_loads_from_disk_equal_to_default_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(files("saferails.policy").joinpath("default_policy.yaml").read_text(encoding="utf-8"))
    assert load_policy(path) == default_policy()
    assert {r.id for r in default_policy().rules} >= {
        "payments-blocked",
        "email-rate-limit",
        "file-moves-need-approval",
    }


def test_durations_accept_short_units_iso_8601_and_seconds() -> None:
    for given, expected in [("30s", 30), ("15m", 900), ("24h", 86400), ("7d", 604800), ("PT1H", 3600), (90, 90)]:
        policy = parse_policy({"version": "v", "approval_defaults": {"timeout": given}})
        assert policy.approval_defaults.timeout == timedelta(seconds=expected)


def test_a_policy_round_trips_through_yaml_with_the_same_fingerprint() -> None:
    policy = policy_of(
        *EVERYTHING_ON_WIRE,
        {
            "id": "big",
            "description": "amounts over 1000",
            "kind": "requires_approval",
            "when": {
                "any": [
                    {"field": "params.amount", "operator": "gt", "value": 1000},
                    {"not": {"field": "x", "operator": "exists"}},
                ]
            },
            "approval": {
                "approvers": {"users": ["carol"]},
                "timeout": "PT90M",
                "require_codes": False,
                "codes_waiver_reason": "carol approves in person",
            },
        },
        on_rate_limit_store_error="allow",
        impact={"default": "medium", "types": {"wire": "high"}},
        approval_defaults={"timeout": "7d", "timeout_action": "reject"},
    )
    text = policy_to_yaml(policy)
    again = load_policy_text(text)
    assert again == policy
    assert again.fingerprint == policy.fingerprint
    assert "timeout: 90m" in text and "timeout: 7d" in text
    assert load_policy_text(policy_to_yaml(default_policy())) == default_policy()
    assert "timeout: 24h" in policy_to_yaml(default_policy())


def test_a_copied_policy_gets_its_own_fingerprint() -> None:
    original = default_policy()
    assert original.fingerprint
    copy = original.model_copy(update={"on_rate_limit_store_error": "allow"})
    assert copy.fingerprint != original.fingerprint
    assert decide("send_kudos", policy=copy).policy_fingerprint == copy.fingerprint


def test_the_fingerprint_changes_with_the_content_and_ignores_formatting() -> None:
    base = default_policy()
    data = yaml.safe_load(policy_to_yaml(base))
    data["rules"][3]["limits"]["per_hour"] = 51
    assert parse_policy(data).fingerprint != base.fingerprint
    reformatted = load_policy_text(json.dumps(yaml.safe_load(policy_to_yaml(base))))
    assert reformatted.fingerprint == base.fingerprint
