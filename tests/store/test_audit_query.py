"""Reading the audit trail on both backends: every filter, the time range, keyset pagination both ways."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from saferails import audit
from saferails.actions.service import Proposal
from saferails.audit import AuditPage, AuditQuery, AuditQueryInvalid, AuditRecordView, query_audit
from saferails.clock import ManualClock
from saferails.errors import InvalidInput
from saferails.policy import default_policy
from saferails.store.db import transaction
from tests.support.approvals import coded_service

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def trail(db: Any, clock: ManualClock) -> dict[str, str]:
    """Records spread over three hours, two tenants, several actors, types and targets. Returns action ids."""
    svc = coded_service(db.sessions, default_policy(), clock)
    for name in ("alice", "bob"):
        svc.upsert_principal(name, groups=["approvers"])
    first = svc.propose(
        Proposal(action_type="reassign_manager", target="emp_1", params={"new_manager_id": "mgr_2"}, proposer="agent-1")
    )
    clock.advance(timedelta(hours=1))
    svc.approve(first.id, "alice", reason="fine")
    second = svc.propose(
        Proposal(
            action_type="send_email",
            target="mailbox",
            proposer="agent-2",
            tenant="acme",
            params={"to": ["x@example.com"], "subject": "s", "body": "b"},
        )
    )
    clock.advance(timedelta(hours=1))
    third = svc.propose(
        Proposal(action_type="role_change", target="emp_1", params={"new_role": "lead"}, proposer="agent-2")
    )
    svc.reject(third.id, "bob", reason="not now")
    return {"first": first.id, "second": second.id, "third": third.id}


def everything(db: Any) -> list[AuditRecordView]:
    with transaction(db.sessions) as session:
        page = query_audit(session, AuditQuery(limit=1000))
    assert page.next_cursor is None
    return page.records


def run(db: Any, **kwargs: Any) -> AuditPage:
    with transaction(db.sessions) as session:
        return query_audit(session, AuditQuery(**kwargs))


def all_pages(db: Any, **kwargs: Any) -> tuple[list[int], int]:
    """Every record matching ``kwargs`` by following cursors; returns the sequences and the number of pages."""
    cursor_name = "before_sequence" if kwargs.get("descending") else "after_sequence"
    sequences: list[int] = []
    cursor: int | None = kwargs.pop(cursor_name, None)
    pages = 0
    while True:
        page = run(db, **kwargs, **({cursor_name: cursor} if cursor is not None else {}))
        pages += 1
        sequences.extend(r.sequence for r in page.records)
        cursor = page.next_cursor
        if cursor is None:
            return sequences, pages


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("actor", "alice"),
        ("actor", "agent-2"),
        ("action_type", "reassign_manager"),
        ("target", "emp_1"),
        ("tenant", "acme"),
        ("event", "action_proposed"),
        ("entity_type", "principal"),
        ("actor", "nobody"),
    ],
    ids=lambda v: str(v),
)
def test_each_filter_returns_exactly_the_matching_records(db: Any, clock: ManualClock, name: str, value: str) -> None:
    trail(db, clock)
    expected = [r.sequence for r in everything(db) if getattr(r, name) == value]

    records = run(db, **{name: value}).records

    assert [r.sequence for r in records] == expected
    assert all(getattr(r, name) == value for r in records)


def test_the_entity_filter_returns_one_actions_whole_history(db: Any, clock: ManualClock) -> None:
    ids = trail(db, clock)

    records = run(db, entity_id=ids["first"]).records

    assert [r.event for r in records] == ["action_proposed", "approval_requested", "approval_codes_issued", "approved"]
    assert {r.entity_id for r in records} == {ids["first"]}


def test_filters_combine_so_every_one_must_match(db: Any, clock: ManualClock) -> None:
    trail(db, clock)

    records = run(db, target="emp_1", actor="agent-2").records

    assert [(r.action_type, r.event) for r in records] == [("role_change", "action_proposed")]


def test_the_time_range_includes_its_start_and_excludes_its_end(db: Any, clock: ManualClock) -> None:
    trail(db, clock)
    hour = timedelta(hours=1)
    by_hour = {h: [r.sequence for r in everything(db) if r.occurred_at == START + h * hour] for h in range(3)}
    assert all(by_hour.values())

    assert [r.sequence for r in run(db, start=START + hour).records] == by_hour[1] + by_hour[2]
    assert [r.sequence for r in run(db, end=START + hour).records] == by_hour[0]
    assert [r.sequence for r in run(db, start=START + hour, end=START + 2 * hour).records] == by_hour[1]
    assert run(db, start=START + 3 * hour).records == []


def test_a_time_range_given_in_another_timezone_means_the_same_instants(db: Any, clock: ManualClock) -> None:
    trail(db, clock)
    tokyo = timezone(timedelta(hours=9))

    in_utc = run(db, start=START + timedelta(hours=1), end=START + timedelta(hours=2)).records
    in_tokyo = run(
        db, start=datetime(2026, 11, 22, 19, 0, tzinfo=tokyo), end=datetime(2026, 11, 22, 20, 0, tzinfo=tokyo)
    )

    assert in_tokyo.records == in_utc


def test_records_come_back_with_parsed_details_and_aware_utc_times(db: Any, clock: ManualClock) -> None:
    ids = trail(db, clock)

    approved = run(db, entity_id=ids["first"], event="approved").records[0]

    assert approved.occurred_at == START + timedelta(hours=1)
    assert approved.occurred_at.tzinfo is not None and approved.occurred_at.utcoffset() == timedelta(0)
    assert approved.details["reason"] == "fine"
    assert approved.details["to_state"] == "approved"
    data = approved.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["occurred_at"] == "2026-11-22T10:00:00+00:00"


def test_ascending_pages_cover_every_record_once_in_order(db: Any, clock: ManualClock) -> None:
    trail(db, clock)
    expected = [r.sequence for r in everything(db)]

    sequences, pages = all_pages(db, limit=3)

    assert sequences == expected
    assert pages == -(-len(expected) // 3)


def test_descending_pages_cover_every_record_once_newest_first(db: Any, clock: ManualClock) -> None:
    trail(db, clock)
    expected = [r.sequence for r in reversed(everything(db))]

    sequences, _ = all_pages(db, limit=4, descending=True)

    assert sequences == expected


def test_filtered_pages_cover_every_matching_record_once(db: Any, clock: ManualClock) -> None:
    trail(db, clock)
    expected = [r.sequence for r in everything(db) if r.actor == "system:policy"]
    assert len(expected) > 2

    assert all_pages(db, limit=2, actor="system:policy")[0] == expected
    assert all_pages(db, limit=2, actor="system:policy", descending=True)[0] == expected[::-1]


def test_a_page_that_ends_exactly_at_the_last_record_has_no_cursor(db: Any, clock: ManualClock) -> None:
    trail(db, clock)
    total = len(everything(db))

    assert run(db, limit=total).next_cursor is None
    assert run(db, limit=total - 1).next_cursor == total - 1


def test_records_appended_while_paging_appear_later_without_duplicates_or_gaps(db: Any, clock: ManualClock) -> None:
    trail(db, clock)
    before = [r.sequence for r in everything(db)]
    first = run(db, limit=5)
    with transaction(db.sessions) as session:
        for _ in range(3):
            audit.append(session, audit.AuditEntry(actor="late", event="noted", entity_type="test"), now=clock.now())

    rest, _ = all_pages(db, limit=5, after_sequence=first.next_cursor)

    seen = [r.sequence for r in first.records] + rest
    assert seen == [*before, before[-1] + 1, before[-1] + 2, before[-1] + 3]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": True}, "limit"),
        ({"start": datetime(2026, 11, 22, 9, 0)}, "timezone-aware"),
        ({"start": START, "end": START}, "before end"),
        ({"actor": ""}, "non-empty"),
        ({"after_sequence": -1}, "non-negative"),
        ({"after_sequence": 3, "descending": True}, "before_sequence"),
        ({"before_sequence": 3}, "descending"),
    ],
    ids=[
        "zero limit",
        "limit over 1000",
        "boolean limit",
        "naive start",
        "empty range",
        "empty actor",
        "negative cursor",
        "ascending cursor on a descending query",
        "descending cursor on an ascending query",
    ],
)
def test_a_malformed_query_is_refused_with_a_typed_error(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(AuditQueryInvalid) as info:
        AuditQuery(**kwargs)

    assert info.value.code == "AUDIT_QUERY_INVALID"
    assert isinstance(info.value, InvalidInput)
    assert fragment in info.value.message


def test_the_default_page_holds_one_hundred_records(db: Any, clock: ManualClock) -> None:
    with transaction(db.sessions) as session:
        for _ in range(101):
            audit.append(session, audit.AuditEntry(actor="bulk", event="noted", entity_type="test"), now=clock.now())

    page = run(db)

    assert (len(page.records), page.next_cursor) == (100, 100)
    assert page.to_dict()["next_cursor"] == 100
