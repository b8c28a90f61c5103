"""What the policy needs to judge an approver, read from stored rows (no service, no approvals module: both the
action service and the approval codes depend on this, never the other way round)."""

from __future__ import annotations

from typing import Any, Protocol

from saferails.policy import ApprovalRequirement
from saferails.policy import Principal as PolicyPrincipal
from saferails.store.tables import Action

__all__ = ["StoredPrincipal", "approval_requirement", "policy_principal"]


class StoredPrincipal(Protocol):
    """What the policy and the audit read of a stored principal: the ORM row, or the columns alone
    (``ActionRepository.principals``)."""

    @property
    def groups(self) -> list[Any]: ...

    @property
    def kyc_verified(self) -> bool: ...

    @property
    def roles(self) -> list[Any]: ...


def approval_requirement(row: Action) -> ApprovalRequirement | None:
    """The approval requirement recorded with the action's decision; None when it never needed approval or the
    record is unreadable (then nobody is authorised: fail closed)."""
    data = row.decision.get("approval")
    if not data:
        return None
    try:
        return ApprovalRequirement.from_dict(data)
    except (KeyError, TypeError, ValueError):
        return None


def policy_principal(principal_id: str, row: StoredPrincipal | None) -> PolicyPrincipal:
    """The policy's view of a stored principal; an unknown id is a principal with no groups, not KYC-verified."""
    return PolicyPrincipal(
        id=principal_id,
        groups=frozenset(row.groups or ()) if row is not None else frozenset(),
        kyc_verified=bool(row.kyc_verified) if row is not None else False,
    )
