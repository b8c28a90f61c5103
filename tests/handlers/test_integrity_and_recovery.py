"""Rails the agent cannot step over, on SQLite and PostgreSQL, with real files, a real org table and a real SMTP
server: an action edited in the database after its approval is refused (nothing executed, audited, alerted); a
crash between an effect and its commit is reconciled through the handler, so no rollback ever claims "nothing
to undo" while the effect is in place; a rollback killed half-way is finished by the recover sweep; requests
that can never succeed are refused at proposal or fail once, without retries and without tripping the circuit
breaker for everyone else."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from saferails.actions.models import action_hash
from saferails.actions.service import ActionService, Proposal
from saferails.clock import ManualClock
from saferails.errors import ActionTampered, CircuitOpen, InvalidInput, NotFound
from saferails.execution import INTERRUPTED
from saferails.handlers import BUILTIN_HANDLERS, HandlerSettings, ReconcilingHandler
from saferails.policy import load_policy_text
from saferails.resilience import BreakerRegistry
from saferails.store.db import transaction
from saferails.store.tables import Action, AuditRecord, OutboxEvent
from saferails.sweeps import RecoverSweep
from tests.support.handlerkit import Mailbox, World, free_port, make_world

LEASE_PASSED = timedelta(minutes=16)


class Killed(BaseException):
    """The worker process dying: nothing after the raise runs, the open transaction never commits."""


class Crash:
    """A crash hook for ExecutionService: kills the 'process' once at the named stage."""

    def __init__(self) -> None:
        self.at: str | None = None

    def __call__(self, stage: str, action_id: str) -> None:
        if stage == self.at:
            self.at = None
            raise Killed(stage)


@pytest.fixture
def crash() -> Crash:
    return Crash()


@pytest.fixture
def w(db: Any, clock: ManualClock, settings: HandlerSettings, crash: Crash) -> World:
    return make_world(db, clock, settings, crash_hook=crash)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def events(w: World, action_id: str) -> list[str]:
    with transaction(w.db.sessions) as session:
        stmt = sa.select(AuditRecord.event).where(AuditRecord.entity_id == action_id).order_by(AuditRecord.sequence)
        return list(session.execute(stmt).scalars())


def audit_details(w: World, action_id: str, event: str) -> list[dict[str, Any]]:
    with transaction(w.db.sessions) as session:
        stmt = sa.select(AuditRecord.details).where(AuditRecord.entity_id == action_id, AuditRecord.event == event)
        return [dict(json.loads(d)) for d in session.execute(stmt).scalars()]


def outbox_events(w: World, action_id: str) -> list[str]:
    with transaction(w.db.sessions) as session:
        stmt = sa.select(OutboxEvent.payload).where(OutboxEvent.aggregate_id == action_id)
        return [str(p.get("event")) for p in session.execute(stmt).scalars()]


def edit_row(w: World, action_id: str, **values: Any) -> None:
    """What someone with database access does: change columns directly, leaving ``action_hash`` alone."""
    with transaction(w.db.sessions) as session:
        session.execute(sa.update(Action).where(Action.id == action_id).values(**values))


def sweep(w: World, *, with_executor: bool = True) -> RecoverSweep:
    return RecoverSweep(w.actions, w.executor if with_executor else None)


# --- tampering -------------------------------------------------------------------------------------------------

EDITS: dict[str, dict[str, Any]] = {
    "params": {"params": {"path": "inbox/notes.md", "content": "pwned\n", "overwrite": False}},
    "target": {"target": "someone-else"},
    "type": {"action_type": "move_file",
             "params": {"source": "inbox/report.txt", "destination": "archive/report.txt"}},
    # A forger who also rewrites the hash column: the hash-chained proposal record still disagrees.
    "params-and-hash": {"params": {"path": "inbox/notes.md", "content": "pwned\n", "overwrite": False},
                        "action_hash": action_hash("create_document", "docs",
                                                   {"path": "inbox/notes.md", "content": "pwned\n",
                                                    "overwrite": False})},
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_action_edited_after_approval_is_refused_audited_and_alerted_and_nothing_is_written(
    w: World, file_root: Path, edit: str
) -> None:
    action = w.propose("create_document", "docs", {"path": "inbox/notes.md", "content": "# Notes\n"})
    assert action.state == "approved"
    before = files(file_root)
    edit_row(w, action.id, **EDITS[edit])
    with pytest.raises(ActionTampered) as refused:
        w.executor.execute(action.id)
    assert refused.value.code == "ACTION_TAMPERED"
    assert files(file_root) == before  # neither the document nor the move happened
    view = w.actions.get(action.id)
    assert view.state == "failed" and view.error is not None and view.error.startswith("ACTION_TAMPERED")
    [trace] = audit_details(w, action.id, "action_tampered")
    assert trace["computed_hash"] != action.action_hash
    [alert] = audit_details(w, action.id, "alert_emitted")
    assert (alert["alert_type"], alert["severity"]) == ("action_tampered", "critical")
    assert "action_tampered" in outbox_events(w, action.id)
    # Refused for good: the recover sweep does not pick it up again.
    w.clock.advance(LEASE_PASSED)
    sweep(w).run()
    assert files(file_root) == before and w.actions.get(action.id).state == "failed"


def test_an_org_change_edited_after_approval_leaves_the_org_row_unchanged(w: World) -> None:
    action = w.propose("role_change", "ann", {"new_role": "lead"})
    before = w.snapshot()
    edit_row(w, action.id, params={"new_role": "director"})
    with pytest.raises(ActionTampered):
        w.executor.execute(action.id)
    assert w.snapshot() == before
    assert "action_tampered" in events(w, action.id)


def test_a_rollback_of_an_edited_action_is_refused_and_the_action_keeps_its_state(
    w: World, file_root: Path
) -> None:
    action = w.propose("create_document", "docs", {"path": "inbox/notes.md", "content": "# Notes\n"})
    assert w.executor.execute(action.id).state == "completed"
    edit_row(w, action.id, params={"path": "inbox/report.txt", "content": "# Notes\n", "overwrite": True})
    with pytest.raises(ActionTampered):
        w.executor.rollback(action.id, "ops-1", reason="undo")
    assert w.actions.get(action.id).state == "completed"
    assert (file_root / "inbox" / "notes.md").read_text(encoding="utf-8") == "# Notes\n"
    assert (file_root / "inbox" / "report.txt").read_text(encoding="utf-8") == "quarterly numbers\n"
    assert events(w, action.id)[-2:] == ["action_tampered", "alert_emitted"]


def test_untouched_actions_pass_the_hash_check_on_both_backends(w: World, file_root: Path) -> None:
    params = {"title": "Planning", "start_time": "2026-11-24T10:00:00+01:00", "end_time": "2026-11-24T11:00:00Z",
              "attendees": ["ann@example.com"]}
    event = w.propose("create_calendar_event", "ann", params)
    assert w.executor.execute(event.id).state == "completed"
    cap = w.propose("reduce_meetings", "ann", {"max_weekly_meeting_hours": 1.5})
    assert w.executor.execute(cap.id).state == "completed"
    assert w.executor.rollback(cap.id, "ops-1", reason="check").state == "rolled_back"


# --- crashes between effect and commit --------------------------------------------------------------------------


def _moved(file_root: Path) -> bool:
    return (file_root / "archive" / "report.txt").exists() and not (file_root / "inbox" / "report.txt").exists()


def test_a_move_killed_after_its_effect_is_reconciled_as_applied_and_its_rollback_really_undoes_it(
    w: World, crash: Crash, file_root: Path
) -> None:
    action = w.propose("move_file", "inbox", {"source": "inbox/report.txt", "destination": "archive/report.txt"})
    crash.at = "after_effect"
    with pytest.raises(Killed):
        w.executor.execute(action.id)
    assert w.actions.get(action.id).state == "executing" and _moved(file_root)
    w.clock.advance(LEASE_PASSED)
    report = sweep(w).run()
    view = w.actions.get(action.id)
    assert view.state == "completed" and view.rollback_data is not None
    assert [i.action_id for i in report.items] == [action.id]
    assert audit_details(w, action.id, "execution_recovered")[0]["resolution"] == "effect_found"
    undone = w.executor.rollback(action.id, "ops-1", reason="wrong folder")
    assert undone.state == "rolled_back"
    assert (file_root / "inbox" / "report.txt").read_text(encoding="utf-8") == "quarterly numbers\n"
    assert not (file_root / "archive" / "report.txt").exists()


@pytest.mark.parametrize("with_executor", [True, False], ids=["sweep-with-executor", "sweep-without-executor"])
def test_no_rollback_claims_nothing_to_undo_while_the_written_file_is_still_there(
    w: World, crash: Crash, file_root: Path, with_executor: bool
) -> None:
    for n in range(3):
        action = w.propose("create_document", "docs", {"path": f"inbox/doc-{n}.md", "content": f"doc {n}\n"})
        crash.at = "after_effect"
        with pytest.raises(Killed):
            w.executor.execute(action.id)
        assert (file_root / "inbox" / f"doc-{n}.md").exists()
        w.clock.advance(LEASE_PASSED)
        sweep(w, with_executor=with_executor).run()
        undone = w.executor.rollback(action.id, "ops-1", reason="not wanted")
        assert undone.state == "rolled_back", undone.error
        assert not (file_root / "inbox" / f"doc-{n}.md").exists()
        for details in audit_details(w, action.id, "rolled_back"):
            assert not details.get("nothing_to_undo")


def test_an_execution_killed_before_its_effect_fails_and_its_rollback_truthfully_has_nothing_to_undo(
    w: World, file_root: Path
) -> None:
    action = w.propose("move_file", "inbox", {"source": "inbox/report.txt", "destination": "archive/report.txt"})
    # The process died right after committing ``executing`` (pre-state captured), before touching the file.
    pre_state = w.executor.preview(action.id)["pre_state"]
    edit_row(w, action.id, state="executing", pre_state=pre_state, executed_at=w.clock.now())
    before = files(file_root)
    w.clock.advance(LEASE_PASSED)
    sweep(w).run()
    view = w.actions.get(action.id)
    assert (view.state, view.error) == ("failed", INTERRUPTED)
    assert audit_details(w, action.id, "execution_interrupted")[0]["reconciled"] == "not_applied"
    undone = w.executor.rollback(action.id, "ops-1", reason="clean up")
    assert undone.state == "rolled_back"
    assert audit_details(w, action.id, "rolled_back")[0]["reconciled"] == "not_applied"
    assert files(file_root) == before


def test_an_email_killed_after_sending_is_never_claimed_undone(
    w: World, crash: Crash, smtp_server: Mailbox
) -> None:
    action = w.propose("send_email", "agent-mailbox",
                       {"to": ["ann@example.com"], "subject": "Offer", "body": "Here it is."})
    crash.at = "after_effect"
    with pytest.raises(Killed):
        w.executor.execute(action.id)
    assert len(smtp_server.messages) == 1
    w.clock.advance(LEASE_PASSED)
    sweep(w).run()
    view = w.actions.get(action.id)
    assert view.state == "failed" and view.error is not None and "effect unknown" in view.error
    assert any(d["alert_type"] == "effect_unknown" for d in audit_details(w, action.id, "alert_emitted"))
    undone = w.executor.rollback(action.id, "ops-1", reason="recall")
    assert undone.state == "rollback_failed" and undone.error is not None
    assert undone.error.startswith("EFFECT_UNKNOWN")
    assert "rolled_back" not in events(w, action.id)


# --- rollbacks killed half-way ------------------------------------------------------------------------------------


def test_a_rollback_killed_after_its_undo_is_finished_by_the_sweep(
    w: World, crash: Crash, file_root: Path
) -> None:
    action = w.propose("create_document", "docs", {"path": "inbox/notes.md", "content": "# Notes\n"})
    assert w.executor.execute(action.id).state == "completed"
    crash.at = "after_undo"
    with pytest.raises(Killed):
        w.executor.rollback(action.id, "ops-1", reason="draft")
    assert w.actions.get(action.id).state == "rolling_back"
    assert not (file_root / "inbox" / "notes.md").exists()
    w.clock.advance(timedelta(minutes=5))
    assert sweep(w).run().items == []  # younger than the lease: left alone
    w.clock.advance(LEASE_PASSED)
    sweep(w).run()
    assert w.actions.get(action.id).state == "rolled_back"
    [done] = audit_details(w, action.id, "rolled_back")
    assert done["reconciled"] == "not_applied"


def test_a_rollback_killed_before_its_undo_is_retried_by_the_sweep(w: World, file_root: Path) -> None:
    action = w.propose("create_document", "docs", {"path": "inbox/notes.md", "content": "# Notes\n"})
    assert w.executor.execute(action.id).state == "completed"
    edit_row(w, action.id, state="rolling_back", updated_at=w.clock.now())  # died right after rollback_started
    w.clock.advance(LEASE_PASSED)
    sweep(w).run()
    assert w.actions.get(action.id).state == "rolled_back"
    assert not (file_root / "inbox" / "notes.md").exists()


def test_a_store_local_rollback_killed_before_commit_is_retried_and_restores_the_org_row(
    w: World, crash: Crash
) -> None:
    before = w.snapshot()
    action = w.propose("role_change", "ann", {"new_role": "lead"})
    assert w.executor.execute(action.id).state == "completed"
    crash.at = "after_undo"
    with pytest.raises(Killed):
        w.executor.rollback(action.id, "ops-1", reason="undo")
    assert w.actions.get(action.id).state == "rolling_back"
    assert w.snapshot() != before  # the undo's transaction died with the process
    w.clock.advance(LEASE_PASSED)
    sweep(w).run()
    assert w.actions.get(action.id).state == "rolled_back"
    assert w.snapshot() == before


def test_a_resumed_rollback_that_cannot_finish_ends_rollback_failed_with_an_alert(
    w: World, crash: Crash, file_root: Path
) -> None:
    action = w.propose("create_document", "docs", {"path": "inbox/notes.md", "content": "# Notes\n"})
    assert w.executor.execute(action.id).state == "completed"
    edit_row(w, action.id, state="rolling_back", updated_at=w.clock.now())
    (file_root / "inbox" / "notes.md").write_text("edited by a person\n", encoding="utf-8")
    w.clock.advance(LEASE_PASSED)
    sweep(w).run()
    view = w.actions.get(action.id)
    assert view.state == "rollback_failed" and view.error is not None and view.error.startswith("ROLLBACK_CONFLICT")
    assert any(d["alert_type"] == "rollback_failed" for d in audit_details(w, action.id, "alert_emitted"))
    assert (file_root / "inbox" / "notes.md").read_text(encoding="utf-8") == "edited by a person\n"


# --- bad requests: refused at proposal, or failed once without tripping the breaker ---------------------------


@pytest.mark.parametrize(
    "subject",
    ["Hi =?utf-8?q?there=0D=0ABcc:_all@evil.test?=", "=?utf-8?b?SGkNCkJjYzogYWxsQGV2aWwudGVzdA==?=",
     "Hi\r\nBcc: all@evil.test", "=?x-no-such-charset?q?hi?="],
    ids=["q-encoded-crlf", "b-encoded-crlf", "raw-crlf", "undecodable"],
)
def test_header_injection_through_the_subject_is_refused_before_anything_is_recorded(
    w: World, smtp_server: Mailbox, subject: str
) -> None:
    with transaction(w.db.sessions) as session:
        rows = session.execute(sa.select(sa.func.count()).select_from(AuditRecord)).scalar_one()
    with pytest.raises(InvalidInput):
        w.propose("send_email", "agent-mailbox", {"to": ["ann@example.com"], "subject": subject, "body": "x"})
    with transaction(w.db.sessions) as session:
        assert session.execute(sa.select(sa.func.count()).select_from(Action)).scalar_one() == 0
        assert session.execute(sa.select(sa.func.count()).select_from(AuditRecord)).scalar_one() == rows
    assert smtp_server.messages == []


@pytest.fixture
def ascii_only_smtp() -> Iterator[Mailbox]:
    """A real SMTP server that does not offer SMTPUTF8 (as many do not)."""
    mailbox = Mailbox("127.0.0.1", free_port())
    controller = Controller(mailbox, hostname=mailbox.host, port=mailbox.port, enable_SMTPUTF8=False)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


@pytest.fixture
def strict(db: Any, clock: ManualClock, settings: HandlerSettings, ascii_only_smtp: Mailbox) -> World:
    ascii_settings = dataclasses.replace(settings, smtp_port=ascii_only_smtp.port)
    return make_world(db, clock, ascii_settings, breaker_registry=BreakerRegistry(clock, failure_threshold=2))


def test_undeliverable_emails_fail_once_and_do_not_open_the_circuit_for_everyone(
    strict: World, ascii_only_smtp: Mailbox
) -> None:
    # The test server does not speak SMTPUTF8: an internationalised address can never be delivered there.
    for n in range(3):
        bad = strict.propose("send_email", "agent-mailbox",
                             {"to": [f"jörg{n}@example.com"], "subject": "Hallo", "body": "x"})
        failed = strict.executor.execute(bad.id)
        assert failed.state == "failed" and failed.error is not None and failed.error.startswith("EFFECT_REFUSED")
        assert "execution_attempt_failed" in events(strict, bad.id)
    assert strict.sleeps == []  # never retried
    good = strict.propose("send_email", "agent-mailbox", {"to": ["ann@example.com"], "subject": "Hi", "body": "x"})
    assert strict.executor.execute(good.id).state == "completed"
    assert len(ascii_only_smtp.messages) == 1


def test_every_built_in_handler_can_reconcile_its_effect() -> None:
    assert [h.action_type for h in BUILTIN_HANDLERS if not isinstance(h, ReconcilingHandler)] == []


@pytest.mark.parametrize("action_type, params", [
    ("role_change", {"new_role": "lead"}),
    ("schedule_focus_time", {"start": "2026-11-24T09:00:00Z", "end": "2026-11-24T11:00:00Z"}),
], ids=["org-row", "calendar"])
def test_a_store_local_execution_killed_before_commit_left_no_effect_and_fails_truthfully(
    w: World, crash: Crash, action_type: str, params: dict[str, Any]
) -> None:
    before = w.snapshot()
    action = w.propose(action_type, "ann", params)
    crash.at = "after_effect"
    with pytest.raises(Killed):
        w.executor.execute(action.id)
    assert w.actions.get(action.id).state == "executing" and w.snapshot() == before
    w.clock.advance(LEASE_PASSED)
    sweep(w).run()
    assert (w.actions.get(action.id).state, w.actions.get(action.id).error) == ("failed", INTERRUPTED)
    assert w.executor.rollback(action.id, "ops-1", reason="clean up").state == "rolled_back"
    assert w.snapshot() == before


APPROVAL_POLICY = """
version: "tamper-approval"
impact: {default: high}
approval_defaults: {approvers: {users: [alice]}, min_approvals: 1, timeout: 1h, timeout_action: fail,
                    require_codes: false, codes_waiver_reason: "the tampering, not the code, is under test"}
rules:
  - id: documents-need-approval
    kind: requires_approval
    action_types: [create_document]
"""


def test_params_swapped_with_raw_sql_after_a_human_approval_are_never_executed(
    w: World, file_root: Path
) -> None:
    gated = ActionService(w.db.sessions, load_policy_text(APPROVAL_POLICY), w.clock)
    gated.upsert_principal("alice")
    action = gated.propose(Proposal(action_type="create_document", target="docs", proposer="agent-7",
                                    params={"path": "inbox/notes.md", "content": "harmless\n"}))
    assert action.state == "pending_approval"
    assert gated.approve(action.id, "alice", reason="looks fine").state == "approved"
    with transaction(w.db.sessions) as session:
        session.execute(
            sa.text("UPDATE actions SET params = :p WHERE id = :id").bindparams(sa.bindparam("p", type_=sa.JSON)),
            {"p": {"path": "inbox/report.txt", "content": "exfiltrated\n", "overwrite": True}, "id": action.id},
        )
    before = files(file_root)
    with pytest.raises(ActionTampered):
        w.executor.execute(action.id)
    assert files(file_root) == before
    assert w.actions.get(action.id).state == "failed"
    assert {"approved", "action_tampered", "alert_emitted"} <= set(events(w, action.id))


# --- proposed and claimed in one transaction (ExecutionService.propose_and_run: the action flow's fast path) ----

def run_new(w: World, action_type: str, target: str, params: dict[str, Any], **extra: Any) -> Any:
    proposal = Proposal(action_type=action_type, target=target, params=params, proposer="agent-7", **extra)
    return w.executor.propose_and_run(w.actions, proposal, flow_run_id="run-1", actor="system:flow")


def commits(w: World) -> list[int]:
    """A list that grows by one on every COMMIT on ``w``'s database."""
    seen: list[int] = []
    sa.event.listen(w.db.engine, "commit", lambda _conn: seen.append(1))
    return seen


def test_a_new_allowed_action_is_proposed_attached_and_claimed_in_one_commit_then_executed(
    w: World, file_root: Path
) -> None:
    run_new(w, "create_document", "docs", {"path": "inbox/warm-up.md", "content": "-\n"})  # records the policy
    committed = commits(w)
    done = run_new(w, "create_document", "docs", {"path": "inbox/fast.md", "content": "fast\n"})
    # proposal + claim, then the outcome (``propose`` then ``run`` commit three times)
    assert len(committed) == 2
    assert done.state == "completed" and done.flow_run_id == "run-1" and done.pre_state is not None
    assert (file_root / "inbox" / "fast.md").read_text(encoding="utf-8") == "fast\n"
    assert events(w, done.id) == ["action_proposed", "auto_approved", "flow_run_attached", "execution_started",
                                  "executed"]
    # A re-run of the flow with the same idempotency key applies nothing again.
    again = run_new(w, "create_document", "docs", {"path": "inbox/fast.md", "content": "fast\n"},
                    idempotency_key=w.actions.get(done.id).idempotency_key)
    assert again.id == done.id and again.state == "completed"
    assert events(w, done.id).count("executed") == 1


@pytest.mark.parametrize(("action_type", "target", "params", "after_sweep"), [
    ("move_file", "inbox", {"source": "inbox/report.txt", "destination": "archive/report.txt"}, "completed"),
    ("role_change", "ann", {"new_role": "lead"}, "failed"),
], ids=["external-effect", "store-local-effect"])
def test_a_fast_path_execution_killed_after_its_effect_is_recovered_like_any_other(
    w: World, crash: Crash, file_root: Path, action_type: str, target: str, params: dict[str, Any], after_sweep: str
) -> None:
    org_before = w.snapshot()
    crash.at = "after_effect"
    with pytest.raises(Killed):
        run_new(w, action_type, target, params)
    [action_id] = [a.id for a in w.actions.list()]
    # The claim was committed with the proposal before the handler ran: the sweep finds it executing.
    assert w.actions.get(action_id).state == "executing"
    w.clock.advance(LEASE_PASSED)
    sweep(w).run()
    assert w.actions.get(action_id).state == after_sweep
    if action_type == "move_file":  # applied once, recognised as applied
        assert _moved(file_root)
        assert audit_details(w, action_id, "execution_recovered")[0]["resolution"] == "effect_found"
    else:  # the store-local effect died with its transaction
        assert w.snapshot() == org_before and w.actions.get(action_id).error == INTERRUPTED


def test_a_fast_path_action_refused_by_its_handler_fails_in_the_proposing_transaction(
    w: World, file_root: Path
) -> None:
    run_new(w, "create_document", "docs", {"path": "inbox/warm-up.md", "content": "-\n"})  # records the policy
    before = files(file_root)
    committed = commits(w)
    failed = run_new(w, "move_file", "inbox", {"source": "inbox/absent.txt", "destination": "archive/absent.txt"})
    assert len(committed) == 1 and files(file_root) == before
    assert failed.state == "failed" and failed.error is not None
    assert events(w, failed.id) == ["action_proposed", "auto_approved", "flow_run_attached", "execution_started",
                                    "execution_failed"]
    assert audit_details(w, failed.id, "execution_failed")[0]["stage"] == "validate"


def test_an_open_circuit_or_a_later_schedule_leaves_the_new_action_approved_and_committed(
    db: Any, clock: ManualClock, settings: HandlerSettings, file_root: Path
) -> None:
    breakers = BreakerRegistry(clock, failure_threshold=1, reset_timeout=timedelta(minutes=5))
    w = make_world(db, clock, settings, breaker_registry=breakers)
    breakers.get("create_document").record_failure()
    with pytest.raises(CircuitOpen):
        run_new(w, "create_document", "docs", {"path": "inbox/later.md", "content": "x\n"})
    [refused] = w.actions.list()
    assert refused.state == "approved" and refused.flow_run_id == "run-1"
    assert not (file_root / "inbox" / "later.md").exists()

    clock.advance(timedelta(minutes=6))
    scheduled = run_new(w, "create_document", "docs", {"path": "inbox/tomorrow.md", "content": "y\n"},
                        scheduled_for=clock.now() + timedelta(days=1))
    assert scheduled.state == "approved" and not (file_root / "inbox" / "tomorrow.md").exists()
    assert w.executor.run(refused.id).state == "completed"  # the breaker has cooled down


def test_an_action_proposed_before_its_run_is_attached_and_claimed_in_one_commit(
    w: World, file_root: Path
) -> None:
    """``attach_and_run``: what the action flow does for an action ``flows.api`` proposed before creating the run."""
    action = w.propose("create_document", "docs", {"path": "inbox/later.md", "content": "later\n"})
    named: list[str] = []
    committed = commits(w)
    done = w.executor.attach_and_run(w.actions, action.id, "run-7", "system:flow",
                                     on_attached=lambda view: named.append(view.id))
    assert len(committed) == 2  # attachment + claim, then the outcome
    assert done.state == "completed" and done.flow_run_id == "run-7" and named == [action.id]
    assert (file_root / "inbox" / "later.md").read_text(encoding="utf-8") == "later\n"
    assert events(w, action.id) == ["action_proposed", "auto_approved", "flow_run_attached", "execution_started",
                                    "executed"]
    # A second run attached to the finished action records the new run and applies nothing again.
    again = w.executor.attach_and_run(w.actions, action.id, "run-8", "system:flow")
    assert (again.state, again.flow_run_id) == ("completed", "run-8")
    assert events(w, action.id)[-1] == "flow_run_attached" and events(w, action.id).count("executed") == 1
    with pytest.raises(NotFound):
        w.executor.attach_and_run(w.actions, "no-such-action", "run-9", "system:flow")
