"""``bench.goals`` judges each goal from the figures of one run and never passes a goal it has no figure for."""

from __future__ import annotations

from bench.common import Result
from bench.goals import MET, NOT_MET, UNMEASURED, format_verdicts, judge


def _by_goal(results: list[Result]) -> dict[str, str]:
    return {v.goal.split(":")[0]: v.verdict for v in judge(results)}


def test_goals_without_figures_are_not_measured_rather_than_met() -> None:
    assert set(_by_goal([]).values()) == {UNMEASURED}


def test_each_goal_is_judged_against_its_threshold() -> None:
    results = [
        Result("foundation", "propose, 1 per txn: LOW create_document -> approved", "sqlite", 900.0, "proposals/s",
               500, details={"ratio_to_1-row_ceiling": 0.25}),
        Result("foundation", "propose_many, 100 per txn: LOW create_document -> approved", "sqlite", 4_000.0,
               "proposals/s", 500, details={"ratio_to_batched_ceiling": 0.02, "batch": 100}),
        Result("foundation", "PostgreSQL, 8 writer processes", "postgresql", 80.0, "proposals/s", 800,
               details={"writers": 8, "ratio_to_one_writer": 2.0, "lock_wait_share": 0.3}),
        Result("sweeps", "expire sweep, table 100,000", "sqlite", 1.0, "s", 10_000, details={"table_rows": 100_000}),
        Result("sweeps", "expire sweep, table 1,000,000", "sqlite", 1.1, "s", 10_000,
               details={"table_rows": 1_000_000}),
        Result("workflow", "dispatch: matching trivial trigger (emit_alert)", "sqlite", 3_500.0, "events/s", 2_000),
    ]
    verdicts = {v.goal: v.verdict for v in judge(results)}
    assert verdicts["proposals one at a time, SQLite: >= 20% of the single-commit ceiling"] == MET
    assert verdicts["proposals 100 per transaction, SQLite: >= 10,000/s"] == NOT_MET
    assert verdicts["PostgreSQL, 8 writer processes: >= 1.8x one writer, < 10% of transaction time waiting on the "
                    "head"] == NOT_MET  # fast enough, but waiting on the head
    assert verdicts["expire sweep, 10,000 due among 1,000,000, sqlite: < 2 s; 10x the rows <= 1.2x"] == MET
    assert verdicts["outbox dispatch with a matching trigger, SQLite: >= 3,000 events/s"] == MET
    assert "Goals (issues 15 and 16)" in format_verdicts(judge(results))


def test_outcome_quality_goals_are_judged_from_the_held_out_goal_lines() -> None:
    results = [
        Result("outcomes_quality", "GOAL held-out did (3-week post): false rollbacks", "memory", 0.4, "%", 4800,
               "goal <= 1%: MET; seed rule 3.10%"),
        Result("outcomes_quality", "GOAL held-out did (3-week post): detection of harm >= threshold", "memory",
               94.0, "%", 4800, "goal >= 95%: NOT MET; seed rule 92.00%"),
    ]
    verdicts = {v.goal: v for v in judge(results)}
    prefix = "outcome judge (default did), held-out organisations: "
    assert verdicts[prefix + "false rollbacks <= 1%"].verdict == MET
    assert "seed rule 3.10%" in verdicts[prefix + "false rollbacks <= 1%"].figure
    assert verdicts[prefix + "detection of harm >= threshold >= 95%"].verdict == NOT_MET
    assert verdicts[prefix + "inconclusive <= 5%"].verdict == UNMEASURED


def test_the_expire_goal_shows_the_cpu_beside_the_wall_time() -> None:
    """On SQLite the database work is in the sweeping process: its CPU seconds beside the wall time tell the reader
    how much of a miss is the disk."""
    results = [
        Result("sweeps", "expire sweep, table 100,000", "sqlite", 1.8, "s", 10_000,
               details={"table_rows": 100_000, "cpu_seconds": 1.1}),
        Result("sweeps", "expire sweep, table 1,000,000", "sqlite", 2.3, "s", 10_000,
               details={"table_rows": 1_000_000, "cpu_seconds": 1.2}),
    ]
    verdict = next(v for v in judge(results) if v.goal.startswith("expire sweep") and "sqlite" in v.goal)
    assert verdict.verdict == NOT_MET
    assert "this process's CPU 1.20 s, 1.09x at 1/10 the rows" in verdict.figure


def test_the_writers_goal_shows_where_the_scaling_stops() -> None:
    """8 writers decide the verdict; the 2- and 4-writer ratios beside it tell whether the cores or the head
    stopped the scaling."""
    results = [
        Result("foundation", f"PostgreSQL, {n} writer processes", "postgresql", rate, "proposals/s", 600 * n,
               details={"writers": n, "ratio_to_one_writer": rate / 400.0, "lock_wait_share": 0.005})
        for n, rate in ((1, 400.0), (2, 780.0), (4, 600.0), (8, 500.0))
    ]
    verdict = next(v for v in judge(results) if v.goal.startswith("PostgreSQL, 8 writer"))
    assert verdict.verdict == NOT_MET
    assert verdict.figure == ("1.25x one writer, 0% of in-transaction samples waiting on a lock; 1.95x with 2; "
                              "1.50x with 4")


def test_the_writers_goal_says_how_busy_the_cores_were_and_what_a_proposal_cost_once_they_were_full() -> None:
    """With the CPU figures of a run, the verdict shows the cores full and the CPU per proposal growing from the
    first writer count that filled them to 8: the reason the scaling stopped."""
    cpu = {1: (0.5, 3.0, 1.0), 2: (0.9, 3.7, 1.1), 4: (0.96, 4.4, 1.2), 8: (0.98, 5.1, 1.6)}
    results = [
        Result("foundation", f"PostgreSQL, {n} writer processes", "postgresql", rate, "proposals/s", 600 * n,
               details={"writers": n, "ratio_to_one_writer": rate / 300.0, "lock_wait_share": 0.003,
                        "machine_busy": cpu[n][0], "writer_cpu_ms_per_proposal": cpu[n][1],
                        "backend_cpu_ms_per_proposal": cpu[n][2]})
        for n, rate in ((1, 300.0), (2, 540.0), (4, 480.0), (8, 390.0))
    ]
    verdict = next(v for v in judge(results) if v.goal.startswith("PostgreSQL, 8 writer"))
    assert verdict.verdict == NOT_MET
    assert verdict.figure.endswith("; cores 98% busy with 8, CPU per proposal 4.8 ms with 2 (cores full) -> "
                                   "6.7 ms with 8")
