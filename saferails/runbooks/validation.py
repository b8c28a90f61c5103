"""Loading and whole-document validation of runbooks.

``load_runbook_text`` parses YAML, validates the shape with pydantic and then checks what needs the whole
document: unique step ids, ``depends_on`` naming existing steps, no cycles (the cycle is named), conditional
branch targets that exist and depend on the conditional, loop caps (``continue_while`` needs
``max_iterations``; never above 1000), parseable conditions and template references that can resolve (declared
inputs, steps that are (indirect) dependencies). Every refusal is a ``RunbookInvalid`` whose message names the
step; nothing is started with an invalid runbook because executions only start from registered definitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from saferails.conditions import parse_condition
from saferails.errors import ConditionInvalid
from saferails.runbooks.definition import (
    MAX_LOOP_ITERATIONS,
    STEP_TYPES,
    ConditionalConfig,
    LoopConfig,
    RunbookDefinition,
    RunbookInvalid,
    StepDefinition,
    WaitForEventConfig,
)
from saferails.runbooks.templating import references

EXECUTION_FIELDS = ("id", "tenant", "initiated_by", "runbook_id", "runbook_version")
MAX_DOCUMENT_BYTES = 1_000_000


def load_runbook(path: str | Path) -> RunbookDefinition:
    """Read and validate a runbook YAML file. Raises ``RunbookInvalid`` (also for an unreadable file)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RunbookInvalid(f"cannot read runbook {str(path)!r}: {exc.strerror}", path=str(path)) from None
    return load_runbook_text(text)


def load_runbook_text(text: str) -> RunbookDefinition:
    """Parse and validate a runbook YAML (or JSON) document. Raises ``RunbookInvalid`` naming the step."""
    if len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise RunbookInvalid(f"runbook document is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RunbookInvalid(f"runbook is not valid YAML: {exc}") from None
    return validate_data(data)


def validate_data(data: object) -> RunbookDefinition:
    """Validate already-parsed data (a mapping) into a sound ``RunbookDefinition``."""
    if not isinstance(data, Mapping):
        raise RunbookInvalid("runbook document must be a mapping with id, name, version and steps")
    _precheck_steps(data.get("steps"))
    try:
        definition = RunbookDefinition.model_validate(dict(data))
    except ValidationError as exc:
        raise RunbookInvalid(_describe(exc, data), problems=_problems(exc, data)) from None
    check_definition(definition)
    return definition


def _precheck_steps(steps: object) -> None:
    # Unknown types and duplicate ids get a message naming the step before pydantic's generic wording.
    if not isinstance(steps, list):
        return
    seen: set[str] = set()
    for index, raw in enumerate(steps):
        if not isinstance(raw, Mapping):
            raise RunbookInvalid(f"steps[{index}]: a step must be a mapping with id, type and config")
        step_id = raw.get("id")
        name = repr(step_id) if isinstance(step_id, str) else f"steps[{index}]"
        step_type = raw.get("type")
        if step_type not in STEP_TYPES:
            raise RunbookInvalid(
                f"step {name}: unknown step type {step_type!r}; expected one of {', '.join(STEP_TYPES)}",
                step=step_id,
            )
        if isinstance(step_id, str):
            if step_id in seen:
                raise RunbookInvalid(f"step {name}: duplicate step id", step=step_id)
            seen.add(step_id)


def _step_label(loc: tuple[int | str, ...], data: Mapping[str, Any]) -> str:
    steps = data.get("steps")
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int) and isinstance(steps, list):
        raw = steps[loc[1]] if loc[1] < len(steps) else None
        step_id = raw.get("id") if isinstance(raw, Mapping) else None
        where = ".".join(str(p) for p in loc[2:]) or "(step)"
        return f"step {step_id!r}: {where}" if step_id else f"steps[{loc[1]}].{where}"
    return ".".join(str(p) for p in loc) or "(runbook)"


def _problems(exc: ValidationError, data: Mapping[str, Any]) -> list[str]:
    return [f"{_step_label(tuple(err['loc']), data)}: {err['msg']}" for err in exc.errors()]


def _describe(exc: ValidationError, data: Mapping[str, Any]) -> str:
    return "runbook invalid: " + "; ".join(_problems(exc, data))


def check_definition(defn: RunbookDefinition) -> None:
    """The whole-document checks (see the module docstring). Raises ``RunbookInvalid``."""
    ids = [s.id for s in defn.steps]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise RunbookInvalid(f"step {dupes[0]!r}: duplicate step id", step=dupes[0])
    known = set(ids)
    for step in defn.steps:
        for dep in step.depends_on:
            if dep not in known:
                raise RunbookInvalid(f"step {step.id!r}: depends_on names unknown step {dep!r}", step=step.id)
            if dep == step.id:
                raise RunbookInvalid(f"step {step.id!r}: depends on itself (cycle {step.id} -> {step.id})")
    cycle = find_cycle({s.id: s.depends_on for s in defn.steps})
    if cycle:
        path = " -> ".join(cycle)
        raise RunbookInvalid(f"step {cycle[0]!r}: dependency cycle {path}", step=cycle[0], cycle=cycle)
    ancestors = {s.id: _ancestors(s.id, {t.id: t.depends_on for t in defn.steps}) for s in defn.steps}
    for step in defn.steps:
        _check_step(defn, step, ancestors[step.id], in_loop=False)
        if isinstance(step.config, ConditionalConfig):
            _check_branches(defn, step, step.config)


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A dependency cycle as a path ``[a, b, ..., a]`` (a depends on b ...), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _ancestors(step_id: str, graph: Mapping[str, Iterable[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(graph.get(step_id, ()))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return seen


def _check_branches(defn: RunbookDefinition, step: StepDefinition, config: ConditionalConfig) -> None:
    for label, target in (("true_branch", config.true_branch), ("false_branch", config.false_branch)):
        if target is None:
            continue
        try:
            branch = defn.step(target)
        except KeyError:
            raise RunbookInvalid(f"step {step.id!r}: {label} names unknown step {target!r}", step=step.id) from None
        if step.id not in branch.depends_on:
            raise RunbookInvalid(
                f"step {step.id!r}: {label} {target!r} must list {step.id!r} in its depends_on",
                step=step.id,
            )


def _check_step(defn: RunbookDefinition, step: StepDefinition, ancestors: set[str], *, in_loop: bool) -> None:
    config = step.config
    if isinstance(config, LoopConfig):
        if in_loop:
            raise RunbookInvalid(f"step {step.id!r}: loops cannot be nested")
        _check_loop(defn, step, config, ancestors)
        return
    data = config.model_dump(mode="json")
    conditions: list[tuple[str, Any]] = []
    if isinstance(config, ConditionalConfig):
        conditions.append(("condition", data.pop("condition")))
    if isinstance(config, WaitForEventConfig) and config.match is not None:
        conditions.append(("match", data.pop("match")))
    for path in references(data):
        _check_reference(defn, step, path, ancestors, in_loop=in_loop)
    for label, raw in conditions:
        _check_condition(defn, step, label, raw, ancestors, in_loop=in_loop, extra_roots=("event",))


def _check_loop(defn: RunbookDefinition, step: StepDefinition, config: LoopConfig, ancestors: set[str]) -> None:
    if (config.iterate_over is None) == (config.continue_while is None):
        raise RunbookInvalid(f"step {step.id!r}: a loop needs exactly one of iterate_over or continue_while")
    if config.continue_while is not None and config.max_iterations is None:
        raise RunbookInvalid(
            f"step {step.id!r}: a continue_while loop needs max_iterations (at most {MAX_LOOP_ITERATIONS})"
        )
    if config.max_iterations is not None and config.max_iterations > MAX_LOOP_ITERATIONS:
        raise RunbookInvalid(
            f"step {step.id!r}: max_iterations {config.max_iterations} is above the hard cap of {MAX_LOOP_ITERATIONS}"
        )
    inner = config.step
    if inner.type != "call-service":
        raise RunbookInvalid(f"step {step.id!r}: a loop's inline step must be a call-service step, got {inner.type!r}")
    if inner.depends_on:
        raise RunbookInvalid(f"step {step.id!r}: a loop's inline step cannot have depends_on")
    if config.iterate_over is not None:
        paths = list(references(config.iterate_over))
        if len(paths) != 1 or config.iterate_over.strip() != "{" + paths[0] + "}":
            raise RunbookInvalid(f"step {step.id!r}: iterate_over must be one template like '{{inputs.hosts}}'")
        _check_reference(defn, step, paths[0], ancestors, in_loop=False)
    if config.continue_while is not None:
        _check_condition(defn, step, "continue_while", config.continue_while, ancestors, in_loop=True)
    _check_step(defn, inner.model_copy(update={"id": step.id}), ancestors, in_loop=True)


def _check_condition(
    defn: RunbookDefinition,
    step: StepDefinition,
    label: str,
    raw: Any,
    ancestors: set[str],
    *,
    in_loop: bool,
    extra_roots: tuple[str, ...] = (),
) -> None:
    try:
        condition = parse_condition(raw, root=label)
    except ConditionInvalid as exc:
        raise RunbookInvalid(f"step {step.id!r}: {exc.message}", step=step.id) from None
    for path in condition.fields():
        if path.split(".", 1)[0] in extra_roots:
            continue
        _check_reference(defn, step, path, ancestors, in_loop=in_loop)


def _check_reference(
    defn: RunbookDefinition, step: StepDefinition, path: str, ancestors: set[str], *, in_loop: bool
) -> None:
    parts = path.split(".")
    root = parts[0]

    def refuse(why: str) -> RunbookInvalid:
        return RunbookInvalid(f"step {step.id!r}: template {{{path}}} {why}", step=step.id, reference=path)

    if root == "inputs":
        if len(parts) < 2 or parts[1] not in defn.inputs:
            raise refuse(f"references an input that is not declared (inputs: {', '.join(sorted(defn.inputs)) or '-'})")
    elif root == "steps":
        if len(parts) < 2:
            raise refuse("names no step")
        if parts[1] not in {s.id for s in defn.steps}:
            raise refuse(f"references unknown step {parts[1]!r}")
        if parts[1] not in ancestors:
            raise refuse(f"references step {parts[1]!r}, which is not a dependency (add it to depends_on)")
        if len(parts) >= 3 and parts[2] not in ("output", "state"):
            raise refuse("must read a step's 'output' or 'state'")
    elif root == "execution":
        if len(parts) != 2 or parts[1] not in EXECUTION_FIELDS:
            raise refuse(f"must be one of {', '.join('execution.' + f for f in EXECUTION_FIELDS)}")
    elif root == "step":
        if parts[1:] != ["id"]:
            raise refuse("must be {step.id}")
    elif root == "loop":
        if not in_loop:
            raise refuse("is only available inside a loop")
        if len(parts) < 2 or parts[1] not in ("item", "index", "last", "outputs"):
            raise refuse("must be loop.item, loop.index, loop.last or loop.outputs")
    elif root == "context":
        if len(parts) < 2 or parts[1] not in ("tenant", "initiated_by", "legal_basis", "authorized_users"):
            raise refuse("must read context.tenant, initiated_by, legal_basis or authorized_users")
    else:
        raise refuse(f"has an unknown root {root!r}")
