"""ExecutionService on SQLite and PostgreSQL: the gate before execution, retries, the circuit breaker,
compensation of partial effects, undo and its failures, scheduling, and user handlers (decorator and entry
points) getting the same audit and undo as built-in ones."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from saferails.actions.service import Proposal
from saferails.actions.types import Params
from saferails.clock import ManualClock
from saferails.errors import CircuitOpen, ConfigurationError, InvalidTransition
from saferails.execution import ExecutionService
from saferails.handlers import (
    ExecutionOutcome,
    HandlerContext,
    HandlerSettings,
    PartialEffect,
    RollbackConflict,
    handler,
    load_entry_point_handlers,
    load_handler_settings,
)
from saferails.org import Effect, Employee, OrgRepository, Team
from saferails.policy import default_policy, load_policy_text
from saferails.resilience import BreakerRegistry
from saferails.store.db import transaction
from saferails.store.tables import AuditRecord
from tests.support.approvals import coded_service

OPEN_POLICY = 'version: "exec-test"\nimpact: {default: low}\nrules: []\n'


class LineParams(Params):
    path: str
    lines: list[str]


@handler(params_model=LineParams, description="Append lines to a file (test handler)", target_kind="file")
class AppendLines:
    """A user handler with a real effect on disk. ``fail_at`` makes it fail after writing that many lines;
    ``rollback_breaks`` makes its undo fail."""

    action_type = "append_lines"
    external = True
    fail_at: ClassVar[int | None] = None
    rollback_breaks: ClassVar[Exception | None] = None

    def validate(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> None:
        LineParams.model_validate(params)

    def capture(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> dict[str, Any]:
        path = Path(params["path"])
        return {"content": path.read_text() if path.exists() else None}

    def preview(
        self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any]
    ) -> dict[str, Any]:
        return {"append": params["lines"]}

    def execute(
        self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any], key: str
    ) -> ExecutionOutcome:
        path = Path(params["path"])
        for n, line in enumerate(params["lines"]):
            if self.fail_at is not None and n == self.fail_at:
                raise PartialEffect({"path": str(path), "content": pre_state["content"]}, OSError("disk full"))
            with path.open("a") as fh:
                fh.write(line + "\n")
        return ExecutionOutcome(
            {"appended": len(params["lines"])}, {"path": str(path), "content": pre_state["content"]}
        )

    def rollback(self, ctx: HandlerContext, target: str, rollback_data: dict[str, Any]) -> dict[str, Any]:
        if self.rollback_breaks is not None:
            raise self.rollback_breaks
        path = Path(rollback_data["path"])
        if rollback_data["content"] is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(rollback_data["content"])
        return {"restored": str(path)}


class CallParams(Params):
    n: int = 1


@handler(params_model=CallParams)
class RemoteCall:
    """Stands in for a remote API that is down until ``healthy`` is set."""

    action_type = "remote_call"
    external = True
    healthy: ClassVar[bool] = True
    calls: ClassVar[int] = 0

    def validate(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> None:
        return None

    def capture(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    def preview(
        self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any]
    ) -> dict[str, Any]:
        return {}

    def execute(
        self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any], key: str
    ) -> ExecutionOutcome:
        type(self).calls += 1
        if not self.healthy:
            raise ConnectionRefusedError("remote is down")
        return ExecutionOutcome({"ok": True}, {})

    def rollback(self, ctx: HandlerContext, target: str, rollback_data: dict[str, Any]) -> dict[str, Any]:
        return {}


class TeamParams(Params):
    team_id: str


@handler(params_model=TeamParams)
class CreateTeamThenFail:
    """A store-local handler that writes a row and then fails: the transaction rollback is its compensation."""

    action_type = "create_team_then_fail"
    external = False

    def validate(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> None:
        return None

    def capture(self, ctx: HandlerContext, target: str, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    def preview(
        self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any]
    ) -> dict[str, Any]:
        return {}

    def execute(
        self, ctx: HandlerContext, target: str, params: dict[str, Any], pre_state: dict[str, Any], key: str
    ) -> ExecutionOutcome:
        ctx.session.add(Team(id=params["team_id"], name="half-made"))
        ctx.session.flush()
        raise PartialEffect({"team_id": params["team_id"]}, RuntimeError("second step failed"))

    def rollback(self, ctx: HandlerContext, target: str, rollback_data: dict[str, Any]) -> dict[str, Any]:
        return {}


@pytest.fixture(autouse=True)
def _reset_test_handlers() -> None:
    AppendLines.fail_at = None
    AppendLines.rollback_breaks = None
    RemoteCall.healthy = True
    RemoteCall.calls = 0


class Env:
    def __init__(self, db: Any, clock: ManualClock, policy_text: str = OPEN_POLICY, **options: Any) -> None:
        self.db = db
        self.clock = clock
        self.sleeps: list[float] = []
        self.actions = coded_service(db.sessions, load_policy_text(policy_text), clock)
        self.executor = ExecutionService(db.sessions, clock, HandlerSettings(), sleeper=self.sleeps.append, **options)

    def propose(self, action_type: str, params: dict[str, Any], target: str = "t", **extra: Any) -> str:
        proposal = Proposal(action_type=action_type, target=target, params=params, proposer="agent-7", **extra)
        return self.actions.propose(proposal).id

    def events(self, action_id: str) -> list[str]:
        with transaction(self.db.sessions) as session:
            stmt = sa.select(AuditRecord.event).where(AuditRecord.entity_id == action_id).order_by(AuditRecord.sequence)
            return list(session.execute(stmt).scalars())


@pytest.fixture
def env(db: Any, clock: ManualClock) -> Env:
    return Env(db, clock)


def test_a_decorated_user_handler_executes_with_audit_and_rolls_back(env: Env, tmp_path: Path) -> None:
    target = tmp_path / "log.txt"
    action_id = env.propose("append_lines", {"path": str(target), "lines": ["a", "b"]})
    done = env.executor.execute(action_id)
    assert done.state == "completed" and target.read_text() == "a\nb\n"
    undone = env.executor.rollback(action_id, "ops-1", reason="not wanted")
    assert undone.state == "rolled_back" and undone.rolled_back_at is not None
    assert not target.exists()
    assert env.events(action_id) == [
        "action_proposed",
        "auto_approved",
        "execution_started",
        "executed",
        "rollback_started",
        "rolled_back",
    ]


def test_a_handler_failing_after_a_partial_effect_is_compensated_and_the_action_ends_failed(
    env: Env, tmp_path: Path
) -> None:
    target = tmp_path / "log.txt"
    AppendLines.fail_at = 1
    action_id = env.propose("append_lines", {"path": str(target), "lines": ["a", "b"]})
    failed = env.executor.execute(action_id)
    assert failed.state == "failed" and failed.error is not None and "disk full" in failed.error
    assert not target.exists()
    events = env.events(action_id)
    assert events.count("compensated") == 3 and events.count("execution_attempt_failed") == 3
    assert events[-1] == "execution_failed"
    assert env.sleeps == [0.5, 1.0]


def test_a_partial_effect_that_cannot_be_compensated_fails_at_once_and_keeps_the_undo_data(
    env: Env, tmp_path: Path
) -> None:
    target = tmp_path / "log.txt"
    AppendLines.fail_at = 1
    AppendLines.rollback_breaks = PermissionError("read-only file system")
    action_id = env.propose("append_lines", {"path": str(target), "lines": ["a", "b"]})
    failed = env.executor.execute(action_id)
    assert failed.state == "failed" and failed.error is not None and failed.error.startswith("COMPENSATION_FAILED")
    assert failed.rollback_data == {"path": str(target), "content": None}
    assert env.events(action_id).count("compensation_failed") == 1 and env.sleeps == []
    AppendLines.rollback_breaks = None
    assert env.executor.rollback(action_id, "ops-1", reason="clean up").state == "rolled_back"
    assert not target.exists()


def test_a_store_local_partial_effect_is_undone_by_the_transaction(env: Env) -> None:
    action_id = env.propose("create_team_then_fail", {"team_id": "ghost"})
    failed = env.executor.execute(action_id)
    assert failed.state == "failed"
    with transaction(env.db.sessions) as session:
        assert session.get(Team, "ghost") is None
        assert session.execute(sa.select(sa.func.count()).select_from(Effect)).scalar_one() == 0
    assert env.events(action_id).count("compensated") == 3


def test_the_circuit_opens_after_repeated_failures_and_recovers_when_the_clock_passes_the_cool_down(
    db: Any, clock: ManualClock
) -> None:
    env = Env(
        db, clock, breaker_registry=BreakerRegistry(clock, failure_threshold=3, reset_timeout=timedelta(minutes=1))
    )
    RemoteCall.healthy = False
    first = env.propose("remote_call", {"n": 1})
    assert env.executor.execute(first).state == "failed"
    assert RemoteCall.calls == 3

    second = env.propose("remote_call", {"n": 2})
    with pytest.raises(CircuitOpen):
        env.executor.execute(second)
    assert RemoteCall.calls == 3
    assert env.executor.get(second).state == "approved"

    RemoteCall.healthy = True
    clock.advance(timedelta(seconds=61))
    assert env.executor.execute(second).state == "completed"
    assert RemoteCall.calls == 4
    third = env.propose("remote_call", {"n": 3})
    assert env.executor.execute(third).state == "completed"


def test_nothing_executes_without_an_approved_decision(db: Any, clock: ManualClock) -> None:
    env = Env(db, clock)
    env.actions = coded_service(db.sessions, default_policy(), clock)
    env.actions.upsert_principal("alice", groups=["approvers"])
    with transaction(db.sessions) as session:
        OrgRepository(session).insert(
            {"employees": [{"id": "ann", "name": "Ann", "email": "a@x"}, {"id": "mo", "name": "Mo", "email": "m@x"}]}
        )
    action_id = env.propose("reassign_manager", {"new_manager_id": "mo"}, target="ann")
    assert env.executor.get(action_id).state == "pending_approval"
    with pytest.raises(InvalidTransition):
        env.executor.execute(action_id)
    with transaction(db.sessions) as session:
        assert session.get(Employee, "ann").manager_id is None  # type: ignore[union-attr]
    assert env.executor.run(action_id).state == "pending_approval"

    env.actions.approve(action_id, "alice", reason="ok")
    assert env.executor.execute(action_id).state == "completed"
    with transaction(db.sessions) as session:
        assert session.get(Employee, "ann").manager_id == "mo"  # type: ignore[union-attr]


def test_a_rolled_back_action_cannot_be_rolled_back_again(env: Env, tmp_path: Path) -> None:
    action_id = env.propose("append_lines", {"path": str(tmp_path / "x.txt"), "lines": ["a"]})
    env.executor.execute(action_id)
    env.executor.rollback(action_id, "ops-1", reason="first")
    with pytest.raises(InvalidTransition):
        env.executor.rollback(action_id, "ops-1", reason="second")
    assert env.events(action_id).count("rollback_started") == 1


def test_a_failing_rollback_is_audited_and_leaves_the_action_rollback_failed(env: Env, tmp_path: Path) -> None:
    target = tmp_path / "x.txt"
    action_id = env.propose("append_lines", {"path": str(target), "lines": ["a"]})
    env.executor.execute(action_id)
    AppendLines.rollback_breaks = OSError("device busy")
    failed = env.executor.rollback(action_id, "ops-1", reason="undo")
    assert failed.state == "rollback_failed" and failed.error is not None and "device busy" in failed.error
    assert env.events(action_id)[-4:] == [
        "rollback_attempt_failed",
        "rollback_attempt_failed",
        "rollback_attempt_failed",
        "rollback_failed",
    ]
    AppendLines.rollback_breaks = RollbackConflict("someone edited the file")
    assert env.executor.rollback(action_id, "ops-1", reason="again").state == "rollback_failed"
    assert env.events(action_id)[-2:] == ["rollback_attempt_failed", "rollback_failed"]  # not retried
    AppendLines.rollback_breaks = None
    assert env.executor.rollback(action_id, "ops-1", reason="fixed").state == "rolled_back"
    assert target.exists() is False


def test_due_actions_come_by_priority_then_due_time_and_scheduled_ones_wait_for_their_time(env: Env) -> None:
    now = env.clock.now()
    later = env.propose("remote_call", {"n": 1}, priority=1, scheduled_for=now + timedelta(hours=1))
    low = env.propose("remote_call", {"n": 2}, priority=9)
    urgent = env.propose("remote_call", {"n": 3}, priority=1)
    env.clock.advance(timedelta(minutes=1))
    normal = env.propose("remote_call", {"n": 4}, priority=5, scheduled_for=now)
    assert env.executor.next_due() == [urgent, normal, low]
    assert env.executor.run(later).state == "approved"
    env.clock.advance(timedelta(hours=1))
    assert env.executor.next_due(limit=2) == [urgent, later]
    assert env.executor.run(later).state == "completed"


def test_handlers_advertised_as_entry_points_are_registered(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ep_plugin.py").write_text(
        "from saferails.actions.types import Params\n"
        "from saferails.handlers import ExecutionOutcome\n"
        "class P(Params):\n    word: str\n"
        "class Shout:\n"
        "    action_type = 'ep_shout'\n    external = False\n    params_model = P\n"
        "    def validate(self, ctx, target, params): pass\n"
        "    def capture(self, ctx, target, params): return {}\n"
        "    def preview(self, ctx, target, params, pre): return {}\n"
        "    def execute(self, ctx, target, params, pre, key):\n"
        "        return ExecutionOutcome({'shout': params['word'].upper()}, {})\n"
        "    def rollback(self, ctx, target, data): return {}\n"
    )
    dist = tmp_path / "ep_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[saferails.handlers]\nshout = ep_plugin:Shout\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ep_plugin", raising=False)
    assert load_entry_point_handlers() == ["ep_shout"]
    done = env.executor.execute(env.propose("ep_shout", {"word": "hi"}))
    assert done.result == {"shout": "HI"}


def test_handler_settings_refuse_unsafe_or_broken_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        load_handler_settings({"SAFERAILS_FILE_ROOT": str(tmp_path / "missing")})
    with pytest.raises(ConfigurationError):
        load_handler_settings(
            {"SAFERAILS_SMTP_HOST": "mail.example.com", "SAFERAILS_SMTP_USERNAME": "u", "SAFERAILS_SMTP_PASSWORD": "p"}
        )
    with pytest.raises(ConfigurationError):
        load_handler_settings({"SAFERAILS_SMTP_PORT": "seventy"})
    loaded = load_handler_settings({"SAFERAILS_FILE_ROOT": str(tmp_path), "SAFERAILS_SMTP_SENDER": "a@b.c"})
    assert loaded.file_root == tmp_path.resolve() and loaded.smtp_sender == "a@b.c"


def test_a_new_action_whose_capture_breaks_stays_approved_and_fails_as_run_would(env: Env, tmp_path: Path) -> None:
    """``propose_and_run``: a handler that cannot capture (the target is a directory: OSError, not a refusal of
    the request) leaves the new action committed as approved, and the caller gets what ``run`` raises."""
    proposal = Proposal(action_type="append_lines", target="t", params={"path": str(tmp_path), "lines": ["a"]},
                        proposer="agent-7")
    with pytest.raises(Exception) as via_fast_path:
        env.executor.propose_and_run(env.actions, proposal, flow_run_id="run-1", actor="system:flow")
    [action] = env.actions.list()
    assert (action.state, action.flow_run_id) == ("approved", "run-1")
    assert env.events(action.id) == ["action_proposed", "auto_approved", "flow_run_attached"]
    with pytest.raises(Exception) as via_run:
        env.executor.run(action.id)
    assert type(via_run.value) is type(via_fast_path.value)
    assert env.executor.get(action.id).state == "approved"
