"""Markdown for one decided outcome check: a before/after table and a text bar chart.

The chart is Unicode block characters in a fenced block: it renders in the Prefect UI, in a terminal and in
e-mail alike, and needs no plotting library (matplotlib is not a dependency).
"""

from __future__ import annotations

from typing import Any

from saferails.outcomes.monitor import CheckOutcome

CHART_METRICS = ("degree_centrality", "strength", "clustering", "betweenness", "burnout")
BAR = 30


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4g}"


def _bar(value: Any, top: float) -> str:
    if value is None or top <= 0:
        return ""
    cells = float(value) / top * BAR
    full = int(cells)
    return "█" * full + ("▌" if cells - full >= 0.5 else "")


def render_markdown(outcome: CheckOutcome) -> str:
    """Title, verdict, findings table (before, after, change, threshold verdict) and the before/after chart."""
    verdict = {"negative": "NEGATIVE - rolled back", "ok": "ok - kept", "error": "error",
               "inconclusive": "INCONCLUSIVE - a person decides whether to roll back"}[outcome.state]
    if outcome.state == "negative" and outcome.rollback_state != "rolled_back":
        verdict = f"NEGATIVE - rollback: {outcome.rollback_state or 'refused'}"
    lines = [f"# Outcome of {outcome.action_type} on {outcome.target}", "", f"**{verdict}**", ""]
    if outcome.note:
        lines += [outcome.note, ""]
    lines += ["| metric | before | after | change | rule |", "|---|---:|---:|---:|---|"]
    by_metric = {f["metric"]: f for f in outcome.findings}
    for metric in CHART_METRICS:
        finding = by_metric.get(metric)
        before, after = outcome.before.get(metric), outcome.after.get(metric)
        change = "-"
        if before not in (None, 0) and after is not None:
            change = f"{(float(after) - float(before)) / float(before):+.0%}"
        rule = "" if finding is None else f"{finding['rule']}: {'NEGATIVE' if finding['negative'] else 'ok'}"
        lines.append(f"| {metric} | {_fmt(before)} | {_fmt(after)} | {change} | {rule} |")
    lines += ["", "```text"]
    for metric in CHART_METRICS:
        before, after = outcome.before.get(metric), outcome.after.get(metric)
        top = max(float(v) for v in (before, after, 0.0) if v is not None)
        lines.append(f"{metric:<18} before {_bar(before, top):<{BAR + 1}} {_fmt(before)}")
        lines.append(f"{'':<18} after  {_bar(after, top):<{BAR + 1}} {_fmt(after)}")
    lines.append("```")
    return "\n".join(lines) + "\n"
