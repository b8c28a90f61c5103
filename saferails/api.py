"""The core facade the CLI, the demo and scripts start from: one call opens a ready-to-use store.

``open_store()`` validates settings (``saferails.settings``), creates the engine, brings the schema up to date,
loads the policy (``SAFERAILS_POLICY`` or the bundled default) and returns a :class:`Store` holding the session
factory, the :class:`ActionService`, the policy and the clock. It never imports Prefect.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from saferails.actions.models import ActionView
from saferails.actions.service import ActionService
from saferails.approvals.codes import ApprovalCodes, approval_notifications
from saferails.clock import Clock, SystemClock
from saferails.errors import ActionBlocked, KycRequired, PolicyRefusal, RateLimited
from saferails.execution import ExecutionService
from saferails.handlers import load_handler_settings
from saferails.notify.base import Notification, Notifier
from saferails.notify.outbox_log import InboxNotifier
from saferails.notify.smtp import SmtpNotifier, load_smtp_settings
from saferails.policy import Policy, default_policy, load_policy
from saferails.secrets import approval_secret_path, load_or_create_secret
from saferails.settings import Settings, load_settings
from saferails.store.db import create_engine, migrate, session_factory
from saferails.store.tables import Action
from saferails.workflow.service import WorkflowService

__all__ = [
    "PolicyEvaluationFailed",
    "RateLimitStoreUnavailable",
    "Store",
    "open_store",
    "refusal_for",
]


class PolicyEvaluationFailed(PolicyRefusal):
    """The policy could not be evaluated for an action, so it was denied (fail closed)."""

    code = "POLICY_EVALUATION_FAILED"


class RateLimitStoreUnavailable(PolicyRefusal):
    """A rate limit could not be counted and the policy denies in that case (``on_rate_limit_store_error``)."""

    code = "RATE_LIMIT_STORE_UNAVAILABLE"


_REFUSALS: dict[str, type[PolicyRefusal]] = {
    cls.code: cls
    for cls in (ActionBlocked, RateLimited, KycRequired, PolicyEvaluationFailed, RateLimitStoreUnavailable)
}


@dataclass
class Store:
    """An open store. ``close()`` releases the engine's connections; the object is unusable afterwards."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    actions: ActionService
    policy: Policy
    clock: Clock
    codes: ApprovalCodes | None = None

    @property
    def codes_enforced(self) -> bool:
        return self.codes is not None

    @property
    def workflow(self) -> WorkflowService:
        """A ``WorkflowService`` (tasks, plans, triggers, SLA; seed 004) over this store's sessions and clock.
        Cheap and stateless: each access builds a new one."""
        return WorkflowService(self.sessions, self.clock)

    @property
    def execution(self) -> ExecutionService:
        """An ``ExecutionService`` (execute approved actions, roll back) with handler settings from the
        environment (``SAFERAILS_FILE_ROOT``, ``SAFERAILS_SMTP_*``; see ``saferails.handlers``)."""
        return ExecutionService(self.sessions, self.clock, load_handler_settings())

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open_store(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    policy: Policy | None = None,
    upgrade: bool = True,
    notifier: Notifier | None = None,
) -> Store:
    """Open the store described by ``settings`` (default: ``load_settings()`` from the environment).

    ``policy`` overrides ``settings.policy_path``; ``clock`` defaults to the system clock (pass a ManualClock
    to move time deterministically). Approvals of actions whose decision requires codes (all, unless a policy rule
    waives them with a reason) must carry a valid one-time code: codes are issued when an action starts waiting
    and sent to each approver through ``notifier`` (default: SMTP when ``SAFERAILS_SMTP_HOST`` is set, otherwise
    one 0600 inbox file per principal in ``<data_dir>/inbox/``). The code key is ``settings.approval_secret`` or,
    when none is set, a key generated once into ``<data_dir>/keys/approval-secret`` (0600). With ``upgrade`` the
    schema is migrated to every head first (idempotent).
    Raises ``ConfigurationError`` / ``PolicyInvalid`` before touching the database when either is malformed.
    """
    settings = settings or load_settings()
    if policy is None:
        policy = load_policy(settings.policy_path) if settings.policy_path is not None else default_policy()
    engine = create_engine(settings.database_url)
    try:
        if upgrade:
            migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    sessions = session_factory(engine)
    clock = clock or SystemClock()
    # h-ident (fail closed): codes are always checked; without SAFERAILS_APPROVAL_SECRET the key is generated
    # once into <data_dir>/keys/approval-secret (0600, outside the database).
    secret = settings.approval_secret or load_or_create_secret(approval_secret_path(settings.data_dir))
    codes = ApprovalCodes(secret, clock)
    notifier = notifier or default_notifier(settings)

    def hook(session: Session, row: Action) -> list[Notification]:
        return approval_notifications(session, row, codes.issue(session, row))
    # end h-ident

    return Store(
        settings=settings,
        engine=engine,
        sessions=sessions,
        actions=ActionService(
            sessions,
            policy,
            clock,
            code_verifier=codes.verify,
            on_approval_requested=hook,
            notifier=notifier,
        ),
        policy=policy,
        clock=clock,
        codes=codes,
    )


def default_notifier(settings: Settings) -> Notifier:
    """SMTP when configured (``SAFERAILS_SMTP_HOST``), else one 0600 inbox file per principal in
    ``<data_dir>/inbox/`` (h-ident: never one shared file a proposer could read)."""
    if os.environ.get("SAFERAILS_SMTP_HOST"):
        return SmtpNotifier(load_smtp_settings())
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
