"""The composition root: one object, built from the one :class:`~saferails.settings.Settings`, that gives every
service. The CLI, the demo, scripts and the Prefect Blocks (``blocks.settings``) all start from it.

``open_store()`` validates settings, creates the engine, brings the schema up to date, loads the policy
(``SAFERAILS_POLICY`` or the bundled default) and returns a :class:`Store` via :func:`compose`, which wires the
services over a session factory: the :class:`ActionService` (with one-time approval codes when an approval secret
is set, sent through the notifier), the :class:`ExecutionService` (handler settings from the same settings), the
:class:`WorkflowService`, the policy and the clock. Nothing else wires these services. It never imports Prefect.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from saferails.actions.models import ActionView
from saferails.actions.service import ActionService
from saferails.agents.service import AgentService
from saferails.approvals.codes import ApprovalCodes, approval_notifications
from saferails.approvals.links import ApprovalLinkNotifier, ApprovalLinks
from saferails.audit.anchor import Anchor
from saferails.audit.checkpoints import Checkpoint, publish_checkpoints, signer_of
from saferails.audit.sequencer import Sequenced, sequence_pending
from saferails.audit.signing import AuditSigner, AuditVerifierKey
from saferails.audit.verify import VerifyReport, verify_chain
from saferails.clock import Clock, SystemClock
from saferails.errors import (
    ActionBlocked,
    AgentPaused,
    BudgetExceeded,
    ConfigurationError,
    KycRequired,
    PolicyEvaluationFailed,
    PolicyRefusal,
    RateLimited,
    RateLimitStoreUnavailable,
)
from saferails.execution import ExecutionService
from saferails.handlers import HandlerSettings
from saferails.identity import IdentityService
from saferails.notify.base import Notification, Notifier
from saferails.notify.outbox_log import InboxNotifier
from saferails.notify.smtp import SmtpNotifier
from saferails.policy import Policy, default_policy, load_policy
from saferails.resilience import Sleeper
from saferails.secrets import approval_secret_path, load_or_create_secret
from saferails.settings import Settings, load_settings
from saferails.store.db import create_engine, migrate, read_transaction, session_factory
from saferails.store.tables import Action
from saferails.workflow.service import WorkflowService

__all__ = [
    "PolicyEvaluationFailed",
    "RateLimitStoreUnavailable",
    "Store",
    "compose",
    "default_notifier",
    "open_store",
    "refusal_for",
]

_REFUSALS: dict[str, type[PolicyRefusal]] = {
    cls.code: cls
    for cls in (ActionBlocked, RateLimited, KycRequired, PolicyEvaluationFailed, RateLimitStoreUnavailable,
                AgentPaused, BudgetExceeded)
}


@dataclass
class Store:
    """The composition root: the services of one store, built once from one :class:`Settings`.

    ``codes`` is None when no approval secret is configured (codes are then not checked); ``notifier`` is the one
    ``actions`` sends approval requests with. ``execution`` is built on first use from ``handler_settings`` (default
    ``settings.handler_settings()``), so settings only the handlers need are refused when execution is asked for.
    ``close()`` releases the engine's connections when this store created it; the object is unusable afterwards.
    """

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    actions: ActionService
    policy: Policy
    clock: Clock
    codes: ApprovalCodes | None = None
    notifier: Notifier | None = None
    handler_settings: HandlerSettings | None = None
    sleeper: Sleeper | None = None
    owns_engine: bool = True

    @property
    def identity(self) -> IdentityService:
        """The ``IdentityService`` (principals, roles, credentials) over this store's sessions and clock."""
        return IdentityService(self.sessions, self.clock)

    @property
    def agents(self) -> AgentService:
        """The ``AgentService`` (register, list, read agents; seed 003) over this store's sessions and clock."""
        return AgentService(self.sessions, self.clock)

    @property
    def workflow(self) -> WorkflowService:
        """A ``WorkflowService`` (tasks, plans, triggers, SLA; seed 004) over this store's sessions and clock.
        Cheap and stateless: each access builds a new one."""
        return WorkflowService(self.sessions, self.clock)

    @cached_property
    def execution(self) -> ExecutionService:
        """The ``ExecutionService`` (execute approved actions, roll back), one per root so circuit breakers see
        every call. Raises ``ConfigurationError`` when the handler settings are refused."""
        settings = self.handler_settings or self.settings.handler_settings()
        if self.sleeper is None:
            return ExecutionService(self.sessions, self.clock, settings)
        return ExecutionService(self.sessions, self.clock, settings, sleeper=self.sleeper)

    def sequence_audit(self) -> Sequenced:
        """Chain the audit records written unchained (``settings.audit_sequencer`` on PostgreSQL) whose numbers
        are settled, signing their checkpoints at the store's time (``saferails.audit.sequencer``). Cheap when
        there is nothing to chain (one indexed read); a no-op on SQLite. Sweeps call it through
        ``publish_audit_checkpoint``; ``audit verify`` calls it before verifying."""
        return sequence_pending(self.sessions, now=self.clock.now())

    def verify_audit(
        self, *, key: AuditVerifierKey | None, published: Path | None, anchor: Anchor | None = None
    ) -> VerifyReport:
        """Sequence what is pending (``sequence_audit``), then ``verify_chain`` in one read snapshot; a record
        still unchained after ``settings.audit_unchained_max_age_seconds`` is a finding."""
        self.sequence_audit()
        with read_transaction(self.sessions) as session:
            return verify_chain(session, anchor=anchor, key=key, published=published, now=self.clock.now(),
                                max_unchained_age=timedelta(seconds=self.settings.audit_unchained_max_age_seconds))

    def publish_audit_checkpoint(self) -> Checkpoint | None:
        """Publish the newest signed audit checkpoint to ``settings.audit_published_path`` (outside the database),
        after checking its signature when this store signs; None when the file already holds it. Sweeps call this
        so that a rewrite, a deleted tail or an appended forgery is evident to ``audit verify`` without anyone
        exporting an anchor by hand. Chains pending audit records first (``sequence_audit``), so each sweep is
        also a pass of the sequencer."""
        self.sequence_audit()
        with read_transaction(self.sessions) as session:
            signer = signer_of(session)
            return publish_checkpoints(session, self.settings.audit_published_path,
                                       key=signer.verifier if signer is not None else None)

    def with_execution(self, handler_settings: HandlerSettings | None = None, sleeper: Sleeper | None = None) -> Store:
        """The same services with another execution set-up (handlers confined elsewhere, retries that do not
        sleep). The copy does not own the engine: closing it leaves this store open."""
        return dataclasses.replace(self, handler_settings=handler_settings or self.handler_settings,
                                   sleeper=sleeper or self.sleeper, owns_engine=False)

    def close(self) -> None:
        if self.owns_engine:
            self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def compose(
    settings: Settings,
    sessions: sessionmaker[Session],
    *,
    clock: Clock | None = None,
    policy: Policy | None = None,
    notifier: Notifier | None = None,
    handler_settings: HandlerSettings | None = None,
    sleeper: Sleeper | None = None,
    owns_engine: bool = False,
) -> Store:
    """Wire every service over ``sessions`` (an already migrated store) from ``settings``. The one wiring.

    ``policy`` overrides ``settings.policy_path``; ``clock`` defaults to the system clock. Approvals of actions
    whose decision requires codes (all, unless a policy rule waives them with a reason) must carry a valid one-time
    code: codes are issued when an action starts waiting and sent to each approver through ``notifier`` (default:
    :func:`default_notifier`; with ``settings.public_url`` each approver's message also carries a one-time link
    to the approval page, ``saferails.approvals.links``). The code key is ``settings.approval_secret`` or,
    when none is set, a key generated once into ``<data_dir>/keys/approval-secret`` (0600, outside the
    database): there is no unchecked mode.
    ``handler_settings`` override ``settings.handler_settings()``; ``sleeper`` is the
    retry backoff's (default ``time.sleep``). ``owns_engine``: ``close()`` disposes the sessions' engine.
    """
    if policy is None:
        policy = load_policy(settings.policy_path) if settings.policy_path is not None else default_policy()
    clock = clock or SystemClock()
    approval_key = settings.approval_key or load_or_create_secret(approval_secret_path(settings.data_dir))
    codes = ApprovalCodes(approval_key, clock)
    notifier = notifier or default_notifier(settings)
    if settings.public_url:
        # Approvers get a one-time link to the API's approval page beside their code.
        notifier = ApprovalLinkNotifier(notifier, ApprovalLinks(approval_key), settings.public_url)

    def hook(session: Session, row: Action) -> list[Notification]:
        return approval_notifications(session, row, codes.issue(session, row))

    actions = ActionService(sessions, policy, clock, code_verifier=codes.verify, on_approval_requested=hook,
                            notifier=notifier)
    engine = sessions.kw.get("bind")
    if not isinstance(engine, Engine):
        raise ConfigurationError("the session factory has no engine bound; build it with saferails.store.db")
    return Store(settings=settings, engine=engine, sessions=sessions, actions=actions, policy=policy, clock=clock,
                 codes=codes, notifier=notifier, handler_settings=handler_settings, sleeper=sleeper,
                 owns_engine=owns_engine)


def open_store(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    policy: Policy | None = None,
    upgrade: bool = True,
    notifier: Notifier | None = None,
    handler_settings: HandlerSettings | None = None,
    sleeper: Sleeper | None = None,
) -> Store:
    """Open the store described by ``settings`` (default: ``load_settings()`` from the environment) and
    :func:`compose` the services over it. With ``upgrade`` the schema is migrated to every head first
    (idempotent). Every appending transaction signs an audit checkpoint with the key at
    ``settings.audit_key_path`` (generated 0600 on first use).
    Raises ``ConfigurationError`` / ``PolicyInvalid`` before touching the database when either is malformed.
    """
    settings = settings or load_settings()
    if policy is None:
        policy = load_policy(settings.policy_path) if settings.policy_path is not None else default_policy()
    engine = create_engine(settings.database_url)
    try:
        if upgrade:
            migrate(engine)
        # Every appending transaction signs a checkpoint with a key kept outside the database (a 0600 file,
        # generated on first use), so a rewrite by someone with database access alone is evident.
        sessions = session_factory(engine, audit_signer=AuditSigner.load_or_create(settings.audit_key_path),
                                   audit_sequencer=settings.audit_sequencer)
        return compose(settings, sessions, clock=clock, policy=policy, notifier=notifier,
                       handler_settings=handler_settings, sleeper=sleeper, owns_engine=True)
    except BaseException:
        engine.dispose()
        raise


def default_notifier(settings: Settings) -> Notifier:
    """SMTP when configured (``SAFERAILS_SMTP_HOST``), else one 0600 inbox file per principal in
    ``<data_dir>/inbox/``: never one shared file a proposer could read."""
    if settings.smtp_configured:
        return SmtpNotifier(settings.smtp_settings())
    return InboxNotifier(settings.data_dir / "inbox")


def refusal_for(action: ActionView) -> PolicyRefusal | None:
    """The typed refusal for a ``blocked`` action (None otherwise): its class and code follow the decision's code,
    its message is the decision's deciding reason, plus the retry time for rate limits."""
    decision: dict[str, Any] = action.decision
    code = decision.get("code")
    if action.state != "blocked" or code is None:
        return None
    cls = _REFUSALS.get(str(code), PolicyRefusal)
    deciding = next(
        (r for r in decision.get("reasons", []) if r.get("fired") and r.get("code") == code),
        None,
    )
    why = deciding["message"] if deciding else str(code)
    rule = f"rule {deciding['rule_id']}: " if deciding else ""
    version = decision.get("policy_version")
    message = f"action {action.id} ({action.action_type}) refused by policy {version}: {rule}{why}"
    retry_after = decision.get("retry_after")
    if retry_after:
        message += f"; retry after {retry_after}"
    return cls(
        message,
        action_id=action.id,
        decision_code=code,
        retry_after=retry_after,
        rule_id=deciding["rule_id"] if deciding else None,
    )
