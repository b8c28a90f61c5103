"""The authentication seam of the HTTP API: who is calling, and may they do this.

The app only needs an :class:`Authenticator` (``authenticate(token) -> Principal``, raising
``Unauthenticated`` for an unknown, expired or revoked token) and :func:`require`. The identity service
(principals with hashed API keys and roles) plugs in here; tests use a small hashed-key table.

Roles and what they may do (``ROLE_PERMISSIONS``):

- ``agent``: propose actions, read the actions it proposed, dry-run the policy, cancel its own proposals;
- ``approver``: read actions, approve and reject (the policy still decides WHICH approvers count);
- ``operator``: read actions, cancel and roll back, dry-run the policy, pause / resume agents and set budgets
  (``actions:pause_agent``, ``actions:resume_agent``, ``actions:set_budget``);
- ``auditor``: read actions and their audit trail;
- ``admin``: everything.

A principal sees only the tenants in ``tenants`` (``"*"`` means every tenant); an object of another tenant is
reported as not found, never as forbidden, so its existence does not leak.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from saferails.errors import InsufficientPermissions

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
# Seed 003's fleet controls: one permission per action, ``actions:{action_name}``.
PAUSE_AGENT = "actions:pause_agent"
RESUME_AGENT = "actions:resume_agent"
SET_BUDGET = "actions:set_budget"
FLEET_CONTROLS = frozenset({PAUSE_AGENT, RESUME_AGENT, SET_BUDGET})

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "agent": frozenset({PROPOSE, READ_OWN, POLICY_CHECK, CANCEL_OWN}),
    "approver": frozenset({READ, READ_OWN, DECIDE}),
    "operator": frozenset({READ, READ_OWN, CANCEL, CANCEL_OWN, ROLLBACK, POLICY_CHECK}) | FLEET_CONTROLS,
    "auditor": frozenset({READ, READ_OWN, AUDIT_READ}),
    "admin": frozenset({PROPOSE, READ, READ_OWN, DECIDE, CANCEL, CANCEL_OWN, ROLLBACK, POLICY_CHECK, AUDIT_READ})
    | FLEET_CONTROLS,
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


__all__ = ["ALL_TENANTS", "ROLE_PERMISSIONS", "Authenticator", "Principal", "require"]
