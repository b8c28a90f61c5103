"""The action service: the one core API every edge (CLI, Python API, Prefect flows, runbook steps) goes through.

Each public method is one transaction: it validates, changes state through ``saferails.transitions`` (which
writes the audit record and outbox event with the state) and commits, or raises a typed error having written
nothing.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from saferails import audit, transitions
from saferails.actions import lifecycle as lc
from saferails.actions.approvers import StoredPrincipal, approval_requirement, policy_principal
from saferails.actions.models import ActionView, Proposal, action_hash
from saferails.actions.repository import ActionFilter, ActionRepository
from saferails.actions.types import action_scope, validate_params
from saferails.agents.repository import AgentRepository
from saferails.agents.service import agent_facts
from saferails.approvals.lockout import Lockout, check_lockout, record_refusal
from saferails.boundary import identifier_problem, typed_errors
from saferails.clock import Clock, SystemClock, as_utc
from saferails.errors import (
    ActionChanged,
    ApprovalCodesNotConfigured,
    ApprovalError,
    ApprovalExpired,
    IdempotencyConflict,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    SaferailsError,
    SelfApprovalRefused,
)
from saferails.notify.base import Notification, Notifier
from saferails.policy import (
    ActionRequest,
    AgentFacts,
    ApprovalRequirement,
    ApproverStanding,
    Decision,
    Outcome,
    Policy,
    PolicyEngine,
    RuleResult,
    judge_approver,
)
from saferails.policy.loader import policy_to_yaml
from saferails.store.db import read_transaction, transaction
from saferails.store.tables import Action, Approval, PolicyDocument, Principal
from saferails.transitions import AuditSubject, EntityKind

ENTITY = "action"
SYSTEM_ACTOR = "system:policy"

# Verifies a one-time approval code: (session, action row, approver, code, now) -> None or raises
# ApprovalCodeInvalid. Installed by the approval-code module. Without one, every approval whose decision
# requires codes is refused (ApprovalCodesNotConfigured): there is no unchecked mode.
CodeVerifier = Callable[[Session, Action, str, str | None, datetime], None]
# Called inside the proposing transaction when an action starts waiting for approval (issues one-time codes);
# returns the messages to send once that transaction has committed.
ApprovalRequestHook = Callable[[Session, Action], "builtins.list[Notification]"]
# Called in the proposing transaction with a new, approved action not yet written (see ``ActionService.propose``).
Claim = Callable[[Session, transitions.Draft], None]


def _facts(session: Session, row: Action, now: datetime) -> lc.ActionFacts:
    return _facts_many(session, [row], now)[0]


def _facts_many(session: Session, rows: Sequence[Action], now: datetime) -> builtins.list[lc.ActionFacts]:
    """What the action machine's guards see, for many rows with ONE approvals query."""
    # A proposed action, or one not yet written (a ``Draft`` of this transaction), cannot have approvals yet:
    # skip the query on the hot proposal path.
    asked = [r.id for r in rows if r.state != lc.PROPOSED and not isinstance(r, transitions.Draft)]
    approvals = ActionRepository(session).approvals_for(asked) if asked else {}
    return [_facts_of(row, approvals.get(row.id, []), now) for row in rows]


def _facts_of(row: Action, approvals: Sequence[Approval], now: datetime) -> lc.ActionFacts:
    valid = {a.approver for a in approvals if a.decision == "approve" and a.action_hash == row.action_hash}
    deadline = None if row.approval_deadline is None else as_utc(row.approval_deadline)
    return lc.ActionFacts(
        decision_outcome=str(row.decision.get("outcome", lc.DENY)),
        min_approvals=row.min_approvals,
        valid_approvals=len(valid),
        rejections=sum(1 for a in approvals if a.decision == "reject"),
        deadline_passed=lc.deadline_passed(deadline, now),
        timeout_action=row.timeout_action,
        not_before_passed=row.scheduled_for is None or as_utc(row.scheduled_for) <= now,
    )


def _payload(row: Action) -> dict[str, Any]:
    return {
        "action_id": row.id,
        "action_type": row.action_type,
        "target": row.target,
        "impact": row.impact,
        "state": row.state,
        "proposer": row.proposer,
        "priority": row.priority,
    }


ACTION_KIND = transitions.register_entity(
    EntityKind(
        entity_type=ENTITY,
        model=Action,
        machine=lc.ACTION_MACHINE,
        event_prefix="Action",
        audit_subject=lambda r: AuditSubject(r.action_type, r.target, r.tenant),
        subject=_facts,
        subjects=_facts_many,
        payload=_payload,
        # What _facts_of, _payload and the audit subject read (a Stored row holds these and id, state, version).
        columns=("action_type", "target", "tenant", "impact", "proposer", "priority", "decision", "min_approvals",
                 "action_hash", "approval_deadline", "timeout_action", "scheduled_for"),
    )
)
# The columns a timeout resolution reads from a Stored row beyond ACTION_KIND.columns (TimeoutOutcome's run).
TIMEOUT_COLUMNS = transitions.stored_columns(ACTION_KIND, ("flow_run_id",))


@dataclass(frozen=True, slots=True)
class TimeoutOutcome:
    """One action of ``resolve_timeouts``: its new state (and flow run), or the typed error that left it as is."""

    action_id: str
    state: str | None = None
    flow_run_id: str | None = None
    error: SaferailsError | None = None


def _timeout_changes(
    rows: Mapping[str, Action | transitions.Stored], action_ids: Sequence[str], actor: str, now: datetime
) -> builtins.list[transitions.Change]:
    """The timeout action of each row as a change (a missing row gets a change that fails with NotFound)."""
    decided = {"decided_at": now}  # one mapping for the batch: transition_many writes rows sharing it together
    changes = []
    for action_id in action_ids:
        row = rows.get(action_id)
        timeout_action = (row.timeout_action if row is not None else None) or "fail"
        details = {"timeout_action": timeout_action,
                   "deadline": row.approval_deadline if row is not None else None}
        changes.append(transitions.Change(action_id, _TIMEOUT_TARGETS.get(timeout_action, lc.TIMED_OUT), actor,
                                          "approval_timed_out", details, decided))
    return changes


_TIMEOUT_TARGETS = {"approve": lc.APPROVED, "reject": lc.REJECTED}


_DECIDED = {
    Outcome.ALLOW: (lc.APPROVED, "auto_approved"),
    Outcome.NEEDS_APPROVAL: (lc.PENDING_APPROVAL, "approval_requested"),
    Outcome.DENY: (lc.BLOCKED, "blocked"),
}


def _new_action(
    proposal: Proposal, params: dict[str, Any], digest: str, decision: Decision, now: datetime,
    actor_role: str | None, *, flow_run_id: str | None = None,
) -> transitions.Draft:
    """The new row for ``proposal`` as decided, with the audit record's actor role (seed 003): a draft that
    ``transitions.insert_drafts`` writes once it has reached its decided state."""
    approval = decision.approval
    return transitions.Draft(
        Action,
        id=str(uuid.uuid4()),
        action_type=proposal.action_type,
        target=proposal.target,
        params=params,
        proposer=proposal.proposer,
        reason=proposal.reason,
        tenant=proposal.tenant,
        priority=proposal.priority,
        scheduled_for=proposal.scheduled_for,
        idempotency_key=proposal.idempotency_key or str(uuid.uuid4()),
        action_hash=digest,
        impact=decision.impact.value,
        decision=decision.to_dict(),
        min_approvals=approval.min_approvals if approval else 0,
        approval_deadline=now + approval.timeout if approval else None,
        timeout_action=approval.timeout_action if approval else None,
        scope=action_scope(proposal.action_type, params),
        actor_role=actor_role,
        flow_run_id=flow_run_id,
    )


def _actor_role(row: StoredPrincipal | None, groups: Iterable[str]) -> str | None:
    """Seed 003's "actor role": the proposer's roles (``operator``, ``agent``), or, for a principal that has
    none (one known only to the policy), its groups, as the policy saw them when it decided."""
    names = sorted(row.roles) if row is not None and row.roles else sorted(groups)
    return ",".join(str(n) for n in names)[:500] or None


class _Counter:
    """The policy's RateLimitCounter over the store, inside the proposing transaction."""

    def __init__(self, repo: ActionRepository) -> None:
        self._repo = repo

    def count(self, proposer: str, action_type: str, since: datetime) -> int:
        return self._repo.count(proposer, action_type, since)

    def oldest_since(self, proposer: str, action_type: str, since: datetime) -> datetime | None:
        return self._repo.oldest_since(proposer, action_type, since)

    def agent_facts(self, proposer: str, action_type: str, params: Mapping[str, Any], now: datetime,
                    ) -> AgentFacts | None:
        return agent_facts(self._repo.session, proposer, action_type, params, now)


class _BatchCounter(_Counter):
    """The counter for one ``propose_many`` batch, which runs without autoflush: each (proposer, type, window)
    is counted in the store ONCE per batch, and the batch's own accepted proposals (not yet written) are added in
    memory, so rate limits see the earlier proposals of the batch exactly as one-at-a-time proposing would.

    Agent facts (budgets sum the store's spending) need the batch's rows in the store: for a registered agent,
    ``settle`` first writes the proposals decided so far in their decided states; whether a proposer is an
    agent at all comes with the batch's principals (``agents``: one query for both)."""

    def __init__(self, repo: ActionRepository, settle: Callable[[], None], agents: dict[str, bool]) -> None:
        super().__init__(repo)
        self._settle = settle
        self._base: dict[tuple[str, str, datetime], int] = {}
        self._oldest: dict[tuple[str, str, datetime], datetime | None] = {}
        self._added: builtins.list[tuple[str, str, datetime]] = []
        self._flushed = 0  # how many of ``_added`` are already in the store (settled for agent facts)
        self._agents = dict(agents)  # proposer -> registered agent? (read with the principals)

    def accepted(self, row: transitions.Draft) -> None:
        self._added.append((row.proposer, row.action_type, as_utc(row.created_at)))

    def _matching(self, added: Sequence[tuple[str, str, datetime]], proposer: str, action_type: str,
                  since: datetime) -> builtins.list[datetime]:
        return [at for p, t, at in added if p == proposer and t == action_type and at >= since]

    def count(self, proposer: str, action_type: str, since: datetime) -> int:
        key = (proposer, action_type, since)
        if key not in self._base:
            flushed = self._matching(self._added[:self._flushed], proposer, action_type, since)
            self._base[key] = super().count(proposer, action_type, since) - len(flushed)
        return self._base[key] + len(self._matching(self._added, proposer, action_type, since))

    def oldest_since(self, proposer: str, action_type: str, since: datetime) -> datetime | None:
        key = (proposer, action_type, since)
        if key not in self._oldest:
            self._oldest[key] = super().oldest_since(proposer, action_type, since)
        times = [t for t in (self._oldest[key], *self._matching(self._added, proposer, action_type, since)) if t]
        return min(times) if times else None

    def agent_facts(self, proposer: str, action_type: str, params: Mapping[str, Any], now: datetime,
                    ) -> AgentFacts | None:
        if proposer not in self._agents:
            self._agents[proposer] = AgentRepository(self._repo.session).exists(proposer)
        if not self._agents[proposer]:
            return None
        self._settle()
        self._flushed = len(self._added)
        return super().agent_facts(proposer, action_type, params, now)


class ActionService:
    """Propose, decide on and inspect actions. Execution and rollback build on this (see ``saferails.execution``)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        policy: Policy,
        clock: Clock | None = None,
        *,
        code_verifier: CodeVerifier | None = None,
        on_approval_requested: ApprovalRequestHook | None = None,
        notifier: Notifier | None = None,
        lockout: Lockout | None = None,
    ) -> None:
        self.sessions = sessions
        self.lockout = lockout or Lockout()
        self.policy = policy
        self.engine = PolicyEngine(policy)
        self.clock: Clock = clock or SystemClock()
        self.code_verifier = code_verifier
        self.on_approval_requested = on_approval_requested
        self.notifier = notifier
        self._policy_recorded = False

    # --- reading ------------------------------------------------------------------------------------------
    def get(self, action_id: str) -> ActionView:
        if not isinstance(action_id, str) or identifier_problem(action_id) is not None:
            raise NotFound(ENTITY, str(action_id)[:200])
        with read_transaction(self.sessions) as session:
            return self._view(session, self._require(session, action_id))

    def list(self, f: ActionFilter | None = None) -> builtins.list[ActionView]:
        with read_transaction(self.sessions) as session:
            repo = ActionRepository(session)
            rows = repo.list(f or ActionFilter())
            approvals = repo.approvals_for([r.id for r in rows])
            return [ActionView.from_row(r, approvals[r.id]) for r in rows]

    def check(self, proposal: Proposal) -> Decision:
        """What the policy would decide for ``proposal`` right now, with reasons. Writes nothing."""
        params = validate_params(proposal.action_type, proposal.params)
        with read_transaction(self.sessions) as session:
            repo = ActionRepository(session)
            return self.engine.evaluate(
                self._request(repo, proposal, params), now=self.clock.now(), counter=_Counter(repo)
            )

    # --- principals ---------------------------------------------------------------------------------------
    def upsert_principal(
        self,
        principal_id: str,
        *,
        display_name: str = "",
        email: str | None = None,
        groups: builtins.list[str] | None = None,
        kyc_verified: bool = False,
        actor: str = "system:admin",
    ) -> None:
        """Create or update a principal (who may propose / approve, and whether KYC is verified). Audited.

        Trusted in-process setup only (tests, the demo, the composition root): it checks no caller. Edges (CLI,
        HTTP) must go through ``saferails.identity.IdentityService.add_principal`` / ``set_groups``, which only an
        admin may call."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            row = session.get(Principal, principal_id)
            before = None if row is None else {"groups": row.groups, "kyc_verified": row.kyc_verified}
            if row is None:
                row = Principal(id=principal_id, created_at=now)
                session.add(row)
            row.display_name = display_name or row.display_name or principal_id
            row.email = email if email is not None else row.email
            row.groups = sorted(set(groups if groups is not None else row.groups or []))
            row.kyc_verified = kyc_verified
            session.flush()
            audit.append(
                session,
                audit.AuditEntry(
                    actor=actor,
                    event="principal_upserted",
                    entity_type="principal",
                    entity_id=principal_id,
                    details={"before": before, "after": {"groups": row.groups, "kyc_verified": row.kyc_verified}},
                ),
                now=now,
            )

    # --- proposing ----------------------------------------------------------------------------------------
    def propose(
        self, proposal: Proposal, *, flow_run_id: str | None = None, actor: str = "system:orchestrator",
        claim: Claim | None = None,
    ) -> ActionView:
        """Record ``proposal``, apply the policy and move it to ``pending_approval``, ``approved`` or ``blocked``.

        Raises ``UnknownActionType`` / ``InvalidParams`` before writing anything. A policy refusal is not an
        exception: the action is recorded as ``blocked`` with the decision (callers map that to an error at
        their edge). Re-proposing with the same idempotency key returns the existing action; with the same key
        but a different action it raises ``IdempotencyConflict``.

        ``flow_run_id`` attaches the orchestrator run carrying the action in the same transaction, exactly as
        ``attach_flow_run`` (audited as ``actor``) would right after: one commit instead of two.

        ``claim`` (``ExecutionService.propose_and_run``) is called inside the proposing transaction with a NEW
        action the policy approved, before its row is written: it may move it on (to ``executing``) with
        ``transitions.transition`` so the proposal and the claim commit together. It is not called for an action
        re-proposed under its idempotency key, nor for one that needs approval or was refused.
        """
        params = validate_params(proposal.action_type, proposal.params)
        digest = action_hash(proposal.action_type, proposal.target, params)
        now = self.clock.now()
        self._record_policy(now)
        outbox: builtins.list[Notification] = []
        attach = None if flow_run_id is None else (flow_run_id, actor)
        try:
            with transaction(self.sessions) as session:
                view = self._propose(session, proposal, params, digest, now, outbox, attach=attach, claim=claim)
                if view.flow_run_id != flow_run_id:  # re-proposed under its idempotency key: attach to it now
                    view = self._attached(session, view, flow_run_id, actor, now)
            self._deliver(outbox)
            return view
        except IntegrityError:
            # Two proposers raced on one idempotency key: the loser returns the winner's action.
            if proposal.idempotency_key is None:
                raise
            with transaction(self.sessions) as session:
                existing = ActionRepository(session).by_idempotency_key(proposal.tenant, proposal.idempotency_key)
                if existing is None:
                    raise
                view = self._view(session, self._same_or_conflict(existing, digest))
                return self._attached(session, view, flow_run_id, actor, now)

    def propose_many(self, proposals: builtins.list[Proposal]) -> builtins.list[ActionView]:
        """Propose several actions in ONE transaction: all are recorded with their decisions, or none is.

        Every proposal is validated before anything is written. Rate limits see the earlier proposals of the
        same batch (counted once per proposer, type and window, see ``_BatchCounter``). Idempotency keys behave
        as in ``propose``, within the batch too. The rows, audit records and outbox events are written with
        set-based statements (``transitions.create_many`` / ``transition_many``).
        """
        prepared = []
        for proposal in proposals:
            params = validate_params(proposal.action_type, proposal.params)
            prepared.append((proposal, params, action_hash(proposal.action_type, proposal.target, params)))
        now = self.clock.now()
        self._record_policy(now)
        outbox: builtins.list[Notification] = []
        with transaction(self.sessions) as session:
            views = self._propose_batch(session, prepared, now, outbox)
        self._deliver(outbox)
        return views

    def _propose(
        self,
        session: Session,
        proposal: Proposal,
        params: dict[str, Any],
        digest: str,
        now: datetime,
        outbox: builtins.list[Notification],
        *,
        decision: Decision | None = None,
        attach: tuple[str, str] | None = None,
        claim: Claim | None = None,
    ) -> ActionView:
        return self._propose_batch(session, [(proposal, params, digest)], now, outbox, decision=decision,
                                   attach=attach, claim=claim)[0]

    def _propose_batch(
        self,
        session: Session,
        prepared: Sequence[tuple[Proposal, dict[str, Any], str]],
        now: datetime,
        outbox: builtins.list[Notification],
        *,
        decision: Decision | None = None,
        attach: tuple[str, str] | None = None,
        claim: Claim | None = None,
    ) -> builtins.list[ActionView]:
        """Decide and record ``prepared`` proposals in the caller's transaction. ``decision`` (one proposal only)
        replaces the policy's; ``attach`` (one proposal only: flow run id, actor) attaches the orchestrator run
        to a NEW action as ``_attach`` would, its ``flow_run_attached`` record written with the batch's (a
        re-proposed action is returned as it is: the caller attaches it); ``claim`` is ``propose``'s.
        Proposals are decided in order, without autoflush, on ``Draft`` rows; the rows and their
        ``action_proposed`` + decision records are then written together (``settle``: one INSERT per table for
        the batch, or per stretch of it before an agent's budget is read)."""
        repo = ActionRepository(session)
        views: builtins.list[ActionView | None] = []
        pending: builtins.list[tuple[transitions.Draft, Decision, transitions.New]] = []
        fresh: builtins.list[tuple[int, transitions.Draft, Decision]] = []
        repeats: builtins.list[tuple[int, Action | transitions.Draft]] = []
        by_key: dict[tuple[str, str], Action | transitions.Draft] = {}
        by_key |= repo.by_idempotency_keys({(p.tenant, p.idempotency_key) for p, _, _ in prepared
                                           if p.idempotency_key is not None})
        principals, agents = repo.proposers({p.proposer for p, _, _ in prepared})

        def settle() -> None:
            """Write the proposals decided so far: created, moved to their decided states, inserted."""
            if not pending:
                return
            transitions.create_many(session, ENTITY, [new for _, _, new in pending], now=now)
            changes = []
            for row, chosen, _ in pending:
                target, event = _DECIDED[chosen.outcome]
                changes.append(transitions.Change(
                    row.id, target, SYSTEM_ACTOR, event, {"decision": row.decision},
                    {"decided_at": now} if chosen.outcome != Outcome.NEEDS_APPROVAL else None,
                ))
            # Created by this transaction and not yet written: nobody else can see them, let alone lock them.
            applied = transitions.transition_many(session, ENTITY, changes, now=now,
                                                  locked_rows={row.id: row for row, _, _ in pending})
            for result in applied:
                if result.error is not None:  # a fresh row that the machine refuses is a bug, not an input problem
                    raise result.error
            if attach is not None:
                for row, _, _ in pending:
                    transitions.record_event(session, ENTITY, row, actor=attach[1], event="flow_run_attached",
                                             now=now, details={"flow_run_id": attach[0], "previous": None})
            if claim is not None:
                for row, _, _ in pending:
                    if row.state == lc.APPROVED:
                        claim(session, row)
            transitions.insert_drafts(session, ENTITY, [row for row, _, _ in pending])
            pending.clear()

        counter = _BatchCounter(repo, settle, {p.proposer: p.proposer in agents for p, _, _ in prepared})
        with session.no_autoflush, transitions.batched(session):
            for proposal, params, digest in prepared:
                key = (proposal.tenant, proposal.idempotency_key or "")
                existing = by_key.get(key) if proposal.idempotency_key is not None else None
                if existing is not None:
                    # Judged at once, but seen after the batch is written (a row of this batch in its decided state).
                    repeats.append((len(views), self._same_or_conflict(existing, digest)))
                    views.append(None)
                    continue
                principal = principals.get(proposal.proposer)
                request = self._request(repo, proposal, params, principal)
                chosen = decision or self.engine.evaluate(request, now=now, counter=counter)
                row = _new_action(proposal, params, digest, chosen, now,
                                  _actor_role(principal, request.proposer.groups),
                                  flow_run_id=None if attach is None else attach[0])
                if proposal.idempotency_key is not None:
                    by_key[key] = row
                transitions.add_new(session, ENTITY, row, now=now)
                pending.append((row, chosen, transitions.New(
                    row, actor=proposal.proposer, event="action_proposed",
                    details={"params": params, "reason": proposal.reason, "priority": proposal.priority,
                             "scheduled_for": proposal.scheduled_for, "action_hash": digest},
                )))
                if chosen.outcome != Outcome.DENY:
                    counter.accepted(row)
                fresh.append((len(views), row, chosen))
                views.append(None)
            settle()
        for index, row, chosen in fresh:
            if chosen.outcome == Outcome.NEEDS_APPROVAL and self.on_approval_requested is not None:
                stored = self._require(session, row.id)
                outbox.extend(self.on_approval_requested(session, stored))
                views[index] = self._view(session, stored)
            else:
                views[index] = ActionView.from_row(row, [])
        for index, repeated in repeats:
            views[index] = self._view(session, repeated)
        return [view for view in views if view is not None]

    @staticmethod
    def _same_or_conflict(existing: Action | transitions.Draft, digest: str) -> Action | transitions.Draft:
        """``existing`` when it is the same action as the one re-proposed under its idempotency key."""
        if existing.action_hash != digest:
            raise IdempotencyConflict(
                f"idempotency key {existing.idempotency_key!r} was used for action {existing.id} "
                "with a different type, target or params",
                action_id=existing.id,
            )
        return existing

    def request_approval(
        self, proposal: Proposal, requirement: ApprovalRequirement, *, source: str, prompt: str = ""
    ) -> ActionView:
        """Record ``proposal`` as waiting for the approval ``requirement`` given by its caller (a runbook's
        human-approval step), instead of the policy's. The policy still runs first: an action it denies is
        recorded ``blocked`` as usual. ``source`` names the requirement (e.g. ``runbook:investigate-threat:approve``)
        and appears as the fired rule. Approvals then go through ``approve``/``reject`` like any other."""
        params = validate_params(proposal.action_type, proposal.params)
        digest = action_hash(proposal.action_type, proposal.target, params)
        now = self.clock.now()
        self._record_policy(now)
        outbox: builtins.list[Notification] = []
        with transaction(self.sessions) as session:
            repo = ActionRepository(session)
            decision = self.engine.evaluate(self._request(repo, proposal, params), now=now, counter=_Counter(repo))
            if decision.outcome != Outcome.DENY:
                rule = RuleResult(
                    rule_id=source,
                    kind="requires_approval",
                    fired=True,
                    outcome=Outcome.NEEDS_APPROVAL,
                    message=prompt or f"approval required by {source}",
                    approval=requirement,
                )
                decision = Decision(
                    outcome=Outcome.NEEDS_APPROVAL,
                    impact=decision.impact,
                    code=None,
                    reasons=(*decision.reasons, rule),
                    policy_version=decision.policy_version,
                    policy_fingerprint=decision.policy_fingerprint,
                    approval=requirement,
                )
            view = self._propose(session, proposal, params, digest, now, outbox, decision=decision)
        self._deliver(outbox)
        return view

    def attach_flow_run(self, action_id: str, flow_run_id: str, *, actor: str = "system:orchestrator") -> None:
        """Remember which orchestrator run carries this action (sweeps use it to end orphaned paused runs; the API
        resumes it). Idempotent: attaching the run already attached writes nothing; attaching another run is
        audited with the ``previous`` one. State is unchanged. ``NotFound`` for an unknown action."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            self._attach(session, action_id, flow_run_id, actor, now)

    def _attached(
        self, session: Session, view: ActionView, flow_run_id: str | None, actor: str, now: datetime
    ) -> ActionView:
        """``view`` with ``flow_run_id`` attached in the caller's transaction (unchanged when it is None)."""
        if flow_run_id is None:
            return view
        self._attach(session, view.id, flow_run_id, actor, now)
        return replace(view, flow_run_id=flow_run_id)

    def attach_locked(self, session: Session, row: Action, flow_run_id: str, actor: str) -> None:
        """``attach_flow_run`` inside the caller's transaction, for ``row`` that it already holds locked
        (``transitions.lock_row``): what ``ExecutionService.attach_and_run`` does in its claiming transaction."""
        self._attach(session, row.id, flow_run_id, actor, self.clock.now(), locked=row)

    def _attach(self, session: Session, action_id: str, flow_run_id: str, actor: str, now: datetime, *,
                locked: Action | None = None) -> None:
        row = transitions.lock_row(session, ACTION_KIND, action_id) if locked is None else locked
        if row.flow_run_id == flow_run_id:
            return
        previous = row.flow_run_id
        row.flow_run_id = flow_run_id
        transitions.record_event(
            session,
            ENTITY,
            row,
            actor=actor,
            event="flow_run_attached",
            now=now,
            details={"flow_run_id": flow_run_id, "previous": previous},
        )

    # --- deciding -----------------------------------------------------------------------------------------
    def approve(
        self,
        action_id: str,
        approver: str,
        *,
        reason: str = "",
        code: str | None = None,
        action_hash: str | None = None,
        channel: str = "api",
    ) -> ActionView:
        """Record one approval; when the quorum of distinct valid approvals is reached the action moves to
        ``approved``. A repeated approval by the same approver counts once (audited, no error).

        ``approver`` must be the id of the AUTHENTICATED principal (edges pass ``principal.id`` from
        ``IdentityService.authenticate``, never a name typed by the caller) and ``code`` its one-time code:
        codes are required unless the decision waives them (``require_codes: false`` with a reason), and a
        service without a code verifier refuses such approvals (``ApprovalCodesNotConfigured``).

        Every refusal below is audited (``approval_refused``: approver, channel, internal reason) in its own
        transaction, leaving the action unchanged; after ``lockout.threshold`` refusals within
        ``lockout.window`` the approver is refused with ``ApprovalLockedOut`` on this action for a while.

        Raises ``InvalidTransition`` (not pending), ``ApprovalExpired``, ``SelfApprovalRefused``,
        ``PermissionDenied``, ``ActionChanged`` (``action_hash`` given and stale), ``ApprovalCodeInvalid``,
        ``ApprovalCodesNotConfigured`` or ``ApprovalLockedOut``.
        """
        return self._decide(action_id, approver, "approve", reason, code, action_hash, channel)

    def reject(
        self,
        action_id: str,
        approver: str,
        *,
        reason: str,
        code: str | None = None,
        action_hash: str | None = None,
        channel: str = "api",
    ) -> ActionView:
        """One authorised rejection ends the approval: the action moves to ``rejected``. Same checks (codes,
        audit of refusals, lockout) as ``approve``."""
        return self._decide(action_id, approver, "reject", reason, code, action_hash, channel)

    def _decide(
        self,
        action_id: str,
        approver: str,
        decision: str,
        reason: str,
        code: str | None,
        claimed_hash: str | None,
        channel: str,
    ) -> ActionView:
        now = self.clock.now()
        try:
            return self._decide_once(action_id, approver, decision, reason, code, claimed_hash, channel, now)
        except ApprovalError as exc:
            # The refused attempt's transaction rolled back; record the refusal on its own, state untouched.
            with transaction(self.sessions) as session:
                row = transitions.lock_row(session, ACTION_KIND, action_id)
                record_refusal(session, row, approver=approver, decision=decision, channel=channel, error=exc, now=now)
            raise

    def _decide_once(
        self,
        action_id: str,
        approver: str,
        decision: str,
        reason: str,
        code: str | None,
        claimed_hash: str | None,
        channel: str,
        now: datetime,
    ) -> ActionView:
        with transaction(self.sessions) as session:
            row = transitions.lock_row(session, ACTION_KIND, action_id)
            check_lockout(session, self.lockout, row.id, approver, now)
            self._authorise(session, row, approver, claimed_hash, now)
            codes = self._check_code(session, row, approver, code, now)
            repo = ActionRepository(session)
            previous = next((a for a in repo.approvals(row.id) if a.approver == approver), None)
            if previous is not None and previous.decision == decision and previous.action_hash == row.action_hash:
                transitions.record_event(
                    session,
                    ENTITY,
                    row,
                    actor=approver,
                    event="duplicate_decision_ignored",
                    now=now,
                    details={"decision": decision, "channel": channel} | codes,
                )
                return self._view(session, row)
            if previous is not None:
                # A changed mind or an approval of an older version: the latest word of this approver counts.
                session.delete(previous)
                session.flush()
            session.add(
                Approval(
                    id=str(uuid.uuid4()),
                    action_id=row.id,
                    approver=approver,
                    decision=decision,
                    reason=reason,
                    action_hash=row.action_hash,
                    channel=channel,
                    created_at=now,
                )
            )
            session.flush()
            details = {
                "decision": decision,
                "reason": reason,
                "channel": channel,
                "action_hash": row.action_hash,
            } | codes
            facts = _facts(session, row, now)
            if decision == "reject":
                transitions.transition(
                    session,
                    ENTITY,
                    row.id,
                    lc.REJECTED,
                    actor=approver,
                    event="rejected",
                    now=now,
                    details=details,
                    changes={"decided_at": now},
                )
            elif facts.valid_approvals >= row.min_approvals:
                transitions.transition(
                    session,
                    ENTITY,
                    row.id,
                    lc.APPROVED,
                    actor=approver,
                    event="approved",
                    now=now,
                    details=details | {"approvals": facts.valid_approvals},
                    changes={"decided_at": now},
                )
            else:
                transitions.record_event(
                    session,
                    ENTITY,
                    row,
                    actor=approver,
                    event="approval_recorded",
                    now=now,
                    details=details | {"approvals": facts.valid_approvals, "required": row.min_approvals},
                )
            return self._view(session, row)

    def _check_code(
        self, session: Session, row: Action, approver: str, code: str | None, now: datetime
    ) -> dict[str, Any]:
        """Spend ``approver``'s one-time code, or confirm the decision waived codes; what to audit about it."""
        requirement: dict[str, Any] = row.decision.get("approval") or {}
        if requirement.get("require_codes") is False:
            rules = ", ".join(requirement.get("rule_ids") or []) or "-"
            return {"codes": "waived", "codes_waiver": requirement.get("codes_waiver") or f"waived by rule(s) {rules}"}
        if self.code_verifier is None:
            raise ApprovalCodesNotConfigured(
                f"action {row.id} requires one-time approval codes and this service cannot check them; "
                "approvals are refused until codes are configured",
                action_id=row.id,
                approver=approver,
                internal_reason="no_code_verifier",
            )
        self.code_verifier(session, row, approver, code, now)
        return {"codes": "verified"}

    def _authorise(self, session: Session, row: Action, approver: str, claimed_hash: str | None, now: datetime) -> None:
        if row.state != lc.PENDING_APPROVAL:
            raise InvalidTransition(ENTITY, row.state, lc.APPROVED, entity_id=row.id)
        if row.approval_deadline is not None and now >= as_utc(row.approval_deadline):
            raise ApprovalExpired(
                f"the approval window for action {row.id} closed at {as_utc(row.approval_deadline).isoformat()}",
                action_id=row.id,
            )
        requirement = approval_requirement(row)
        standing = judge_approver(requirement, policy_principal(approver, session.get(Principal, approver)),
                                  row.proposer)
        if standing is ApproverStanding.PROPOSER:
            raise SelfApprovalRefused(
                f"{approver} proposed action {row.id} and may not approve it", action_id=row.id, approver=approver
            )
        if standing is not ApproverStanding.AUTHORISED:
            users = sorted(requirement.users) if requirement is not None else []
            groups = sorted(requirement.groups) if requirement is not None else []
            raise PermissionDenied(
                f"{approver} is not authorised to decide on action {row.id} (approvers: users "
                f"{users or '-'}, groups {groups or '-'})",
                action_id=row.id,
                approver=approver,
            )
        if claimed_hash is not None and claimed_hash != row.action_hash:
            raise ActionChanged(
                f"the approval was given for a different version of action {row.id}",
                action_id=row.id,
                claimed_hash=claimed_hash,
                current_hash=row.action_hash,
            )

    def cancel(self, action_id: str, actor: str, *, reason: str) -> ActionView:
        """Withdraw an action that has not started executing."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            row = transitions.transition(
                session,
                ENTITY,
                action_id,
                lc.CANCELLED,
                actor=actor,
                event="cancelled",
                now=now,
                details={"reason": reason},
                changes={"decided_at": now},
            )
            return self._view(session, row)

    def resolve_timeout(self, action_id: str, actor: str = "system:timeout") -> ActionView:
        """Apply the policy's timeout action to a pending action whose deadline has passed: ``fail`` ->
        ``timed_out``, ``reject`` -> ``rejected``, ``approve`` -> ``approved``. Raises ``GuardRejected`` if the
        deadline has not passed, ``InvalidTransition`` if the action is no longer pending."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            rows = {action_id: transitions.lock_row(session, ACTION_KIND, action_id)}
            (applied,) = transitions.transition_many(
                session, ENTITY, _timeout_changes(rows, [action_id], actor, now), now=now, locked_rows=rows
            )
            if applied.error is not None:
                raise applied.error
            return self._view(session, rows[action_id])

    def resolve_timeouts(
        self, action_ids: builtins.list[str], actor: str = "system:timeout"
    ) -> builtins.list[TimeoutOutcome]:
        """``resolve_timeout`` for many actions in ONE transaction (one lock statement, one approvals query, one
        INSERT each for audit and outbox). An action that cannot be resolved (not found, no longer pending,
        deadline not passed) gets its typed error in the result and changes nothing; the others are resolved.
        Results are in the order of ``action_ids``."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            rows = transitions.lock_rows(session, ACTION_KIND, action_ids, columns=TIMEOUT_COLUMNS)
            return self.resolve_locked_timeouts(session, rows, action_ids, actor=actor, now=now)

    def resolve_locked_timeouts(
        self, session: Session, rows: Mapping[str, Action | transitions.Stored], action_ids: Sequence[str], *,
        actor: str, now: datetime
    ) -> builtins.list[TimeoutOutcome]:
        """``resolve_timeouts`` inside the caller's open transaction, for ``rows`` it already holds locked (by id;
        an id of ``action_ids`` not among them gets ``NotFound``): mapped rows, or ``Stored`` rows of at least
        ``TIMEOUT_COLUMNS``. Never commits: the expire sweep locks a due batch and resolves it in one transaction.
        Results are in the order of ``action_ids``."""
        applied = transitions.transition_many(
            session, ENTITY, _timeout_changes(rows, action_ids, actor, now), now=now, locked_rows=rows
        )
        return [
            TimeoutOutcome(a.entity_id, a.row.state, a.row.flow_run_id)
            if a.row is not None
            else TimeoutOutcome(a.entity_id, error=a.error)
            for a in applied
        ]

    def expire_due(self, *, limit: int = 1000, actor: str = "system:timeout") -> builtins.list[ActionView]:
        """Resolve every pending action whose deadline has passed (oldest deadline first)."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            due = [
                r.id
                for r in ActionRepository(session).list(ActionFilter(states=(lc.PENDING_APPROVAL,), limit=limit))
                if r.approval_deadline is not None and as_utc(r.approval_deadline) <= now
            ]
        return [self.resolve_timeout(i, actor) for i in due]

    # --- helpers ------------------------------------------------------------------------------------------
    def _deliver(self, notifications: builtins.list[Notification]) -> None:
        """Send after commit: a message must never announce a change that was rolled back. A delivery
        failure is audited and does not undo the proposal (the approver can still be reached another way)."""
        if self.notifier is None:
            return
        for note in notifications:
            try:
                self.notifier.send(note)
            except SaferailsError as exc:
                with transaction(self.sessions) as session:
                    row = self._require(session, note.entity_id or "")
                    transitions.record_event(
                        session,
                        ENTITY,
                        row,
                        actor="system:notifier",
                        event="notification_failed",
                        now=self.clock.now(),
                        details={"kind": note.kind, "error": exc.to_dict()},
                    )

    def _require(self, session: Session, action_id: str) -> Action:
        row = session.get(Action, action_id)
        if row is None:
            raise NotFound(ENTITY, action_id)
        return row

    def _view(self, session: Session, row: Action | transitions.Draft) -> ActionView:
        return ActionView.from_row(row, ActionRepository(session).approvals(row.id))

    def _request(
        self, repo: ActionRepository, proposal: Proposal, params: dict[str, Any], *found: StoredPrincipal | None
    ) -> ActionRequest:
        """The policy's view of ``proposal``; ``found`` (one value, possibly None) is the proposer's principal
        row when the caller already looked it up."""
        row = found[0] if found else repo.principal(proposal.proposer)
        principal = policy_principal(proposal.proposer, row)
        return ActionRequest(
            action_type=proposal.action_type,
            target=proposal.target,
            params=params,
            proposer=principal,
            tenant=proposal.tenant,
            priority=proposal.priority,
        )

    def _record_policy(self, now: datetime) -> None:
        """Keep the text of the policy document decisions are made under (once per service, race-safe)."""
        if self._policy_recorded:
            return
        try:
            with transaction(self.sessions) as session:
                if session.get(PolicyDocument, self.policy.fingerprint) is None:
                    session.add(
                        PolicyDocument(
                            fingerprint=self.policy.fingerprint,
                            version=self.policy.version,
                            document=policy_to_yaml(self.policy),
                            first_seen_at=now,
                        )
                    )
        except IntegrityError:
            pass  # another process recorded the same document first
        self._policy_recorded = True


# Every public method refuses bad input with a typed error, even when it only surfaces in the driver (a NUL
# byte PostgreSQL will not store, an offset beyond 64 bits): callers only ever see the saferails hierarchy.
for _name in ("get", "list", "upsert_principal", "propose", "propose_many", "request_approval", "attach_flow_run",
              "approve", "reject", "cancel", "resolve_timeout", "resolve_timeouts", "expire_due"):
    setattr(ActionService, _name, typed_errors(getattr(ActionService, _name)))

__all__ = [
    "ActionFilter",
    "ActionService",
    "ActionView",
    "CodeVerifier",
    "Proposal",
    "approval_requirement",
    "policy_principal",
]
