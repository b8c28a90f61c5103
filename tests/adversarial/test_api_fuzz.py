"""Fuzzing the Python API the agent calls, on SQLite and PostgreSQL: whatever it sends (arbitrary JSON params, ids
and strings with NUL bytes and lone surrogates, huge integers, deep nesting, far-away dates, wild offsets and
limits), the only exceptions are SaferailsError subclasses, and a refused proposal leaves no action row and no
audit row behind."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ConfigDict

from saferails.actions.repository import ActionFilter
from saferails.actions.service import ActionService, Proposal
from saferails.actions.types import ActionTypeSpec, Params, register_action_type
from saferails.clock import ManualClock
from saferails.errors import SaferailsError
from saferails.execution import ExecutionService
from saferails.handlers import HandlerSettings
from saferails.policy import load_policy_text
from saferails.store.db import transaction
from saferails.store.tables import Action, AuditRecord
from saferails.workflow import WorkflowActor
from saferails.workflow.service import WorkflowService
from saferails.workflow.tables import Task

OPEN_POLICY = 'version: "fuzz"\nimpact: {default: low}\nrules: []\n'
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class AnyParams(Params):
    """A user type that accepts any JSON object: only the Proposal's own bounds stand between it and the store."""

    model_config = ConfigDict(extra="allow", frozen=True)


register_action_type(ActionTypeSpec("fuzz_any", AnyParams, "Accepts anything (fuzz test)", "anything"),
                     replace=True)

NASTY = st.sampled_from(["\x00", "\ud800", "\udfff", "\r\n", "=?utf-8?q?a=0D=0Ab?=", "../", "\\", "\u202e", "é"])
TEXT = st.lists(st.one_of(st.characters(codec=None, exclude_categories=()), NASTY), max_size=20).map("".join)
IDS = st.one_of(TEXT, st.sampled_from(["agent-1", "default", "k-1", "a" * 5000]))


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value] if depth % 2 else {"k": value}
    return value


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), TEXT,
)
JSON = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(TEXT, kids, max_size=4),
                    max_leaves=15)
PARAMS = st.one_of(
    st.dictionaries(TEXT, JSON, max_size=5),
    st.integers(min_value=0, max_value=5000).map(lambda n: {"deep": _nested(n)}),
    st.integers(min_value=60_000, max_value=200_000).map(lambda n: {"blob": "x" * n}),
    st.fixed_dictionaries({"path": TEXT, "content": TEXT}),
    st.fixed_dictionaries({"to": st.lists(TEXT, max_size=3), "subject": TEXT, "body": TEXT}),
    st.fixed_dictionaries({"source": TEXT, "destination": TEXT}),
)
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12)), None])
DATES = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                     timezones=ZONES)  # type: ignore[arg-type]  # the stub types only the None-timezone overload
TYPES = st.one_of(
    st.sampled_from(["fuzz_any", "create_document", "send_email", "move_file", "role_change", "make_payment"]), TEXT
)


def _counts(db: Any) -> tuple[int, int]:
    with transaction(db.sessions) as session:
        actions = session.execute(sa.select(sa.func.count()).select_from(Action)).scalar_one()
        audit = session.execute(sa.select(sa.func.count()).select_from(AuditRecord)).scalar_one()
        return int(actions), int(audit)


def _service(db: Any) -> ActionService:
    return ActionService(db.sessions, load_policy_text(OPEN_POLICY), ManualClock(datetime(2026, 11, 22, tzinfo=UTC)))


def test_proposing_anything_raises_only_typed_errors_and_a_refusal_writes_nothing(db: Any) -> None:
    svc = _service(db)

    @FUZZ
    @given(action_type=TYPES, target=IDS, params=PARAMS, proposer=IDS, reason=TEXT, tenant=IDS,
           priority=st.integers(), scheduled_for=st.none() | DATES, key=st.none() | IDS)
    def propose(action_type: str, target: str, params: dict[str, Any], proposer: str, reason: str, tenant: str,
                priority: int, scheduled_for: datetime | None, key: str | None) -> None:
        before = _counts(db)
        try:
            svc.propose(Proposal(action_type=action_type, target=target, params=params, proposer=proposer,
                                 reason=reason, tenant=tenant, priority=priority, scheduled_for=scheduled_for,
                                 idempotency_key=key))
        except SaferailsError:
            assert _counts(db) == before, "a refused proposal left rows behind"
            return
        assert _counts(db)[0] in (before[0], before[0] + 1)  # recorded once (or an idempotent repeat)

    propose()


def test_reading_with_anything_raises_only_typed_errors(db: Any) -> None:
    svc = _service(db)
    executor = ExecutionService(db.sessions, svc.clock, HandlerSettings(), sleeper=lambda _s: None)
    known = svc.propose(Proposal(action_type="fuzz_any", target="t", params={"a": 1}, proposer="agent-1")).id

    @FUZZ
    @given(action_id=st.one_of(IDS, st.just(known), st.integers(), st.none()), offset=st.integers(),
           limit=st.integers(), states=st.lists(TEXT, max_size=3), text=st.none() | TEXT,
           after=st.none() | DATES)
    def read(action_id: Any, offset: int, limit: int, states: list[str], text: str | None,
             after: datetime | None) -> None:
        calls: list[Callable[[], object]] = [
            lambda: svc.get(action_id),
            lambda: svc.list(ActionFilter(states=tuple(states), action_type=text, target=text, proposer=text,
                                          tenant=text, created_after=after, limit=limit, offset=offset)),
            lambda: executor.get(action_id),
            lambda: executor.rollback(action_id, "ops-1", reason=text or ""),
            lambda: svc.cancel(action_id, "ops-1", reason=text or ""),
        ]
        for call in calls:
            with contextlib.suppress(SaferailsError):  # typed refusals are fine; anything else fails the test
                call()

    read()


def test_the_workflow_service_raises_only_typed_errors_and_a_refused_task_writes_nothing(db: Any) -> None:
    workflow = WorkflowService(db.sessions, ManualClock(datetime(2026, 11, 22, tzinfo=UTC)))
    admin = WorkflowActor("ada", frozenset({"admin"}))

    def tasks() -> int:
        with transaction(db.sessions) as session:
            return int(session.execute(sa.select(sa.func.count()).select_from(Task)).scalar_one())

    @FUZZ
    @given(title=TEXT, description=TEXT, metadata=st.dictionaries(TEXT, JSON, max_size=3),
           due=st.none() | DATES, task_id=st.one_of(IDS, st.integers()), limit=st.integers(), state=st.none() | TEXT)
    def calls(title: str, description: str, metadata: dict[str, Any], due: datetime | None, task_id: Any,
              limit: int, state: str | None) -> None:
        before = tasks()
        try:
            workflow.create_task(admin, title=title, description=description, metadata=metadata, due_date=due)
        except SaferailsError:
            assert tasks() == before, "a refused task left a row behind"
        for call in (lambda: workflow.get_task(task_id), lambda: workflow.list_tasks(state=state, limit=limit),
                     lambda: workflow.sla_record(task_id)):
            with contextlib.suppress(SaferailsError):
                call()

    calls()
