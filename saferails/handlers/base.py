"""The handler contract: how an action type validates, captures, previews, executes and undoes its effect.

A handler is either *store-local* (``external = False``: its effect lives in our store, e.g. org interventions,
calendar events, ledger entries) or *external* (``external = True``: SMTP, files). The executor runs a
store-local handler inside the transaction that marks the action completed, so the effect and the state change
commit together, exactly once. An external handler runs outside any transaction (``ctx.session`` is refused)
and gets the action's idempotency key so a repeated call after a crash is recognisable; its effect is recorded
in the ``effects`` table in the completing transaction.

A crash between an external effect and the commit that records it leaves the outcome unknown. Handlers that
implement ``reconcile`` (``ReconcilingHandler``; every built-in one) say whether the effect exists now, and the
executor and the recover sweep decide from that answer instead of assuming; for other handlers the answer is
``unknown``, which is never treated as "nothing to undo".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from saferails.clock import Clock
from saferails.errors import ConfigurationError, ExecutionError, InvalidInput, InvalidParams, RollbackError

if TYPE_CHECKING:
    from saferails.settings import Settings

P = TypeVar("P", bound=BaseModel)


# --- errors a handler raises ----------------------------------------------------------------------------------
class PathOutsideRoot(InvalidInput):
    """A path parameter is absolute, contains ``..`` or resolves (through symlinks) outside the file root."""

    code = "PATH_OUTSIDE_ROOT"


class FileConflict(InvalidInput):
    """The destination exists and the action did not ask to overwrite it."""

    code = "FILE_EXISTS"
    http_status = 409


class HandlerNotRegistered(ExecutionError):
    code = "HANDLER_NOT_REGISTERED"

    def __init__(self, action_type: str) -> None:
        super().__init__(f"no handler is registered for action type {action_type!r}", action_type=action_type)


class PermanentEffectError(ExecutionError):
    """The downstream system refused for good (e.g. SMTP 5xx): retrying cannot help."""

    code = "EFFECT_REFUSED"


class RollbackConflict(RollbackError):
    """The world changed since the action ran (someone else edited the row or file): restoring the captured
    pre-state would overwrite their change, so the rollback refuses."""

    code = "ROLLBACK_CONFLICT"


class PartialEffect(ExecutionError):
    """Raised by a handler that applied part of its effect before failing. ``rollback_data`` undoes that part;
    the executor passes it to ``rollback`` (compensation) before retrying or failing the action."""

    code = "PARTIAL_EFFECT"

    def __init__(self, rollback_data: Mapping[str, Any], cause: BaseException) -> None:
        super().__init__(f"partial effect, then: {type(cause).__name__}: {cause}", cause=type(cause).__name__)
        self.rollback_data = dict(rollback_data)
        self.cause = cause


# --- settings -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HandlerSettings:
    """What the built-in handlers need from the outside world. Build with ``load_handler_settings``."""

    file_root: Path | None = None
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_sender: str | None = None
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_starttls: bool = False
    smtp_timeout: float = 10.0
    ledger_account: str = "operating"

    def require_file_root(self) -> Path:
        if self.file_root is None:
            raise ConfigurationError("SAFERAILS_FILE_ROOT is not set: file actions are disabled")
        return self.file_root

    def require_sender(self) -> str:
        if not self.smtp_sender:
            raise ConfigurationError("SAFERAILS_SMTP_SENDER is not set: email actions are disabled")
        return self.smtp_sender


def load_handler_settings(env: Mapping[str, str] | Settings | None = None) -> HandlerSettings:
    """The handler settings of ``env``: a ``Settings`` object, or a mapping of ``SAFERAILS_*`` variables (default:
    the process environment) read by ``saferails.settings.load_settings``, which refuses unsafe values.

    - ``SAFERAILS_FILE_ROOT``: directory file actions are confined to (must exist); unset disables them.
    - ``SAFERAILS_SMTP_HOST`` / ``_PORT`` (default 127.0.0.1:25), ``_SENDER`` (From address; unset disables
      email), ``_USERNAME`` / ``_PASSWORD`` (both or neither), ``_STARTTLS`` (true/false), ``_TIMEOUT`` seconds.
      Credentials are refused over plain SMTP to a non-loopback host.
    - ``SAFERAILS_LEDGER_ACCOUNT``: the account payments and purchases are booked against.
    """
    from saferails.settings import Settings, load_settings

    settings = env if isinstance(env, Settings) else load_settings(env)
    return settings.handler_settings()


# --- context and contract -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HandlerContext:
    """What a handler may use. ``session`` exists only for store-local handlers (the current transaction)."""

    settings: HandlerSettings
    clock: Clock
    logger: logging.Logger
    action_id: str
    action_type: str
    store_session: Session | None = None
    reason: str = ""  # why a rollback was asked for (empty while executing)

    @property
    def session(self) -> Session:
        if self.store_session is None:
            raise ExecutionError(
                f"handler for {self.action_type!r} runs outside the store transaction and has no session",
                action_type=self.action_type,
            )
        return self.store_session


@dataclass(frozen=True)
class ExecutionOutcome:
    """``result`` is shown to people and recorded; ``rollback_data`` is everything ``rollback`` needs."""

    result: dict[str, Any]
    rollback_data: dict[str, Any]


@runtime_checkable
class ActionHandler(Protocol):
    """The contract of every handler. All dicts are JSON-ready; ``params`` is the validated canonical form."""

    action_type: str
    external: bool

    def validate(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> None:
        """Domain checks beyond the params model (rows exist, paths inside the root). Raises ``InvalidInput``."""
        ...

    def capture(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> dict[str, Any]:
        """The pre-state the action will change."""
        ...

    def preview(
        self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any]
    ) -> dict[str, Any]:
        """What will change, for the approver."""
        ...

    def execute(
        self,
        ctx: HandlerContext,
        target: str,
        params: dict[str, Any],
        pre_state: dict[str, Any],
        idempotency_key: str,
    ) -> ExecutionOutcome:
        """Apply the effect. Raise ``PartialEffect`` if part of it was applied before failing."""
        ...

    def rollback(self, ctx: HandlerContext, target: str, rollback_data: dict[str, Any]) -> dict[str, Any]:
        """Undo the effect described by ``rollback_data``; raises ``RollbackError`` (or subclasses) if it cannot."""
        ...


APPLIED: Literal["applied"] = "applied"
NOT_APPLIED: Literal["not_applied"] = "not_applied"
UNKNOWN: Literal["unknown"] = "unknown"
EffectStatus = Literal["applied", "not_applied", "unknown"]


@dataclass(frozen=True)
class Reconciliation:
    """What a handler found when asked whether an action's effect exists now (after a crash left its outcome
    unknown). ``applied`` comes with the ``result`` and ``rollback_data`` that ``execute`` would have returned,
    so the effect can be recorded and undone; ``detail`` says how the handler knows."""

    status: EffectStatus
    detail: str = ""
    result: dict[str, Any] | None = None
    rollback_data: dict[str, Any] | None = None


@runtime_checkable
class ReconcilingHandler(ActionHandler, Protocol):
    """An ``ActionHandler`` that can tell whether its effect exists (every built-in handler is one).

    It is a separate protocol so that user handlers written before it keep registering; for a handler without
    ``reconcile`` the effect of an interrupted execution is ``unknown``, and nothing claims it undone.
    """

    def reconcile(
        self,
        ctx: HandlerContext,
        target: str,
        params: dict[str, Any],
        pre_state: dict[str, Any],
        idempotency_key: str,
    ) -> Reconciliation:
        """Does the effect of executing ``params`` (captured as ``pre_state``) exist now? Read-only.
        ``applied`` / ``not_applied`` only when the handler can prove it; otherwise ``unknown``."""
        ...


def committed_with_completion(action_type: str) -> Reconciliation:
    """The answer of a store-local handler asked about an action that never completed: its effect commits in
    the transaction that completes the action, so none exists (ask only for actions that did not complete)."""
    return Reconciliation(
        NOT_APPLIED, f"{action_type} is store-local: its effect commits only together with the action's completion"
    )


class StoreLocal:
    """Base of store-local handlers (``external = False``): their effect commits in the transaction that
    completes the action, so ``reconcile`` answers :func:`committed_with_completion`."""

    action_type: str
    external = False

    def reconcile(
        self,
        ctx: HandlerContext,
        target: str,
        params: dict[str, Any],
        pre_state: dict[str, Any],
        idempotency_key: str,
    ) -> Reconciliation:
        return committed_with_completion(self.action_type)


def reconcile_effect(
    handler: ActionHandler,
    ctx: HandlerContext,
    target: str,
    params: dict[str, Any],
    pre_state: dict[str, Any],
    idempotency_key: str,
) -> Reconciliation:
    """Ask ``handler`` whether the effect exists; ``unknown`` when it cannot say or asking fails."""
    method = getattr(handler, "reconcile", None)
    if method is None:
        return Reconciliation(UNKNOWN, f"the {handler.action_type!r} handler cannot reconcile its effect")
    try:
        found = method(ctx, target, params, pre_state, idempotency_key)
    except Exception as exc:  # noqa: BLE001 - a failing check proves nothing either way
        return Reconciliation(UNKNOWN, f"reconcile failed: {type(exc).__name__}: {exc}"[:500])
    if not isinstance(found, Reconciliation) or found.status not in (APPLIED, NOT_APPLIED, UNKNOWN):
        return Reconciliation(UNKNOWN, f"reconcile returned {found!r}"[:500])
    if found.status == APPLIED and found.rollback_data is None:
        return Reconciliation(UNKNOWN, f"effect applied but no rollback data: {found.detail}")
    return found


def parse_params(action_type: str, model: type[P], params: Mapping[str, Any]) -> P:
    """The typed params for a handler, or ``InvalidParams`` listing every problem."""
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()]
        raise InvalidParams(action_type, problems) from None
