"""Principals, roles and credentials in the store: only an admin changes who may do what, tokens are hashed,
expire and can be revoked, and every change is audited in the same transaction."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from saferails.clock import ManualClock
from saferails.errors import InvalidInput, PermissionDenied, PrincipalExists, SecretFileInsecure, Unauthenticated
from saferails.identity import (
    Credential,
    IdentityService,
    Permission,
    Role,
    credentials_path,
    require,
    resolve_token,
    save_credential,
)
from saferails.store.tables import AuditRecord


def audit_events(db: Any) -> list[tuple[str, str, str | None]]:
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(AuditRecord).order_by(AuditRecord.sequence)).all()
    return [(r.actor, r.event, r.entity_id) for r in rows]


@pytest.fixture
def ids(db: Any, clock: ManualClock) -> IdentityService:
    return IdentityService(db.sessions, clock)


def test_the_first_run_creates_one_admin_whose_token_authenticates_and_a_second_bootstrap_is_refused(
    db: Any, ids: IdentityService
) -> None:
    assert not ids.has_admin()
    issued = ids.bootstrap_admin("root")
    admin = ids.authenticate(issued.token)
    assert admin.id == "root" and admin.roles == frozenset({Role.ADMIN}) and admin.credential_id == issued.credential_id
    with pytest.raises(PermissionDenied):
        ids.bootstrap_admin("mallory")
    assert ("system:bootstrap", "admin_bootstrapped", "root") in audit_events(db)


def test_the_token_is_not_stored_and_not_audited(db: Any, ids: IdentityService) -> None:
    issued = ids.bootstrap_admin("root")
    secret = issued.token.split("_", 2)[2]
    with db.engine.connect() as conn:
        stored = conn.execute(sa.select(Credential.secret_hash)).scalar_one()
        audit_text = " ".join(r.details for r in conn.execute(sa.select(AuditRecord)).all())
    assert secret not in stored and issued.token not in audit_text and secret not in audit_text
    assert issued.token not in repr(issued)


def test_a_non_admin_cannot_add_principals_change_roles_or_groups_nor_issue_for_others(
    db: Any, ids: IdentityService
) -> None:
    admin = ids.authenticate(ids.bootstrap_admin("root").token)
    ids.add_principal(admin, "agent-1", roles=["agent"])
    agent = ids.authenticate(ids.issue_credential(admin, "agent-1").token)
    before = audit_events(db)
    with pytest.raises(PermissionDenied):
        ids.add_principal(agent, "agent-1-alt", roles=["approver"], groups=["approvers"])
    with pytest.raises(PermissionDenied):
        ids.set_roles(agent, "agent-1", ["approver", "admin"])
    with pytest.raises(PermissionDenied):
        ids.set_groups(agent, "agent-1", ["approvers"])
    with pytest.raises(PermissionDenied):
        ids.issue_credential(agent, "root")
    assert audit_events(db) == before
    assert ids.get("agent-1").roles == frozenset({Role.AGENT}) and ids.get("agent-1").groups == frozenset()


def test_an_admin_adds_principals_and_changes_roles_and_each_change_is_audited_with_its_actor(
    db: Any, ids: IdentityService
) -> None:
    admin = ids.authenticate(ids.bootstrap_admin("root").token)
    ids.add_principal(admin, "alice", roles=["approver"], groups=["approvers"], tenant="acme")
    changed = ids.set_roles(admin, "alice", ["approver", "auditor"])
    assert changed.roles == frozenset({Role.APPROVER, Role.AUDITOR}) and changed.tenant == "acme"
    events = audit_events(db)
    assert ("root", "principal_added", "alice") in events and ("root", "roles_changed", "alice") in events
    with pytest.raises(PrincipalExists):
        ids.add_principal(admin, "alice", roles=["agent"])
    with pytest.raises(InvalidInput):
        ids.add_principal(admin, "bob", roles=["superuser"])


def test_the_last_admin_cannot_remove_their_own_admin_role(ids: IdentityService) -> None:
    admin = ids.authenticate(ids.bootstrap_admin("root").token)
    with pytest.raises(InvalidInput):
        ids.set_roles(admin, "root", ["auditor"])
    ids.add_principal(admin, "root2", roles=["admin"])
    assert ids.set_roles(admin, "root", ["auditor"]).roles == frozenset({Role.AUDITOR})


def test_credentials_expire(ids: IdentityService, clock: ManualClock) -> None:
    admin = ids.authenticate(ids.bootstrap_admin("root").token)
    ids.add_principal(admin, "agent-1", roles=["agent"])
    token = ids.issue_credential(admin, "agent-1", timedelta(hours=1)).token
    assert ids.authenticate(token).id == "agent-1"
    clock.advance(timedelta(hours=1))
    with pytest.raises(Unauthenticated) as err:
        ids.authenticate(token)
    assert err.value.details["internal_reason"] == "expired" and err.value.http_status == 401
    assert err.value.exit_code == 12


def test_a_revoked_credential_stops_working_at_once_and_others_keep_working(ids: IdentityService) -> None:
    admin = ids.authenticate(ids.bootstrap_admin("root").token)
    ids.add_principal(admin, "agent-1", roles=["agent"])
    first = ids.issue_credential(admin, "agent-1")
    second = ids.issue_credential(admin, "agent-1")
    ids.revoke(admin, first.credential_id)
    with pytest.raises(Unauthenticated) as err:
        ids.authenticate(first.token)
    assert err.value.details["internal_reason"] == "revoked"
    assert ids.authenticate(second.token).id == "agent-1"


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda t: "", "missing"),
        (lambda t: "not-a-token", "malformed"),
        (lambda t: t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB"), "mismatch"),
        (lambda t: "sr_0000000000000000_" + t.split("_", 2)[2], "unknown"),
    ],
    ids=["no token", "malformed", "wrong secret", "unknown id"],
)
def test_a_wrong_token_is_refused_with_one_public_message(
    ids: IdentityService, mangle: Any, reason: str
) -> None:
    token = ids.bootstrap_admin("root").token
    with pytest.raises(Unauthenticated) as err:
        ids.authenticate(mangle(token))
    assert err.value.details["internal_reason"] == reason and err.value.code == "UNAUTHENTICATED"


def test_the_permission_table_separates_duties(ids: IdentityService) -> None:
    admin = ids.authenticate(ids.bootstrap_admin("root").token)
    agent = ids.add_principal(admin, "agent-1", roles=["proposer"])
    auditor = ids.add_principal(admin, "aud", roles=["auditor"])
    require(agent, Permission.PROPOSE_ACTION)
    require(auditor, Permission.VERIFY_AUDIT)
    for who, permission in [(agent, Permission.DECIDE_ACTION), (admin, Permission.DECIDE_ACTION),
                            (auditor, Permission.MANAGE_PRINCIPALS), (agent, Permission.MANAGE_POLICY)]:
        with pytest.raises(PermissionDenied):
            require(who, permission)


def test_the_credentials_file_is_0600_and_the_env_token_wins(tmp_path: Path, ids: IdentityService) -> None:
    issued = ids.bootstrap_admin("root")
    path = credentials_path(tmp_path / "data")
    save_credential(path, issued)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["profiles"]["default"]["principal_id"] == "root"
    assert resolve_token(None, path) == issued.token
    assert resolve_token("sr_env_token", path) == "sr_env_token"
    assert resolve_token(None, tmp_path / "missing.json") is None


def test_a_credentials_file_others_can_read_is_refused(tmp_path: Path, ids: IdentityService) -> None:
    path = tmp_path / "credentials.json"
    save_credential(path, ids.bootstrap_admin("root"))
    path.chmod(0o644)
    with pytest.raises(SecretFileInsecure):
        resolve_token(None, path)
