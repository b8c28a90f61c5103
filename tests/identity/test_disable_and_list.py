"""Disabling principals and listing credentials: audited, admin-only, and never leaving the store without an
admin or showing a secret."""

from __future__ import annotations

from typing import Any

import pytest

from saferails.clock import ManualClock
from saferails.errors import InvalidInput, NotFound, PermissionDenied, Unauthenticated
from saferails.identity import IdentityService
from tests.identity.test_identity import audit_events


@pytest.fixture
def ids(db: Any, clock: ManualClock) -> IdentityService:
    return IdentityService(db.sessions, clock)


def test_a_disabled_principal_cannot_authenticate_until_enabled_and_both_are_audited(
    db: Any, ids: IdentityService,
) -> None:
    root = ids.authenticate(ids.bootstrap_admin("root").token)
    ids.add_principal(root, "agent-1", roles=["agent"])
    token = ids.issue_credential(root, "agent-1").token
    assert ids.is_disabled("agent-1") is False
    ids.set_disabled(root, "agent-1")
    assert ids.is_disabled("agent-1") is True
    with pytest.raises(Unauthenticated):
        ids.authenticate(token)
    ids.set_disabled(root, "agent-1", False)
    assert ids.authenticate(token).id == "agent-1"
    events = [event for _, event, entity in audit_events(db) if entity == "agent-1"]
    assert events[-2:] == ["principal_disabled", "principal_enabled"]
    with pytest.raises(NotFound):
        ids.is_disabled("nobody")


def test_an_admin_cannot_disable_itself_or_the_last_admin_and_others_cannot_disable_at_all(
    ids: IdentityService,
) -> None:
    root = ids.authenticate(ids.bootstrap_admin("root").token)
    with pytest.raises(InvalidInput):
        ids.set_disabled(root, "root")
    ids.add_principal(root, "agent-1", roles=["agent"])
    agent = ids.authenticate(ids.issue_credential(root, "agent-1").token)
    with pytest.raises(PermissionDenied):
        ids.set_disabled(agent, "root")
    ids.add_principal(root, "root-2", roles=["admin"])
    root2 = ids.authenticate(ids.issue_credential(root, "root-2").token)
    ids.set_disabled(root2, "root")
    with pytest.raises(InvalidInput):
        ids.set_disabled(root, "root-2")  # root is disabled, but the rule holds for any actor: root-2 is the last


def test_credentials_are_listed_without_secrets_own_or_by_an_admin(ids: IdentityService) -> None:
    root = ids.authenticate(ids.bootstrap_admin("root").token)
    ids.add_principal(root, "agent-1", roles=["agent"])
    issued = ids.issue_credential(root, "agent-1", label="ci")
    agent = ids.authenticate(issued.token)
    mine = ids.list_credentials(agent, "agent-1")
    assert [(c.credential_id, c.label, c.revoked_at) for c in mine] == [(issued.credential_id, "ci", None)]
    assert issued.token.split("_", 2)[2] not in str([c.to_dict() for c in mine])
    with pytest.raises(PermissionDenied):
        ids.list_credentials(agent)
    assert {c.principal_id for c in ids.list_credentials(root)} == {"root", "agent-1"}
