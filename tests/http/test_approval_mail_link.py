"""The approval e-mail carries the one-time link when ``public_url`` is set: a real SMTP server receives the mail,
the link opens the page (GET decides nothing) and the page's POST decides. The local inbox gets the link too."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from saferails.api import Store, open_store
from saferails.approvals.links import ApprovalLinkNotifier
from saferails.clock import ManualClock
from saferails.http import create_app
from saferails.notify import InboxNotifier
from saferails.org.repository import OrgRepository
from saferails.settings import Settings
from saferails.store.db import transaction
from tests.support import Mailbox
from tests.support.http_auth import ApiKeyTable
from tests.support.http_world import BASE, SECRET

LINK = re.compile(r"(http://testserver/api/actions/approve\?token=[A-Za-z0-9_.%-]+)")
HIGH = {"action_type": "reassign_manager", "target": "emp_123", "params": {"new_manager_id": "mgr_456"},
        "reason": "Improve team dynamics"}


def _store(settings: Settings, clock: ManualClock) -> tuple[Store, TestClient, dict[str, str]]:
    store = open_store(settings, clock=clock)
    with transaction(store.sessions) as session:
        OrgRepository(session).insert({"employees": [
            {"id": "mgr_old", "name": "Old Manager", "email": "old@example.com"},
            {"id": "mgr_456", "name": "New Manager", "email": "new@example.com"},
            {"id": "emp_123", "name": "Erin Employee", "email": "erin@example.com", "manager_id": "mgr_old"},
        ]})
    keys = ApiKeyTable()
    store.actions.upsert_principal("agent-1", email="agent-1@example.com", groups=["agents"])
    store.actions.upsert_principal("carol", email="carol@example.com", groups=["approvers"])
    tokens = {"agent-1": keys.issue("agent-1", {"agent"}), "carol": keys.issue("carol", {"approver"})}
    client = TestClient(create_app(store, keys, public_url=BASE), base_url=BASE, raise_server_exceptions=False)
    return store, client, tokens


@pytest.fixture
def mailed(db: Any, tmp_path: Path, clock: ManualClock, smtp_server: Mailbox,
           ) -> Iterator[tuple[Store, TestClient, dict[str, str], Mailbox]]:
    settings = Settings(database_url=db.url, policy_path=None, approval_secret=SECRET, data_dir=tmp_path,
                        smtp_host=smtp_server.host, smtp_port=smtp_server.port, smtp_sender="saferails@example.com",
                        smtp_starttls=False, public_url=BASE)
    store, client, tokens = _store(settings, clock)
    yield store, client, tokens, smtp_server
    client.close()
    store.close()


def test_the_mailed_link_opens_the_page_and_only_its_post_decides(
    mailed: tuple[Store, TestClient, dict[str, str], Mailbox],
) -> None:
    store, client, tokens, mailbox = mailed
    assert isinstance(store.notifier, ApprovalLinkNotifier)
    created = client.post("/api/v1/actions", json=HIGH, headers={"Authorization": f"Bearer {tokens['agent-1']}"})
    assert created.status_code == 201, created.text
    action_id = created.json()["id"]
    to_carol = [m for rcpt, m in mailbox.messages if rcpt == ["carol@example.com"]]
    assert len(to_carol) == 1
    payload = to_carol[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    body = payload.decode()
    assert "Your one-time approval code" in body
    link = LINK.search(body)
    assert link is not None, body
    for _ in range(2):  # a mail scanner follows the link, then the person opens it
        page = client.get(link.group(1))
        assert page.status_code == 200 and "Approve" in page.text
    assert store.actions.get(action_id).approvals == ()
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token is not None
    done = client.post("/api/actions/approve", data={"token": token.group(1), "decision": "approve",
                                                     "reason": "checked"}, headers={"Origin": BASE})
    assert done.status_code == 200, done.text
    view = store.actions.get(action_id)
    assert [(a.approver, a.decision, a.channel) for a in view.approvals] == [("carol", "approve", "email-link")]
    assert view.state == "approved"


def test_the_local_inbox_carries_the_link_and_no_url_means_no_link(sqlite_db: Any, tmp_path: Path,
                                                                   clock: ManualClock) -> None:
    with_url = Settings(database_url=sqlite_db.url, approval_secret=SECRET, data_dir=tmp_path, public_url=BASE)
    store, client, tokens = _store(with_url, clock)
    try:
        created = client.post("/api/v1/actions", json=HIGH, headers={"Authorization": f"Bearer {tokens['agent-1']}"})
        assert created.status_code == 201
        notes = InboxNotifier(tmp_path / "inbox").read("carol")
        assert len(notes) == 1
        data: Any = notes[0]["data"]
        text = str(notes[0]["text"])
        assert data["approval_url"] in text and LINK.search(text)
        assert client.get(str(data["approval_url"])).status_code == 200
    finally:
        client.close()
        store.close()
    without = Settings(database_url=sqlite_db.url, approval_secret=SECRET, data_dir=tmp_path / "plain")
    plain = open_store(without, clock=clock)
    try:
        assert isinstance(plain.notifier, InboxNotifier)
    finally:
        plain.close()


def test_a_public_url_must_be_an_http_origin() -> None:
    from saferails.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="PUBLIC_URL"):
        Settings(public_url="javascript:alert(1)")
