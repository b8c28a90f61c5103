"""The condition language: every operator both ways, dot paths, combinators, malformed input, limits, safety."""

from __future__ import annotations

import ast
import inspect
from typing import Any

import pytest

from saferails import conditions
from saferails.conditions import (
    MAX_DEPTH,
    MAX_NODES,
    AllOf,
    AnyOf,
    Comparison,
    Not,
    parse_condition,
    resolve_path,
)
from saferails.errors import ConditionEvaluationError, ConditionInvalid

CONTEXT: dict[str, Any] = {
    "impact": "high",
    "priority": 7,
    "ratio": 0.5,
    "flag": True,
    "nothing": None,
    "params": {
        "amount": 120,
        "subject": "quarterly report",
        "to": ["alice@example.com", "bob@example.com"],
        "meta": {"source": "agent"},
        "items": [{"name": "first"}, {"name": "second"}],
    },
    "step-one": {"riskScore": 9},
}


def leaf(field: str, operator: str, value: Any = None, *, with_value: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {"field": field, "operator": operator}
    if with_value:
        data["value"] = value
    return data


def holds(data: object, context: dict[str, Any] = CONTEXT) -> bool:
    return parse_condition(data).evaluate(context)


# --- operators ------------------------------------------------------------------------------------------------

OPERATOR_CASES = [
    ("eq", "impact", "high", True),
    ("eq", "impact", "low", False),
    ("ne", "impact", "low", True),
    ("ne", "impact", "high", False),
    ("gt", "priority", 5, True),
    ("gt", "priority", 7, False),
    ("lt", "priority", 8, True),
    ("lt", "priority", 7, False),
    ("gte", "priority", 7, True),
    ("gte", "priority", 8, False),
    ("lte", "priority", 7, True),
    ("lte", "priority", 6, False),
    ("gt", "ratio", 0.25, True),
    ("lt", "impact", "low", True),
    ("in", "impact", ["medium", "high"], True),
    ("in", "impact", ["low", "medium"], False),
    ("contains", "params.subject", "report", True),
    ("contains", "params.subject", "invoice", False),
    ("contains", "params.to", "bob@example.com", True),
    ("contains", "params.to", "eve@example.com", False),
    ("contains", "params.meta", "source", True),
    ("contains", "params.meta", "target", False),
    ("exists", "params.amount", True, True),
    ("exists", "params.missing", True, False),
    ("exists", "params.missing", False, True),
    ("exists", "params.amount", False, False),
]


@pytest.mark.parametrize(
    ("operator", "field", "value", "expected"),
    OPERATOR_CASES,
    ids=[f"{op}-{field}-{value!r}-is-{expected}" for op, field, value, expected in OPERATOR_CASES],
)
def test_each_operator_answers_true_and_false(operator: str, field: str, value: Any, expected: bool) -> None:
    assert holds(leaf(field, operator, value)) is expected


def test_exists_without_a_value_means_the_path_resolves() -> None:
    assert holds(leaf("params.amount", "exists", with_value=False)) is True
    assert holds(leaf("params.nope", "exists", with_value=False)) is False


def test_a_path_resolving_to_null_exists_and_equals_null() -> None:
    assert holds(leaf("nothing", "exists", True)) is True
    assert holds(leaf("nothing", "eq", None)) is True


def test_booleans_never_equal_numbers() -> None:
    assert holds(leaf("flag", "eq", 1)) is False
    assert holds(leaf("flag", "eq", True)) is True
    assert holds(leaf("priority", "in", [True, 7])) is True
    assert holds(leaf("flag", "in", [1])) is False


# --- dot paths ------------------------------------------------------------------------------------------------


def test_dot_paths_walk_dicts_and_list_indexes() -> None:
    assert resolve_path(CONTEXT, "params.items.1.name") == (True, "second")
    assert resolve_path(CONTEXT, "params.meta.source") == (True, "agent")
    assert holds(leaf("params.items.0.name", "eq", "first")) is True


def test_path_segments_may_contain_hyphens_like_step_ids() -> None:
    assert holds(leaf("step-one.riskScore", "gt", 7)) is True


@pytest.mark.parametrize(
    "path",
    [
        "absent",
        "params.absent",
        "params.items.5.name",
        "params.items.x",
        "params.items.-1",
        "impact.length",
        "priority.0",
    ],
)
def test_paths_that_do_not_resolve_report_not_found(path: str) -> None:
    assert resolve_path(CONTEXT, path) == (False, None)


@pytest.mark.parametrize("operator", ["eq", "ne", "gt", "lt", "gte", "lte", "in", "contains"])
def test_every_operator_but_exists_is_false_on_a_missing_path(operator: str) -> None:
    value: Any = [1] if operator == "in" else 1
    assert holds(leaf("params.absent.deeper", operator, value)) is False


# --- combinators ----------------------------------------------------------------------------------------------


def test_all_needs_every_item_true() -> None:
    assert holds({"all": [leaf("impact", "eq", "high"), leaf("priority", "gt", 5)]}) is True
    assert holds({"all": [leaf("impact", "eq", "high"), leaf("priority", "gt", 9)]}) is False


def test_any_needs_one_item_true() -> None:
    assert holds({"any": [leaf("impact", "eq", "low"), leaf("priority", "gt", 5)]}) is True
    assert holds({"any": [leaf("impact", "eq", "low"), leaf("priority", "gt", 9)]}) is False


def test_not_inverts() -> None:
    assert holds({"not": leaf("impact", "eq", "low")}) is True
    assert holds({"not": leaf("impact", "eq", "high")}) is False


def test_combinators_short_circuit_so_unreached_type_errors_do_not_raise() -> None:
    bad = leaf("impact", "gt", 3)
    assert holds({"any": [leaf("impact", "eq", "high"), bad]}) is True
    assert holds({"all": [leaf("impact", "eq", "low"), bad]}) is False


# --- evaluation type errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "types"),
    [
        (leaf("impact", "gt", 3), ("str", "int")),
        (leaf("priority", "lte", "high"), ("int", "str")),
        (leaf("flag", "gte", 1), ("bool", "int")),
        (leaf("nothing", "lt", 1), ("null", "int")),
        (leaf("priority", "contains", 7), ("int", "int")),
        (leaf("params.subject", "contains", 7), ("str", "int")),
    ],
)
def test_a_type_mismatch_raises_an_evaluation_error_naming_the_field_and_both_types(
    data: dict[str, Any], types: tuple[str, str]
) -> None:
    with pytest.raises(ConditionEvaluationError) as caught:
        holds(data)
    assert repr(data["field"]) in caught.value.message
    assert f"field value is {types[0]}" in caught.value.message
    assert f"compared value is {types[1]}" in caught.value.message
    assert caught.value.details["field"] == data["field"]


# --- malformed input ------------------------------------------------------------------------------------------

MALFORMED = [
    ("not-a-mapping", ["field"], "condition: expected a mapping"),
    ("unknown-operator", leaf("a", "regex", "x"), "condition.operator: unknown operator 'regex'; expected one of eq"),
    (
        "unknown-operator-deep",
        {"all": [leaf("a", "eq", 1), leaf("b", "eq", 2), leaf("c", "regex", "x")]},
        "condition.all[2].operator: unknown operator 'regex'",
    ),
    ("unknown-leaf-key", {**leaf("a", "eq", 1), "colour": "red"}, "condition: unknown key(s) 'colour'"),
    (
        "mixed-combinator",
        {"all": [leaf("a", "eq", 1)], "field": "a"},
        "condition: unknown key(s) 'field' next to 'all'",
    ),
    ("two-combinators", {"all": [leaf("a", "eq", 1)], "any": [leaf("a", "eq", 1)]}, "next to 'all'"),
    ("empty-all", {"all": []}, "condition.all: must list at least one condition"),
    ("empty-any", {"not": {"any": []}}, "condition.not.any: must list at least one condition"),
    ("all-not-a-list", {"all": leaf("a", "eq", 1)}, "condition.all: expected a list of conditions"),
    ("missing-field", {"operator": "eq", "value": 1}, "condition: missing 'field'"),
    ("missing-operator", {"field": "a", "value": 1}, "condition: missing 'operator'"),
    ("missing-value", leaf("a", "eq", with_value=False), "condition: missing 'value' for operator 'eq'"),
    ("empty-path-segment", leaf("a..b", "eq", 1), "condition.field: expected a dot path"),
    ("path-with-space", leaf("a b", "eq", 1), "condition.field: expected a dot path"),
    ("field-not-a-string", leaf(3, "eq", 1), "condition.field: expected a dot path"),  # type: ignore[arg-type]
    ("in-needs-a-list", leaf("a", "in", "abc"), "condition.value: 'in' takes a list"),
    ("in-item-not-scalar", leaf("a", "in", [1, {"x": 1}]), "condition.value[1]: expected a string, number"),
    ("exists-needs-bool", leaf("a", "exists", "yes"), "condition.value: 'exists' takes true or false"),
    ("ordering-needs-number-or-string", leaf("a", "gt", None), "condition.value: 'gt' takes a number or a string"),
    ("value-not-scalar", leaf("a", "eq", {"x": 1}), "condition.value: expected a string, number"),
    ("value-not-finite", leaf("a", "lt", float("nan")), "condition.value: numbers must be finite"),
    (
        "nested-path-in-not",
        {"any": [{"not": {"all": [leaf("a", "eq", 1), "oops"]}}]},
        "condition.any[0].not.all[1]: expected a mapping",
    ),
]


@pytest.mark.parametrize(("data", "message"), [(d, m) for _, d, m in MALFORMED], ids=[i for i, _, _ in MALFORMED])
def test_malformed_conditions_are_refused_with_the_path_inside_the_expression(data: object, message: str) -> None:
    with pytest.raises(ConditionInvalid) as caught:
        parse_condition(data)
    assert message in caught.value.message


def test_the_root_name_in_error_messages_can_be_chosen_by_the_caller() -> None:
    with pytest.raises(ConditionInvalid, match=r"^when\.any\[0\]\.operator: unknown operator"):
        parse_condition({"any": [leaf("a", "like", 1)]}, root="when")


def test_nesting_deeper_than_the_limit_is_refused_before_recursing() -> None:
    ok: dict[str, Any] = leaf("a", "eq", 1)
    for _ in range(MAX_DEPTH - 1):
        ok = {"not": ok}
    assert parse_condition(ok).evaluate({"a": 1}) is ((MAX_DEPTH - 1) % 2 == 0)  # an odd number of nots
    hostile: dict[str, Any] = leaf("a", "eq", 1)
    for _ in range(10_000):
        hostile = {"not": hostile}
    with pytest.raises(ConditionInvalid, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse_condition(hostile)


def test_more_nodes_than_the_limit_are_refused() -> None:
    wide = {"any": [leaf("a", "eq", i) for i in range(MAX_NODES)]}
    with pytest.raises(ConditionInvalid, match=f"more than {MAX_NODES} nodes"):
        parse_condition(wide)


# --- AST, round trip, fields ----------------------------------------------------------------------------------


def test_parsing_builds_an_immutable_typed_tree() -> None:
    parsed = parse_condition({"all": [leaf("a", "in", [1, 2]), {"not": leaf("b", "exists", with_value=False)}]})
    assert parsed == AllOf((Comparison("a", "in", (1, 2)), Not(Comparison("b", "exists", True))))
    with pytest.raises(AttributeError):
        parsed.conditions = ()  # type: ignore[misc]
    assert hash(parsed) == hash(parse_condition(parsed.to_data()))


ROUND_TRIPS: list[dict[str, Any]] = [
    leaf("a.b.0", "eq", "x"),
    leaf("a", "in", [1, "two", None, 2.5, False]),
    leaf("a", "exists", False),
    {"any": [leaf("a", "gt", 1), {"not": {"all": [leaf("b", "contains", "z"), leaf("c", "lte", 3)]}}]},
]


@pytest.mark.parametrize("data", ROUND_TRIPS, ids=["leaf", "in-list", "exists-false", "nested"])
def test_to_data_round_trips_to_the_same_data_and_the_same_tree(data: dict[str, Any]) -> None:
    parsed = parse_condition(data)
    assert parsed.to_data() == data
    assert parse_condition(parsed.to_data()) == parsed


def test_exists_without_value_round_trips_with_the_default_made_explicit() -> None:
    parsed = parse_condition(leaf("a", "exists", with_value=False))
    assert parsed.to_data() == leaf("a", "exists", True)


def test_fields_lists_every_referenced_path() -> None:
    parsed = parse_condition(
        {"all": [leaf("steps.fetch.status", "eq", "ok"), {"not": {"any": [leaf("a", "eq", 1), leaf("b.c", "gt", 2)]}}]}
    )
    assert parsed.fields() == frozenset({"steps.fetch.status", "a", "b.c"})
    assert isinstance(parse_condition({"any": [leaf("x", "eq", 1)]}), AnyOf)


def test_constructing_nodes_directly_still_refuses_unknown_operators_and_empty_lists() -> None:
    with pytest.raises(ConditionInvalid):
        Comparison("a", "regex", 1)  # type: ignore[arg-type]
    with pytest.raises(ConditionInvalid):
        AllOf(())


# --- safety ---------------------------------------------------------------------------------------------------


def test_the_condition_module_never_calls_eval_exec_or_compile() -> None:
    tree = ast.parse(inspect.getsource(conditions))
    forbidden = {"eval", "exec", "compile", "__import__"}

    def is_forbidden(func: ast.expr) -> bool:
        if isinstance(func, ast.Name):
            return func.id in forbidden
        # builtins.eval(...) and friends; re.compile is a regular expression, not code.
        return isinstance(func, ast.Attribute) and (
            func.attr in {"eval", "exec"}
            or (func.attr in forbidden and isinstance(func.value, ast.Name) and func.value.id == "builtins")
        )

    calls = [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.Call) and is_forbidden(node.func)]
    assert calls == []
