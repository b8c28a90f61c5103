"""Templates in step configs: ``{inputs.x}``, ``{steps.<id>.output.<path>}``, ``{execution.id}``, ``{step.id}``,
``{loop.item}``, ``{loop.index}``.

A placeholder is a brace pair around a dot path whose first segment is one of ``ROOTS``; any other brace is left
as it is (JSON in a string stays untouched). A string that is exactly one placeholder resolves to the value
itself (a list stays a list, a number a number); inside a longer string the value is interpolated (mappings and
lists as JSON). Resolution is a lookup, never evaluation. A placeholder that does not resolve raises
``TemplateError``: a step never sends a request with a hole in it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from saferails.conditions import resolve_path
from saferails.errors import InvalidInput

ROOTS = ("inputs", "steps", "execution", "step", "loop", "context")
PLACEHOLDER = re.compile(r"\{((?:" + "|".join(ROOTS) + r")(?:\.[A-Za-z0-9_\-]+)*)\}")


class TemplateError(InvalidInput):
    """A template referenced a value that does not exist at run time."""

    code = "RUNBOOK_TEMPLATE_UNRESOLVED"


def references(value: Any) -> Iterator[str]:
    """Every placeholder path in ``value`` (strings, and the strings nested in mappings and lists)."""
    if isinstance(value, str):
        yield from (m.group(1) for m in PLACEHOLDER.finditer(value))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from references(key)
            yield from references(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from references(item)


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Resolve every placeholder in ``value`` against ``context`` (recursively through mappings and lists)."""
    if isinstance(value, str):
        return _render_string(value, context)
    if isinstance(value, Mapping):
        return {str(render(k, context)): render(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(item, context) for item in value]
    return value


def _lookup(path: str, context: Mapping[str, Any]) -> Any:
    found, value = resolve_path(context, path)
    if not found:
        raise TemplateError(f"template {{{path}}} does not resolve", path=path)
    return value


def _render_string(text: str, context: Mapping[str, Any]) -> Any:
    whole = PLACEHOLDER.fullmatch(text)
    if whole is not None:
        return _lookup(whole.group(1), context)

    def substitute(match: re.Match[str]) -> str:
        value = _lookup(match.group(1), context)
        if isinstance(value, str):
            return value
        return json.dumps(value, sort_keys=True, default=str)

    return PLACEHOLDER.sub(substitute, text)
