"""Properties of the audit chain (SQLite only, to stay fast):

- whatever sequence of service operations runs (including refused ones), the chain verifies, and every record is
  covered by a signed checkpoint;
- in any chain, any single changed, deleted, inserted or reordered record is detected, and the report points at
  the tampered position or the record right after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, cast

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from saferails import audit
from saferails.actions.service import ActionService, Proposal
from saferails.audit import verify_chain
from saferails.audit.chain import record_digest
from saferails.audit.checkpoints import install_signer
from saferails.audit.signing import AuditSigner
from saferails.clock import ManualClock
from saferails.errors import SaferailsError
from saferails.policy import default_policy
from saferails.store.db import transaction
from saferails.store.tables import AuditRecord
from tests.support import TIMING_CHECKS
from tests.support.approvals import coded_service

# One key for every example: the database fixture outlives the examples, so its checkpoints accumulate.
SIGNER = AuditSigner.generate()
PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, *TIMING_CHECKS]
)

# Valid parameters per action type, chosen so the default policy gives every outcome: approval needed
# (reassign_manager, move_file), allowed (reduce_meetings, send_email until its rate limit), blocked
# (make_payment), KYC-gated (make_purchase).
PARAMS: dict[str, dict[str, Any]] = {
    "reassign_manager": {"new_manager_id": "mgr_2"},
    "move_file": {"source": "a.txt", "destination": "b.txt"},
    "reduce_meetings": {"max_weekly_meeting_hours": 10},
    "send_email": {"to": ["x@example.com"], "subject": "s", "body": "b"},
    "make_payment": {"amount": "12.50", "currency": "EUR", "payee": "p"},
    "make_purchase": {"item": "pens", "quantity": 2, "max_total": "9", "currency": "EUR", "vendor": "v"},
}
PEOPLE = ["alice", "bob", "mallory", "agent-1", "buyer"]

propose = st.tuples(
    st.just("propose"),
    st.sampled_from([*sorted(PARAMS), "reassign_manager", "move_file", "no_such_type"]),  # approvals twice as likely
    st.sampled_from(PEOPLE),
    st.sampled_from([True, True, True, False]),  # mostly valid params, sometimes params the type refuses
)
# Approvers are drawn more often than the others, and recent actions (negative indexes) more often than old ones,
# so decisions often land on a pending action and reach approved / rejected.
approver = st.sampled_from(["alice", "bob"]) | st.sampled_from(PEOPLE)
decide = st.tuples(st.sampled_from(["approve", "reject"]), st.integers(-2, 6), approver, st.booleans())
cancel = st.tuples(st.just("cancel"), st.integers(-2, 6), st.sampled_from(PEOPLE), st.booleans())
advance = st.tuples(st.just("advance"), st.integers(1, 48), st.just(""), st.booleans())
expire = st.tuples(st.just("expire"), st.just(0), st.just(""), st.booleans())
# Decisions weigh three times as much as the other kinds (one_of would merge repeated strategies, so the weights
# live in a sampled list). A few proposals come first so the decisions usually have something to act on.
BY_KIND = {"propose": propose, "decide": decide, "cancel": cancel, "advance": advance, "expire": expire}
operation = st.sampled_from(["propose", "decide", "decide", "decide", "cancel", "advance", "expire"]).flatmap(
    BY_KIND.__getitem__
)
operations = st.tuples(st.lists(propose, min_size=1, max_size=6), st.lists(operation, min_size=3, max_size=30)).map(
    lambda parts: parts[0] + parts[1]
)


def apply(svc: ActionService, clock: ManualClock, ids: list[str], op: tuple[str, Any, str, bool]) -> None:
    kind, arg, who, flag = op
    if kind == "propose":
        params = PARAMS.get(arg, {}) if flag else {"unexpected": True}
        ids.append(svc.propose(Proposal(action_type=arg, target="t-1", params=params, proposer=who)).id)
    elif kind == "advance":
        clock.advance(timedelta(hours=arg))
    elif kind == "expire":
        svc.expire_due()
    elif ids:
        action_id = ids[arg % len(ids)]
        if kind == "approve":
            svc.approve(action_id, who, reason="ok")
        elif kind == "reject":
            svc.reject(action_id, who, reason="no")
        else:
            svc.cancel(action_id, who, reason="withdrawn")


@pytest.mark.slow
@PROPERTY_SETTINGS
@given(ops=operations)
def test_any_sequence_of_service_operations_leaves_a_chain_that_verifies(
    sqlite_db: Any, clock: ManualClock, ops: list[tuple[str, Any, str, bool]]
) -> None:
    install_signer(sqlite_db.sessions, SIGNER)
    svc = coded_service(sqlite_db.sessions, default_policy(), clock)
    svc.upsert_principal("alice", groups=["approvers"])
    svc.upsert_principal("bob", groups=["approvers"])
    svc.upsert_principal("buyer", kyc_verified=True)
    ids: list[str] = []
    for op in ops:
        # A refused operation (typed error) writes nothing; the chain must verify either way.
        with contextlib.suppress(SaferailsError):
            apply(svc, clock, ids, op)

    with transaction(sqlite_db.sessions) as session:
        report = verify_chain(session, batch_size=7, key=SIGNER.verifier)
        total = session.execute(sa.select(sa.func.count()).select_from(AuditRecord)).scalar_one()

    assert report.ok, report.problem
    assert report.records_checked == total == report.head_sequence == report.signed_through


# --- tampering ----------------------------------------------------------------------------------------------------
GUARDS = ("audit_log_no_update", "audit_log_no_delete", "audit_head_forward_only", "audit_head_no_delete")
TABLE = cast(sa.Table, AuditRecord.__table__)

entries = st.builds(
    audit.AuditEntry,
    actor=st.sampled_from(PEOPLE),
    event=st.sampled_from(["action_proposed", "approved", "rejected", "noted"]),
    entity_type=st.just("action"),
    entity_id=st.uuids().map(str),
    action_type=st.sampled_from(sorted(PARAMS)),
    target=st.text(min_size=1, max_size=12),
    details=st.dictionaries(st.text(max_size=6), st.integers() | st.text(max_size=8) | st.booleans(), max_size=3),
)
tamperings = st.sampled_from(["change", "change_and_rehash", "delete", "insert", "reorder"])


@contextmanager
def scratch(db: Any) -> Iterator[Session]:
    """One transaction that is always rolled back: SQLite DDL is transactional, so the dropped guards and every
    tampered row vanish with it and each example starts from the same empty chain."""
    session = db.sessions()
    session.begin()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def row(session: Session, sequence: int) -> dict[str, Any]:
    return dict(session.execute(sa.select(TABLE).where(TABLE.c.sequence == sequence)).one()._mapping)


def rehashed(values: dict[str, Any]) -> dict[str, Any]:
    return {**values, "hash": record_digest(**{k: v for k, v in values.items() if k not in ("hash", "mac")})}


def tamper(session: Session, kind: str, position: int, other: int, size: int) -> None:
    """Apply one tampering at ``position`` (1-based; ``insert`` may use ``size + 1``, i.e. append)."""
    for name in GUARDS:
        session.execute(sa.text(f"DROP TRIGGER {name}"))
    at = row(session, min(position, size))
    if kind == "change":
        session.execute(sa.update(TABLE).where(TABLE.c.sequence == position).values(actor=at["actor"] + "!"))
    elif kind == "change_and_rehash":
        forged = rehashed({**at, "details": audit.canonical_json({"forged": True})})
        session.execute(sa.update(TABLE).where(TABLE.c.sequence == position).values(**forged))
    elif kind == "delete":
        session.execute(sa.delete(TABLE).where(TABLE.c.sequence == position))
    elif kind == "insert":
        prev_hash = audit.GENESIS_HASH if position == 1 else row(session, position - 1)["hash"]
        session.execute(
            sa.text("UPDATE audit_log SET sequence = -(sequence + 1) WHERE sequence >= :p"), {"p": position}
        )
        session.execute(sa.text("UPDATE audit_log SET sequence = -sequence WHERE sequence < 0"))
        forged = rehashed({**at, "sequence": position, "actor": "mallory", "prev_hash": prev_hash})
        session.execute(sa.insert(TABLE).values(**forged))
    else:
        first, second = row(session, position), row(session, other)
        for target, source in ((position, second), (other, first)):
            values = {k: v for k, v in source.items() if k != "sequence"}
            session.execute(sa.update(TABLE).where(TABLE.c.sequence == target).values(**values))


@PROPERTY_SETTINGS
@given(
    chain=st.lists(entries, min_size=2, max_size=25),
    kind=tamperings,
    position_seed=st.integers(0, 10_000),
    other_seed=st.integers(0, 10_000),
)
def test_any_single_tampering_of_any_chain_is_detected_at_or_right_after_its_position(
    sqlite_db: Any, clock: ManualClock, chain: list[audit.AuditEntry], kind: str, position_seed: int, other_seed: int
) -> None:
    size = len(chain)
    position = position_seed % (size + 1 if kind == "insert" else size) + 1
    other = position + 1 + other_seed % (size - position) if kind == "reorder" and position < size else None
    if kind == "reorder" and other is None:
        position, other = size - 1, size
    with scratch(sqlite_db) as session:
        for entry in chain:
            audit.append(session, entry, now=clock.now())
            clock.advance(timedelta(seconds=1))
        assert verify_chain(session, batch_size=4).ok

        tamper(session, kind, position, other or 0, size)
        report = verify_chain(session, batch_size=4)

    assert not report.ok
    assert report.first_broken_sequence is not None
    assert position <= report.first_broken_sequence <= position + 1, (kind, position, report.problem)
