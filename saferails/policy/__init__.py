"""Policy: impact classification and rules turn an action request into a Decision (allow | needs_approval | deny).

Policy is data (``default_policy.yaml``, validated by :mod:`saferails.policy.model`); evaluation is pure
(:mod:`saferails.policy.engine`); each rule kind is a small class (:mod:`saferails.policy.rules`).
"""

from saferails.policy.engine import ActionRequest, Decision, PolicyEngine
from saferails.policy.loader import default_policy, load_policy, load_policy_text, policy_to_yaml
from saferails.policy.model import Impact, Policy, RuleSpec, parse_policy
from saferails.policy.rules import (
    AgentFacts,
    AgentLookup,
    ApprovalRequirement,
    ApproverStanding,
    DenyCode,
    OldestEventLookup,
    Outcome,
    Principal,
    RateLimitCounter,
    RuleResult,
    judge_approver,
)

__all__ = [
    "ActionRequest",
    "AgentFacts",
    "AgentLookup",
    "ApprovalRequirement",
    "ApproverStanding",
    "Decision",
    "DenyCode",
    "Impact",
    "OldestEventLookup",
    "Outcome",
    "Policy",
    "PolicyEngine",
    "Principal",
    "RateLimitCounter",
    "RuleResult",
    "RuleSpec",
    "default_policy",
    "judge_approver",
    "load_policy",
    "load_policy_text",
    "parse_policy",
    "policy_to_yaml",
]
