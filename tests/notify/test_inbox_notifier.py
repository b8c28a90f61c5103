"""The local development channel: one private inbox file per principal."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from saferails.errors import SecretFileInsecure
from saferails.notify import InboxNotifier, Notification, NotificationFailed, Recipient
from saferails.notify.outbox_log import inbox_name


def note(*to: str, code: str | None = None) -> Notification:
    return Notification(kind="approval_requested", subject="approve?", text="...", entity_id="A-1",
                        recipients=tuple(Recipient(p) for p in to),
                        data={"code": code, "approver": to[0] if to else ""})


def test_each_recipient_gets_its_own_0600_inbox_and_nobody_elses_code(tmp_path: Path) -> None:
    inbox = InboxNotifier(tmp_path / "inbox")
    inbox.send(note("alice", code="AAAA-AAAA-AAAA"))
    inbox.send(note("bob", code="BBBB-BBBB-BBBB"))
    assert inbox.latest_code("alice", "A-1") == "AAAA-AAAA-AAAA"
    assert "BBBB" not in inbox.inbox("alice").read_text()
    assert stat.S_IMODE((tmp_path / "inbox").stat().st_mode) == 0o700
    for name in ("alice", "bob"):
        assert stat.S_IMODE(inbox.inbox(name).stat().st_mode) == 0o600
    assert inbox.latest_code("carol", "A-1") is None


@pytest.mark.parametrize("principal", ["../etc/passwd", ".hidden", "a/b", "a.b", "ünï"])
def test_inbox_names_cannot_leave_the_directory_or_collide(principal: str, tmp_path: Path) -> None:
    name = inbox_name(principal)
    assert "/" not in name and not name.startswith(".") and name.count(".") == 1
    assert inbox_name(principal) != inbox_name(principal + "x")
    InboxNotifier(tmp_path).send(note(principal, code="C"))
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_an_inbox_others_can_read_is_refused(tmp_path: Path) -> None:
    inbox = InboxNotifier(tmp_path)
    inbox.send(note("alice", code="AAAA-AAAA-AAAA"))
    inbox.inbox("alice").chmod(0o644)
    with pytest.raises(NotificationFailed):
        inbox.send(note("alice", code="AAAA-AAAA-AAAA"))
    with pytest.raises(SecretFileInsecure):
        inbox.read("alice")
