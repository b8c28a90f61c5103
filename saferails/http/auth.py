"""The authentication seam of the HTTP API: who is calling, and may they do this.

The app only needs an :class:`Authenticator` (``authenticate(token) -> Principal``, raising
``Unauthenticated`` for an unknown, expired or revoked token) and :func:`require`. The default is
:class:`IdentityAuthenticator`: the store's principals and credentials (``saferails.identity``), the same tokens
the CLI uses (``saferails init``, ``saferails credential issue``). Tests may plug in a small hashed-key table.

There is ONE role table: ``saferails.identity.ROLE_PERMISSIONS``. The HTTP permissions below are finer (own vs
any action) and are derived from it by ``HTTP_GRANTS`` (identity permission -> HTTP permissions), so a role
means the same on the CLI and over HTTP:

- ``agent`` (propose_action, read): propose actions, read the actions it proposed, dry-run the policy, cancel
  its own proposals;
- ``approver`` (decide_action, read): read actions, approve and reject (the policy still decides WHICH approvers
  count);
- ``operator`` (operate, read, read_audit): read actions and their audit trail, cancel and roll back, dry-run,
  pause / resume agents and set budgets (seed 003's ``actions:{action_name}``), query the audit trail, publish
  checkpoints, read ``/metrics``;
- ``auditor`` (read, read_audit, verify_audit): read actions and the audit trail, verify the chain, ``/metrics``;
- ``admin`` (manage principals / credentials / policy, read, read_audit, verify_audit): the principals and
  credentials endpoints, plus what an auditor may; an admin neither proposes nor approves unless also given
  those roles (separation of duties).

Beyond actions: ``read`` reads runbooks, executions and the workflow layer and acts there as workflow ``user``;
``operate`` also starts and controls executions, registers runbooks, executes approved actions, runs sweeps and
acts as workflow ``agency``; ``manage_policy`` acts as workflow ``agency`` and ``admin``.

A principal sees only the tenants in ``tenants`` (``"*"`` means every tenant); an object of another tenant is
reported as not found, never as forbidden, so its existence does not leak.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from saferails.errors import InsufficientPermissions, Unauthenticated
from saferails.identity import ROLE_PERMISSIONS as IDENTITY_ROLE_PERMISSIONS
from saferails.identity import IdentityService, Permission
from saferails.identity import Principal as IdentityPrincipal

ALL_TENANTS = "*"

PROPOSE = "actions:propose"
READ_OWN = "actions:read_own"
READ = "actions:read"
DECIDE = "actions:decide"
CANCEL_OWN = "actions:cancel_own"
CANCEL = "actions:cancel"
ROLLBACK = "actions:rollback"
POLICY_CHECK = "policy:check"
AUDIT_READ = "audit:read"
AUDIT_VERIFY = "audit:verify"
AUDIT_PUBLISH = "audit:publish"
METRICS_READ = "metrics:read"
PRINCIPALS_MANAGE = "principals:manage"
CREDENTIALS_MANAGE = "credentials:manage"
# Seed 003's fleet controls: one permission per action, ``actions:{action_name}``.
PAUSE_AGENT = "actions:pause_agent"
RESUME_AGENT = "actions:resume_agent"
SET_BUDGET = "actions:set_budget"
FLEET_CONTROLS = frozenset({PAUSE_AGENT, RESUME_AGENT, SET_BUDGET})
EXECUTE = "actions:execute"
SWEEP = "sweeps:run"
# Runbooks (seed 002): reading templates and executions; starting and controlling executions; registering templates.
RUNBOOKS_READ = "runbooks:read"
RUNBOOKS_OPERATE = "runbooks:operate"
RUNBOOKS_REGISTER = "runbooks:register"
# The workflow layer (seed 004): reading, and the workflow roles a caller acts with (the workflow service checks
# its own permissions against them; ``saferails.cli.common.workflow_roles`` grants the same on the CLI).
WORKFLOW_READ = "workflow:read"
WORKFLOW_USER = "workflow:user"
WORKFLOW_AGENCY = "workflow:agency"
WORKFLOW_ADMIN = "workflow:admin"
WORKFLOW_ROLES = {WORKFLOW_USER: "user", WORKFLOW_AGENCY: "agency", WORKFLOW_ADMIN: "admin"}

# What each identity permission allows over HTTP. ``read`` alone is "read your own"; seeing every action of a
# tenant comes with deciding, operating or reading the audit trail.
HTTP_GRANTS: dict[Permission, frozenset[str]] = {
    Permission.PROPOSE_ACTION: frozenset({PROPOSE, CANCEL_OWN, POLICY_CHECK}),
    Permission.DECIDE_ACTION: frozenset({DECIDE, READ}),
    Permission.OPERATE: frozenset({READ, CANCEL, CANCEL_OWN, ROLLBACK, POLICY_CHECK, EXECUTE, SWEEP,
                                   RUNBOOKS_OPERATE, RUNBOOKS_REGISTER, WORKFLOW_AGENCY}) | FLEET_CONTROLS,
    Permission.READ: frozenset({READ_OWN, RUNBOOKS_READ, WORKFLOW_READ, WORKFLOW_USER}),
    Permission.READ_AUDIT: frozenset({READ, AUDIT_READ, AUDIT_PUBLISH, METRICS_READ}),
    Permission.VERIFY_AUDIT: frozenset({AUDIT_VERIFY}),
    Permission.MANAGE_PRINCIPALS: frozenset({PRINCIPALS_MANAGE}),
    Permission.MANAGE_CREDENTIALS: frozenset({CREDENTIALS_MANAGE}),
    Permission.MANAGE_POLICY: frozenset({WORKFLOW_AGENCY, WORKFLOW_ADMIN}),
}


def _http_permissions(permissions: frozenset[Permission]) -> frozenset[str]:
    granted: set[str] = set()
    for permission in permissions:
        granted |= HTTP_GRANTS[permission]
    return frozenset(granted)


ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    role.value: _http_permissions(permissions) for role, permissions in IDENTITY_ROLE_PERMISSIONS.items()
}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``id`` is the principal id the store knows (proposer, approver, actor)."""

    id: str
    roles: frozenset[str]
    tenants: frozenset[str]

    def can(self, permission: str) -> bool:
        return any(permission in ROLE_PERMISSIONS.get(role, frozenset()) for role in self.roles)

    def sees_tenant(self, tenant: str) -> bool:
        return ALL_TENANTS in self.tenants or tenant in self.tenants


class Authenticator(Protocol):
    def authenticate(self, token: str) -> Principal:
        """The principal ``token`` (an API key or bearer token) belongs to, or raise ``Unauthenticated``."""
        ...


def require(principal: Principal, permission: str) -> None:
    """Raise ``InsufficientPermissions`` (HTTP 403, with ``required_permission`` and the caller's role) unless one
    of ``principal``'s roles grants ``permission``."""
    if not principal.can(permission):
        raise InsufficientPermissions(principal.id, sorted(principal.roles), permission)


def to_http_principal(principal: IdentityPrincipal) -> Principal:
    """The HTTP view of an identity principal: its role names, and its one tenant (every tenant for an admin or
    an auditor, who oversee the whole store)."""
    roles = frozenset(role.value for role in principal.roles)
    oversees = bool(roles & {"admin", "auditor"})
    return Principal(principal.id, roles, frozenset({ALL_TENANTS} if oversees else {principal.tenant}))


class IdentityAuthenticator:
    """The default :class:`Authenticator`: tokens issued by ``saferails init`` / ``saferails credential issue``,
    checked by ``IdentityService.authenticate`` (hashed, expiring, revocable; a disabled principal is refused)."""

    def __init__(self, identity: IdentityService) -> None:
        self.identity = identity

    def authenticate(self, token: str) -> Principal:
        try:
            return to_http_principal(self.identity.authenticate(token))
        except Unauthenticated as exc:
            # A token was presented and refused: RFC 6750's error="invalid_token" (a missing one gets none).
            exc.details["invalid_token"] = True
            raise


__all__ = ["ALL_TENANTS", "HTTP_GRANTS", "ROLE_PERMISSIONS", "Authenticator", "IdentityAuthenticator", "Principal",
           "require", "to_http_principal"]
