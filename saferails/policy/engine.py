"""Policy evaluation: an action request in, a :class:`Decision` (allow | needs_approval | deny) with reasons out.

Pure: the only I/O is the injected rate-limit counter. Contracts of :meth:`PolicyEngine.evaluate`:

* Every rule is evaluated; every rule that fired is listed in ``Decision.reasons`` in policy order, after the
  ``impact:<level>`` pseudo-rule. A rate limit skipped because its store was down (under
  ``on_rate_limit_store_error: allow``) is listed too, with ``fired=False``.
* Precedence: evaluation failure > blocked > requires_kyc > rate limit exceeded > rate-limit store unavailable
  (under ``deny``) > agent paused > budget exceeded > requires_approval > allow. Several approval rules combine
  into the strictest requirement.
* Fail closed: it never raises. Any exception while evaluating (a condition type error, a bug, a naive ``now``)
  gives DENY with code POLICY_EVALUATION_FAILED and the error in the message; if the impact could not be
  classified the decision says HIGH.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from saferails.policy.model import Impact, Policy
from saferails.policy.rules import (
    ApprovalRequirement,
    DenyCode,
    Facts,
    OldestEventLookup,
    Outcome,
    PolicyRule,
    Principal,
    RateLimitCounter,
    RuleResult,
    build_rules,
)

__all__ = [
    "ActionRequest",
    "ApprovalRequirement",
    "Decision",
    "DenyCode",
    "Impact",
    "OldestEventLookup",
    "Outcome",
    "PolicyEngine",
    "Principal",
    "RateLimitCounter",
    "RuleResult",
]

# Lower wins when several rules deny.
_DENY_PRECEDENCE: dict[DenyCode, int] = {
    DenyCode.POLICY_EVALUATION_FAILED: 0,
    DenyCode.ACTION_BLOCKED: 1,
    DenyCode.KYC_REQUIRED: 2,
    DenyCode.RATE_LIMITED: 3,
    DenyCode.RATE_LIMIT_STORE_UNAVAILABLE: 4,
    DenyCode.AGENT_PAUSED: 5,
    DenyCode.BUDGET_EXCEEDED: 6,
}


@dataclass(frozen=True)
class ActionRequest:
    """What is proposed (parameters already validated by the handler)."""

    action_type: str
    target: str
    params: Mapping[str, Any]
    proposer: Principal
    tenant: str = "default"
    priority: int = 5

    def context(self, impact: Impact) -> dict[str, Any]:
        """The mapping ``when`` conditions see."""
        return {
            "action_type": self.action_type,
            "target": self.target,
            "params": self.params,
            "impact": impact.value,
            "tenant": self.tenant,
            "priority": self.priority,
            "proposer": {
                "id": self.proposer.id,
                "groups": sorted(self.proposer.groups),
                "kyc_verified": self.proposer.kyc_verified,
            },
        }


@dataclass(frozen=True)
class Decision:
    """The policy's answer. Invariants (checked on construction): ``code`` is set iff DENY, ``approval`` iff
    NEEDS_APPROVAL, ``retry_after`` only when the code is RATE_LIMITED."""

    outcome: Outcome
    impact: Impact
    code: DenyCode | None
    reasons: tuple[RuleResult, ...]
    policy_version: str
    policy_fingerprint: str
    approval: ApprovalRequirement | None = None
    retry_after: datetime | None = None

    def __post_init__(self) -> None:
        if (self.code is not None) != (self.outcome is Outcome.DENY):
            raise ValueError(f"a {self.outcome} decision {'needs' if self.code is None else 'takes no'} code")
        if (self.approval is not None) != (self.outcome is Outcome.NEEDS_APPROVAL):
            raise ValueError("approval is set exactly when the outcome is needs_approval")
        if self.retry_after is not None and self.code is not DenyCode.RATE_LIMITED:
            raise ValueError("retry_after is only set on RATE_LIMITED decisions")

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOW

    @property
    def deciding(self) -> RuleResult | None:
        """The rule that decided the outcome (first in policy order among equals); None for ALLOW."""
        for reason in self.reasons:
            if not reason.fired:
                continue
            if self.outcome is Outcome.DENY and reason.code is self.code:
                return reason
            if self.outcome is Outcome.NEEDS_APPROVAL and reason.outcome is Outcome.NEEDS_APPROVAL:
                return reason
        return None

    @property
    def explanation(self) -> str:
        """Human text, first line the verdict:
        ``DENY (ACTION_BLOCKED) by policy 2026.11.1: rule payments-blocked: make_payment is blocked``."""
        verdict = self.outcome.name + (f" ({self.code})" if self.code else "")
        head = f"{verdict} by policy {self.policy_version}"
        deciding = self.deciding
        lines = [f"{head}: rule {deciding.rule_id}: {deciding.message}" if deciding else f"{head}: no rule objected"]
        lines += [f"  - {r.rule_id}: {r.message}" for r in self.reasons if r is not deciding]
        if self.approval is not None:
            lines.append(f"  approval: {self.approval.describe()} (rules {', '.join(self.approval.rule_ids)})")
        if self.retry_after is not None:
            lines.append(f"  retry after: {self.retry_after.isoformat()}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: timedeltas as seconds, datetimes as ISO-8601 strings."""
        return {
            "outcome": self.outcome.value,
            "impact": self.impact.value,
            "code": None if self.code is None else self.code.value,
            "reasons": [r.to_dict() for r in self.reasons],
            "policy_version": self.policy_version,
            "policy_fingerprint": self.policy_fingerprint,
            "approval": None if self.approval is None else self.approval.to_dict(),
            "retry_after": None if self.retry_after is None else self.retry_after.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """Inverse of :meth:`to_dict` (for decisions read back from the store or audit)."""
        return cls(
            outcome=Outcome(data["outcome"]),
            impact=Impact(data["impact"]),
            code=None if data.get("code") is None else DenyCode(data["code"]),
            reasons=tuple(RuleResult.from_dict(r) for r in data["reasons"]),
            policy_version=data["policy_version"],
            policy_fingerprint=data["policy_fingerprint"],
            approval=None if data.get("approval") is None else ApprovalRequirement.from_dict(data["approval"]),
            retry_after=None if data.get("retry_after") is None else datetime.fromisoformat(data["retry_after"]),
        )


_MAX_INDEXED_TYPES = 1024


class PolicyEngine:
    """Evaluates action requests against one immutable :class:`Policy`."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.fingerprint = policy.fingerprint
        self._rules = build_rules(policy)
        self._by_type: dict[str, tuple[PolicyRule, ...]] = {}

    def _rules_for(self, action_type: str) -> tuple[PolicyRule, ...]:
        """The rules that may match ``action_type``, in policy order, built once per type: a rule whose
        ``action_types`` leave the type out never matches it (``PolicyRule.matches``), so its quiet answer, which
        ``evaluate`` would drop, is not computed at all."""
        rules = self._by_type.get(action_type)
        if rules is None:
            rules = tuple(r for r in self._rules if r.action_types is None or action_type in r.action_types)
            if len(self._by_type) < _MAX_INDEXED_TYPES:  # bounded: beyond it, filtered on each call
                self._by_type[action_type] = rules
        return rules

    def classify(self, action_type: str) -> Impact:
        """The impact level of ``action_type``: the policy's table, else its default (before ``raise_when``,
        which needs the proposal: see ``evaluate``)."""
        return self.policy.impact.types.get(action_type, self.policy.impact.default)

    def evaluate(self, request: ActionRequest, *, now: datetime, counter: RateLimitCounter) -> Decision:
        """Decide ``request`` at ``now`` (timezone-aware). Never raises; see the module docstring."""
        impact = Impact.HIGH
        reasons: list[RuleResult] = []
        try:
            if now.tzinfo is None or now.utcoffset() is None:
                raise ValueError("now must be timezone-aware")
            # ``impact`` stays HIGH until both steps succeed: a raise_when condition that fails denies as HIGH.
            base = self.classify(request.action_type)
            raised = self.policy.impact.level(request.action_type, request.context(base))
            reasons.append(self._impact_reason(request.action_type, base, raised))
            impact = raised
            facts = Facts(
                action_type=request.action_type,
                proposer=request.proposer,
                impact=impact,
                context=request.context(impact),
                now=now,
                counter=counter,
                on_store_error=self.policy.on_rate_limit_store_error,
            )
            for rule in self._rules_for(request.action_type):
                try:
                    result = rule.apply(facts)
                except Exception as exc:  # noqa: BLE001 - fail closed, naming the rule
                    result = _failure(rule.id, rule.kind, exc)
                if result.fired or result.code is not None:
                    reasons.append(result)
            return self._decide(impact, tuple(reasons))
        except Exception as exc:  # noqa: BLE001 - evaluate never raises: a bug here must deny, not escape
            reasons.append(_failure("engine", "engine", exc))
            return self._decision(Outcome.DENY, impact, tuple(reasons), code=DenyCode.POLICY_EVALUATION_FAILED)

    def _impact_reason(self, action_type: str, impact: Impact, raised: Impact) -> RuleResult:
        source = "impact.types" if action_type in self.policy.impact.types else "impact.default"
        if raised != impact:
            source = f"{source} {impact}, raised by impact.raise_when"
        return RuleResult(f"impact:{raised}", "impact", True, None, f"{action_type} is {raised} impact ({source})")

    def _decide(self, impact: Impact, reasons: tuple[RuleResult, ...]) -> Decision:
        denials = [r for r in reasons if r.fired and r.outcome is Outcome.DENY and r.code is not None]
        if denials:
            code = min((r.code for r in denials if r.code is not None), key=_DENY_PRECEDENCE.__getitem__)
            retry_times = [r.retry_after for r in denials if r.code is code and r.retry_after is not None]
            retry_after = max(retry_times) if code is DenyCode.RATE_LIMITED and retry_times else None
            return self._decision(Outcome.DENY, impact, reasons, code=code, retry_after=retry_after)
        approvals = [r.approval for r in reasons if r.fired and r.approval is not None]
        if approvals:
            combined = ApprovalRequirement.combine(approvals)
            return self._decision(Outcome.NEEDS_APPROVAL, impact, reasons, approval=combined)
        return self._decision(Outcome.ALLOW, impact, reasons)

    def _decision(self, outcome: Outcome, impact: Impact, reasons: tuple[RuleResult, ...], **extra: Any) -> Decision:
        return Decision(
            outcome=outcome,
            impact=impact,
            code=extra.pop("code", None),
            reasons=reasons,
            policy_version=self.policy.version,
            policy_fingerprint=self.fingerprint,
            **extra,
        )


def _failure(rule_id: str, kind: str, exc: Exception) -> RuleResult:
    try:
        error = f"{type(exc).__name__}: {exc}"
    except Exception:  # noqa: BLE001 - an exception whose str() fails must still produce a denial
        error = type(exc).__name__
    return RuleResult(
        rule_id, kind, True, Outcome.DENY, f"policy evaluation failed: {error}", code=DenyCode.POLICY_EVALUATION_FAILED
    )
