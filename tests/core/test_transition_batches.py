"""Batched transitions (``transitions.transition_many`` through ``ActionService.resolve_timeouts`` and
``propose_many``): one bad item fails alone with its typed error and leaves its row exactly as it was, the rest
go ahead; rate limits inside a batch see the batch's earlier proposals; the chain still verifies."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from saferails import audit, transitions
from saferails.actions.models import Proposal
from saferails.actions.service import ACTION_KIND, ActionService
from saferails.clock import ManualClock
from saferails.errors import GuardRejected, InvalidTransition, NotFound
from saferails.policy.loader import load_policy_text
from saferails.store.db import read_transaction, transaction
from saferails.store.tables import Action, AuditRecord, OutboxEvent

POLICY = """
version: "batches"
impact: {default: high}
approval_defaults: {approvers: {groups: [approvers]}, min_approvals: 1, timeout: 1h, timeout_action: fail,
  require_codes: false, codes_waiver_reason: "batches, not approvers, are under test"}
rules:
  - {id: review, kind: requires_approval, action_types: [reassign_manager]}
  - {id: docs, kind: rate_limit, action_types: [create_document], limits: {per_hour: 3}}
"""


def _pending(actions: ActionService, name: str) -> str:
    return actions.propose(Proposal(action_type="reassign_manager", target=name, proposer="agent-1",
                                    params={"new_manager_id": "m"})).id


def _events(db: Any, action_id: str) -> list[str]:
    with read_transaction(db.sessions) as session:
        return list(session.execute(sa.select(OutboxEvent.event_type).where(OutboxEvent.aggregate_id == action_id)
                                    .order_by(OutboxEvent.position)).scalars())


def test_one_bad_item_fails_alone_and_leaves_its_row_untouched(db: Any, clock: ManualClock) -> None:
    actions = ActionService(db.sessions, load_policy_text(POLICY), clock)
    due = [_pending(actions, f"due-{i}") for i in range(3)]
    clock.advance(timedelta(hours=2))
    fresh = _pending(actions, "fresh")  # its deadline is an hour away: the guard refuses it
    decided = _pending(actions, "decided")
    actions.cancel(decided, "agent-1", reason="changed my mind")
    before = actions.get(fresh)

    outcomes = actions.resolve_timeouts([due[0], fresh, "no-such-action", due[1], decided, due[2]])

    assert [o.action_id for o in outcomes] == [due[0], fresh, "no-such-action", due[1], decided, due[2]]
    errors = {o.action_id: type(o.error) for o in outcomes if o.error is not None}
    assert errors == {fresh: GuardRejected, "no-such-action": NotFound, decided: InvalidTransition}
    assert {actions.get(i).state for i in due} == {"timed_out"}
    after = actions.get(fresh)
    assert (after.state, after.version, after.decided_at) == (before.state, before.version, before.decided_at)
    assert _events(db, fresh) == ["ActionProposed", "ActionStateChanged"]  # proposed, then pending: nothing more
    assert all(_events(db, i)[-1] == "ActionStateChanged" and len(_events(db, i)) == 3 for i in due)
    with read_transaction(db.sessions) as session:
        assert audit.verify_chain(session).ok


def test_a_batch_of_proposals_counts_its_own_earlier_proposals_against_the_rate_limit(
    db: Any, clock: ManualClock
) -> None:
    actions = ActionService(db.sessions, load_policy_text(POLICY), clock)
    actions.propose(Proposal(action_type="create_document", target="d0", proposer="agent-1",
                             params={"path": "d0.md", "content": "x"}))
    batch = [Proposal(action_type="create_document", target=f"d{i}", proposer=p,
                      params={"path": f"d{i}.md", "content": "x"})
             for i, p in enumerate(["agent-1", "agent-2", "agent-1", "agent-1", "agent-2"], start=1)]

    views = actions.propose_many(batch)

    assert [(v.proposer, v.state) for v in views] == [
        ("agent-1", "approved"), ("agent-2", "approved"), ("agent-1", "approved"), ("agent-1", "blocked"),
        ("agent-2", "approved"),
    ]
    with read_transaction(db.sessions) as session:
        assert audit.verify_chain(session).ok


def test_an_idempotency_key_repeated_inside_one_batch_names_one_action(db: Any, clock: ManualClock) -> None:
    actions = ActionService(db.sessions, load_policy_text(POLICY), clock)
    proposal = Proposal(action_type="create_document", target="d", proposer="agent-1",
                        params={"path": "d.md", "content": "x"}, idempotency_key="once")

    first, second = actions.propose_many([proposal, proposal])

    assert first.id == second.id and first.state == "approved"


def test_a_repeated_key_inside_one_batch_shows_the_action_as_decided(db: Any, clock: ManualClock) -> None:
    actions = ActionService(db.sessions, load_policy_text(POLICY), clock)
    proposal = Proposal(action_type="reassign_manager", target="e", proposer="agent-1",
                        params={"new_manager_id": "m"}, idempotency_key="twice")

    first, second = actions.propose_many([proposal, proposal])

    assert first == second and second.state == "pending_approval" and second.version == 2


def test_proposed_rows_store_sql_null_in_the_columns_a_proposal_leaves_empty(db: Any, clock: ManualClock) -> None:
    actions = ActionService(db.sessions, load_policy_text(POLICY), clock)
    (view,) = actions.propose_many([Proposal(action_type="create_document", target="n", proposer="agent-1",
                                             params={"path": "n.md", "content": "x"})])
    with read_transaction(db.sessions) as session:
        nulls = session.execute(
            sa.select(Action.result.is_(None), Action.pre_state.is_(None), Action.rollback_data.is_(None),
                      Action.flow_run_id.is_(None), Action.decided_at.is_not(None))
            .where(Action.id == view.id)
        ).one()
    assert tuple(nulls) == (True, True, True, True, True)  # SQL NULL, not JSON null
    assert actions.get(view.id) == view


def _records(db: Any, action_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The last audit details and outbox payload of ``action_id``, without what differs from action to action."""
    with read_transaction(db.sessions) as session:
        details = session.execute(sa.select(AuditRecord.details).where(AuditRecord.entity_id == action_id)
                                  .order_by(AuditRecord.sequence.desc()).limit(1)).scalar_one()
        payload = session.execute(sa.select(OutboxEvent.payload).where(OutboxEvent.aggregate_id == action_id)
                                  .order_by(OutboxEvent.position.desc()).limit(1)).scalar_one()
    return json.loads(details), {k: v for k, v in payload.items() if k not in ("action_id", "target")}


def test_a_batch_of_stored_rows_writes_what_one_mapped_row_writes(db: Any, clock: ManualClock) -> None:
    actions = ActionService(db.sessions, load_policy_text(POLICY), clock)
    mapped, stored = _pending(actions, "same-1"), _pending(actions, "same-2")
    clock.advance(timedelta(hours=2))

    actions.resolve_timeout(mapped)  # one mapped row (the ORM)
    (outcome,) = actions.resolve_timeouts([stored])  # Stored rows: only the columns the kind names

    assert (outcome.state, outcome.error) == ("timed_out", None)
    assert _records(db, stored) == _records(db, mapped)
    own = ("id", "target", "idempotency_key", "action_hash")
    assert ({k: v for k, v in actions.get(stored).__dict__.items() if k not in own}
            == {k: v for k, v in actions.get(mapped).__dict__.items() if k not in own})
    with read_transaction(db.sessions) as session:
        assert audit.verify_chain(session).ok


def test_a_stored_row_names_the_column_it_was_not_read_with(db: Any, clock: ManualClock) -> None:
    actions = ActionService(db.sessions, load_policy_text(POLICY), clock)
    action_id = _pending(actions, "partial")
    with transaction(db.sessions) as session:
        rows = transitions.lock_rows(session, ACTION_KIND, [action_id],
                                        columns=transitions.stored_columns(ACTION_KIND)[:2])  # id, state
    assert rows[action_id].state == "pending_approval"
    with pytest.raises(AttributeError, match="'params'"):
        _ = rows[action_id].params
