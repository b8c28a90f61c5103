"""The outcome part of ``make demo``: the isolating intervention is rolled back after 21 days (the default did
judge), the harmless one kept."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from demo.outcomes import OutcomesDemoReport, outcomes_demo
from saferails.api import open_store
from saferails.clock import ManualClock
from saferails.execution import ExecutionService
from saferails.policy import default_policy
from saferails.settings import Settings

pytestmark = pytest.mark.slow  # seconds each (a demo run, a subprocess, a wheel build, a fuzz run)

START = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OutcomesDemoReport, str, datetime]]:
    directory: Path = tmp_path_factory.mktemp("outcomes-demo")
    settings = Settings(database_url=f"sqlite:///{directory / 'demo.db'}", policy_path=None, approval_secret=None,
                        data_dir=directory)
    clock = ManualClock(START)
    out = io.StringIO()
    with open_store(settings, clock=clock, policy=default_policy()) as store:
        execution = ExecutionService(store.sessions, clock, None, sleeper=lambda _s: None)
        report = outcomes_demo(store, clock, out, execution)
    yield report, out.getvalue(), clock.now()


def test_the_isolating_intervention_is_rolled_back_after_the_negative_outcome_is_audited(
        shown: tuple[OutcomesDemoReport, str, datetime]) -> None:
    report, _, _ = shown
    events = report.events[report.isolating_id]

    assert report.states[report.isolating_id] == "rolled_back"
    assert events.index("negative_outcome_detected") < events.index("rolled_back")
    assert "outcome_ok" not in events


def test_the_reassigned_person_gets_the_old_manager_back(shown: tuple[OutcomesDemoReport, str, datetime]) -> None:
    report, text, _ = shown
    before, during, after = report.managers

    assert before is not None and during != before and after == before
    assert f"{before} -> {during} -> {before}" in text


def test_the_harmless_intervention_is_kept(shown: tuple[OutcomesDemoReport, str, datetime]) -> None:
    report, text, _ = shown

    assert report.states[report.harmless_id] == "completed"
    assert report.events[report.harmless_id][-1] == "outcome_ok"
    assert "-> outcome_ok; kept (completed)" in text


def test_the_section_moves_the_clock_three_weeks_and_prints_the_judge_and_a_short_before_after_table(
        shown: tuple[OutcomesDemoReport, str, datetime]) -> None:
    _, text, now = shown
    lines = text.strip().splitlines()

    assert now == START + timedelta(days=21)  # the default policy's delay for the did judge
    assert len(lines) <= 25
    assert "outcome sweep decides 2 check(s): 1 negative, 1 ok" in text
    assert "judge did: degree centrality" in text and "matched controls" in text and "-> negative" in text
    assert any(line.split()[:2] == ["intervention", "metric"] for line in lines)
    assert "degree_centrality" in text and "burnout" in text
