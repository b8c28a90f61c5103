"""Markdown for one decided outcome check: the judge's finding per metric, the target against its controls over
time (a week-by-week table and a strip chart around the change), and the snapshot before/after table and chart.

The charts are Unicode characters in fenced blocks: they render in the Prefect UI, in a terminal and in e-mail
alike, and need no plotting library (matplotlib is not a dependency).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from saferails.outcomes.monitor import CheckOutcome, CheckView

CHART_METRICS = ("degree_centrality", "strength", "clustering", "betweenness", "burnout")
BAR = 30
STRIP = 40
SHOWN_BEFORE = 8  # usual weeks shown before the change: enough to see the pattern


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4g}"


def _bar(value: Any, top: float) -> str:
    if value is None or top <= 0:
        return ""
    cells = float(value) / top * BAR
    full = int(cells)
    return "█" * full + ("▌" if cells - full >= 0.5 else "")


def render_markdown(outcome: CheckOutcome) -> str:
    """Title and verdict; with a ``did`` judgement, its table (:func:`judge_table`) and the target against its
    controls over time (:func:`over_time`); then the snapshot findings table (before, after, change, threshold
    verdict) and the before/after chart."""
    verdict = {"negative": "NEGATIVE - rolled back", "ok": "ok - kept", "error": "error",
               "inconclusive": "INCONCLUSIVE - a person decides whether to roll back"}[outcome.state]
    if outcome.state == "negative" and outcome.rollback_state != "rolled_back":
        verdict = f"NEGATIVE - rollback: {outcome.rollback_state or 'refused'}"
    lines = [f"# Outcome of {outcome.action_type} on {outcome.target}", "", f"**{verdict}**", ""]
    if outcome.note:
        lines += [outcome.note, ""]
    if outcome.judgement:
        lines += judge_table(outcome.judgement) + over_time(outcome.judgement)
        lines += ["", "## Snapshots before and after (the seed's rule)", ""]
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
    threshold (:func:`judge_table`), then the target against its controls over time (:func:`over_time`), with who
    the controls were and the snapshot hashes."""
    result = check.result or {}
    judgement = result.get("judgement") or {}
    lines = [f"# Decide: roll back {check.action_type} on {check.target}?", "",
             f"The outcome check of action `{check.action_id}` is **inconclusive**: a large effect the data cannot "
             "separate from ordinary variation. Roll the change back, or keep it.", "",
             f"Method `{judgement.get('method', result.get('judge', '-'))}`; controls: "
             f"{', '.join(judgement.get('controls') or []) or '-'}; snapshots: baseline "
             f"`{str(check.baseline.get('snapshot_hash', '-'))[:12]}`, current `{(check.snapshot_hash or '-')[:12]}`"
             + (f"; decide by {result['decide_by']}" if result.get("decide_by") else ""), ""]
    lines += judge_table(judgement) + over_time(judgement)
    return "\n".join(lines) + "\n"


def judge_table(judgement: Mapping[str, Any]) -> list[str]:
    """Per metric: the judge's effect (relative, net of the controls), its interval, the threshold and verdict."""
    lines = [f"Judge `{judgement.get('method', '-')}` against {len(judgement.get('controls') or [])} matched "
             f"controls{_params(judgement)}", "",
             "| rule | metric | effect | interval | threshold | verdict |", "|---|---|---:|---|---:|---|"]
    for m in judgement.get("metrics") or []:
        effect = "-" if m.get("effect") is None else f"{m['effect']:+.0%}"
        interval = "-" if not m.get("interval") else f"{m['interval'][0]:+.0%} .. {m['interval'][1]:+.0%}"
        lines.append(f"| {m['rule']} | {m['metric']} | {effect} | {interval} | {m['threshold']:.0%} | "
                     f"{m['verdict']}{(' (' + m['note'] + ')') if m.get('note') else ''} |")
    return lines


def _params(judgement: Mapping[str, Any]) -> str:
    params = judgement.get("params") or {}
    if "confidence" not in params:
        return ""
    return f" (interval at {float(params['confidence']):.1%})"


def over_time(judgement: Mapping[str, Any]) -> list[str]:
    """Per metric with weekly series: the target against its controls, week by week around the change (the last
    :data:`SHOWN_BEFORE` usual weeks, then every week after it), each normalised to its own pre-period mean
    (1.00 = usual). A table (target, controls' path, the band the middle half of the controls spans) and a strip
    chart where ``●`` is the target, ``┼`` the controls' path and ``├─┤`` their band; a rule marks the change."""
    lines: list[str] = []
    change_day = str(judgement.get("change_day") or "")[:10]
    for m in judgement.get("metrics") or []:
        details = m.get("details") or {}
        target, control = details.get("target_series"), details.get("control_series")
        if not target or not control:
            continue
        low = details.get("control_low") or control
        high = details.get("control_high") or control
        post = int(details.get("post_weeks", 1))
        shown = min(len(target), post + SHOWN_BEFORE)
        weeks = range(len(target) - shown, len(target))
        labels = {w: (f"+{w - (len(target) - post) + 1}" if w >= len(target) - post
                      else f"w-{len(target) - post - w}") for w in weeks}
        marker = f"change{' ' + change_day if change_day else ''}"
        lines += ["", f"**{m['metric']}**: target against its controls over time (1.00 = the person's usual level; "
                  "w-N: N weeks before the change, +N: the Nth week after it)",
                  "", "| week | target | controls | controls' middle half |", "|---|---:|---:|---|"]
        for w in weeks:
            if w == len(target) - post:
                lines.append(f"| **{marker}** | | | |")
            lines.append(f"| {labels[w]} | {target[w]:.2f} | {control[w]:.2f} | {low[w]:.2f} .. {high[w]:.2f} |")
        top = max(max(target[w], high[w]) for w in weeks) * 1.05 or 1.0
        lines += ["", "```text"]
        for w in weeks:
            if w == len(target) - post:
                lines.append(f"{'':>5} {('── ' + marker + ' ').ljust(STRIP + 2, '─')}")
            lines.append(f"{labels[w]:>5} |{_strip(target[w], control[w], low[w], high[w], top)}| "
                         f"{target[w]:.2f} vs {control[w]:.2f}")
        lines.append("```")
    return lines


def _strip(target: float, path: float, low: float, high: float, top: float) -> str:
    cells = [" "] * STRIP

    def at(value: float) -> int:
        return min(STRIP - 1, max(0, round(value / top * (STRIP - 1))))

    for i in range(at(low), at(high) + 1):
        cells[i] = "─"
    cells[at(low)], cells[at(high)] = "├", "┤"
    cells[at(path)] = "┼"
    cells[at(target)] = "●"
    return "".join(cells)
