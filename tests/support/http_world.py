"""A running HTTP API over a real store (SQLite or PostgreSQL), with principals, API keys and an outbox that
keeps the approval messages (and so the one-time codes and link claims) the store sends."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from saferails.api import Store, open_store
from saferails.clock import ManualClock
from saferails.http import ApprovalLinks, create_app
from saferails.notify.base import Notification
from saferails.org.repository import OrgRepository
from saferails.policy import Policy
from saferails.settings import Settings
from saferails.store.db import transaction
from tests.support.http_auth import ApiKeyTable

SECRET = b"h" * 32 + b"-http-test-approval-secret"
BASE = "http://testserver"


class Outbox:
    """A notifier that keeps what it is given (the store delivers after commit)."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> None:
        self.sent.append(notification)

    def approval_for(self, action_id: str, approver: str) -> dict[str, Any]:
        for note in reversed(self.sent):
            data = dict(note.data)
            if note.kind == "approval_requested" and data.get("action_id") == action_id \
                    and data.get("approver") == approver:
                return data
        raise AssertionError(f"no approval request for {approver} on {action_id}")


@dataclass
class HttpWorld:
    store: Store
    clock: ManualClock
    outbox: Outbox
    keys: ApiKeyTable
    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}", **extra}

    def code(self, action_id: str, approver: str) -> str:
        return str(self.outbox.approval_for(action_id, approver)["code"])

    def link(self, action_id: str, approver: str, base: str = BASE) -> str:
        """The link the approval message to ``approver`` would carry."""
        return ApprovalLinks(SECRET).url_for_request(base, self.outbox.approval_for(action_id, approver))

    def propose(self, who: str = "agent-1", **body: Any) -> dict[str, Any]:
        payload = {"action_type": "reassign_manager", "target": "emp_123",
                   "params": {"new_manager_id": "mgr_456"}, "reason": "Improve team dynamics"} | body
        response = self.client.post("/api/v1/actions", json=payload, headers=self.headers(who))
        assert response.status_code == 201, response.text
        return dict(response.json())


PRINCIPALS: dict[str, tuple[set[str], set[str], list[str]]] = {
    # id: (roles, tenants, store groups)
    "agent-1": ({"agent"}, {"default"}, ["agents"]),
    "agent-2": ({"agent"}, {"default"}, ["agents"]),
    "bob": ({"approver"}, {"default"}, ["approvers"]),
    "carol": ({"approver"}, {"default"}, ["approvers"]),
    "olga": ({"operator"}, {"default"}, ["operators"]),
    "aude": ({"auditor"}, {"default"}, []),
    # Every role (an admin alone neither proposes nor decides): the fuzz test's caller reaches every handler.
    "root": ({"admin", "agent", "approver", "operator", "auditor"}, {"*"}, ["admins"]),
    "agent-acme": ({"agent"}, {"acme"}, ["agents"]),
    "bob-acme": ({"approver"}, {"acme"}, ["approvers"]),
    "dual": ({"agent", "approver"}, {"default"}, ["approvers"]),
    "aude-acme": ({"auditor"}, {"acme"}, []),
}


def open_world(database_url: str, tmp_path: Path, clock: ManualClock, *, policy: Policy | None = None,
               **app_kwargs: Any) -> HttpWorld:
    outbox = Outbox()
    settings = Settings(database_url=database_url, policy_path=None, approval_secret=SECRET, data_dir=tmp_path)
    store = open_store(settings, clock=clock, notifier=outbox, policy=policy)
    with transaction(store.sessions) as session:
        OrgRepository(session).insert({"employees": [
            {"id": "mgr_old", "name": "Old Manager", "email": "old@example.com"},
            {"id": "mgr_456", "name": "New Manager", "email": "new@example.com"},
            {"id": "emp_123", "name": "Erin Employee", "email": "erin@example.com", "manager_id": "mgr_old"},
        ]})
    keys = ApiKeyTable()
    tokens = {}
    for name, (roles, tenants, groups) in PRINCIPALS.items():
        store.actions.upsert_principal(name, email=f"{name}@example.com", groups=groups)
        tokens[name] = keys.issue(name, roles, tenants)
    app = create_app(store, keys, **app_kwargs)
    client = TestClient(app, base_url=BASE, raise_server_exceptions=False)
    return HttpWorld(store, clock, outbox, keys, client, tokens)
