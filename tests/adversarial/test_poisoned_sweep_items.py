"""One bad item never blocks the others: the recover sweep meets an action whose handling crashes (a handler that
raises something untyped, or parameters written straight into the store), puts it in a final state with the
reason, audited, and carries on with the good ones in the same run."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa

from saferails.actions.models import action_hash
from saferails.actions.service import ActionService, Proposal
from saferails.actions.types import Params
from saferails.clock import ManualClock
from saferails.execution import ExecutionService
from saferails.handlers import ExecutionOutcome, HandlerContext, HandlerSettings, handler
from saferails.policy import load_policy_text
from saferails.store.db import transaction
from saferails.store.tables import Action, AuditRecord
from saferails.sweeps import ExpireSweep, RecoverSweep

OPEN_POLICY = 'version: "poison-test"\nimpact: {default: low}\nrules: []\n'


class PillParams(Params):
    n: int = 1


@handler(params_model=PillParams, description="Chokes on the target 'poison' (test handler)")
class Pill:
    action_type = "poison_pill"
    external = True
    done: ClassVar[list[str]] = []

    def validate(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> None:
        if target == "poison":
            raise RuntimeError("the handler choked on this item")
        if target == "value-error":
            int("not a number")

    def capture(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    def preview(self, ctx: HandlerContext, target: str, params: dict[str, Any],
                pre_state: dict[str, Any]) -> dict[str, Any]:
        return {}

    def execute(self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any],
                key: str) -> ExecutionOutcome:
        self.done.append(target)
        return ExecutionOutcome({"done": target}, {})

    def rollback(self, ctx: HandlerContext, target: str, rollback_data: dict[str, Any]) -> dict[str, Any]:
        return {}


def _services(db: Any, clock: ManualClock, settings: HandlerSettings) -> tuple[ActionService, ExecutionService]:
    actions = ActionService(db.sessions, load_policy_text(OPEN_POLICY), clock)
    return actions, ExecutionService(db.sessions, clock, settings, sleeper=lambda _s: None)


def _events(db: Any, action_id: str) -> dict[str, dict[str, Any]]:
    with transaction(db.sessions) as session:
        stmt = sa.select(AuditRecord.event, AuditRecord.details).where(AuditRecord.entity_id == action_id)
        return {event: json.loads(details) for event, details in session.execute(stmt)}


def test_a_poisoned_item_among_good_ones_ends_failed_with_a_reason_and_the_good_ones_run(
    db: Any, clock: ManualClock
) -> None:
    Pill.done.clear()
    actions, executor = _services(db, clock, HandlerSettings())
    ids = [actions.propose(Proposal(action_type="poison_pill", target=t, params={}, proposer="agent-1")).id
           for t in ["poison", "good-1", "good-2", "good-3"]]
    clock.advance(timedelta(minutes=16))
    report = RecoverSweep(actions, executor, batch_size=1).run()
    assert sorted(Pill.done) == ["good-1", "good-2", "good-3"]
    states = {i: actions.get(i).state for i in ids}
    assert states == {ids[0]: "failed", ids[1]: "completed", ids[2]: "completed", ids[3]: "completed"}
    poisoned = actions.get(ids[0])
    assert poisoned.error is not None and "choked" in poisoned.error
    recorded = _events(db, ids[0])
    assert "choked" in recorded["sweep_item_poisoned"]["reason"]
    assert [i.outcome for i in report.items if i.action_id == ids[0]] == ["failed"]
    # The next run has nothing left to trip over.
    clock.advance(timedelta(hours=2))
    assert RecoverSweep(actions, executor).run().items == []


def test_a_stored_path_forged_with_a_nul_byte_is_refused_and_the_sweep_carries_on(
    sqlite_db: Any, clock: ManualClock, tmp_path: Path
) -> None:
    # PostgreSQL cannot even store the NUL (its JSON refuses it); SQLite can, so the executor must cope.
    Pill.done.clear()
    root = tmp_path / "root"
    (root / "inbox").mkdir(parents=True)
    (root / "inbox" / "a.txt").write_text("a\n", encoding="utf-8")
    actions, executor = _services(sqlite_db, clock, HandlerSettings(file_root=root))
    bad = actions.propose(Proposal(action_type="move_file", target="inbox", proposer="agent-1",
                                   params={"source": "inbox/a.txt", "destination": "inbox/b.txt"}))
    good = actions.propose(Proposal(action_type="poison_pill", target="fine", params={}, proposer="agent-1"))
    params = {"source": "inbox/a.txt", "destination": "inbox/b\x00.txt"}
    with transaction(sqlite_db.sessions) as session:  # a consistent forgery: params and hash rewritten together
        session.execute(sa.update(Action).where(Action.id == bad.id).values(
            params=params, action_hash=action_hash("move_file", "inbox", params)))
    clock.advance(timedelta(minutes=16))
    RecoverSweep(actions, executor, batch_size=1).run()
    failed = actions.get(bad.id)
    # The hash the proposal was recorded under (in the hash-chained audit log) no longer matches.
    assert failed.state == "failed" and failed.error is not None and failed.error.startswith("ACTION_TAMPERED")
    assert actions.get(good.id).state == "completed" and Pill.done == ["fine"]
    assert sorted(p.name for p in (root / "inbox").iterdir()) == ["a.txt"]


def test_a_handler_tripping_over_its_params_fails_the_action_for_good_instead_of_leaving_it_approved(
    db: Any, clock: ManualClock
) -> None:
    actions, executor = _services(db, clock, HandlerSettings())
    action = actions.propose(Proposal(action_type="poison_pill", target="value-error", params={},
                                      proposer="agent-1"))
    failed = executor.execute(action.id)
    assert failed.state == "failed" and failed.error is not None and failed.error.startswith("INVALID_INPUT")
    assert "ValueError" in failed.error


class _ChokingActions(ActionService):
    """Fault injection: resolving one chosen action crashes with an untyped error (a bug, a corrupt row)."""

    poisoned: str = ""

    def resolve_timeout(self, action_id: str, actor: str = "system:timeout") -> Any:
        if action_id == self.poisoned:
            raise KeyError("corrupt decision document")
        return super().resolve_timeout(action_id, actor)

    def resolve_locked_timeouts(self, session: Any, rows: Any, action_ids: Any, *, actor: str, now: Any) -> Any:
        # The batch holding the poisoned item crashes as a whole; the sweep must isolate it item by item.
        if self.poisoned in action_ids:
            raise KeyError("corrupt decision document")
        return super().resolve_locked_timeouts(session, rows, action_ids, actor=actor, now=now)


def test_the_expire_sweep_ends_a_poisoned_item_timed_out_with_a_reason_and_resolves_the_rest(
    db: Any, clock: ManualClock
) -> None:
    policy = load_policy_text(
        'version: "poison-expire"\nimpact: {default: high}\n'
        "approval_defaults: {approvers: {groups: [approvers]}, min_approvals: 1, timeout: 1h, timeout_action: fail,"
        " require_codes: false, codes_waiver_reason: \"the sweep, not the approver, is under test\"}\n"
        "rules:\n  - id: all-need-approval\n    kind: requires_approval\n    action_types: [poison_pill]\n"
    )
    actions = _ChokingActions(db.sessions, policy, clock)
    ids = [actions.propose(Proposal(action_type="poison_pill", target=f"t{i}", params={}, proposer="agent-1")).id
           for i in range(4)]
    assert {actions.get(i).state for i in ids} == {"pending_approval"}
    actions.poisoned = ids[1]
    clock.advance(timedelta(hours=2))
    report = ExpireSweep(actions, batch_size=4).run()  # the poisoned item shares a batch
    assert {actions.get(i).state for i in ids} == {"timed_out"}
    assert "corrupt decision document" in _events(db, ids[1])["sweep_item_poisoned"]["reason"]
    assert [i.outcome for i in report.items if i.action_id == ids[1]] == ["failed"]
    assert sorted(i.action_id for i in report.items if i.outcome == "resolved") == sorted(ids[:1] + ids[2:])
