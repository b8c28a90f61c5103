"""``saferails audit query|verify|export-head``: read and verify the hash-chained audit trail."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, TextIO

import typer

from saferails.api import Store
from saferails.audit.anchor import export_anchor, load_anchor
from saferails.audit.query import AuditQuery, query_audit
from saferails.audit.signing import AuditVerifierKey, public_key_path_for
from saferails.cli import output as out
from saferails.cli.common import Io, JsonFlag, iso_time, run
from saferails.identity import Permission
from saferails.store.db import read_transaction

__all__ = ["register"]

app = typer.Typer(help="query and verify the audit trail", no_args_is_help=False)


@app.command("query")
def query(
    ctx: typer.Context,
    since: Annotated[datetime | None, typer.Option("--since", parser=iso_time, metavar="ISO")] = None,
    until: Annotated[datetime | None, typer.Option("--until", parser=iso_time, metavar="ISO")] = None,
    action: Annotated[str | None, typer.Option("--action", metavar="ID", help="records of this action")] = None,
    action_type: Annotated[str | None, typer.Option("--type", help="action type")] = None,
    target: Annotated[str | None, typer.Option("--target")] = None,
    actor: Annotated[str | None, typer.Option("--actor")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
    event: Annotated[str | None, typer.Option("--event")] = None,
    limit: Annotated[int, typer.Option("--limit", help="1..1000")] = 50,
    cursor: Annotated[int | None, typer.Option("--cursor", help="the 'more: --cursor N' of the previous page")] = None,
    newest_first: Annotated[bool, typer.Option("--newest-first")] = False,
    as_json: JsonFlag = False,
) -> None:
    """audit records, oldest first, paginated"""
    spec = AuditQuery(
        start=since, end=until, entity_id=action, entity_type="action" if action else None, action_type=action_type,
        target=target, actor=actor, tenant=tenant, event=event, limit=limit, descending=newest_first,
        after_sequence=None if newest_first else cursor, before_sequence=cursor if newest_first else None,
    )

    def command(store: Store, io: Io) -> int:
        with read_transaction(store.sessions) as session:
            page = query_audit(session, spec)

        def text(stream: TextIO) -> None:
            out.render_table(out.AUDIT_COLUMNS, out.audit_rows(page.records), stream, empty="(no audit records)")
            if page.next_cursor is not None:
                stream.write(f"more: --cursor {page.next_cursor}\n")

        io.result(page.to_dict(), text)
        return 0

    run(ctx, as_json, command, permission=Permission.READ_AUDIT)


@app.command("verify")
def verify(
    ctx: typer.Context,
    anchor: Annotated[str | None, typer.Option("--anchor", metavar="FILE",
                                               help="a chain head exported earlier with export-head")] = None,
    public_key: Annotated[str | None, typer.Option(
        "--public-key", metavar="FILE",
        help="the checkpoint signing key's public half (default: the store's, when it exists)")] = None,
    published: Annotated[str | None, typer.Option(
        "--published", metavar="FILE",
        help="checkpoints published outside the database (default: the store's file, when it exists)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """verify the hash chain and its signed checkpoints (exit 3 naming the first broken record)"""

    def command(store: Store, io: Io) -> int:
        head = load_anchor(Path(anchor)) if anchor else None
        key_file = Path(public_key) if public_key else public_key_path_for(store.settings.audit_key_path)
        key = AuditVerifierKey.from_file(key_file) if public_key or key_file.exists() else None
        published_file = Path(published) if published else store.settings.audit_published_path
        report = store.verify_audit(anchor=head, key=key,
                                    published=published_file if published or published_file.exists() else None)
        if report.ok:
            io.result(report.to_dict(), lambda s: out.render_verify_report(report, s))
            return 0
        if not io.json:
            out.render_verify_report(report, io.stdout)
        return io.error(out.chain_broken(report))

    run(ctx, as_json, command, permission=Permission.VERIFY_AUDIT)


@app.command("publish")
def publish(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """append the newest signed checkpoint to the published checkpoint file (the sweeps do this too)"""

    def command(store: Store, io: Io) -> int:
        checkpoint = store.publish_audit_checkpoint()
        path = store.settings.audit_published_path
        data = {"file": str(path), "published": checkpoint.to_dict() if checkpoint is not None else None}
        io.result(data, lambda s: s.write(
            f"checkpoint #{checkpoint.sequence} published to {path}\n" if checkpoint is not None
            else f"{path} already holds the newest checkpoint\n"))
        return 0

    run(ctx, as_json, command, permission=Permission.READ_AUDIT)


@app.command("export-head")
def export_head(ctx: typer.Context, file: Annotated[str, typer.Argument(metavar="FILE")],
                as_json: JsonFlag = False) -> None:
    """write the chain head to FILE (keep it outside the db)"""
    path = Path(file)

    def command(store: Store, io: Io) -> int:
        with read_transaction(store.sessions) as session:
            head = export_anchor(session, path, store.clock.now())
        io.result({"file": str(path), "anchor": head.to_dict()},
                  lambda s: s.write(f"chain head #{head.sequence} {head.hash} written to {path}\n"))
        return 0

    run(ctx, as_json, command, permission=Permission.READ_AUDIT)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="audit")
