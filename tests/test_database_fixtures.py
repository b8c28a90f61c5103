"""The PostgreSQL test databases are reused: a reused one must be indistinguishable from a fresh copy of the
template, and one whose schema a test changed must never be handed out again."""

from __future__ import annotations

import sqlalchemy as sa

from saferails.actions.models import Proposal
from saferails.actions.service import ActionService
from saferails.clock import ManualClock
from saferails.policy import default_policy
from saferails.store.db import create_engine, session_factory
from tests.conftest import PgTemplates, read_pristine


def _name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _use(url: str, clock: ManualClock) -> None:
    """What a test does: rows in many tables (actions, audit records, outbox events, principals)."""
    engine = create_engine(url)
    try:
        service = ActionService(session_factory(engine), default_policy(), clock)
        service.upsert_principal("alice", groups=["approvers"])
        for n in range(3):
            service.propose(Proposal(action_type="reassign_manager", target=f"emp_{n}",
                                     params={"new_manager_id": "mgr_2"}, proposer="agent-1"))
    finally:
        engine.dispose()


def test_a_released_database_is_reset_to_the_template_and_handed_out_again(_pg: PgTemplates,
                                                                            clock: ManualClock) -> None:
    url = _pg.fresh()
    _use(url, clock)
    assert read_pristine(url) != _pg.pristine  # the test wrote rows: the reset has something to undo
    _pg.release(url)
    again = _pg.fresh()
    assert _name(again) == _name(url)
    assert read_pristine(again) == _pg.pristine  # same schema, same rows (byte for byte), same sequences
    _use(again, clock)  # and it works like a fresh one (ids and the audit chain start over)
    _pg.release(again)


def test_a_database_whose_schema_a_test_changed_is_dropped_not_reused(_pg: PgTemplates) -> None:
    url = _pg.fresh()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
    finally:
        engine.dispose()
    _pg.release(url)
    assert _name(url) not in _pg.clean and _name(url) not in _pg.created
