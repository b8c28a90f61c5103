"""The HTTP benchmark still runs end to end (tiniest size, SQLite only): a server, a load generator in another
process, every row measured and every proposal answered as expected. Timings are never asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import main


@pytest.mark.slow
def test_the_http_benchmark_measures_every_row_beside_the_in_process_ceiling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--only", "http", "--n", "8", "--backend", "sqlite", "--results-dir", str(tmp_path)]

    assert main(argv) == 0

    [written] = tmp_path.glob("*_http.json")
    rows = json.loads(written.read_text())["results"]
    names = [r["name"] for r in rows]
    assert names[0] == "in-process propose, 1 thread (the ceiling)"
    assert [n for n in names if n.startswith("HTTP propose")] == [
        "HTTP propose, 1 concurrent client(s)", "HTTP propose, 8 concurrent client(s)",
        "HTTP propose, 32 concurrent client(s)"]
    assert names[-1].startswith("goal: 8 clients")
    assert all(r["value"] is not None and r["value"] > 0 for r in rows)
    assert not any("UNEXPECTED" in r["note"] for r in rows), "a row measured the wrong outcome"
    assert rows[-1]["note"].startswith(("MET", "NOT MET"))
    assert "of in-process" in capsys.readouterr().out
