"""Seed 001's external actions with real effects: email over a real local SMTP server, files under a root."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from saferails.errors import InvalidInput
from saferails.handlers import PathOutsideRoot
from saferails.handlers.messaging import message_id_for
from saferails.store.db import transaction
from saferails.store.tables import Action, AuditRecord
from tests.support.handlerkit import SENDER, Mailbox, World


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


EMAIL = {"to": ["ann@example.com"], "cc": ["ben@example.com"], "subject": "Weekly report", "body": "Numbers attached."}


def test_an_email_arrives_at_the_smtp_server_with_its_headers(world: World, smtp_server: Mailbox) -> None:
    action = world.propose("send_email", "agent-mailbox", EMAIL)
    done = world.executor.execute(action.id)
    assert done.state == "completed", done.error
    assert len(smtp_server.messages) == 1
    recipients, message = smtp_server.messages[0]
    assert sorted(recipients) == ["ann@example.com", "ben@example.com"]
    assert message["From"] == SENDER
    assert message["To"] == "ann@example.com"
    assert message["Cc"] == "ben@example.com"
    assert message["Subject"] == "Weekly report"
    assert message["X-Saferails-Action"] == action.id
    # Derived from the idempotency key: a send repeated after a crash carries the same Message-ID.
    assert message["Message-ID"] == message_id_for(f"default:{action.idempotency_key}")
    assert done.result is not None and message["Message-ID"] == done.result["message_id"]
    assert str(message.get_payload()).strip() == "Numbers attached."


def test_rolling_back_an_email_sends_a_correction_referring_to_the_original(world: World, smtp_server: Mailbox) -> None:
    action = world.propose("send_email", "agent-mailbox", EMAIL)
    original_id = world.executor.execute(action.id).result["message_id"]  # type: ignore[index]
    undone = world.executor.rollback(action.id, "ops-1", reason="sent to the wrong team")
    assert undone.state == "rolled_back"
    assert len(smtp_server.messages) == 2
    _, correction = smtp_server.messages[1]
    assert correction["Subject"] == "Correction: Weekly report"
    assert correction["In-Reply-To"] == original_id
    assert "sent to the wrong team" in correction.get_payload()


def test_an_email_refused_twice_with_451_is_retried_with_backoff_and_sent_once(
    world: World, smtp_server: Mailbox
) -> None:
    smtp_server.fail_first = 2
    action = world.propose("send_email", "agent-mailbox", EMAIL)
    done = world.executor.execute(action.id)
    assert done.state == "completed"
    assert world.sleeps == [0.5, 1.0]
    assert len(smtp_server.messages) == 1
    with transaction(world.db.sessions) as session:
        failures = [
            r for r in session.query(AuditRecord).filter_by(entity_id=action.id, event="execution_attempt_failed")
        ]
    assert [f'"attempt":{n}' in f.details for f, n in zip(failures, (1, 2), strict=True)] == [True, True]
    assert '"next_delay":0.5' in failures[0].details and '"next_delay":1.0' in failures[1].details


def test_executing_a_completed_action_again_sends_nothing_and_moves_nothing(
    world: World, smtp_server: Mailbox, file_root: Path
) -> None:
    email = world.propose("send_email", "agent-mailbox", EMAIL)
    move = world.propose("move_file", "inbox", {"source": "inbox/report.txt", "destination": "archive/report.txt"})
    first = [world.executor.execute(email.id), world.executor.execute(move.id)]
    after_first = files(file_root)
    again = [world.executor.execute(email.id), world.executor.execute(move.id)]
    assert [a.result for a in again] == [f.result for f in first]
    assert len(smtp_server.messages) == 1
    assert files(file_root) == after_first


def test_moving_a_file_and_rolling_back_restores_the_file_tree(world: World, file_root: Path) -> None:
    before = files(file_root)
    action = world.propose("move_file", "inbox", {"source": "inbox/report.txt", "destination": "archive/q3.txt"})
    assert world.executor.execute(action.id).state == "completed"
    assert "archive/q3.txt" in files(file_root) and "inbox/report.txt" not in files(file_root)
    assert world.executor.rollback(action.id, "ops-1", reason="wrong folder").state == "rolled_back"
    assert files(file_root) == before


def test_moving_onto_an_existing_file_is_refused_and_both_files_stay(world: World, file_root: Path) -> None:
    (file_root / "archive" / "report.txt").write_text("older report\n", encoding="utf-8")
    before = files(file_root)
    action = world.propose("move_file", "inbox", {"source": "inbox/report.txt", "destination": "archive/report.txt"})
    failed = world.executor.execute(action.id)
    assert failed.state == "failed" and failed.error is not None and failed.error.startswith("FILE_EXISTS")
    assert files(file_root) == before


def _row_counts(world: World) -> tuple[int, int]:
    with transaction(world.db.sessions) as session:
        actions = session.execute(sa.select(sa.func.count()).select_from(Action)).scalar_one()
        audit = session.execute(sa.select(sa.func.count()).select_from(AuditRecord)).scalar_one()
        return int(actions), int(audit)


@pytest.mark.parametrize(
    "destination",
    ["../outside.txt", "/tmp/outside.txt", "archive/../../outside.txt", "inbox/a\x00b.txt", "inbox\\..\\x"],
    ids=["dotdot", "absolute", "nested-dotdot", "nul-byte", "backslashes"],
)
def test_a_path_escaping_the_file_root_is_refused_at_proposal_and_nothing_is_recorded(
    world: World, file_root: Path, destination: str
) -> None:
    before, rows = files(file_root), _row_counts(world)
    with pytest.raises(InvalidInput) as refused:
        world.propose("move_file", "inbox", {"source": "inbox/report.txt", "destination": destination})
    assert refused.value.code in ("INVALID_PARAMS", "INVALID_INPUT") and "destination" in refused.value.message
    assert _row_counts(world) == rows  # no action row, no audit row
    assert files(file_root) == before


def test_a_path_leaving_the_root_through_a_symlink_is_refused_at_execution_and_nothing_is_written(
    world: World, file_root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (file_root / "escape").symlink_to(outside, target_is_directory=True)
    before = files(file_root)
    action = world.propose("move_file", "inbox", {"source": "inbox/report.txt", "destination": "escape/outside.txt"})
    with pytest.raises(PathOutsideRoot):
        world.executor.preview(action.id)
    failed = world.executor.execute(action.id)
    assert failed.state == "failed" and failed.error is not None and failed.error.startswith("PATH_OUTSIDE_ROOT")
    assert files(file_root) == before
    assert list(outside.iterdir()) == []


def test_creating_a_document_and_rolling_back_removes_it(world: World, file_root: Path) -> None:
    before = files(file_root)
    action = world.propose("create_document", "docs", {"path": "inbox/notes.md", "content": "# Notes\n"})
    assert world.executor.execute(action.id).state == "completed"
    assert (file_root / "inbox" / "notes.md").read_text(encoding="utf-8") == "# Notes\n"
    assert world.executor.rollback(action.id, "ops-1", reason="draft").state == "rolled_back"
    assert files(file_root) == before


def test_overwriting_a_document_keeps_the_old_content_and_rollback_restores_it(world: World, file_root: Path) -> None:
    before = files(file_root)
    action = world.propose(
        "create_document", "docs", {"path": "inbox/report.txt", "content": "revised\n", "overwrite": True}
    )
    done = world.executor.execute(action.id)
    assert done.pre_state is not None and done.pre_state["previous_content"] == "quarterly numbers\n"
    assert (file_root / "inbox" / "report.txt").read_text(encoding="utf-8") == "revised\n"
    assert world.executor.rollback(action.id, "ops-1", reason="keep the original").state == "rolled_back"
    assert files(file_root) == before


def test_creating_a_document_over_an_existing_one_without_overwrite_is_refused(world: World, file_root: Path) -> None:
    before = files(file_root)
    action = world.propose("create_document", "docs", {"path": "inbox/report.txt", "content": "x"})
    failed = world.executor.execute(action.id)
    assert failed.state == "failed" and failed.error is not None and failed.error.startswith("FILE_EXISTS")
    assert files(file_root) == before
