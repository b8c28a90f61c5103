"""Bounds on what callers may hand the core, and the mapping of low-level failures on bad input to typed errors.

The agent is the adversary: anything it sends (parameters, ids, strings, dates) must either be refused with a
typed ``InvalidInput`` before a row is written, or be safe on both backends. ``check_json`` enforces the
bounds on JSON documents (size, nesting, strings without NUL or lone surrogates, integers that fit 64 bits,
finite floats that survive a PostgreSQL JSONB round trip unchanged); ``check_text`` / ``check_identifier``
the bounds on single strings. ``typed_errors`` wraps a public service method so that a driver or interpreter
error caused by input that slipped through (PostgreSQL's "NUL character" ``DataError``, ``OverflowError``,
``RecursionError``, an undecodable string) reaches the caller as ``InvalidInput`` instead of escaping the
error hierarchy.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa

from saferails.errors import InvalidInput, SaferailsError, StoreUnavailable

P = ParamSpec("P")
R = TypeVar("R")

MAX_JSON_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32
MAX_INT = 2**63 - 1
# Floats from 1e16 up print in exponent form in Python but come back from PostgreSQL's JSONB (numeric) as
# integers, which would change the action hash between proposal and execution.
MAX_FLOAT = 1e15
MAX_ID_LENGTH = 200
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=#~-]*")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f]")


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def text_problem(value: str, *, multiline: bool = False, max_length: int | None = None) -> str | None:
    """Why ``value`` is not acceptable text (NUL / control characters, lone surrogates, too long), or None.
    ``multiline`` allows tab, LF and CR."""
    if max_length is not None and len(value) > max_length:
        return f"longer than {max_length} characters"
    if (_CONTROL if multiline else _CONTROL_OR_NEWLINE).search(value):
        return "contains NUL or control characters"
    if _has_surrogate(value):
        return "is not valid Unicode (lone surrogate)"
    return None


def check_text(field: str, value: str, *, multiline: bool = False, max_length: int | None = None) -> str:
    """``value`` unchanged, or ``InvalidInput`` naming ``field``."""
    problem = text_problem(value, multiline=multiline, max_length=max_length)
    if problem is not None:
        raise InvalidInput(f"{field} {problem}", field=field)
    return value


def identifier_problem(value: str, max_length: int = MAX_ID_LENGTH) -> str | None:
    if not value or len(value) > max_length:
        return f"must be 1-{max_length} characters"
    if not _IDENTIFIER.fullmatch(value):
        return "may only contain letters, digits and . _ : @ / + = # ~ - (starting with a letter or digit)"
    return None


def check_identifier(field: str, value: object, max_length: int = MAX_ID_LENGTH) -> str:
    """An id a caller names (action id, tenant, idempotency key): ``InvalidInput`` unless it is a short string
    of the identifier charset."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    problem = identifier_problem(value, max_length)
    if problem is not None:
        raise InvalidInput(f"{field} {problem}", field=field)
    return value


def datetime_problem(value: datetime) -> str | None:
    if value.tzinfo is None:
        return "needs a timezone (e.g. 2026-11-22T10:00:00Z)"
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        return "is out of range"
    if not EARLIEST <= utc < LATEST:
        return f"must lie between {EARLIEST.date()} and {LATEST.date()}"
    return None


def json_problems(value: Any, path: str = "params", *, max_bytes: int = MAX_JSON_BYTES,
                  max_depth: int = MAX_JSON_DEPTH) -> list[str]:
    """Every bound ``value`` (a JSON document) breaks, each prefixed with its path; empty if none."""
    problems: list[str] = []

    def walk(node: Any, where: str, depth: int) -> None:
        if len(problems) >= 20:
            return
        if depth > max_depth:
            problems.append(f"{where}: nested deeper than {max_depth} levels")
            return
        if node is None or isinstance(node, bool):
            return
        if isinstance(node, int):
            if not -MAX_INT <= node <= MAX_INT:
                problems.append(f"{where}: integer outside the 64-bit range")
        elif isinstance(node, float):
            if node != node or node in (float("inf"), float("-inf")):
                problems.append(f"{where}: not a finite number")
            elif abs(node) >= MAX_FLOAT:
                problems.append(f"{where}: float magnitude must be below {MAX_FLOAT:.0e}")
        elif isinstance(node, str):
            problem = text_problem(node, multiline=True, max_length=max_bytes)
            if problem is not None:
                problems.append(f"{where}: {problem}")
        elif isinstance(node, dict):
            for key, item in node.items():
                if not isinstance(key, str):
                    problems.append(f"{where}: keys must be strings")
                    continue
                problem = text_problem(key, max_length=200)
                if problem is not None:
                    problems.append(f"{where}: key {problem}")
                    continue
                walk(item, f"{where}.{key}", depth + 1)
        elif isinstance(node, (list, tuple)):
            for index, item in enumerate(node):
                walk(item, f"{where}[{index}]", depth + 1)
        else:
            problems.append(f"{where}: {type(node).__name__} is not a JSON value")

    walk(value, path, 1)
    if not problems:
        size = len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8"))
        if size > max_bytes:
            problems.append(f"{path}: {size} bytes of JSON, more than {max_bytes}")
    return problems


def check_json(value: Any, path: str = "params") -> Any:
    """``value`` unchanged, or ``InvalidInput`` listing the bounds it breaks."""
    problems = json_problems(value, path)
    if problems:
        raise InvalidInput(f"{path} refused: {'; '.join(problems)}", problems=problems)
    return value


def as_typed_error(exc: BaseException) -> SaferailsError | None:
    """The typed error for a low-level failure caused by bad input, or None if ``exc`` is something else (a
    bug, a lost connection) that must keep propagating as it is."""
    if isinstance(exc, SaferailsError):
        return exc
    if isinstance(exc, sa.exc.DataError):
        return InvalidInput(f"the store refused a value: {str(exc.orig).strip().splitlines()[0]}")
    if isinstance(exc, sa.exc.StatementError) and isinstance(exc.orig, (OverflowError, ValueError, TypeError)):
        return InvalidInput(f"a value cannot be stored: {exc.orig}")
    if isinstance(exc, sa.exc.OperationalError):
        return StoreUnavailable(f"the store failed: {str(exc.orig).strip().splitlines()[0]}")
    if isinstance(exc, (OverflowError, RecursionError, UnicodeError, ValueError, TypeError)):
        return InvalidInput(f"input refused: {type(exc).__name__}: {exc}"[:500])
    return None


def typed_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a public service method: low-level failures on bad input become typed errors, and every
    argument named ``*_id`` must be an identifier (a string of the identifier charset, at most 200
    characters) or the call is refused with ``InvalidInput`` before it reaches the store."""
    signature = inspect.signature(fn)
    ids = [name for name in signature.parameters if name.endswith("_id")]

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if ids:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise InvalidInput(f"{fn.__name__}: {exc}") from None
            for name in ids:
                if name in bound.arguments and bound.arguments[name] is not None:
                    check_identifier(name, bound.arguments[name])
        try:
            return fn(*args, **kwargs)
        except SaferailsError:
            raise
        except Exception as exc:
            typed = as_typed_error(exc)
            if typed is None:
                raise
            raise typed from exc

    return wrapper


__all__ = [
    "EARLIEST",
    "LATEST",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "as_typed_error",
    "check_identifier",
    "check_json",
    "check_text",
    "datetime_problem",
    "identifier_problem",
    "json_problems",
    "text_problem",
    "typed_errors",
]
