"""Markdown for one decided outcome check: a before/after table and a text bar chart.

The chart is Unicode block characters in a fenced block: it renders in the Prefect UI, in a terminal and in
e-mail alike, and needs no plotting library (matplotlib is not a dependency).
"""

from __future__ import annotations

from typing import Any

from saferails.outcomes.monitor import CheckOutcome, CheckView

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


def render_evidence(check: CheckView) -> str:
    """What a person needs to decide on an inconclusive check: per metric the judge's effect, interval and
    threshold, then the target against its controls week by week (each normalised to its own pre-period mean,
    1.00 = usual; the last weeks are after the change), with who the controls were and the snapshot hashes."""
    result = check.result or {}
    judgement = result.get("judgement") or {}
    lines = [f"# Decide: roll back {check.action_type} on {check.target}?", "",
             f"The outcome check of action `{check.action_id}` is **inconclusive**: a large effect the data cannot "
             "separate from ordinary variation. Roll the change back, or keep it.", "",
             f"Method `{judgement.get('method', result.get('judge', '-'))}`; controls: "
             f"{', '.join(judgement.get('controls') or []) or '-'}; snapshots: baseline "
             f"`{str(check.baseline.get('snapshot_hash', '-'))[:12]}`, current `{(check.snapshot_hash or '-')[:12]}`"
             + (f"; decide by {result['decide_by']}" if result.get("decide_by") else ""), "",
             "| rule | metric | effect | interval | threshold | verdict |", "|---|---|---:|---|---:|---|"]
    metrics = judgement.get("metrics") or []
    for m in metrics:
        effect = "-" if m.get("effect") is None else f"{m['effect']:+.0%}"
        interval = "-" if not m.get("interval") else f"{m['interval'][0]:+.0%} .. {m['interval'][1]:+.0%}"
        lines.append(f"| {m['rule']} | {m['metric']} | {effect} | {interval} | {m['threshold']:.0%} | "
                     f"{m['verdict']}{(' (' + m['note'] + ')') if m.get('note') else ''} |")
    for m in metrics:
        details = m.get("details") or {}
        target, control = details.get("target_series"), details.get("control_series")
        if not target or not control:
            continue
        post = int(details.get("post_weeks", 1))
        shown = min(len(target), post + 8)  # the last eight usual weeks are enough to see the pattern
        target, control = target[-shown:], control[-shown:]
        top = max(max(target), max(control), 1e-9)
        lines += ["", f"**{m['metric']}**: target against controls, week by week", "", "```text"]
        for week, (t, c) in enumerate(zip(target, control, strict=True)):
            label = "after" if week >= len(target) - post else f"w-{len(target) - post - week}"
            lines.append(f"{label:>5} target   {_bar(t, top):<{BAR + 1}} {t:.2f}")
            lines.append(f"{'':>5} controls {_bar(c, top):<{BAR + 1}} {c:.2f}")
        lines.append("```")
    return "\n".join(lines) + "\n"
