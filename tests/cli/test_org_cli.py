"""``saferails org|outcomes|sweep``, run in-process through ``saferails.cli.main`` on SQLite and PostgreSQL.

The CLI reads the system clock. Where time must pass, the world is built through the Python API with a
ManualClock set eight days before the current hour, so by the CLI's clock the week of monitoring is over.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from saferails.actions.models import Proposal
from saferails.api import Store, open_store
from saferails.clock import ManualClock
from saferails.execution import ExecutionService
from saferails.notify.outbox_log import InboxNotifier
from saferails.orggraph import Interaction
from saferails.orggraph.service import load_org_data
from saferails.outcomes import OutcomeMonitor
from saferails.outcomes.rules import RuleBook, TypeRules
from saferails.policy.loader import DEFAULT_POLICY_RESOURCE
from saferails.settings import load_settings
from saferails.store.db import transaction
from saferails.sweeps.now import due_checks, run_sweep
from tests.outcomes.test_did_monitor import PRE_WEEKS, _erratic_target_then_a_drop
from tests.support.cli import Cli, use_database
from tests.support.outcome_world import World

TEAM_A = ["ma", "t", "a1", "a2", "a3", "a4"]
TEAM_B = ["mb", "x", "b1", "b2", "b3", "b4"]


@pytest.fixture
def cli(db: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    use_database(monkeypatch, db.url)
    monkeypatch.setenv("SAFERAILS_DATA_DIR", str(tmp_path))
    # This module's org has a week of data: the outcome sweep judges with seed 000's rule as written (7 days).
    policy = tmp_path / "policy.yaml"
    bundled = files("saferails.policy").joinpath(DEFAULT_POLICY_RESOURCE).read_text(encoding="utf-8")
    policy.write_text(bundled.replace(
        "{delay_days: 21, window_days: 7, judge: did,", "{delay_days: 7, window_days: 7, judge: thresholds,"))
    monkeypatch.setenv("SAFERAILS_POLICY", str(policy))
    return Cli(capsys)


@pytest.fixture
def past(cli: Cli) -> Iterator[Store]:
    """The store as of eight days ago (the CLI fixture has set the environment it reads)."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=8)
    with open_store(load_settings(), clock=ManualClock(start)) as store:
        yield store


def _write(path: Path, rows: list[dict[str, Any]]) -> str:
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def _people() -> list[dict[str, Any]]:
    return [{"id": p, "name": p.upper(), "email": f"{p}@example.org", "team_id": team,
             "manager_id": "" if p.startswith("m") else manager, "role": "lead" if p.startswith("m") else "member"}
            for team, manager, people in (("A", "ma", TEAM_A), ("B", "mb", TEAM_B)) for p in people]


def _meetings(midnight: datetime, days: range, *, without: str | None = None) -> list[dict[str, Any]]:
    pairs = [p for team in (TEAM_A, TEAM_B) for p in combinations(team, 2) if without not in p] + [("ma", "mb")]
    return [{"kind": "meeting", "person_a": a, "person_b": b, "occurred_at": (midnight + timedelta(days=d, hours=10))
             .isoformat(), "weight": 1.0} for d in days for a, b in pairs]


def _world(store: Store, tmp_path: Path, cli: Cli) -> datetime:
    """Both teams meet daily for a week before the store's now; from then on ``t`` no longer meets team A.
    Loaded through ``saferails org load``; returns the midnight starting the day of the store's now."""
    midnight = store.clock.now().replace(hour=0)
    interactions = _meetings(midnight, range(-7, 0)) + _meetings(midnight, range(0, 10), without="t")
    interactions += [{"kind": "message", "person_a": "t", "person_b": "mb",
                      "occurred_at": (midnight + timedelta(days=d, hours=15)).isoformat(), "weight": 0.5}
                     for d in range(0, 10)]
    wellbeing = [{"person": p, "observed_at": (midnight + timedelta(days=d, hours=7)).isoformat(),
                  "burnout_score": 0.3} for p in TEAM_A + TEAM_B for d in range(-7, 10, 2)]
    loaded = cli("org", "load", "--employees", _write(tmp_path / "e.csv", _people()),
                 "--interactions", _write(tmp_path / "i.csv", interactions),
                 "--wellbeing", _write(tmp_path / "w.csv", wellbeing), "--json")
    assert loaded.code == 0, loaded.err
    assert loaded.json() == {"employees": 12, "interactions": len(interactions), "wellbeing": len(wellbeing)}
    return midnight


def _execute(store: Store, action_type: str, target: str, params: dict[str, Any]) -> str:
    view = store.actions.propose(Proposal(action_type=action_type, target=target, params=params, proposer="hr-bot"))
    if view.state == "pending_approval":
        code = InboxNotifier(store.settings.data_dir / "inbox").latest_code("hana", view.id)
        view = store.actions.approve(view.id, "hana", reason="ok", code=code)
    executor = ExecutionService(store.sessions, store.clock, None, sleeper=lambda _s: None)
    assert executor.execute(view.id).state == "completed"
    return view.id


def test_loaded_csv_files_show_a_persons_metrics_falling_after_they_stop_meeting_their_team(
        cli: Cli, past: Store, tmp_path: Path) -> None:
    midnight = _world(past, tmp_path, cli)

    before, after = (midnight.isoformat(), (midnight + timedelta(days=8)).isoformat())
    shown = cli("org", "metrics", "t", "--from", before, "--to", after, "--step", "8d", "--json").json()
    table = cli("org", "metrics", "t", "--from", before, "--to", after, "--step", "8d").out

    degrees = [p["degree_centrality"] for p in shown["points"]]
    assert degrees == [pytest.approx(5 / 11), pytest.approx(1 / 11)]
    assert [p["burnout"] for p in shown["points"]] == [pytest.approx(0.3), pytest.approx(0.3)]
    assert "t: metrics over the 7d before each time" in table and "0.4545" in table and "0.0909" in table


def test_one_bad_row_refuses_the_whole_load_naming_row_and_column(cli: Cli, db: Any, tmp_path: Path) -> None:
    good = [{"kind": "meeting", "person_a": "a", "person_b": "b", "occurred_at": "2026-11-20T10:00:00Z"}]
    bad = [*good, {"kind": "lunch", "person_a": "a", "person_b": "c", "occurred_at": "2026-11-20T12:00:00Z"}]

    refused = cli("org", "load", "--employees", _write(tmp_path / "e.csv", _people()),
                  "--interactions", _write(tmp_path / "i.csv", bad), "--json")

    assert refused.code == 2
    assert refused.error()["error_code"] == "ORG_DATA_INVALID"
    assert "row 2, column 'kind'" in refused.error()["message"]
    assert cli("org", "metrics", "t").code == 4  # the valid employees file was not written either
    with transaction(db.sessions) as session:
        assert session.execute(sa.select(sa.func.count()).select_from(Interaction)).scalar_one() == 0


def test_a_manager_missing_from_file_and_store_is_refused(cli: Cli, tmp_path: Path) -> None:
    people = [{"id": "e1", "name": "E", "email": "e1@example.org", "manager_id": "ghost"}]

    refused = cli("org", "load", "--employees", _write(tmp_path / "e.csv", people))

    assert refused.code == 2
    assert refused.err.startswith("error[ORG_DATA_INVALID]: row 1, column 'manager_id'")


def test_a_missing_file_or_no_file_at_all_is_bad_input(cli: Cli, tmp_path: Path) -> None:
    assert cli("org", "load", "--wellbeing", str(tmp_path / "nope.csv")).err.startswith("error[INVALID_INPUT]")
    assert cli("org", "load").code == 2


def test_a_sample_org_is_generated_once_and_its_people_have_metrics(cli: Cli) -> None:
    made = cli("org", "generate", "--size", "60", "--seed", "3", "--json")
    again = cli("org", "generate", "--size", "60", "--seed", "3")
    shown = cli("org", "metrics", "p00005", "--step", "7d", "--json")

    assert made.code == 0 and made.json()["employees"] == 60 and made.json()["interactions"] > 500
    assert again.code == 2 and again.err.startswith("error[ORG_SAMPLE_EXISTS]")
    points = shown.json()["points"]
    assert shown.code == 0 and len(points) == 3 and points[-1]["degree"] > 0 and points[-1]["burnout"] is not None


def test_metrics_of_nobody_is_not_found_and_bad_durations_are_bad_input(cli: Cli) -> None:
    assert cli("org", "metrics", "nobody").err.startswith("error[NOT_FOUND]: person 'nobody'")
    assert cli("org", "metrics", "nobody", "--window", "a week").code == 2
    assert cli("org", "metrics", "nobody", "--step", "1m", "--from", "2026-01-01T00:00:00Z").code == 2


def test_the_outcome_sweep_rolls_back_the_isolating_intervention_and_keeps_the_harmless_one(
        cli: Cli, past: Store, tmp_path: Path) -> None:
    _world(past, tmp_path, cli)
    past.actions.upsert_principal("hana", groups=["approvers"])
    isolating = _execute(past, "reassign_manager", "t", {"new_manager_id": "mb"})
    harmless = _execute(past, "schedule_focus_time", "x", {"start": "2027-01-04T09:00:00Z",
                                                           "end": "2027-01-04T11:00:00Z"})
    scheduled = run_sweep(past, "outcomes")  # eight days ago: checks created, none due yet
    assert (scheduled["scheduled"], scheduled["claimed"], due_checks(past)) == (2, 0, [])

    due = cli("outcomes", "due", "--json").json()
    table = cli("outcomes", "due").out
    swept = cli("sweep", "run", "outcomes", "--json").json()

    assert sorted(c["action_id"] for c in due) == sorted([isolating, harmless])
    assert "reassign_manager" in table and "schedule_focus_time" in table
    assert (swept["negative"], swept["ok"]) == (1, 1)
    assert {i["action_id"]: i["state"] for i in swept["items"]} == {isolating: "rolled_back", harmless: "completed"}
    assert cli("show", isolating, "--json").json()["state"] == "rolled_back"
    assert cli("outcomes", "due").out.strip() == "(no outcome checks due)"


def test_the_expire_sweep_times_out_an_approval_left_pending_past_its_deadline(cli: Cli, past: Store) -> None:
    load_org_data(past, employees=pd.DataFrame(_people()))
    pending = past.actions.propose(Proposal(action_type="reassign_manager", target="t",
                                            params={"new_manager_id": "mb"}, proposer="hr-bot"))

    swept = cli("sweep", "run", "expire", "--json").json()
    text = cli("sweep", "run", "expire").out

    assert [(i["action_id"], i["outcome"], i["state"]) for i in swept["items"]] == [
        (pending.id, "resolved", "timed_out")]
    assert text.startswith("expire sweep: due_at_start 0, resolved 0")
    assert cli("show", pending.id, "--json").json()["state"] == "timed_out"


def test_the_recover_sweep_runs_now_and_an_unknown_sweep_is_refused(cli: Cli) -> None:
    ran = cli("sweep", "run", "recover", "--json")

    assert ran.code == 0 and ran.json()["sweep"] == "recover" and ran.json()["items"] == []
    assert cli("sweep", "run", "everything").code == 2
    assert cli("sweep", "run", "expire", "--limit", "0").err.startswith("error[INVALID_INPUT]")


def test_a_person_resolves_an_inconclusive_outcome_from_the_cli_with_their_code(cli: Cli, past: Store) -> None:
    cli.token_of("alice")  # an approver before the check is decided: she gets a code
    assert isinstance(past.clock, ManualClock)
    world = World(past, past.clock)
    action_id = _erratic_target_then_a_drop(world)
    monitor = OutcomeMonitor(past.sessions, past.clock, world.executor,
                             RuleBook({"reassign_manager": TypeRules(timedelta(days=7), judge="did",
                                                                     pre_weeks=PRE_WEEKS)}),
                             codes=past.codes, notifier=past.notifier)
    monitor.schedule()
    past.clock.advance(timedelta(days=7))
    assert [o.state for o in monitor.run_due(worker_id="w").outcomes] == ["inconclusive"]

    wrong = cli.as_("alice")("outcomes", "resolve", action_id, "--keep", "--code", "AAAA-BBBB-CCCC",
                             "--reason", "guess")
    neither = cli.as_("alice")("outcomes", "resolve", action_id, "--code", "x")
    kept = cli.as_("alice")("outcomes", "resolve", action_id, "--keep", "--code", cli.code("alice", action_id),
                            "--reason", "t is on leave", "--json")

    assert wrong.code != 0 and "APPROVAL_CODE_INVALID" in wrong.err
    assert neither.code == 2 and "--rollback or --keep" in neither.err
    assert kept.code == 0, kept.err
    assert kept.json()["state"] == "ok" and cli("show", action_id, "--json").json()["state"] == "completed"
    check = monitor.check_for(action_id)
    assert check is not None and check.result is not None and check.result["resolved_by"] == "alice"
