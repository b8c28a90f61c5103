"""Rendering for the CLI and the demo: Rich tables, key/value blocks, progress bars and JSON. No I/O beyond the
stream passed in.

Tables are meant for people (columns may be shortened); JSON is meant for scripts and carries every field. On a
terminal a table gets a header rule and a bold header; anywhere else (a pipe, a file, a test's capture) it is plain
text: no colour, no box art, columns left-aligned to their widest cell two spaces apart, no trailing blanks, so
text assertions and ``grep``/``awk`` keep working. Progress bars appear only on a terminal and never with
``--json``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from saferails.actions.models import ActionView
from saferails.audit.chain import canonical_json
from saferails.audit.query import AuditRecordView
from saferails.audit.verify import VerifyReport
from saferails.clock import as_utc
from saferails.errors import AuditChainBroken
from saferails.policy import Decision

__all__ = [
    "action_rows",
    "audit_rows",
    "chain_broken",
    "explanation",
    "format_time",
    "is_terminal",
    "print_json",
    "progress",
    "render_action",
    "render_fields",
    "render_table",
    "render_verify_report",
    "short_id",
    "to_jsonable",
]

ACTION_COLUMNS = ("id", "type", "target", "impact", "state", "proposer", "approvals", "created")
AUDIT_COLUMNS = ("seq", "time", "actor", "event", "subject", "type", "target", "hash")


def to_jsonable(value: Any) -> Any:
    """Plain JSON data from views, dataclasses and datetimes (same encoding as the audit chain)."""
    return json.loads(canonical_json(value))


def print_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(to_jsonable(value), indent=2, sort_keys=True) + "\n")


def format_time(value: datetime | str | None) -> str:
    """``2026-11-22 09:00:00Z`` (UTC, to the second) or ``-``."""
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%SZ")


def short_id(value: str | None, width: int = 8) -> str:
    return "-" if not value else value[:width]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return format_time(value)
    return str(value)


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is an interactive terminal (colour, box art and progress bars are for those only)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def _plain_console(file: TextIO) -> Console:
    # Wide enough that no table is ever wrapped or cut: a pipe has no width, and scripts read whole lines.
    return Console(file=file, width=1_000_000, color_system=None, force_terminal=False, highlight=False,
                   markup=False, emoji=False, soft_wrap=True)


def render_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO, *, empty: str = "(none)") -> None:
    """Columns left-aligned to their widest cell, two spaces apart; ``empty`` when there are no rows."""
    if not rows:
        out.write(empty + "\n")
        return
    terminal = is_terminal(out)
    table = Table(box=box.SIMPLE_HEAD if terminal else None, show_edge=False, pad_edge=False, padding=(0, 1),
                  header_style="bold" if terminal else "", show_header=True)
    for column in columns:
        table.add_column(Text(column), no_wrap=not terminal, overflow="fold" if terminal else "ignore")
    for row in rows:
        table.add_row(*(Text(_cell(v)) for v in row))
    if terminal:
        Console(file=out, highlight=False, markup=False, emoji=False).print(table)
        return
    buffer = io.StringIO()
    _plain_console(buffer).print(table)
    out.write("".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines()))


def render_fields(fields: Sequence[tuple[str, Any]], out: TextIO) -> None:
    """A key/value block: keys padded to the longest, then the value (times as ``format_time``, empty as ``-``)."""
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        out.write(f"{key.ljust(width)}  {'-' if value == '' else _cell(value)}\n")


@contextmanager
def progress(description: str, stdout: TextIO, *, quiet: bool = False) -> Iterator[Callable[[int, int | None], None]]:
    """A transient Rich progress bar on ``stdout`` while the block runs, if ``stdout`` is a terminal and not
    ``quiet`` (``--json``); yields ``update(done, total)`` (``total`` None: a spinner). Elsewhere it draws nothing
    and ``update`` does nothing, so pipes and JSON stay clean."""
    if quiet or not is_terminal(stdout):
        yield lambda done, total: None
        return
    console = Console(file=stdout)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _approvals_cell(action: ActionView) -> str:
    if action.min_approvals == 0:
        return "-"
    return f"{len(action.valid_approvers)}/{action.min_approvals}"


def action_rows(actions: Sequence[ActionView]) -> list[list[Any]]:
    return [
        [short_id(a.id), a.action_type, a.target, a.impact, a.state, a.proposer, _approvals_cell(a), a.created_at]
        for a in actions
    ]


def explanation(action: ActionView) -> str:
    """The policy's explanation of the decision recorded with ``action``."""
    return Decision.from_dict(action.decision).explanation


def render_action(action: ActionView, out: TextIO) -> None:
    """The action as a key/value block, its approvals and the decision explanation."""
    fields: list[tuple[str, Any]] = [
        ("id", action.id),
        ("type", action.action_type),
        ("target", action.target),
        ("params", canonical_json(action.params)),
        ("proposer", action.proposer),
        ("reason", action.reason or "-"),
        ("tenant", action.tenant),
        ("priority", action.priority),
        ("impact", action.impact),
        ("state", action.state),
        ("approvals", _approvals_cell(action)),
        ("deadline", action.approval_deadline),
        ("scheduled", action.scheduled_for),
        ("created", action.created_at),
        ("hash", action.action_hash[:16]),
    ]
    render_fields(fields, out)
    if action.approvals:
        out.write("\napprovals:\n")
        rows = [
            [a.approver, a.decision, "yes" if a.action_hash == action.action_hash else "no (stale)", a.channel,
             a.created_at, a.reason or "-"]
            for a in action.approvals
        ]
        render_table(("approver", "decision", "counts", "channel", "at", "reason"), rows, out)
    out.write("\ndecision:\n")
    for line in explanation(action).splitlines():
        out.write(f"  {line}\n")


def audit_rows(records: Sequence[AuditRecordView]) -> list[list[Any]]:
    """Table rows for audit records; action records name the action by its short id."""
    rows = []
    for r in records:
        if r.entity_type == "action":
            subject = short_id(r.entity_id)
        else:
            subject = f"{r.entity_type}:{r.entity_id}" if r.entity_id else r.entity_type
        rows.append([r.sequence, r.occurred_at, r.actor, r.event, subject, r.action_type, r.target,
                     short_id(r.hash, 12)])
    return rows


def render_verify_report(report: VerifyReport, out: TextIO) -> None:
    """``audit chain OK: 42 records checked, head #42 3f2a...`` or the first broken record and the problem."""
    if report.ok:
        anchored = " (matches the exported anchor)" if report.anchor_checked else ""
        out.write(f"audit chain OK: {report.records_checked} records checked, head #{report.head_sequence} "
                  f"{report.head_hash}{anchored}\n")
        if report.signatures_checked:
            out.write(f"signed checkpoints: {report.checkpoints_checked} checked, records signed through "
                      f"#{report.signed_through}\n")
        return
    out.write(f"audit chain BROKEN at record #{report.first_broken_sequence}: {report.problem}\n")
    out.write(f"records checked: {report.records_checked}\n")


def chain_broken(report: VerifyReport) -> AuditChainBroken:
    """The typed error for a failed verification; it names the first broken record."""
    return AuditChainBroken(
        f"audit record #{report.first_broken_sequence} is broken: {report.problem}",
        first_broken_sequence=report.first_broken_sequence,
        problem=report.problem,
        records_checked=report.records_checked,
    )
