"""Agent fleet controls (seed 003): agents in the store, paused or budgeted through actions.

``AgentService`` registers and lists agents; ``pause_agent`` / ``resume_agent`` / ``set_budget`` are action types
(handlers in ``saferails.handlers.agents``); the policy rule ``agent_controls`` refuses proposals from a paused
agent (``AGENT_PAUSED``) or beyond its budget (``BUDGET_EXCEEDED``); ``saferails.sweeps.agents`` ends pauses whose
time is up.
"""

from saferails.agents.lifecycle import ACTIVE, AGENT_MACHINE, PAUSED, RETIRED
from saferails.agents.repository import AGENT_KIND, AgentRepository, AgentView, period_start, proposal_cost
from saferails.agents.service import AgentService, agent_facts

__all__ = [
    "ACTIVE",
    "AGENT_KIND",
    "AGENT_MACHINE",
    "PAUSED",
    "RETIRED",
    "AgentRepository",
    "AgentService",
    "AgentView",
    "agent_facts",
    "period_start",
    "proposal_cost",
]
