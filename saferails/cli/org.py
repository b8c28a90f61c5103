"""``saferails org|outcomes|sweep ...``: org data, a person's metrics over time, due checks and sweeps run now.

The application functions live in the library (``saferails.orggraph.service``, ``saferails.sweeps.now``); these
commands only call them and render the result. ``org generate``, ``org metrics`` and ``sweep run`` show a progress
bar on a terminal (never with ``--json`` or in a pipe).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated, Literal, TextIO

import typer

from saferails.api import Store
from saferails.cli import output as out
from saferails.cli.common import Io, JsonFlag, duration, iso_time, principal_of, resolve, run
from saferails.errors import InvalidInput
from saferails.identity import Permission
from saferails.orggraph.service import generate_sample_org, load_org_data, person_metrics
from saferails.sweeps.now import due_checks, resolve_outcome, run_sweep

__all__ = ["register"]

POINT_COLUMNS = ("window end", "degree_centrality", "degree", "betweenness", "clustering", "burnout")
CHECK_COLUMNS = ("check", "action", "type", "target", "state", "due")
ITEM_COLUMNS = ("action", "outcome", "state", "detail")

# The same names as saferails.sweeps.now.SWEEPS, spelled as a type so the argument offers them.
Sweep = Literal["expire", "recover", "outcomes", "agents"]

org_app = typer.Typer(help="org data and a person's graph metrics", no_args_is_help=False)
outcomes_app = typer.Typer(help="outcome checks of executed interventions", no_args_is_help=False)
sweep_app = typer.Typer(help="run a scheduled sweep now", no_args_is_help=False)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _window_text(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@org_app.command("load")
def load(
    ctx: typer.Context,
    employees: Annotated[str | None, typer.Option("--employees", metavar="CSV",
                                                  help="id,name,email[,manager_id,team_id,role]")] = None,
    interactions: Annotated[str | None, typer.Option("--interactions", metavar="CSV",
                                                     help="kind,person_a,person_b,occurred_at[,weight]")] = None,
    wellbeing: Annotated[str | None, typer.Option("--wellbeing", metavar="CSV",
                                                  help="person,observed_at,burnout_score")] = None,
    as_json: JsonFlag = False,
) -> None:
    """load CSV files in one transaction (a bad row refuses all)"""

    def command(store: Store, io: Io) -> int:
        counts = load_org_data(store, employees=employees, interactions=interactions, wellbeing=wellbeing)
        io.result(counts, lambda s: s.write("loaded " + ", ".join(f"{n} {kind}" for kind, n in counts.items()) + "\n"))
        return 0

    run(ctx, as_json, command, permission=Permission.OPERATE)


@org_app.command("generate")
def generate(
    ctx: typer.Context,
    size: Annotated[int, typer.Option("--size", help="50..20000 people")],
    seed: Annotated[int, typer.Option("--seed")] = 0,
    days: Annotated[int, typer.Option("--days", help="days of interactions")] = 14,
    as_json: JsonFlag = False,
) -> None:
    """insert a sample org ending at the last midnight (UTC)"""

    def command(store: Store, io: Io) -> int:
        with io.progress(f"generating a {size}-person org"):
            counts = generate_sample_org(store, size, seed=seed, days=days)
        io.result(counts | {"seed": seed, "days": days},
                  lambda s: s.write(f"sample org (seed {seed}): {counts['employees']} people in {counts['teams']} "
                                    f"teams, {counts['interactions']} interactions and {counts['wellbeing']} burnout "
                                    f"readings over {days} days\n"))
        return 0

    run(ctx, as_json, command, permission=Permission.OPERATE)


@org_app.command("metrics")
def metrics(
    ctx: typer.Context,
    person: Annotated[str, typer.Argument()],
    start: Annotated[datetime | None, typer.Option("--from", parser=iso_time, metavar="ISO",
                                                   help="first window end (default: --to - 14d)")] = None,
    end: Annotated[datetime | None, typer.Option("--to", parser=iso_time, metavar="ISO",
                                                 help="last window end (default: now, down to a whole --step)")] = None,
    window: Annotated[timedelta | None, typer.Option("--window", parser=duration, metavar="DURATION",
                                                     help="window length (default 7d)")] = None,
    step: Annotated[timedelta | None, typer.Option("--step", parser=duration, metavar="DURATION",
                                                   help="between window ends (default 1d)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """a person's degree, betweenness, clustering and burnout over time"""

    length = window or timedelta(days=7)

    def command(store: Store, io: Io) -> int:
        with io.progress(f"metrics of {person}") as update:
            points = person_metrics(store, person, start=start, end=end, window=length,
                                    step=step or timedelta(days=1), on_progress=update)
        rows = [[p.window_end, _number(p.degree_centrality), p.degree, _number(p.betweenness),
                 _number(p.clustering), _number(p.burnout)] for p in points]
        window_text = _window_text(length)

        def text(stream: TextIO) -> None:
            stream.write(f"{person}: metrics over the {window_text} before each time\n")
            out.render_table(POINT_COLUMNS, rows, stream)

        io.result({"person": person, "window": window_text, "points": [asdict(p) for p in points]}, text)
        return 0

    run(ctx, as_json, command)


@outcomes_app.command("due")
def due(ctx: typer.Context, limit: Annotated[int, typer.Option("--limit")] = 100, as_json: JsonFlag = False) -> None:
    """outcome checks a monitor run now would decide"""

    def command(store: Store, io: Io) -> int:
        checks = due_checks(store, limit=limit)
        rows = [[out.short_id(c.id), out.short_id(c.action_id), c.action_type, c.target, c.state, c.due_at]
                for c in checks]
        return io.table([asdict(c) for c in checks], CHECK_COLUMNS, rows, empty="(no outcome checks due)")

    run(ctx, as_json, command)


@outcomes_app.command("resolve")
def resolve_check(
    ctx: typer.Context,
    action_id: Annotated[str, typer.Argument(metavar="ACTION", help="the action whose check is inconclusive")],
    rollback: Annotated[bool | None, typer.Option("--rollback/--keep",
                                                  help="roll the change back, or keep it")] = None,
    code: Annotated[str | None, typer.Option("--code", help="your one-time code for this decision")] = None,
    reason: Annotated[str, typer.Option("--reason", help="why (recorded in the audit trail)")] = "",
    as_json: JsonFlag = False,
) -> None:
    """decide an inconclusive outcome check: roll the change back or keep it (as the authenticated principal)"""

    def command(store: Store, io: Io) -> int:
        if rollback is None:
            raise InvalidInput("say --rollback or --keep")
        outcome = resolve_outcome(store, resolve(store.sessions, "action", action_id), principal_of(ctx).id,
                                  roll_back=rollback, reason=reason, code=code, channel="cli")
        return io.table(asdict(outcome), ("action", "outcome", "state", "detail"),
                        [[out.short_id(outcome.action_id), outcome.state, outcome.rollback_state or "-",
                          outcome.note]])

    run(ctx, as_json, command, permission=Permission.DECIDE_ACTION)


@sweep_app.command("run")
def sweep(
    ctx: typer.Context,
    name: Annotated[Sweep, typer.Argument(metavar="SWEEP", help="expire, recover or outcomes")],
    limit: Annotated[int | None, typer.Option(
        "--limit", help="expire: items; outcomes: checks scheduled and decided")] = None,
    as_json: JsonFlag = False,
) -> None:
    """run a sweep now: expire approvals, recover actions, or check outcomes"""

    def command(store: Store, io: Io) -> int:
        with io.progress(f"{name} sweep") as update:
            report = run_sweep(store, name, limit=limit, on_progress=lambda _sweep, done, total: update(done, total))
        store.publish_audit_checkpoint()  # like the scheduled sweeps: the checkpoint file follows the chain
        rows = [[out.short_id(i["action_id"]), i["outcome"], i["state"] or "-", i["detail"] or "-"]
                for i in report["items"]]

        def text(stream: TextIO) -> None:
            counts = {k: v for k, v in report.items() if isinstance(v, int) and not isinstance(v, bool)}
            stream.write(f"{name} sweep: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + "\n")
            out.render_table(ITEM_COLUMNS, rows, stream, empty="(nothing to do)")

        io.result(report, text)
        return 0

    run(ctx, as_json, command, permission=Permission.OPERATE)


def register(root: typer.Typer) -> None:
    root.add_typer(org_app, name="org")
    root.add_typer(outcomes_app, name="outcomes")
    root.add_typer(sweep_app, name="sweep")
