"""The one safe condition language used by policy rules, runbooks and workflow triggers.

A condition is plain data (from YAML or JSON), parsed once into an immutable AST of frozen dataclasses and then
evaluated against a context mapping. Nothing is ever compiled or executed: there is no ``eval`` here, only a
fixed set of operators over values looked up by dot paths.

Grammar::

    leaf     {"field": "a.b.0.c", "operator": OP, "value": V}
    all      {"all": [condition, ...]}      # non-empty; true when every item is true
    any      {"any": [condition, ...]}      # non-empty; true when at least one item is true
    not      {"not": condition}

Operators: ``eq ne gt lt gte lte in contains exists``. Values are JSON scalars (str, int, float, bool, null);
``in`` takes a list of scalars; ``exists`` takes a bool (default true); ``gt lt gte lte`` take a number or a
string. Booleans never equal numbers (``true`` is not ``1``).

Contracts:

* ``parse_condition`` refuses malformed input with ``ConditionInvalid`` whose message starts with the path inside
  the expression (``condition.all[2].operator: ...``). Unknown keys, empty ``all``/``any`` lists, nesting deeper
  than ``MAX_DEPTH`` and more than ``MAX_NODES`` nodes are refused, so hostile input cannot exhaust the stack.
* ``evaluate`` never raises for a path that does not resolve: ``exists`` answers accordingly and every other
  operator (``ne`` included) is False. It raises ``ConditionEvaluationError`` naming the field and both types
  when a value cannot be compared (``gt`` between ``str`` and ``int``, ``contains`` on a number); the caller
  decides what that means (the policy engine denies).
* ``all``/``any`` short-circuit left to right, so an item that is never reached cannot raise.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast, get_args

from saferails.errors import ConditionEvaluationError, ConditionInvalid

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "OPERATORS",
    "AllOf",
    "AnyOf",
    "Comparison",
    "Condition",
    "Not",
    "Operator",
    "parse_condition",
    "resolve_path",
]

Operator = Literal["eq", "ne", "gt", "lt", "gte", "lte", "in", "contains", "exists"]
OPERATORS: Final[tuple[str, ...]] = get_args(Operator)
MAX_DEPTH: Final = 32
MAX_NODES: Final = 1000
MAX_PATH_LENGTH: Final = 256

Scalar = str | int | float | bool | None
_ORDERING: Final = frozenset({"gt", "lt", "gte", "lte"})
_LEAF_KEYS: Final = ("field", "operator", "value")
_COMBINATOR_KEYS: Final = ("all", "any", "not")
# A segment is anything but a dot or whitespace, so step ids like ``enrich-indicators`` are valid paths.
_PATH_RE: Final = re.compile(r"[^.\s]+(?:\.[^.\s]+)*")


class Condition(ABC):
    """A parsed, immutable condition. Build one with :func:`parse_condition`."""

    __slots__ = ()

    @abstractmethod
    def evaluate(self, context: Mapping[str, Any]) -> bool:
        """True or False for ``context``; raises ``ConditionEvaluationError`` on a type mismatch."""

    @abstractmethod
    def to_data(self) -> dict[str, Any]:
        """Plain data such that ``parse_condition(c.to_data()) == c``."""

    @abstractmethod
    def fields(self) -> frozenset[str]:
        """Every dot path this condition reads."""


@dataclass(frozen=True, slots=True)
class Comparison(Condition):
    """A leaf: compare the value at ``field`` with ``value`` using ``operator``."""

    field: str
    operator: Operator
    value: Scalar | tuple[Scalar, ...] = True

    def __post_init__(self) -> None:
        # Guards direct construction; parse_condition reports the same problems with a path.
        if self.operator not in OPERATORS:
            raise ConditionInvalid(f"condition.operator: unknown operator {self.operator!r}")

    def evaluate(self, context: Mapping[str, Any]) -> bool:
        found, actual = resolve_path(context, self.field)
        if self.operator == "exists":
            return found is bool(self.value)
        if not found:
            return False
        return _compare(self.field, self.operator, actual, self.value)

    def to_data(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"field": self.field, "operator": self.operator, "value": value}

    def fields(self) -> frozenset[str]:
        return frozenset({self.field})


@dataclass(frozen=True, slots=True)
class AllOf(Condition):
    """True when every item is true (short-circuits)."""

    conditions: tuple[Condition, ...]

    def __post_init__(self) -> None:
        if not self.conditions:
            raise ConditionInvalid("condition.all: must list at least one condition")

    def evaluate(self, context: Mapping[str, Any]) -> bool:
        return all(c.evaluate(context) for c in self.conditions)

    def to_data(self) -> dict[str, Any]:
        return {"all": [c.to_data() for c in self.conditions]}

    def fields(self) -> frozenset[str]:
        return frozenset().union(*(c.fields() for c in self.conditions))


@dataclass(frozen=True, slots=True)
class AnyOf(Condition):
    """True when at least one item is true (short-circuits)."""

    conditions: tuple[Condition, ...]

    def __post_init__(self) -> None:
        if not self.conditions:
            raise ConditionInvalid("condition.any: must list at least one condition")

    def evaluate(self, context: Mapping[str, Any]) -> bool:
        return any(c.evaluate(context) for c in self.conditions)

    def to_data(self) -> dict[str, Any]:
        return {"any": [c.to_data() for c in self.conditions]}

    def fields(self) -> frozenset[str]:
        return frozenset().union(*(c.fields() for c in self.conditions))


@dataclass(frozen=True, slots=True)
class Not(Condition):
    """True when the inner condition is false."""

    condition: Condition

    def evaluate(self, context: Mapping[str, Any]) -> bool:
        return not self.condition.evaluate(context)

    def to_data(self) -> dict[str, Any]:
        return {"not": self.condition.to_data()}

    def fields(self) -> frozenset[str]:
        return self.condition.fields()


# --- paths ----------------------------------------------------------------------------------------------------


def resolve_path(context: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    """Walk ``path`` (dot-separated) through mappings (by key) and lists/tuples (by integer index).

    Returns ``(True, value)`` when every segment resolves, else ``(False, None)``. Never raises: a missing key,
    an index out of range, a non-integer segment on a list or a step into a scalar all mean "does not resolve".
    Strings are not walked into.
    """
    current: Any = context
    for segment in path.split("."):
        if isinstance(current, Mapping):
            if segment not in current:
                return False, None
            current = current[segment]
        elif isinstance(current, Sequence) and not isinstance(current, str | bytes):
            if not (segment.isascii() and segment.isdigit()):
                return False, None
            index = int(segment)
            if index >= len(current):
                return False, None
            current = current[index]
        else:
            return False, None
    return True, current


# --- evaluation -----------------------------------------------------------------------------------------------


def _same(left: object, right: object) -> bool:
    # Python says True == 1; a policy author comparing a flag to a count almost certainly made a mistake.
    if isinstance(left, bool) != isinstance(right, bool):
        return False
    return left == right


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _type_error(field: str, operator: str, actual: object, expected: object) -> ConditionEvaluationError:
    return ConditionEvaluationError(
        f"cannot evaluate {field!r} {operator} {expected!r}: field value is {_type_name(actual)}, "
        f"compared value is {_type_name(expected)}",
        field=field,
        operator=operator,
        field_type=_type_name(actual),
        value_type=_type_name(expected),
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(field: str, operator: str, actual: Any, expected: Any) -> bool:
    if operator == "eq":
        return _same(actual, expected)
    if operator == "ne":
        return not _same(actual, expected)
    if operator == "in":
        return any(_same(actual, item) for item in expected)
    if operator == "contains":
        return _contains(field, actual, expected)
    both_numbers = _is_number(actual) and _is_number(expected)
    if not (both_numbers or (isinstance(actual, str) and isinstance(expected, str))):
        raise _type_error(field, operator, actual, expected)
    if operator == "gt":
        return bool(actual > expected)
    if operator == "lt":
        return bool(actual < expected)
    if operator == "gte":
        return bool(actual >= expected)
    return bool(actual <= expected)


def _contains(field: str, actual: Any, expected: Any) -> bool:
    if isinstance(actual, str):
        if not isinstance(expected, str):
            raise _type_error(field, "contains", actual, expected)
        return expected in actual
    if isinstance(actual, Mapping):
        return any(_same(key, expected) for key in actual)
    if isinstance(actual, Sequence | set | frozenset) and not isinstance(actual, bytes):
        return any(_same(item, expected) for item in actual)
    raise _type_error(field, "contains", actual, expected)


# --- parsing --------------------------------------------------------------------------------------------------


class _Budget:
    """Counts nodes across one parse so a wide expression is refused as surely as a deep one."""

    def __init__(self) -> None:
        self.nodes = 0

    def take(self, where: str) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ConditionInvalid(f"{where}: condition has more than {MAX_NODES} nodes")


def parse_condition(data: object, *, root: str = "condition") -> Condition:
    """Parse plain data into a :class:`Condition`; ``root`` names the expression in error messages.

    Raises ``ConditionInvalid`` naming the path of the first problem found.
    """
    return _parse(data, root, 1, _Budget())


def _parse(data: object, where: str, depth: int, budget: _Budget) -> Condition:
    if depth > MAX_DEPTH:
        raise ConditionInvalid(f"{where}: condition nested deeper than {MAX_DEPTH} levels")
    budget.take(where)
    if not isinstance(data, Mapping):
        raise ConditionInvalid(
            f"{where}: expected a mapping with field/operator/value or one of all, any, not; got {_type_name(data)}"
        )
    keys = list(data.keys())
    combinators = [k for k in keys if k in _COMBINATOR_KEYS]
    if combinators:
        kind = cast(str, combinators[0])
        extra = [k for k in keys if k != kind]
        if extra:
            raise ConditionInvalid(
                f"{where}: unknown key(s) {_keys(extra)} next to {kind!r}; a combinator has exactly one key"
            )
        return _parse_combinator(kind, data[kind], f"{where}.{kind}", depth, budget)
    return _parse_leaf(data, keys, where)


def _parse_combinator(kind: str, body: object, where: str, depth: int, budget: _Budget) -> Condition:
    if kind == "not":
        return Not(_parse(body, where, depth + 1, budget))
    if not isinstance(body, list | tuple):
        raise ConditionInvalid(f"{where}: expected a list of conditions, got {_type_name(body)}")
    if not body:
        raise ConditionInvalid(f"{where}: must list at least one condition")
    items = tuple(_parse(item, f"{where}[{i}]", depth + 1, budget) for i, item in enumerate(body))
    return AllOf(items) if kind == "all" else AnyOf(items)


def _parse_leaf(data: Mapping[Any, Any], keys: list[Any], where: str) -> Condition:
    unknown = [k for k in keys if k not in _LEAF_KEYS]
    if unknown:
        raise ConditionInvalid(
            f"{where}: unknown key(s) {_keys(unknown)}; expected field/operator/value or one of all, any, not"
        )
    for required in ("field", "operator"):
        if required not in data:
            raise ConditionInvalid(f"{where}: missing {required!r}")
    field = data["field"]
    if not isinstance(field, str) or len(field) > MAX_PATH_LENGTH or not _PATH_RE.fullmatch(field):
        raise ConditionInvalid(
            f"{where}.field: expected a dot path like 'params.amount' (no spaces, no empty segments, at most "
            f"{MAX_PATH_LENGTH} characters), got {field!r}"
        )
    operator = data["operator"]
    if operator not in OPERATORS:
        expected = ", ".join(OPERATORS)
        raise ConditionInvalid(f"{where}.operator: unknown operator {operator!r}; expected one of {expected}")
    op = cast(Operator, operator)
    if op == "exists":
        value = data.get("value", True)
        if not isinstance(value, bool):
            raise ConditionInvalid(f"{where}.value: 'exists' takes true or false, got {value!r}")
        return Comparison(field, op, value)
    if "value" not in data:
        raise ConditionInvalid(f"{where}: missing 'value' for operator {op!r}")
    return Comparison(field, op, _parse_value(op, data["value"], f"{where}.value"))


def _parse_value(op: Operator, value: object, where: str) -> Scalar | tuple[Scalar, ...]:
    if op == "in":
        if not isinstance(value, list | tuple):
            raise ConditionInvalid(f"{where}: 'in' takes a list of values, got {_type_name(value)}")
        return tuple(_scalar(item, f"{where}[{i}]") for i, item in enumerate(value))
    scalar = _scalar(value, where)
    if op in _ORDERING and not (_is_number(scalar) or isinstance(scalar, str)):
        raise ConditionInvalid(f"{where}: {op!r} takes a number or a string, got {_type_name(scalar)}")
    return scalar


def _scalar(value: object, where: str) -> Scalar:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConditionInvalid(f"{where}: numbers must be finite, got {value!r}")
        return value
    raise ConditionInvalid(f"{where}: expected a string, number, boolean or null, got {_type_name(value)}")


def _keys(keys: list[Any]) -> str:
    return ", ".join(repr(k) for k in keys)
