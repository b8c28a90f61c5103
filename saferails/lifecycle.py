"""State machines with guarded transitions, checked when they are defined.

A ``StateMachine`` is declared once per entity type (actions here; runbook executions, tasks and action plans
elsewhere). The constructor refuses an unsound graph and names the offending states: a transition to an
unknown state, a state unreachable from the initial one, a non-final state with no way out (a dead end), a
state from which no final state can be reached. "Final" means the lifecycle may rest there; a final state may
still have outgoing transitions (a completed action can be rolled back).

Guards are plain functions ``(subject) -> str | None``: ``None`` lets the transition through, a string is the
reason it is refused. They read the subject (an ORM row or value object) and never write.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from saferails.errors import GuardRejected, InvalidTransition, LifecycleDefinitionError

Guard = Callable[[Any], str | None]


@dataclass(frozen=True)
class Transition:
    source: str
    target: str
    name: str
    guards: tuple[Guard, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class StateMachine:
    """An immutable, validated state graph for one entity type."""

    entity_type: str
    states: tuple[str, ...]
    initial: str
    final: frozenset[str]
    transitions: tuple[Transition, ...]
    descriptions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_graph(self)

    @classmethod
    def define(
        cls,
        entity_type: str,
        *,
        initial: str,
        final: Iterable[str],
        transitions: Iterable[Transition],
        states: Iterable[str] | None = None,
        descriptions: Mapping[str, str] | None = None,
    ) -> StateMachine:
        """Build and check a machine; ``states`` defaults to every state named by a transition."""
        transitions = tuple(transitions)
        named = [initial] + [s for t in transitions for s in (t.source, t.target)]
        all_states = tuple(dict.fromkeys(list(states) if states is not None else named))
        return cls(entity_type, all_states, initial, frozenset(final), transitions, dict(descriptions or {}))

    def transition_for(self, source: str, target: str) -> Transition | None:
        return self._edges.get((source, target))

    @cached_property
    def _edges(self) -> dict[tuple[str, str], Transition]:
        """(source, target) -> the first transition declared for it (built once; the machine is immutable)."""
        edges: dict[tuple[str, str], Transition] = {}
        for t in self.transitions:
            edges.setdefault((t.source, t.target), t)
        return edges

    def allowed_targets(self, source: str) -> tuple[str, ...]:
        return tuple(t.target for t in self.transitions if t.source == source)

    def check(self, current: str, target: str, subject: Any = None, *, entity_id: str | None = None) -> Transition:
        """Return the transition ``current -> target`` or raise.

        Raises ``InvalidTransition`` (naming both states) when the graph has no such edge and
        ``GuardRejected`` with the first guard's reason when a guard refuses it.
        """
        t = self.transition_for(current, target)
        if t is None:
            raise InvalidTransition(self.entity_type, current, target, entity_id=entity_id)
        for guard in t.guards:
            reason = guard(subject)
            if reason is not None:
                raise GuardRejected(self.entity_type, current, target, reason, entity_id=entity_id)
        return t

    def is_final(self, state: str) -> bool:
        return state in self.final

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description for UIs and ``metadata`` commands."""
        return {
            "entity_type": self.entity_type,
            "initial": self.initial,
            "final": sorted(self.final),
            "states": [
                {"name": s, "final": s in self.final, "description": self.descriptions.get(s, "")} for s in self.states
            ],
            "transitions": [
                {
                    "from": t.source,
                    "to": t.target,
                    "name": t.name,
                    "guarded": bool(t.guards),
                    "description": t.description,
                }
                for t in self.transitions
            ],
        }


def _check_graph(m: StateMachine) -> None:
    problems: list[str] = []
    known = set(m.states)
    if m.initial not in known:
        problems.append(f"initial state {m.initial!r} is not a state")
    unknown_final = sorted(m.final - known)
    if unknown_final:
        problems.append(f"final states not in the machine: {unknown_final}")
    if not m.final:
        problems.append("no final state")
    unknown = sorted({s for t in m.transitions for s in (t.source, t.target)} - known)
    if unknown:
        problems.append(f"transitions name unknown states: {unknown}")
    pairs = [(t.source, t.target) for t in m.transitions]
    dupes = sorted({f"{a}->{b}" for a, b in pairs if pairs.count((a, b)) > 1})
    if dupes:
        problems.append(f"duplicate transitions: {dupes}")
    forward: dict[str, set[str]] = {s: set() for s in known}
    backward: dict[str, set[str]] = {s: set() for s in known}
    for t in m.transitions:
        if t.source in known and t.target in known:
            forward[t.source].add(t.target)
            backward[t.target].add(t.source)
    reachable = _closure({m.initial} & known, forward)
    unreachable = sorted(known - reachable)
    if unreachable:
        problems.append(f"states unreachable from {m.initial!r}: {unreachable}")
    dead_ends = sorted(s for s in known if not forward[s] and s not in m.final)
    if dead_ends:
        problems.append(f"dead ends (non-final states with no way out): {dead_ends}")
    can_finish = _closure(set(m.final) & known, backward)
    stuck = sorted(known - can_finish)
    if stuck:
        problems.append(f"states from which no final state is reachable: {stuck}")
    if problems:
        raise LifecycleDefinitionError(
            f"state machine {m.entity_type!r} is unsound: " + "; ".join(problems),
            entity_type=m.entity_type,
            problems=problems,
        )


def _closure(start: set[str], edges: Mapping[str, set[str]]) -> set[str]:
    seen = set(start)
    queue = deque(start)
    while queue:
        for nxt in edges.get(queue.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen
