"""Workflow permissions (seed 004) and the roles that grant them.

Roles come from a ``WorkflowActor`` passed to every service call; the core trusts the edge that built it.
``admin`` and ``agency`` hold every permission; ``user`` may create tasks and update tasks it created or is
assigned to (the ownership rule applies only to roles without ``UPDATE_ANY_TASK``); ``system`` is the
automation itself (trigger actions, sweeps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from saferails.errors import PermissionDenied


class Permission(StrEnum):
    CREATE_TASK = "CREATE_TASK"
    UPDATE_TASK = "UPDATE_TASK"
    CREATE_ACTION_PLAN = "CREATE_ACTION_PLAN"
    ACTIVATE_ACTION_PLAN = "ACTIVATE_ACTION_PLAN"
    MANAGE_SLA = "MANAGE_SLA"
    # Not in seed 004's list, which leaves triggers in code and stats "restricted to admin/agency".
    MANAGE_TRIGGERS = "MANAGE_TRIGGERS"
    VIEW_STATS = "VIEW_STATS"
    # Update tasks regardless of who created or holds them.
    UPDATE_ANY_TASK = "UPDATE_ANY_TASK"


ALL_PERMISSIONS = frozenset(Permission)
ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "admin": ALL_PERMISSIONS,
    "agency": ALL_PERMISSIONS,
    "system": ALL_PERMISSIONS,
    "user": frozenset({Permission.CREATE_TASK, Permission.UPDATE_TASK}),
}


@dataclass(frozen=True)
class WorkflowActor:
    """Who is calling: an id (recorded in audit) and roles (unknown roles grant nothing)."""

    id: str
    roles: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", frozenset(self.roles))

    @property
    def permissions(self) -> frozenset[Permission]:
        granted: set[Permission] = set()
        for role in self.roles:
            granted |= ROLE_PERMISSIONS.get(role, frozenset())
        return frozenset(granted)

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions


SYSTEM_ACTOR = WorkflowActor("system:workflow", frozenset({"system"}))


def require(actor: WorkflowActor, permission: Permission) -> None:
    """Raise ``PermissionDenied`` unless ``actor`` holds ``permission``."""
    if not actor.can(permission):
        raise PermissionDenied(
            f"{actor.id!r} lacks permission {permission.value}",
            actor=actor.id,
            permission=permission.value,
            roles=sorted(actor.roles),
        )


def require_task_update(actor: WorkflowActor, created_by: str, assigned_to: str | None) -> None:
    """UPDATE_TASK, and unless the actor may update any task, being the task's creator or assignee."""
    require(actor, Permission.UPDATE_TASK)
    if actor.can(Permission.UPDATE_ANY_TASK) or actor.id in (created_by, assigned_to):
        return
    raise PermissionDenied(
        f"{actor.id!r} may only update tasks they created or are assigned to",
        actor=actor.id,
        permission=Permission.UPDATE_TASK.value,
        roles=sorted(actor.roles),
    )
