"""The agent lifecycle (checked when defined, like every machine):

    active ◄──► paused
      │           │
      └──► retired ◄┘

A paused agent's proposals are refused by the policy (``AGENT_PAUSED``); a retired agent never comes back.
"""

from __future__ import annotations

from saferails.lifecycle import StateMachine, Transition

ACTIVE = "active"
PAUSED = "paused"
RETIRED = "retired"

AGENT_MACHINE = StateMachine.define(
    "agent",
    initial=ACTIVE,
    final=[RETIRED],
    transitions=[
        Transition(ACTIVE, PAUSED, "pause"),
        Transition(PAUSED, ACTIVE, "resume"),
        Transition(ACTIVE, RETIRED, "retire"),
        Transition(PAUSED, RETIRED, "retire"),
    ],
    descriptions={
        ACTIVE: "may propose actions (the policy still decides each one)",
        PAUSED: "every new proposal is refused until resumed or paused_until passes",
        RETIRED: "never proposes again",
    },
)
