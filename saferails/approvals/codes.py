"""One-time approval codes: the proof of WHO approved, since open-source Prefect records no approver.

When an approval is requested, each authorised approver (users named by the policy decision plus the members of
its groups, never the proposer) gets a code ``XXXX-XXXX-XXXX`` (12 Crockford base32 characters = 60 bits) derived
as HMAC-SHA256(secret, action id | action hash | approver | random nonce). The store keeps only a keyed hash of
the code together with the binding (action, approver, action hash) and the expiry (the action's approval
deadline). A code verifies once, for its approver, for the action version it was issued for, before expiry.

Refusals all say the same thing to the caller ("invalid, expired or already used"); the precise reason is in
``ApprovalCodeInvalid.details["internal_reason"]`` for the audit trail - edges must not show it to the person
who typed the code.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from saferails import transitions
from saferails.actions.approvers import approval_requirement, policy_principal
from saferails.actions.lifecycle import PENDING_APPROVAL
from saferails.approvals.tables import ApprovalCode
from saferails.clock import Clock, SystemClock, as_utc
from saferails.errors import ApprovalCodeInvalid, ApprovalError, ConfigurationError, PermissionDenied
from saferails.notify.base import ApprovalRequest, Notification, Recipient, approval_requested
from saferails.policy import ApproverStanding, judge_approver
from saferails.settings import MIN_SECRET_BYTES
from saferails.store.db import transaction
from saferails.store.tables import Action, Principal

# Crockford's alphabet has no I, L, O, U: nothing to misread when a person types the code.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_CHARS = 12  # 12 x 5 bits = 60 bits
_CONFUSABLE = str.maketrans({"I": "1", "L": "1", "O": "0"})
PUBLIC_REASON = "approval code invalid, expired or already used"
GROUP_PREFIX = "group:"
# What an outcome-decision code is bound to instead of an action hash: ``outcome:<check id>``.
OUTCOME_BINDING = "outcome:"
# The action entity by name, not by importing the action service: that service imports this package (lockout).
ENTITY = "action"


class ApprovalCodesUnavailable(ApprovalError):
    """Codes cannot be issued for this action (it is not waiting for approval or has no deadline)."""

    code = "APPROVAL_CODES_UNAVAILABLE"
    http_status = 409


def format_code(raw: bytes) -> str:
    """The first 60 bits of ``raw`` as ``XXXX-XXXX-XXXX``."""
    number = int.from_bytes(raw[:8], "big") >> (64 - 5 * CODE_CHARS)
    chars = [ALPHABET[(number >> (5 * i)) & 31] for i in reversed(range(CODE_CHARS))]
    return "-".join("".join(chars[i:i + 4]) for i in range(0, CODE_CHARS, 4))


def normalise_code(code: str) -> str:
    """What a person typed, in canonical form: case, spaces, dashes and I/L/O look-alikes do not matter."""
    return "".join(c for c in code.upper() if c not in " -\t").translate(_CONFUSABLE)


def authorised_approvers(session: Session, row: Action) -> list[str]:
    """Everyone who may decide on the action, sorted: the named users and every stored principal that
    :func:`saferails.policy.judge_approver` (the one rule, also applied by ``ActionService.approve``) authorises.
    Never the proposer."""
    requirement = approval_requirement(row)
    if requirement is None:
        return []
    candidates = {user: policy_principal(user, session.get(Principal, user)) for user in requirement.users}
    if requirement.groups:
        # The groups column is a JSON list; filtering in Python keeps the query portable (principals are few).
        for stored in session.scalars(sa.select(Principal)).all():
            candidates[stored.id] = policy_principal(stored.id, stored)
    return sorted(pid for pid, principal in candidates.items()
                  if judge_approver(requirement, principal, row.proposer) is ApproverStanding.AUTHORISED)


def _members(session: Session, groups: set[str]) -> set[str]:
    """Stored principals in any of ``groups`` (to expand ``group:<name>`` entries an operator names)."""
    if not groups:
        return set()
    return {p.id for p in session.scalars(sa.select(Principal)).all() if groups & set(p.groups or [])}


def codes_required(row: Action) -> bool:
    """False only when the stored decision explicitly waives codes (a policy rule with ``require_codes: false``)."""
    requirement = row.decision.get("approval") or {}
    return requirement.get("require_codes") is not False


class ApprovalCodes:
    """Issues and verifies one-time approval codes. ``verify`` fits ``ActionService(code_verifier=...)``.

    Both methods work inside the caller's transaction and never commit. ``secret`` must be at least 32 bytes
    (``SAFERAILS_APPROVAL_SECRET``); a shorter one raises ``ConfigurationError``.
    """

    def __init__(self, secret: bytes, clock: Clock | None = None) -> None:
        if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"the approval secret must be at least {MIN_SECRET_BYTES} bytes",
                min_bytes=MIN_SECRET_BYTES,
            )
        # Separate keys for deriving codes and for hashing them, so one use cannot stand in for the other.
        self._derive_key = hmac.new(secret, b"saferails/approval-code/derive/v1", hashlib.sha256).digest()
        self._store_key = hmac.new(secret, b"saferails/approval-code/store/v1", hashlib.sha256).digest()
        self.clock: Clock = clock or SystemClock()

    # --- issuing ------------------------------------------------------------------------------------------
    def issue(self, session: Session, action_row: Action, approvers: list[str] | None = None) -> dict[str, str]:
        """Issue a fresh code to each approver; returns ``{approver: code}`` (the only place codes appear).

        ``approvers`` holds principal ids and/or ``group:<name>`` entries (expanded through the principals
        table); None means every authorised approver. The proposer never gets a code. Naming someone the
        decision does not authorise raises ``PermissionDenied`` before anything is written. Re-issuing replaces
        the approver's previous code (the old one stops working). Returns ``{}`` when the policy waived codes.
        Raises ``ApprovalCodesUnavailable`` unless the action is pending approval with a deadline.
        """
        if action_row.state != PENDING_APPROVAL or action_row.approval_deadline is None:
            raise ApprovalCodesUnavailable(
                f"action {action_row.id} is not waiting for approval with a deadline (state {action_row.state})",
                action_id=action_row.id, state=action_row.state,
            )
        if not codes_required(action_row):
            return {}
        allowed = set(authorised_approvers(session, action_row))
        wanted = allowed if approvers is None else self._expand(session, approvers) - {action_row.proposer}
        refused = sorted(wanted - allowed)
        if refused:
            raise PermissionDenied(
                f"not authorised to approve action {action_row.id}: {', '.join(refused)}",
                action_id=action_row.id, approvers=refused,
            )
        now = self.clock.now()
        issued: dict[str, str] = {}
        for approver in sorted(wanted):
            code = self._derive(action_row, approver)
            session.execute(sa.delete(ApprovalCode).where(ApprovalCode.action_id == action_row.id,
                                                          ApprovalCode.approver == approver))
            session.add(ApprovalCode(
                id=str(uuid.uuid4()), action_id=action_row.id, approver=approver,
                action_hash=action_row.action_hash,
                code_hash=self._hash(action_row.id, approver, action_row.action_hash, normalise_code(code)),
                issued_at=now, expires_at=action_row.approval_deadline, used_at=None,
            ))
            issued[approver] = code
        session.flush()
        transitions.record_event(session, ENTITY, action_row, actor="system:approval-codes",
                                 event="approval_codes_issued", now=now,
                                 details={"approvers": sorted(issued), "action_hash": action_row.action_hash})
        return issued

    def issue_for(self, session: Session, action_id: str, approvers: list[str] | None = None) -> dict[str, str]:
        """``issue`` for the action with id ``action_id``, locking its row first (``NotFound`` if unknown)."""
        return self.issue(session, transitions.lock_row(session, transitions.entity_kind(ENTITY), action_id), approvers)

    def _expand(self, session: Session, approvers: list[str]) -> set[str]:
        groups = {a.removeprefix(GROUP_PREFIX) for a in approvers if a.startswith(GROUP_PREFIX)}
        return {a for a in approvers if not a.startswith(GROUP_PREFIX)} | _members(session, groups)

    def _derive(self, row: Action, approver: str) -> str:
        nonce = secrets.token_hex(16)
        message = "|".join((row.id, row.action_hash, approver, nonce)).encode()
        return format_code(hmac.new(self._derive_key, message, hashlib.sha256).digest())

    def _hash(self, action_id: str, approver: str, digest: str, normalised: str) -> str:
        message = "|".join((action_id, approver, digest, normalised)).encode()
        return hmac.new(self._store_key, message, hashlib.sha256).hexdigest()

    # --- verifying ----------------------------------------------------------------------------------------
    def verify(self, session: Session, action_row: Action, approver: str, code: str | None, now: datetime) -> None:
        """Spend ``approver``'s code for ``action_row`` or raise ``ApprovalCodeInvalid`` (then nothing is written).

        Passes without a code when the action's decision waived codes. Otherwise the code must have been issued
        to this approver for this action, be unused, unexpired at ``now`` and bound to the action's CURRENT
        hash. The comparison is constant-time; marking it used is a conditional UPDATE, so two racing uses of
        one code cannot both succeed.
        """
        if not codes_required(action_row):
            return
        record = session.scalars(
            sa.select(ApprovalCode)
            .where(ApprovalCode.action_id == action_row.id, ApprovalCode.approver == approver)
            .with_for_update()
        ).one_or_none()
        reason = self._problem(record, action_row.id, approver, code, now, action_row.action_hash)
        if reason is None and record is not None:
            spent = session.execute(
                sa.update(ApprovalCode)
                .where(ApprovalCode.id == record.id, ApprovalCode.used_at.is_(None))
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            )
            if getattr(spent, "rowcount", 0) == 1:
                session.expire(record)
                return
            reason = "already_used"
        raise ApprovalCodeInvalid(PUBLIC_REASON, action_id=action_row.id, approver=approver,
                                  internal_reason=reason or "not_issued")

    def _problem(self, record: ApprovalCode | None, action_id: str, approver: str, code: str | None,
                 now: datetime, binding: str) -> str | None:
        """The precise reason a code fails, or None; ``binding`` is what the code must be bound to (the action's
        current hash, or an outcome check). The digest comparison runs whenever a record exists."""
        if record is None:
            return "not_issued"
        expected = record.code_hash.encode()
        given = self._hash(action_id, approver, record.action_hash, normalise_code(code or "")).encode()
        matches = hmac.compare_digest(expected, given)
        if not code or not matches:
            return "missing" if not code else "mismatch"
        if record.used_at is not None:
            return "already_used"
        if now >= as_utc(record.expires_at):
            return "expired"
        if record.action_hash != binding:
            return "action_changed"
        return None

    # --- codes for a person's decision on an inconclusive outcome check ----------------------------------
    def issue_outcome(self, session: Session, action_row: Action, check_id: str,
                      expires_at: datetime) -> dict[str, str]:
        """A fresh one-time code for each of :func:`outcome_deciders`, bound to outcome check ``check_id``
        instead of an action version (so it can never approve anything); returns ``{decider: code}``. Replaces
        any earlier code of that person for the action (approval codes of a completed action are spent or
        expired anyway). Audited ``outcome_codes_issued``."""
        binding = OUTCOME_BINDING + check_id
        now = self.clock.now()
        issued: dict[str, str] = {}
        for decider in outcome_deciders(session, action_row):
            nonce = secrets.token_hex(16)
            message = "|".join((action_row.id, binding, decider, nonce)).encode()
            code = format_code(hmac.new(self._derive_key, message, hashlib.sha256).digest())
            session.execute(sa.delete(ApprovalCode).where(ApprovalCode.action_id == action_row.id,
                                                          ApprovalCode.approver == decider))
            session.add(ApprovalCode(
                id=str(uuid.uuid4()), action_id=action_row.id, approver=decider, action_hash=binding,
                code_hash=self._hash(action_row.id, decider, binding, normalise_code(code)),
                issued_at=now, expires_at=expires_at, used_at=None))
            issued[decider] = code
        session.flush()
        transitions.record_event(session, ENTITY, action_row, actor="system:approval-codes",
                                 event="outcome_codes_issued", now=now,
                                 details={"deciders": sorted(issued), "check_id": check_id})
        return issued

    def verify_outcome(self, session: Session, action_row: Action, check_id: str, decider: str,
                       code: str | None, now: datetime) -> None:
        """Spend ``decider``'s code for outcome check ``check_id`` or raise: ``PermissionDenied`` when
        ``decider`` may not decide (:func:`outcome_deciders`), ``ApprovalCodeInvalid`` (same public reason as
        approvals) when the code is missing, wrong, spent, expired or bound to something else."""
        if decider not in outcome_deciders(session, action_row):
            raise PermissionDenied(f"{decider} may not decide on the outcome of action {action_row.id}",
                                   action_id=action_row.id, approver=decider)
        record = session.scalars(sa.select(ApprovalCode).where(
            ApprovalCode.action_id == action_row.id, ApprovalCode.approver == decider).with_for_update()
        ).one_or_none()
        reason = self._problem(record, action_row.id, decider, code, now, OUTCOME_BINDING + check_id)
        if reason is None and record is not None:
            spent = session.execute(sa.update(ApprovalCode).where(
                ApprovalCode.id == record.id, ApprovalCode.used_at.is_(None)).values(used_at=now)
                .execution_options(synchronize_session=False))
            if getattr(spent, "rowcount", 0) == 1:
                session.expire(record)
                return
            reason = "already_used"
        raise ApprovalCodeInvalid(PUBLIC_REASON, action_id=action_row.id, approver=decider,
                                  internal_reason=reason or "not_issued")


def outcome_deciders(session: Session, row: Action) -> list[str]:
    """Who may decide whether to roll back ``row`` after an inconclusive outcome check: the action's own
    authorised approvers when it needed approval, otherwise every enabled principal holding the ``approver``
    role. Never the proposer (the agent does not judge its own change)."""
    approvers = authorised_approvers(session, row)
    if approvers:
        return approvers
    return sorted(p.id for p in session.scalars(sa.select(Principal)).all()
                  if "approver" in (p.roles or []) and p.disabled_at is None and p.id != row.proposer)


def approval_notifications(session: Session, row: Action, codes: Mapping[str, str]) -> list[Notification]:
    """One ``approval_requested`` notification per approver in ``codes`` (or per authorised approver, without a
    code, when ``codes`` is empty because the policy waived them), addressed with the principal's email."""
    if row.approval_deadline is None:
        raise ApprovalCodesUnavailable(f"action {row.id} has no approval deadline", action_id=row.id)
    reasons = row.decision.get("reasons") or []
    request = ApprovalRequest(
        action_id=row.id, action_type=row.action_type, target=row.target, params=row.params,
        proposer=row.proposer, reason=row.reason, impact=row.impact,
        rules=[f"{r['rule_id']}: {r['message']}" for r in reasons if r.get("fired")],
        deadline=as_utc(row.approval_deadline), min_approvals=row.min_approvals, action_hash=row.action_hash,
    )
    approvers = sorted(codes) if codes else authorised_approvers(session, row)
    notes = []
    for approver in approvers:
        principal = session.get(Principal, approver)
        recipient = Recipient(approver, principal.email if principal is not None else None)
        notes.append(approval_requested(request, recipient, codes.get(approver)))
    return notes


def approval_requests(sessions: sessionmaker[Session], action_id: str) -> list[Notification]:
    """The code-less ``approval_requested`` notifications for action ``action_id`` (one per authorised approver),
    read in one transaction; empty when the action is unknown or not waiting with a deadline. For deployments
    without an approval secret, where no codes are issued at proposal."""
    with transaction(sessions) as session:
        row = session.get(Action, action_id)
        if row is None or row.state != PENDING_APPROVAL or row.approval_deadline is None:
            return []
        return approval_notifications(session, row, {})
