"""Roles and the permissions they grant: a closed set, checked in one place (``require``).

Roles combine (a principal may hold several); unknown role names are refused when roles are set, so a typo
cannot silently grant or remove anything. Separation of duties is built in: ``admin`` manages principals,
credentials and policy but does not approve or propose unless also given those roles (and that change is
audited).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from saferails.errors import InvalidInput, PermissionDenied

__all__ = ["ROLE_PERMISSIONS", "Permission", "Principal", "Role", "parse_roles", "require"]


class Role(StrEnum):
    AGENT = "agent"  # proposes actions (an AI agent or a person acting as proposer)
    APPROVER = "approver"  # approves or rejects actions it is authorised for by the policy
    OPERATOR = "operator"  # runs runbooks, executes and rolls back approved actions, runs sweeps
    ADMIN = "admin"  # manages principals, roles, credentials and the policy
    AUDITOR = "auditor"  # reads everything, verifies the audit chain; changes nothing


class Permission(StrEnum):
    PROPOSE_ACTION = "propose_action"
    DECIDE_ACTION = "decide_action"  # approve or reject (the policy still decides WHICH actions)
    OPERATE = "operate"  # execute, roll back, cancel, run runbooks and sweeps
    READ = "read"  # list and show actions, runbooks, tasks
    READ_AUDIT = "read_audit"
    VERIFY_AUDIT = "verify_audit"
    MANAGE_PRINCIPALS = "manage_principals"  # add principals, change roles, disable
    MANAGE_CREDENTIALS = "manage_credentials"  # issue and revoke other principals' credentials
    MANAGE_POLICY = "manage_policy"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.AGENT: frozenset({Permission.PROPOSE_ACTION, Permission.READ}),
    Role.APPROVER: frozenset({Permission.DECIDE_ACTION, Permission.READ}),
    Role.OPERATOR: frozenset({Permission.OPERATE, Permission.READ, Permission.READ_AUDIT}),
    Role.ADMIN: frozenset(
        {
            Permission.MANAGE_PRINCIPALS,
            Permission.MANAGE_CREDENTIALS,
            Permission.MANAGE_POLICY,
            Permission.READ,
            Permission.READ_AUDIT,
            Permission.VERIFY_AUDIT,
        }
    ),
    Role.AUDITOR: frozenset({Permission.READ, Permission.READ_AUDIT, Permission.VERIFY_AUDIT}),
}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: what ``IdentityService.authenticate`` returns and every guarded call takes.

    ``credential_id`` names the credential that proved it (None for the first-run bootstrap and for
    in-process system actors built by the composition root)."""

    id: str
    roles: frozenset[Role] = field(default_factory=frozenset)
    tenant: str = "default"
    groups: frozenset[str] = field(default_factory=frozenset)
    credential_id: str | None = None

    @property
    def permissions(self) -> frozenset[Permission]:
        granted: set[Permission] = set()
        for role in self.roles:
            granted |= ROLE_PERMISSIONS[role]
        return frozenset(granted)

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions


def parse_roles(names: Iterable[str]) -> frozenset[Role]:
    """Role names to roles; ``proposer`` is accepted as another name for ``agent``. Unknown names raise
    ``InvalidInput`` listing the known roles."""
    roles: set[Role] = set()
    unknown: list[str] = []
    for name in names:
        key = name.strip().lower()
        key = Role.AGENT.value if key == "proposer" else key
        try:
            roles.add(Role(key))
        except ValueError:
            unknown.append(name)
    if unknown:
        raise InvalidInput(
            f"unknown role(s) {', '.join(sorted(unknown))}; roles are {', '.join(r.value for r in Role)}",
            unknown=sorted(unknown),
            known=[r.value for r in Role],
        )
    return frozenset(roles)


def require(principal: Principal, permission: Permission) -> None:
    """Raise ``PermissionDenied`` unless ``principal`` holds ``permission`` through one of its roles."""
    if not principal.can(permission):
        raise PermissionDenied(
            f"{principal.id!r} lacks permission {permission.value} (roles: "
            f"{', '.join(sorted(r.value for r in principal.roles)) or 'none'})",
            actor=principal.id,
            permission=permission.value,
            roles=sorted(r.value for r in principal.roles),
        )
