"""The workflow layer (seed 004): task and action-plan lifecycles, automation triggers run by the outbox
dispatcher, SLA tracking with breach sweeps, metadata/statistics and Prometheus metrics.

Everything here reuses the foundation: state changes go through ``saferails.transitions``, predicates through
``saferails.conditions``, time through an injected ``Clock``. Importing this package registers the ``task`` and
``action_plan`` entity kinds.
"""

from saferails.workflow.machines import ACTION_PLAN_MACHINE, TASK_MACHINE
from saferails.workflow.permissions import Permission, WorkflowActor

__all__ = ["ACTION_PLAN_MACHINE", "TASK_MACHINE", "Permission", "WorkflowActor"]
