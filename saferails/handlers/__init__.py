"""Action handlers: the contract (``base``), registration (``registry``) and the built-in handlers.

Importing this package registers the built-in handlers on their action types.
"""

from saferails.handlers.agents import PauseAgentHandler, ResumeAgentHandler, SetBudgetHandler
from saferails.handlers.base import (
    ActionHandler,
    ExecutionOutcome,
    FileConflict,
    HandlerContext,
    HandlerNotRegistered,
    HandlerSettings,
    PartialEffect,
    PathOutsideRoot,
    PermanentEffectError,
    Reconciliation,
    ReconcilingHandler,
    RollbackConflict,
    load_handler_settings,
    reconcile_effect,
)
from saferails.handlers.calendar import CreateCalendarEventHandler
from saferails.handlers.commerce import MakePaymentHandler, MakePurchaseHandler
from saferails.handlers.files import CreateDocumentHandler, MoveFileHandler
from saferails.handlers.messaging import SendEmailHandler
from saferails.handlers.org import (
    ReassignManagerHandler,
    RedistributeTasksHandler,
    ReduceMeetingsHandler,
    RoleChangeHandler,
    ScheduleFocusTimeHandler,
    TeamRestructureHandler,
)
from saferails.handlers.registry import get_handler, handler, load_entry_point_handlers, register_handler

BUILTIN_HANDLERS: tuple[ActionHandler, ...] = (
    ReassignManagerHandler(),
    TeamRestructureHandler(),
    RoleChangeHandler(),
    ReduceMeetingsHandler(),
    RedistributeTasksHandler(),
    ScheduleFocusTimeHandler(),
    CreateCalendarEventHandler(),
    SendEmailHandler(),
    MoveFileHandler(),
    CreateDocumentHandler(),
    MakePaymentHandler(),
    MakePurchaseHandler(),
    PauseAgentHandler(),
    ResumeAgentHandler(),
    SetBudgetHandler(),
)


def register_builtin_handlers() -> None:
    """(Re-)attach the built-in handlers to their action types (idempotent)."""
    for instance in BUILTIN_HANDLERS:
        register_handler(instance)


register_builtin_handlers()

__all__ = [
    "BUILTIN_HANDLERS",
    "ActionHandler",
    "ExecutionOutcome",
    "FileConflict",
    "HandlerContext",
    "HandlerNotRegistered",
    "HandlerSettings",
    "PartialEffect",
    "PathOutsideRoot",
    "PermanentEffectError",
    "Reconciliation",
    "ReconcilingHandler",
    "RollbackConflict",
    "get_handler",
    "handler",
    "load_entry_point_handlers",
    "load_handler_settings",
    "reconcile_effect",
    "register_builtin_handlers",
    "register_handler",
]
