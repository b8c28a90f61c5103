"""The goals of issues 15 and 16, judged from the results of one ``make bench`` run: one line per goal with the measured
figure, what it is compared with (a ceiling or a baseline from the same run), the ratio and a verdict.

A goal whose figures are missing from the run (an area not run, PostgreSQL unreachable, a size below the goal's)
says so instead of passing. Verdicts: ``met``, ``NOT MET`` or ``not measured``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.common import Result

MET, NOT_MET, UNMEASURED = "met", "NOT MET", "not measured"


@dataclass(frozen=True)
class Verdict:
    goal: str
    verdict: str
    figure: str


def _find(results: Sequence[Result], area: str, backend: str, test: Callable[[Result], bool]) -> Result | None:
    found = [r for r in results if r.area == area and r.backend == backend and r.value is not None and test(r)]
    return found[-1] if found else None


def _proposals_single(results: Sequence[Result]) -> Verdict:
    goal = "proposals one at a time, SQLite: >= 20% of the single-commit ceiling"
    r = _find(results, "foundation", "sqlite", lambda r: r.name.startswith("propose, 1 per txn: LOW"))
    if r is None:
        return Verdict(goal, UNMEASURED, "foundation area not run")
    ratio = float(r.details["ratio_to_1-row_ceiling"])
    return Verdict(goal, MET if ratio >= 0.20 else NOT_MET,
                   f"{r.value:,.0f}/s = {ratio:.1%} of the ceiling (HIGH: see table)")


def _proposals_batched(results: Sequence[Result]) -> Verdict:
    goal = "proposals 100 per transaction, SQLite: >= 10,000/s"
    r = _find(results, "foundation", "sqlite", lambda r: r.name.startswith("propose_many") and "LOW" in r.name)
    if r is None:
        return Verdict(goal, UNMEASURED, "foundation area not run")
    assert r.value is not None
    ratio = float(r.details["ratio_to_batched_ceiling"])
    size = "" if r.details.get("batch") == 100 else f" (batches of {r.details.get('batch')})"
    return Verdict(goal, MET if r.value >= 10_000 else NOT_MET,
                   f"{r.value:,.0f}/s = {r.value / 10_000:.2f}x the goal, {ratio:.2%} of the batched ceiling{size}")


def _writers(results: Sequence[Result]) -> Verdict:
    goal = "PostgreSQL, 8 writer processes: >= 1.8x one writer, < 10% of transaction time waiting on the head"
    r = _find(results, "foundation", "postgresql", lambda r: r.details.get("writers") == 8)
    if r is None:
        return Verdict(goal, UNMEASURED, "PostgreSQL writers not measured")
    ratio, waiting = float(r.details["ratio_to_one_writer"]), float(r.details["lock_wait_share"])
    others = [x for x in results if x.area == "foundation" and x.backend == "postgresql"
              and x.details.get("writers") not in (None, 1, 8) and "ratio_to_one_writer" in x.details]
    # The smaller counts show where the scaling stops: at the cores (2 here) or behind the head.
    fewer = "".join(f"; {float(x.details['ratio_to_one_writer']):.2f}x with {x.details['writers']}" for x in others)
    return Verdict(goal, MET if ratio >= 1.8 and waiting < 0.10 else NOT_MET,
                   f"{ratio:.2f}x one writer, {waiting:.0%} of in-transaction samples waiting on a lock{fewer}"
                   f"{_cpu_growth(r, others)}")


def _cpu_growth(eight: Result, others: Sequence[Result]) -> str:
    """Where the cores went: how busy the machine was with 8 writers, and the CPU per proposal (writer and its
    backend) with 8 writers against the fewest that already filled the cores (older runs: nothing)."""
    busy = eight.details.get("machine_busy")
    if busy is None or eight.details.get("writer_cpu_ms_per_proposal") is None:
        return ""

    def cpu(r: Result) -> float:
        return float(r.details["writer_cpu_ms_per_proposal"]) + float(r.details.get("backend_cpu_ms_per_proposal") or 0)

    full = [x for x in others if float(x.details.get("machine_busy") or 0) >= 0.8
            and x.details.get("writer_cpu_ms_per_proposal") is not None]
    text = f"; cores {float(busy):.0%} busy with 8"
    if full:
        first = min(full, key=lambda x: int(x.details["writers"]))
        text += (f", CPU per proposal {cpu(first):.1f} ms with {first.details['writers']} (cores full) -> "
                 f"{cpu(eight):.1f} ms with 8")
    return text


def _sweep(results: Sequence[Result], backend: str) -> Verdict:
    goal = f"expire sweep, 10,000 due among 1,000,000, {backend}: < 2 s; 10x the rows <= 1.2x"
    runs = [r for r in results if r.area == "sweeps" and r.backend == backend and r.value is not None
            and r.name.startswith("expire sweep, table")]
    if len(runs) < 2:
        return Verdict(goal, UNMEASURED, "sweeps area not run")
    small, large = runs[0], runs[-1]
    rows = int(large.details.get("table_rows", 0))
    assert small.value is not None and large.value is not None
    growth = large.value / max(small.value, 1e-9)
    figure = (f"{large.value:.2f} s for {large.n:,} due among {rows:,} ({large.value / 2:.2f}x the 2 s goal); "
              f"{growth:.2f}x the time at 1/10 the rows")
    cpu_small, cpu_large = small.details.get("cpu_seconds"), large.details.get("cpu_seconds")
    if cpu_small is not None and cpu_large is not None:
        # On SQLite the database work is in this process: what the CPU does not explain is the disk.
        where = "" if backend == "sqlite" else " (the server's share not included)"
        figure += (f"; this process's CPU {float(cpu_large):.2f} s{where}, "
                   f"{float(cpu_large) / max(float(cpu_small), 1e-9):.2f}x at 1/10 the rows")
    if rows < 1_000_000 or large.n < 10_000:
        return Verdict(goal, UNMEASURED, figure + " (below the goal's size: run without --quick)")
    return Verdict(goal, MET if large.value < 2 and growth <= 1.2 else NOT_MET, figure)


def _dispatch(results: Sequence[Result]) -> Verdict:
    goal = "outbox dispatch with a matching trigger, SQLite: >= 3,000 events/s"
    r = _find(results, "workflow", "sqlite", lambda r: r.name.startswith("dispatch: matching"))
    if r is None:
        return Verdict(goal, UNMEASURED, "workflow area not run")
    assert r.value is not None
    overhead = _find(results, "workflow", "sqlite", lambda r: r.name.startswith("dispatch: non-matching"))
    extra = "" if overhead is None or overhead.value is None else \
        f", {r.value / overhead.value:.0%} of the non-matching overhead-only rate"
    figure = f"{r.value:,.0f}/s = {r.value / 3_000:.2f}x the goal{extra}"
    return Verdict(goal, MET if r.value >= 3_000 else NOT_MET, figure)


def _action_flow(results: Sequence[Result]) -> list[Verdict]:
    out = []
    for backend in ("sqlite", "postgresql"):
        goal = f"action flow / bare one-task flow, {backend}: <= 1.15x; approval to execution < 1 s"
        ratio = _find(results, "actions", backend, lambda r: r.name == "action flow / bare flow")
        resume = _find(results, "actions", backend, lambda r: r.name == "resume -> completed")
        if ratio is None or resume is None or ratio.value is None or resume.value is None:
            out.append(Verdict(goal, UNMEASURED, "actions area not run"))
            continue
        ok = ratio.value <= 1.15 and resume.value < 1000
        figure = f"{ratio.value:.2f}x; resume -> completed {resume.value:,.0f} ms"
        out.append(Verdict(goal, MET if ok else NOT_MET, figure))
    return out


def _outcomes(results: Sequence[Result]) -> Verdict:
    """Every judge swept must meet it: the slowest sweep total of the run is the figure."""
    goal = "outcome sweep (20,000 people, 1,000 due): under 20 s"
    totals = [r for r in results if r.area == "outcomes" and r.value is not None and r.name.startswith("sweep total")]
    if not totals:
        return Verdict(goal, UNMEASURED, "outcomes area not run")
    worst = max(totals, key=lambda r: r.value or 0.0)
    assert worst.value is not None
    people = int(worst.details.get("people", 0))
    each = ", ".join(f"{r.name.removeprefix('sweep total ')} {r.value:.1f} s" for r in totals)
    phases = worst.details.get("phases", {})
    split = "; ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items())
    figure = f"{each} for {worst.n:,} checks on {people:,} people (slowest: {split})"
    if people < 20_000 or worst.n < 1_000:
        return Verdict(goal, UNMEASURED, f"{figure} (below the goal's size)")
    return Verdict(goal, MET if worst.value < 20 else NOT_MET, figure)


QUALITY_GOALS = (("false rollbacks", "<=", 1.0), ("detection of harm >= threshold", ">=", 95.0),
                 ("inconclusive", "<=", 5.0))


def _outcome_quality(results: Sequence[Result]) -> list[Verdict]:
    """Issue 16's goals on the held-out organisations (``bench.outcomes_quality``'s GOAL lines), each with the
    seed rule's figure from the same run."""
    out = []
    for label, op, goal in QUALITY_GOALS:
        text = f"outcome judge (default did), held-out organisations: {label} {op} {goal:g}%"
        suffix = f": {label}"
        r = next((x for x in reversed(results) if x.area == "outcomes_quality" and x.value is not None
                  and x.name.startswith("GOAL held-out") and x.name.endswith(suffix)), None)
        if r is None or r.value is None:
            out.append(Verdict(text, UNMEASURED, "outcomes_quality area not run"))
            continue
        met = r.value <= goal if op == "<=" else r.value >= goal
        seed = r.note.split("; ", 1)[-1] if "; " in r.note else ""
        out.append(Verdict(text, MET if met else NOT_MET,
                           f"{r.value:.2f}% of {r.n:,} cases ({r.name.split('(')[-1].split(')')[0]}); {seed}"))
    return out


def judge(results: Sequence[Result]) -> list[Verdict]:
    return [
        _proposals_single(results),
        _proposals_batched(results),
        _writers(results),
        _sweep(results, "sqlite"),
        _sweep(results, "postgresql"),
        _dispatch(results),
        *_action_flow(results),
        _outcomes(results),
        *_outcome_quality(results),
    ]


def format_verdicts(verdicts: Sequence[Verdict]) -> str:
    width = max(len(v.verdict) for v in verdicts)
    lines = ["Goals (issues 15 and 16), judged from this run:"]
    lines += [f"  [{v.verdict:<{width}}] {v.goal}\n  {'':<{width + 2}} {v.figure}" for v in verdicts]
    return "\n".join(lines)
