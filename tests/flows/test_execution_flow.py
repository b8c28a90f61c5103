"""The action flow executing for real: files under a temporary root, email through a real SMTP server on
127.0.0.1, approvals through ``resume_flow_run`` with one-time codes, compensation and rollback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

import pytest
import sqlalchemy as sa
import yaml
from prefect import get_client
from prefect.flow_runs import resume_flow_run

from blocks.settings import Runtime, install_runtime
from flows import api
from flows.action_flow import action_flow
from saferails.actions.models import Proposal
from saferails.actions.types import Params
from saferails.clock import ManualClock
from saferails.handlers import (
    ExecutionOutcome,
    HandlerContext,
    HandlerSettings,
    PartialEffect,
    PermanentEffectError,
    handler,
)
from saferails.policy import Policy, default_policy, load_policy_text
from saferails.store.db import transaction
from saferails.store.tables import AuditRecord
from tests.support import Mailbox
from tests.support.flowkit import Outbox, eventually, make_runtime

pytestmark = pytest.mark.flow

SENDER = "agent@saferails.test"
MOVE: dict[str, Any] = {"action_type": "move_file", "target": "inbox/report.txt",
        "params": {"source": "inbox/report.txt", "destination": "archive/report.txt"}}
EMAIL: dict[str, Any] = {"action_type": "send_email", "target": "mbx:agent-1",
         "params": {"to": ["team@example.com"], "subject": "release notes", "body": "v2 is out"}}


class NoteParams(Params):
    path: str
    lines: list[str]


@handler(params_model=NoteParams, description="Append lines to a file under the root (flow test handler)")
class AppendNotes:
    """Writes the first line, then fails for good: a partial effect the executor must compensate."""

    action_type = "append_notes_flowtest"
    external = True
    fail_after_first: ClassVar[bool] = True

    def validate(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> None:
        NoteParams.model_validate(params)

    def capture(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> dict[str, Any]:
        path = ctx.settings.require_file_root() / params["path"]
        return {"content": path.read_text() if path.exists() else None}

    def preview(self, ctx: HandlerContext, target: str, params: dict[str, Any],
                pre_state: dict[str, Any]) -> dict[str, Any]:
        return {"append": params["lines"]}

    def execute(self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any],
                key: str) -> ExecutionOutcome:
        path = ctx.settings.require_file_root() / params["path"]
        undo = {"path": str(path), "content": pre_state["content"]}
        for n, line in enumerate(params["lines"]):
            if n == 1 and self.fail_after_first:
                raise PartialEffect(undo, PermanentEffectError("the second line was refused"))
            with path.open("a") as fh:
                fh.write(line + "\n")
        return ExecutionOutcome({"appended": len(params["lines"])}, undo)

    def rollback(self, ctx: HandlerContext, target: str, rollback_data: dict[str, Any]) -> dict[str, Any]:
        path = Path(rollback_data["path"])
        if rollback_data["content"] is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(rollback_data["content"])
        return {"restored": str(path)}


@pytest.fixture
def mailbox(smtp_server: Mailbox) -> Mailbox:
    return smtp_server


@pytest.fixture
def file_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "inbox").mkdir(parents=True)
    (root / "archive").mkdir()
    (root / "inbox" / "report.txt").write_text("quarterly numbers\n", encoding="utf-8")
    return root.resolve()


@pytest.fixture
def world(sqlite_db: Any, clock: ManualClock, outbox: Outbox, mailbox: Mailbox, file_root: Path) -> Iterator[Runtime]:
    settings = HandlerSettings(file_root=file_root, smtp_host=mailbox.host, smtp_port=mailbox.port,
                               smtp_sender=SENDER)
    rt = make_runtime(sqlite_db.sessions, clock, outbox, settings, policy=_emails_need_approval())
    install_runtime(rt)
    yield rt
    install_runtime(None)


def _emails_need_approval() -> Policy:
    """The default policy, plus: an email with "approval" in its subject needs approval (so one test can
    approve an email and another can send one automatically)."""
    data = default_policy().model_dump(mode="json", exclude_none=True)
    data["rules"].append({"id": "flagged-emails-need-approval", "kind": "requires_approval",
                          "action_types": ["send_email"],
                          "when": {"field": "params.subject", "operator": "contains", "value": "approval"}})
    return load_policy_text(yaml.safe_dump(data, sort_keys=False))


def _paused(flow_run_id: UUID) -> bool:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    return state is not None and state.is_paused()


def _final(rt: Runtime, action_id: str) -> str:
    def check() -> str | None:
        state = rt.actions.get(action_id).state
        return state if state in {"completed", "failed", "rejected", "timed_out", "rolled_back"} else None

    result: str = eventually(check)
    return result


def _submit_paused(spec: dict[str, Any]) -> api.Submission:
    sub = api.submit_action(Proposal(**spec, proposer="agent-1", reason="housekeeping"), poll_interval=1)
    eventually(lambda: _paused(sub.flow_run_id))
    return sub


def _resume(sub: api.Submission, approver: str, code: str | None) -> None:
    resume_flow_run(sub.flow_run_id, run_input={"decision": "approve", "approver": approver, "code": code or "",
                                                "reason": "checked"})


def _events(rt: Runtime, action_id: str) -> list[str]:
    with transaction(rt.sessions) as session:
        stmt = sa.select(AuditRecord.event).where(AuditRecord.entity_id == action_id).order_by(AuditRecord.sequence)
        return list(session.execute(stmt).scalars())


def test_a_low_impact_document_is_written_by_the_flow_without_asking_anyone(world: Runtime, file_root: Path) -> None:
    result = action_flow(proposal={"action_type": "create_document", "target": "docs/plan.md", "proposer": "agent-1",
                                   "params": {"path": "plan.md", "content": "# Plan\n"}})
    assert result["state"] == "completed"
    assert (file_root / "plan.md").read_text() == "# Plan\n"


def test_a_file_move_approved_with_a_valid_code_through_the_paused_run_really_moves_the_file(
    world: Runtime, outbox: Outbox, file_root: Path
) -> None:
    sub = _submit_paused(MOVE)
    assert (file_root / "inbox" / "report.txt").exists()
    _resume(sub, "alice", outbox.code_for(sub.action.id, "alice"))
    assert _final(world, sub.action.id) == "completed"
    assert (file_root / "archive" / "report.txt").read_text() == "quarterly numbers\n"
    assert not (file_root / "inbox" / "report.txt").exists()


def test_an_email_approved_with_a_valid_code_arrives_at_the_smtp_server(world: Runtime, outbox: Outbox,
                                                                       mailbox: Mailbox) -> None:
    spec = EMAIL | {"params": EMAIL["params"] | {"subject": "needs approval: release notes"}}
    sub = _submit_paused(spec)
    assert mailbox.messages == []
    _resume(sub, "bob", outbox.code_for(sub.action.id, "bob"))
    assert _final(world, sub.action.id) == "completed"
    [(recipients, message)] = mailbox.messages
    assert recipients == ["team@example.com"] and message["Subject"] == "needs approval: release notes"


def test_a_forged_code_is_refused_and_the_run_pauses_again_until_a_valid_one_comes(
    world: Runtime, outbox: Outbox, file_root: Path
) -> None:
    sub = _submit_paused(MOVE)
    _resume(sub, "alice", "ABCD-EFGH-JKLM")
    eventually(lambda: _paused(sub.flow_run_id))  # the resume set it Running; the refusal pauses it again
    view = world.actions.get(sub.action.id)
    assert view.state == "pending_approval" and view.approvals == ()
    assert (file_root / "inbox" / "report.txt").exists()
    _resume(sub, "alice", outbox.code_for(sub.action.id, "alice"))
    assert _final(world, sub.action.id) == "completed"
    assert (file_root / "archive" / "report.txt").exists()


def test_rolling_back_through_the_api_puts_the_moved_file_back(world: Runtime, outbox: Outbox,
                                                              file_root: Path) -> None:
    sub = _submit_paused(MOVE)
    api.approve(sub.action.id, "carol", outbox.code_for(sub.action.id, "carol"), "ok")
    assert _final(world, sub.action.id) == "completed"
    undone = api.rollback(sub.action.id, "carol", "moved the wrong report")
    assert undone.state == "rolled_back"
    assert (file_root / "inbox" / "report.txt").read_text() == "quarterly numbers\n"
    assert not (file_root / "archive" / "report.txt").exists()


def test_a_handler_failing_after_a_partial_effect_is_compensated_and_the_flow_ends_failed(
    world: Runtime, file_root: Path
) -> None:
    state = action_flow(proposal={"action_type": "append_notes_flowtest", "target": "notes", "proposer": "agent-1",
                                  "params": {"path": "notes.txt", "lines": ["one", "two"]}}, return_state=True)
    assert state.is_failed() and "second line was refused" in (state.message or "")
    result = state.result(raise_on_failure=False)
    assert isinstance(result, dict)
    assert result["state"] == "failed" and "second line was refused" in (result["error"] or "")
    assert not (file_root / "notes.txt").exists()
    assert "compensated" in _events(world, result["action_id"])


def test_rerunning_the_flow_of_a_sent_email_sends_nothing_more(world: Runtime, mailbox: Mailbox) -> None:
    first = action_flow(proposal={**EMAIL, "proposer": "agent-1"})
    assert first["state"] == "completed" and len(mailbox.messages) == 1
    again = action_flow(action_id=first["action_id"])
    assert again["state"] == "completed" and again["result"] == first["result"]
    assert len(mailbox.messages) == 1
    assert _events(world, first["action_id"]).count("executed") == 1
