"""The action lifecycle shared by interventions (seed 000), agent actions (seed 001) and operator actions (seed 003).

    proposed ──► pending_approval ──► approved ──► executing ──► completed ──► rolling_back ──► rolled_back
        │               │  │  │           │            │                          │    ▲
        │               │  │  └► cancelled ◄┘            └► failed ──► rolling_back  └► rollback_failed
        └► blocked      │  └► timed_out
                        └► rejected

Guards read ``ActionFacts`` (derived from the row, its approvals and the clock), so the rules that decide
"may this run?" live in one place: nothing reaches ``executing`` without a policy ``allow`` or a quorum of
approvals bound to the action's current hash (or a policy-chosen timeout action of ``approve``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from saferails.lifecycle import Guard, StateMachine, Transition

PROPOSED = "proposed"
PENDING_APPROVAL = "pending_approval"
APPROVED = "approved"
REJECTED = "rejected"
TIMED_OUT = "timed_out"
BLOCKED = "blocked"
CANCELLED = "cancelled"
EXECUTING = "executing"
COMPLETED = "completed"
FAILED = "failed"
ROLLING_BACK = "rolling_back"
ROLLED_BACK = "rolled_back"
ROLLBACK_FAILED = "rollback_failed"

ALLOW = "allow"
NEEDS_APPROVAL = "needs_approval"
DENY = "deny"


@dataclass(frozen=True, slots=True)
class ActionFacts:
    """What the guards may know about an action at the moment of a transition."""

    decision_outcome: str
    min_approvals: int
    valid_approvals: int
    rejections: int
    deadline_passed: bool
    timeout_action: str | None
    not_before_passed: bool  # scheduled_for is unset or has come


def _decision_is(outcome: str) -> Guard:
    def guard(f: ActionFacts) -> str | None:  # Guard subjects are typed per machine; here ActionFacts
        return None if f.decision_outcome == outcome else f"policy decision is {f.decision_outcome!r}, not {outcome!r}"

    return guard


def _quorum_or_timeout_approve(f: ActionFacts) -> str | None:
    if f.decision_outcome == ALLOW:
        return None
    if f.decision_outcome == NEEDS_APPROVAL and f.valid_approvals >= max(f.min_approvals, 1):
        return None
    if f.decision_outcome == NEEDS_APPROVAL and f.deadline_passed and f.timeout_action == "approve":
        return None
    return f"{f.valid_approvals} of {f.min_approvals} required approvals for the current action"


def _rejected_or_timeout_reject(f: ActionFacts) -> str | None:
    if f.rejections > 0 or (f.deadline_passed and f.timeout_action == "reject"):
        return None
    return "no rejection recorded and the approval has not timed out with action 'reject'"


def _deadline_passed(f: ActionFacts) -> str | None:
    return None if f.deadline_passed else "the approval deadline has not passed"


def _scheduled_time_reached(f: ActionFacts) -> str | None:
    return None if f.not_before_passed else "the action is scheduled for later"


ACTION_MACHINE = StateMachine.define(
    "action",
    initial=PROPOSED,
    final=[BLOCKED, REJECTED, TIMED_OUT, CANCELLED, COMPLETED, FAILED, ROLLED_BACK],
    transitions=[
        Transition(PROPOSED, PENDING_APPROVAL, "request_approval", (_decision_is(NEEDS_APPROVAL),)),
        Transition(PROPOSED, APPROVED, "auto_approve", (_decision_is(ALLOW),)),
        Transition(PROPOSED, BLOCKED, "block", (_decision_is(DENY),)),
        Transition(PENDING_APPROVAL, APPROVED, "approve", (_quorum_or_timeout_approve,)),
        Transition(PENDING_APPROVAL, REJECTED, "reject", (_rejected_or_timeout_reject,)),
        Transition(PENDING_APPROVAL, TIMED_OUT, "time_out", (_deadline_passed,)),
        Transition(PENDING_APPROVAL, CANCELLED, "cancel"),
        Transition(APPROVED, EXECUTING, "execute", (_quorum_or_timeout_approve, _scheduled_time_reached)),
        Transition(APPROVED, CANCELLED, "cancel"),
        Transition(EXECUTING, COMPLETED, "complete"),
        Transition(EXECUTING, FAILED, "fail"),
        Transition(COMPLETED, ROLLING_BACK, "roll_back"),
        Transition(FAILED, ROLLING_BACK, "roll_back"),
        Transition(ROLLING_BACK, ROLLED_BACK, "finish_rollback"),
        Transition(ROLLING_BACK, ROLLBACK_FAILED, "fail_rollback"),
        Transition(ROLLBACK_FAILED, ROLLING_BACK, "retry_rollback"),
    ],
    descriptions={
        PROPOSED: "recorded, policy not yet applied (only inside the proposing transaction)",
        PENDING_APPROVAL: "waiting for human approval",
        APPROVED: "may execute (auto-approved by policy or by a quorum of approvers)",
        REJECTED: "an authorised approver rejected it",
        TIMED_OUT: "nobody decided before the deadline",
        BLOCKED: "the policy refused it (blocked, rate-limited, KYC missing, evaluation error)",
        CANCELLED: "withdrawn before execution",
        EXECUTING: "the handler is applying it",
        COMPLETED: "applied; can be rolled back",
        FAILED: "execution failed; partial effects were compensated",
        ROLLING_BACK: "the handler is restoring the captured pre-state",
        ROLLED_BACK: "pre-state restored; cannot be rolled back again",
        ROLLBACK_FAILED: "restoring failed; a rollback may be retried",
    },
)

PENDING_STATES = frozenset({PENDING_APPROVAL})
FINAL_STATES = ACTION_MACHINE.final


def deadline_passed(deadline: datetime | None, now: datetime) -> bool:
    return deadline is not None and now >= deadline
