"""The foundation benchmark still runs end to end (tiniest size, SQLite only). Timings are never asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import main

EXPECTED = {
    "ceiling: raw INSERT + COMMIT per row",
    "ceiling: raw 1,000 rows per COMMIT",
    "propose, 1 per txn: LOW create_document -> approved",
    "propose, 1 per txn: HIGH reassign_manager -> pending_approval",
    "PolicyEngine.evaluate, in-memory counter: median",
    "PolicyEngine.evaluate, in-memory counter: p99",
}


@pytest.mark.slow
def test_the_quick_foundation_benchmark_prints_a_table_and_writes_positive_results_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--only", "foundation", "--quick", "--n", "20", "--backend", "sqlite", "--results-dir", str(tmp_path)]

    assert main(argv) == 0

    [written] = tmp_path.glob("*_foundation.json")
    run = json.loads(written.read_text())
    rows = run["results"]
    measured = {r["name"] for r in rows if r["value"] is not None}
    assert measured >= EXPECTED
    assert all(r["value"] > 0 for r in rows if r["value"] is not None)
    assert all(r["note"].startswith("skipped") for r in rows if r["value"] is None)
    assert not any("UNEXPECTED" in r["note"] for r in rows), "a proposal row measured the wrong outcome"
    assert {r["backend"] for r in rows} == {"sqlite", "memory"}
    assert run["machine"]["cores"] >= 1 and run["machine"]["sqlite"]
    out = capsys.readouterr().out
    assert "propose, 1 per txn: LOW create_document -> approved" in out
    assert str(written) in out


@pytest.mark.slow
def test_the_quick_outcome_sweep_benchmark_decides_every_check_with_both_judges(tmp_path: Path) -> None:
    """Each judge is swept after its own default delay; a sweep that decided fewer checks than it scheduled
    raises instead of reporting a time (the did judge once decided none, swept after 7 of its 21 days)."""
    argv = ["--only", "outcomes", "--n", "60", "--backend", "sqlite", "--results-dir", str(tmp_path)]

    assert main(argv) == 0

    [written] = tmp_path.glob("*_outcomes.json")
    rows = json.loads(written.read_text())["results"]
    decided = {r["name"]: r for r in rows if r["name"].startswith("sweep (") and "decide" in r["name"]}
    assert set(decided) == {"sweep (thresholds): decide due checks", "sweep (did): decide due checks"}
    for row in decided.values():
        assert row["n"] > 0 and row["value"] > 0 and "error 0" in row["note"], row
