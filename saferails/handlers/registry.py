"""Attach handlers to action types: a decorator, a function, and the ``saferails.handlers`` entry-point group.

A handler lives on its ``ActionTypeSpec`` in ``saferails.actions.types``, so a user type gets the same policy,
approval gate, audit and undo as a built-in one. A user type brings its own params model; a built-in type keeps
the model it already has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar, overload

from saferails.actions.types import ActionTypeSpec, Params, register_action_type, registered_action_types
from saferails.actions.types import action_type as spec_of
from saferails.errors import ConfigurationError, InvalidInput, UnknownActionType
from saferails.handlers.base import ActionHandler, HandlerNotRegistered

ENTRY_POINT_GROUP = "saferails.handlers"
H = TypeVar("H")


def register_handler(
    instance: H,
    *,
    params_model: type[Params] | None = None,
    description: str | None = None,
    target_kind: str | None = None,
) -> H:
    """Register ``instance`` as the handler of ``instance.action_type`` (replacing any earlier handler).

    A new action type needs ``params_model``. Raises ``InvalidInput`` if ``instance`` does not implement the
    ``ActionHandler`` protocol or a new type has no params model.
    """
    if not isinstance(instance, ActionHandler):
        raise InvalidInput(
            f"{instance!r} does not implement ActionHandler (action_type, external, validate, "
            "capture, preview, execute, rollback)"
        )
    name = instance.action_type
    existing = registered_action_types().get(name)
    if existing is None:
        if params_model is None:
            raise InvalidInput(f"action type {name!r} is new: register its handler with a params_model")
        spec = ActionTypeSpec(name, params_model, description or name, target_kind or "target", handler=instance)
    else:
        spec = dataclasses.replace(
            existing,
            params_model=params_model or existing.params_model,
            description=description or existing.description,
            target_kind=target_kind or existing.target_kind,
            handler=instance,
        )
    register_action_type(spec, replace=True)
    return instance


@overload
def handler(cls: type[H], /) -> type[H]: ...


@overload
def handler(
    *, params_model: type[Params] | None = None, description: str | None = None, target_kind: str | None = None
) -> Callable[[type[H]], type[H]]: ...


def handler(
    cls: type[H] | None = None,
    /,
    *,
    params_model: type[Params] | None = None,
    description: str | None = None,
    target_kind: str | None = None,
) -> type[H] | Callable[[type[H]], type[H]]:
    """Class decorator: instantiate the class (no arguments) and register the instance.

    ``@handler`` for a built-in type; ``@handler(params_model=MyParams)`` for a new one.
    """

    def wrap(klass: type[H]) -> type[H]:
        register_handler(klass(), params_model=params_model, description=description, target_kind=target_kind)
        return klass

    return wrap(cls) if cls is not None else wrap


def get_handler(action_type: str) -> ActionHandler:
    """The handler of ``action_type``; ``UnknownActionType`` or ``HandlerNotRegistered`` if there is none."""
    spec = spec_of(action_type)
    if spec.handler is None:
        raise HandlerNotRegistered(action_type)
    found: ActionHandler = spec.handler
    return found


def load_entry_point_handlers(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Load every handler advertised in entry-point ``group`` and return the action types registered.

    An entry point names a handler class (instantiated without arguments) or a handler instance; a new type
    exposes its params model as the ``params_model`` attribute. Raises ``ConfigurationError`` naming the entry
    point that failed to load.
    """
    loaded: list[str] = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            obj: Any = ep.load()
            instance = obj() if isinstance(obj, type) else obj
            register_handler(instance, params_model=getattr(instance, "params_model", None))
        except (ImportError, AttributeError, TypeError, InvalidInput, UnknownActionType) as exc:
            raise ConfigurationError(
                f"handler entry point {ep.name!r} ({ep.value}) failed to load: {exc}", entry_point=ep.name
            ) from exc
        loaded.append(instance.action_type)
    return loaded
