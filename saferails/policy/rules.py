"""Policy rules: one small class per rule kind, each naming the hazard it prevents.

Every rule answers with a :class:`RuleResult` - whether it fired, the outcome it demands from a closed set
(:class:`Outcome`), a stable code for refusals and a human reason - never a bare boolean. Rules are pure: the
only I/O is through the injected :class:`RateLimitCounter`. A rule matches when its ``action_types`` (if given)
lists the action type and then its ``when`` condition (if given) holds; ``when`` is not evaluated for action
types the rule does not list, so a condition written for one type cannot fail on another.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol, TypeGuard, runtime_checkable

from saferails.conditions import Condition
from saferails.policy.model import Impact, Policy, RuleSpec, TimeoutAction, format_duration

__all__ = [
    "AgentControlsRule",
    "AgentFacts",
    "AgentLookup",
    "ApprovalRequirement",
    "ApprovalRule",
    "ApproverStanding",
    "BlockedRule",
    "DenyCode",
    "Facts",
    "KycRule",
    "OldestEventLookup",
    "Outcome",
    "PolicyRule",
    "RateLimitCounter",
    "RateLimitRule",
    "RuleResult",
    "build_rules",
    "judge_approver",
]


class Outcome(StrEnum):
    ALLOW = "allow"
    NEEDS_APPROVAL = "needs_approval"
    DENY = "deny"


class DenyCode(StrEnum):
    """Why a request was denied. The values match the ``code`` of the error classes in ``saferails.errors``."""

    POLICY_EVALUATION_FAILED = "POLICY_EVALUATION_FAILED"
    ACTION_BLOCKED = "ACTION_BLOCKED"
    KYC_REQUIRED = "KYC_REQUIRED"
    RATE_LIMITED = "RATE_LIMITED"
    RATE_LIMIT_STORE_UNAVAILABLE = "RATE_LIMIT_STORE_UNAVAILABLE"
    AGENT_PAUSED = "AGENT_PAUSED"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"


class RateLimitCounter(Protocol):
    """Counts past events; implemented by the store. May raise anything when its store is unavailable."""

    def count(self, proposer: str, action_type: str, since: datetime) -> int: ...


@runtime_checkable
class OldestEventLookup(Protocol):
    """Optional extra a counter may offer: the time of the oldest event counted since ``since``, if any."""

    def oldest_since(self, proposer: str, action_type: str, since: datetime) -> datetime | None: ...


@dataclass(frozen=True)
class AgentFacts:
    """What the store knows about a proposer that is a registered agent (seed 003), for one proposal.

    ``spent`` is what the agent spent in its current budget period; ``cost`` / ``cost_currency`` what this
    proposal would spend (None for action types that spend nothing)."""

    agent_id: str
    status: str  # active | paused | retired
    paused_until: datetime | None = None
    pause_reason: str | None = None
    budget: Decimal | None = None
    currency: str | None = None
    period: str | None = None
    spent: Decimal = Decimal(0)
    cost: Decimal | None = None
    cost_currency: str | None = None


@runtime_checkable
class AgentLookup(Protocol):
    """Optional extra a counter may offer: the agent facts of ``proposer`` (None: not a registered agent)."""

    def agent_facts(
        self, proposer: str, action_type: str, params: Mapping[str, Any], now: datetime
    ) -> AgentFacts | None: ...


def _offers(counter: object, extra: Any) -> bool:
    """``isinstance(counter, extra)`` for an optional runtime-checkable protocol, answered once per counter
    class when the class has the methods (the isinstance check walks the protocol's members on every call)."""
    key = (type(counter), extra)
    offered = _CLASS_OFFERS.get(key)
    if offered is None:
        members = [name for name, value in vars(extra).items() if callable(value) and not name.startswith("_")]
        offered = _CLASS_OFFERS[key] = bool(members) and all(
            callable(getattr(type(counter), name, None)) for name in members)
    return offered or isinstance(counter, extra)


_CLASS_OFFERS: dict[tuple[type[Any], type[Any]], bool] = {}


def _looks_up_oldest(counter: object) -> TypeGuard[OldestEventLookup]:
    return _offers(counter, OldestEventLookup)


def _looks_up_agents(counter: object) -> TypeGuard[AgentLookup]:
    return _offers(counter, AgentLookup)


_TIMEOUT_ACTION_STRICTNESS: dict[TimeoutAction, int] = {"approve": 0, "reject": 1, "fail": 2}


@dataclass(frozen=True)
class ApprovalRequirement:
    """Who must approve, how many of them, and what happens when nobody answers in time."""

    users: frozenset[str]
    groups: frozenset[str]
    min_approvals: int
    timeout: timedelta
    timeout_action: TimeoutAction
    require_codes: bool
    rule_ids: tuple[str, ...]
    # Why codes are waived (None when they are required); shown in the decision and audited with approvals.
    codes_waiver: str | None = None

    @staticmethod
    def combine(requirements: Sequence[ApprovalRequirement]) -> ApprovalRequirement:
        """The strictest requirement satisfying all: union of approvers, most approvals, shortest timeout,
        the most conservative timeout action (fail over reject over approve), codes if any requires them."""
        if not requirements:
            raise ValueError("combine needs at least one requirement")
        rule_ids: list[str] = []
        for req in requirements:
            rule_ids.extend(r for r in req.rule_ids if r not in rule_ids)
        return ApprovalRequirement(
            users=frozenset().union(*(r.users for r in requirements)),
            groups=frozenset().union(*(r.groups for r in requirements)),
            min_approvals=max(r.min_approvals for r in requirements),
            timeout=min(r.timeout for r in requirements),
            timeout_action=max((r.timeout_action for r in requirements), key=_TIMEOUT_ACTION_STRICTNESS.__getitem__),
            require_codes=any(r.require_codes for r in requirements),
            rule_ids=tuple(rule_ids),
            codes_waiver=None
            if any(r.require_codes for r in requirements)
            else "; ".join(dict.fromkeys(r.codes_waiver for r in requirements if r.codes_waiver)) or None,
        )

    def describe(self) -> str:
        who = [f"users {', '.join(sorted(self.users))}"] if self.users else []
        who += [f"groups {', '.join(sorted(self.groups))}"] if self.groups else []
        codes = "with approval codes" if self.require_codes else "without approval codes"
        if not self.require_codes and self.codes_waiver:
            codes += f" (waived: {self.codes_waiver})"
        noun = "approval" if self.min_approvals == 1 else "approvals"
        return (
            f"{self.min_approvals} {noun} from {' or '.join(who)} within {format_duration(self.timeout)} "
            f"{codes}; on timeout: {self.timeout_action}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "users": sorted(self.users),
            "groups": sorted(self.groups),
            "min_approvals": self.min_approvals,
            "timeout_seconds": self.timeout.total_seconds(),
            "timeout_action": self.timeout_action,
            "require_codes": self.require_codes,
            "rule_ids": list(self.rule_ids),
            "codes_waiver": self.codes_waiver,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApprovalRequirement:
        return cls(
            users=frozenset(data["users"]),
            groups=frozenset(data["groups"]),
            min_approvals=int(data["min_approvals"]),
            timeout=timedelta(seconds=float(data["timeout_seconds"])),
            timeout_action=data["timeout_action"],
            require_codes=bool(data["require_codes"]),
            rule_ids=tuple(data["rule_ids"]),
            codes_waiver=data.get("codes_waiver"),
        )


@dataclass(frozen=True)
class Principal:
    """Who proposes or approves."""

    id: str
    groups: frozenset[str] = frozenset()
    kyc_verified: bool = False


class ApproverStanding(StrEnum):
    """Whether a principal may decide (approve or reject) on an action waiting for approval."""

    AUTHORISED = "authorised"
    PROPOSER = "proposer"
    NOT_LISTED = "not_listed"


def judge_approver(requirement: ApprovalRequirement | None, approver: Principal, proposer: str) -> ApproverStanding:
    """THE rule for who may decide on an action; every path asks it (``ActionService.approve``/``reject``, which
    the Prefect approval gate and the CLI/API call, and one-time code issuing in ``saferails.approvals``).

    The proposer is never authorised, even when listed (hazard: an agent approving its own request). Otherwise a
    principal is authorised when named in ``requirement.users`` or a member of one of ``requirement.groups``.
    No requirement (the action never needed approval) authorises nobody: fail closed.
    """
    if approver.id == proposer:
        return ApproverStanding.PROPOSER
    if requirement is None:
        return ApproverStanding.NOT_LISTED
    if approver.id in requirement.users or not requirement.groups.isdisjoint(approver.groups):
        return ApproverStanding.AUTHORISED
    return ApproverStanding.NOT_LISTED


@dataclass(frozen=True)
class RuleResult:
    """One rule's answer.

    ``outcome`` is None when the rule did not fire, and for the informational ``impact:<level>`` pseudo-rule.
    ``code`` is the refusal code of a denying result; a result that did not fire but carries a code records a
    check that could not run (a rate-limit store that was down while the policy allows that).
    """

    rule_id: str
    kind: str
    fired: bool
    outcome: Outcome | None
    message: str
    code: DenyCode | None = None
    approval: ApprovalRequirement | None = None
    retry_after: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "kind": self.kind,
            "fired": self.fired,
            "outcome": None if self.outcome is None else self.outcome.value,
            "message": self.message,
            "code": None if self.code is None else self.code.value,
            "approval": None if self.approval is None else self.approval.to_dict(),
            "retry_after": None if self.retry_after is None else self.retry_after.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleResult:
        return cls(
            rule_id=data["rule_id"],
            kind=data["kind"],
            fired=bool(data["fired"]),
            outcome=None if data.get("outcome") is None else Outcome(data["outcome"]),
            message=data["message"],
            code=None if data.get("code") is None else DenyCode(data["code"]),
            approval=None if data.get("approval") is None else ApprovalRequirement.from_dict(data["approval"]),
            retry_after=None if data.get("retry_after") is None else datetime.fromisoformat(data["retry_after"]),
        )


@dataclass(frozen=True)
class Facts:
    """What a rule may look at: the request as the condition context plus the injected counter."""

    action_type: str
    proposer: Principal
    impact: Impact
    context: Mapping[str, Any]
    now: datetime
    counter: RateLimitCounter
    on_store_error: Literal["deny", "allow"]


class PolicyRule(ABC):
    """Base class: matching by ``action_types`` and ``when``; subclasses decide what a match means.

    ``apply`` must answer quietly (not fired, no code) whenever ``action_types`` leaves the request's type out:
    the engine relies on it and does not apply such a rule at all."""

    kind: ClassVar[str]

    def __init__(self, spec: RuleSpec) -> None:
        self.id = spec.id
        self.description = spec.description
        self.action_types: frozenset[str] | None = None if spec.action_types is None else frozenset(spec.action_types)
        self.when: Condition | None = spec.when

    @classmethod
    def from_spec(cls, spec: RuleSpec, policy: Policy) -> PolicyRule:
        return cls(spec)

    def matches(self, facts: Facts) -> bool:
        """May raise ``ConditionEvaluationError`` from ``when``; the engine turns that into a denial."""
        if self.action_types is not None and facts.action_type not in self.action_types:
            return False
        return self.when is None or self.when.evaluate(facts.context)

    @abstractmethod
    def apply(self, facts: Facts) -> RuleResult:
        """This rule's answer for ``facts``."""

    def _result(self, outcome: Outcome, message: str, **extra: Any) -> RuleResult:
        return RuleResult(self.id, self.kind, True, outcome, message, **extra)

    def _quiet(self, message: str = "does not match") -> RuleResult:
        return RuleResult(self.id, self.kind, False, None, message)


class BlockedRule(PolicyRule):
    """Hazard: an action type nobody may run (payments) executing anyway. A block cannot be approved away."""

    kind = "blocked"

    def apply(self, facts: Facts) -> RuleResult:
        if not self.matches(facts):
            return self._quiet()
        return self._result(Outcome.DENY, f"{facts.action_type} is blocked", code=DenyCode.ACTION_BLOCKED)


class KycRule(PolicyRule):
    """Hazard: a principal whose identity was never verified spending money. Only a KYC-verified proposer passes."""

    kind = "requires_kyc"

    def apply(self, facts: Facts) -> RuleResult:
        if not self.matches(facts):
            return self._quiet()
        if facts.proposer.kyc_verified:
            return self._quiet(f"proposer {facts.proposer.id} is KYC-verified")
        return self._result(
            Outcome.DENY,
            f"{facts.action_type} requires a KYC-verified proposer; {facts.proposer.id} is not verified",
            code=DenyCode.KYC_REQUIRED,
        )


_WINDOWS: tuple[tuple[str, str, timedelta], ...] = (
    ("per_hour", "hour", timedelta(hours=1)),
    ("per_day", "day", timedelta(days=1)),
)


class RateLimitRule(PolicyRule):
    """Hazard: a runaway agent flooding the world (an email storm). Caps events per proposer per action type.

    A window is exceeded when ``count(proposer, action_type, now - window) >= limit``: with a limit of 50 the
    51st request in the hour is refused. ``retry_after`` is when a retry can first succeed: ``now + window``
    (conservative: by then every counted event has left the window), or, when the counter also offers
    ``oldest_since`` and the count is exactly at the limit, ``oldest + window``. Over several exceeded windows
    the latest time wins. A counter that raises (or returns a non-integer) means the store is unavailable;
    the policy's ``on_rate_limit_store_error`` decides between denying and skipping this limit.
    """

    kind = "rate_limit"

    def __init__(self, spec: RuleSpec) -> None:
        super().__init__(spec)
        limits = spec.limits
        self.limits: tuple[tuple[str, timedelta, int], ...] = tuple(
            (label, window, limit)
            for name, label, window in _WINDOWS
            if limits is not None and (limit := getattr(limits, name)) is not None
        )

    def apply(self, facts: Facts) -> RuleResult:
        if not self.matches(facts):
            return self._quiet()
        try:
            counts = [(label, window, limit, self._count(facts, window)) for label, window, limit in self.limits]
        except Exception as exc:  # noqa: BLE001 - any store failure is handled by the policy setting
            return self._store_unavailable(facts, exc)
        exceeded = [(label, window, limit, count) for label, window, limit, count in counts if count >= limit]
        if not exceeded:
            return self._quiet("within limits")
        message = "; ".join(
            f"{facts.action_type}: {count} in the last {label}, limit {limit} per {label}"
            for label, _, limit, count in exceeded
        )
        retry_after = max(self._retry_after(facts, window, limit, count) for _, window, limit, count in exceeded)
        return self._result(Outcome.DENY, message, code=DenyCode.RATE_LIMITED, retry_after=retry_after)

    def _count(self, facts: Facts, window: timedelta) -> int:
        count = facts.counter.count(facts.proposer.id, facts.action_type, facts.now - window)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise TypeError(f"counter returned {count!r}, expected a non-negative int")
        return count

    @staticmethod
    def _retry_after(facts: Facts, window: timedelta, limit: int, count: int) -> datetime:
        fallback = facts.now + window
        # Only at exactly the limit does one event leaving the window make room; above it (the limit was
        # lowered) several must leave, and we only know about the oldest.
        if count != limit or not _looks_up_oldest(facts.counter):
            return fallback
        try:
            oldest = facts.counter.oldest_since(facts.proposer.id, facts.action_type, facts.now - window)
        except Exception:  # noqa: BLE001 - the hint is optional; the conservative answer stands
            return fallback
        if not isinstance(oldest, datetime) or oldest + window <= facts.now:
            return fallback
        return min(oldest + window, fallback)

    def _store_unavailable(self, facts: Facts, exc: Exception) -> RuleResult:
        problem = f"{facts.action_type}: rate-limit store unavailable ({type(exc).__name__}: {exc})"
        if facts.on_store_error == "allow":
            return RuleResult(
                self.id,
                self.kind,
                False,
                None,
                f"{problem}; the policy allows on store errors (on_rate_limit_store_error: allow), limit skipped",
                code=DenyCode.RATE_LIMIT_STORE_UNAVAILABLE,
            )
        return self._result(
            Outcome.DENY,
            f"{problem}; the policy denies on store errors (on_rate_limit_store_error: deny)",
            code=DenyCode.RATE_LIMIT_STORE_UNAVAILABLE,
        )


class ApprovalRule(PolicyRule):
    """Hazard: a consequential change (high impact, moving files) made without a human saying yes."""

    kind = "requires_approval"

    def __init__(self, spec: RuleSpec, requirement: ApprovalRequirement) -> None:
        super().__init__(spec)
        self.requirement = requirement

    @classmethod
    def from_spec(cls, spec: RuleSpec, policy: Policy) -> PolicyRule:
        settings = policy.effective_approval(spec)
        requirement = ApprovalRequirement(
            users=frozenset(settings.approvers.users),
            groups=frozenset(settings.approvers.groups),
            min_approvals=settings.min_approvals,
            timeout=settings.timeout,
            timeout_action=settings.timeout_action,
            require_codes=settings.require_codes,
            rule_ids=(spec.id,),
            codes_waiver=None if settings.require_codes else settings.codes_waiver_reason,
        )
        return cls(spec, requirement)

    def apply(self, facts: Facts) -> RuleResult:
        if not self.matches(facts):
            return self._quiet()
        why = f": {self.description}" if self.description else ""
        message = f"{facts.action_type} ({facts.impact} impact) needs approval{why}"
        return self._result(Outcome.NEEDS_APPROVAL, message, approval=self.requirement)


class AgentControlsRule(PolicyRule):
    """Hazard: an operator stops an agent (or caps its spending) and the agent carries on anyway.

    For a proposer registered as an agent: a ``paused`` agent whose pause has not run out, or a ``retired`` one,
    is refused (``AGENT_PAUSED``); a proposal whose cost (a purchase's ``max_total``, a payment's ``amount``)
    exceeds the budget left in the period, or is in another currency than the budget, is refused
    (``BUDGET_EXCEEDED``). The facts come from the counter (``AgentLookup``); a lookup that raises denies (the
    engine turns it into ``POLICY_EVALUATION_FAILED``). A counter without the lookup (a test double, a dry run
    outside a store) cannot know any agent: the rule stays quiet and says so.
    """

    kind = "agent_controls"

    def apply(self, facts: Facts) -> RuleResult:
        if not self.matches(facts):
            return self._quiet()
        counter = facts.counter
        if not _looks_up_agents(counter):
            return self._quiet("no agent registry to consult")
        params = facts.context.get("params") or {}
        agent = counter.agent_facts(facts.proposer.id, facts.action_type, params, facts.now)
        if agent is None:
            return self._quiet(f"{facts.proposer.id} is not a registered agent")
        if agent.status == "retired":
            return self._result(Outcome.DENY, f"agent {agent.agent_id} is retired", code=DenyCode.AGENT_PAUSED)
        if agent.status != "active" and (agent.paused_until is None or agent.paused_until > facts.now):
            until = "until resumed" if agent.paused_until is None else f"until {agent.paused_until.isoformat()}"
            return self._result(
                Outcome.DENY,
                f"agent {agent.agent_id} is paused {until}: {agent.pause_reason or 'no reason given'}",
                code=DenyCode.AGENT_PAUSED,
            )
        if agent.cost is None or agent.budget is None:
            return self._quiet("within the agent's controls")
        if agent.cost_currency != agent.currency:
            return self._result(
                Outcome.DENY,
                f"agent {agent.agent_id}'s budget is in {agent.currency}; this costs {agent.cost} "
                f"{agent.cost_currency}",
                code=DenyCode.BUDGET_EXCEEDED,
            )
        remaining = agent.budget - agent.spent
        if agent.cost > remaining:
            return self._result(
                Outcome.DENY,
                f"{facts.action_type} costs {agent.cost} {agent.currency}; agent {agent.agent_id} has "
                f"{remaining} {agent.currency} left of {agent.budget} this {agent.period}",
                code=DenyCode.BUDGET_EXCEEDED,
            )
        return self._quiet(f"{agent.cost} {agent.currency} within the {remaining} left this {agent.period}")


RULE_CLASSES: Mapping[str, type[PolicyRule]] = {
    cls.kind: cls for cls in (BlockedRule, KycRule, RateLimitRule, ApprovalRule, AgentControlsRule)
}


def build_rules(policy: Policy) -> tuple[PolicyRule, ...]:
    """The rule objects for ``policy``, in document order."""
    return tuple(RULE_CLASSES[spec.kind].from_spec(spec, policy) for spec in policy.rules)
