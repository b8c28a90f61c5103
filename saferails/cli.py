"""The ``saferails`` command line: an edge over the core (``saferails.api``), argparse only.

Contract: every command accepts ``--json``. Results go to stdout (aligned tables, or one JSON document with
``--json``); errors go to stderr as ``error[CODE]: message`` (or the error's JSON with ``--json``) and the exit
code comes from the error class (``SaferailsError.exit_code``: 2 bad input, 3 audit chain broken, 4 not found,
5 invalid transition, 6 refused by policy, 7 approval refused, 9 store unavailable). ``propose`` of an action the
policy refuses prints the recorded (blocked) action and then fails with the refusal's code and exit code 6.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from saferails import cli_output as out
from saferails.actions import lifecycle as lc
from saferails.actions.models import ActionView, Proposal
from saferails.actions.repository import ActionFilter
from saferails.api import Store, open_store, refusal_for
from saferails.audit.anchor import export_anchor, load_anchor
from saferails.audit.query import MAX_LIMIT, AuditQuery, AuditRecordView, query_audit
from saferails.audit.verify import verify_chain
from saferails.errors import ExecutionError, InvalidInput, RollbackError, SaferailsError, StoreUnavailable
from saferails.policy import Decision, policy_to_yaml
from saferails.runbooks_cli import add_runbook_commands
from saferails.store.db import read_transaction

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """Usage errors become ``InvalidInput`` (exit 2, ``error[INVALID_INPUT]``) instead of exiting the process."""

    def error(self, message: str) -> NoReturn:
        raise InvalidInput(f"{self.prog}: {message}")


class _Io:
    def __init__(self, stdout: TextIO, stderr: TextIO, as_json: bool) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.json = as_json

    def result(self, data: Any, text: Callable[[TextIO], object]) -> None:
        if self.json:
            out.print_json(data, self.stdout)
        else:
            text(self.stdout)

    def error(self, exc: SaferailsError) -> int:
        if self.json:
            data = exc.to_dict()
            # Why a one-time code failed is for the audit trail, not for whoever typed it (saferails.approvals).
            data["details"] = {k: v for k, v in data["details"].items() if k != "internal_reason"}
            out.print_json(data, self.stderr)
        else:
            self.stderr.write(f"error[{exc.code}]: {exc.message}\n")
        return exc.exit_code


# --- argument helpers -------------------------------------------------------------------------------------------


def _iso(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no timezone (e.g. 2026-11-22T10:00:00Z)")
    return parsed


def _params(pairs: Sequence[str] | None, params_json: str | None) -> dict[str, Any]:
    """``--params-json`` first, then each ``--param k=v`` on top. A value starting with ``[`` or ``{`` is JSON;
    every other value is a string (the action type's model converts numbers, booleans and times)."""
    params: dict[str, Any] = {}
    if params_json is not None:
        try:
            loaded = json.loads(params_json)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"--params-json is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise InvalidInput("--params-json must be a JSON object")
        params.update(loaded)
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--param expects key=value, got {pair!r}")
        if value[:1] in ("[", "{"):
            try:
                params[key] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"--param {key}: value is not valid JSON: {exc}") from None
        else:
            params[key] = value
    return params


def _proposal(args: argparse.Namespace) -> Proposal:
    fields: dict[str, Any] = {
        "action_type": args.type,
        "target": args.target,
        "params": _params(args.param, args.params_json),
        "proposer": args.proposer,
        "reason": args.reason or "",
        "tenant": args.tenant,
        "priority": args.priority,
        "scheduled_for": getattr(args, "scheduled_for", None),
        "idempotency_key": getattr(args, "idempotency_key", None),
    }
    try:
        return Proposal(**fields)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        raise InvalidInput(f"invalid proposal: {exc}") from None


# --- commands ---------------------------------------------------------------------------------------------------


def _print_action(action: ActionView) -> Callable[[TextIO], None]:
    return lambda stream: out.render_action(action, stream)


def cmd_propose(store: Store, args: argparse.Namespace, io: _Io) -> int:
    action = store.actions.propose(_proposal(args))
    io.result(action.to_dict() | {"explanation": out.explanation(action)}, _print_action(action))
    refusal = refusal_for(action)
    return 0 if refusal is None else io.error(refusal)


def cmd_show(store: Store, args: argparse.Namespace, io: _Io) -> int:
    action = store.actions.get(args.id)
    records = _audit_records(store, action.id)

    def text(stream: TextIO) -> None:
        out.render_action(action, stream)
        stream.write("\naudit trail:\n")
        out.render_table(out.AUDIT_COLUMNS, out.audit_rows(records), stream)

    data = action.to_dict() | {
        "explanation": out.explanation(action),
        "audit": [r.to_dict() for r in records],
    }
    io.result(data, text)
    return 0


def cmd_list(store: Store, args: argparse.Namespace, io: _Io) -> int:
    states = tuple(args.state or ()) + ((lc.PENDING_APPROVAL,) if args.pending else ())
    unknown = sorted(set(states) - set(lc.ACTION_MACHINE.states))
    if unknown:
        known = ", ".join(sorted(lc.ACTION_MACHINE.states))
        raise InvalidInput(f"unknown state(s) {', '.join(unknown)}; known: {known}")
    actions = store.actions.list(
        ActionFilter(states=states, action_type=args.type, target=args.target, proposer=args.proposer,
                     tenant=args.tenant, limit=args.limit, offset=args.offset)
    )
    io.result([a.to_dict() for a in actions],
              lambda s: out.render_table(out.ACTION_COLUMNS, out.action_rows(actions), s, empty="(no actions)"))
    return 0


def _decided(action: ActionView, io: _Io) -> int:
    io.result(action.to_dict(), _print_action(action))
    return 0


def cmd_approve(store: Store, args: argparse.Namespace, io: _Io) -> int:
    action = store.actions.approve(args.id, args.approver, reason=args.reason or "", code=args.code, channel="cli")
    _warn_if_codes_unchecked(store, io)
    return _decided(action, io)


def _warn_if_codes_unchecked(store: Store, io: _Io) -> None:
    """Said after an accepted decision, in text mode only (``--json`` keeps stderr for errors)."""
    if not store.codes_enforced and not io.json:
        io.stderr.write("warning: SAFERAILS_APPROVAL_SECRET is not set, so one-time approval codes are not checked "
                        "and nothing proves who approved\n")


def cmd_reject(store: Store, args: argparse.Namespace, io: _Io) -> int:
    action = store.actions.reject(args.id, args.approver, reason=args.reason, code=args.code, channel="cli")
    _warn_if_codes_unchecked(store, io)
    return _decided(action, io)


def cmd_cancel(store: Store, args: argparse.Namespace, io: _Io) -> int:
    return _decided(store.actions.cancel(args.id, args.actor, reason=args.reason), io)


def cmd_execute(store: Store, args: argparse.Namespace, io: _Io) -> int:
    action = store.execution.execute(args.id, args.actor)
    _decided(action, io)
    # A handler failure is recorded (state failed, error kept), not raised: the exit code still says so.
    return ExecutionError.exit_code if action.state == "failed" else 0


def cmd_rollback(store: Store, args: argparse.Namespace, io: _Io) -> int:
    action = store.execution.rollback(args.id, args.actor, reason=args.reason)
    _decided(action, io)
    return RollbackError.exit_code if action.state == "rollback_failed" else 0


def cmd_principal_add(store: Store, args: argparse.Namespace, io: _Io) -> int:
    groups = sorted(set(args.group or ()))
    store.actions.upsert_principal(args.id, email=args.email, groups=groups, kyc_verified=args.kyc,
                                   actor=args.actor)
    data = {"id": args.id, "groups": groups, "email": args.email, "kyc_verified": args.kyc}
    io.result(data, lambda s: s.write(f"principal {args.id}: groups {', '.join(groups) or '-'}, "
                                      f"kyc {'verified' if args.kyc else 'not verified'}\n"))
    return 0


def _audit_records(store: Store, action_id: str) -> list[AuditRecordView]:
    """Every audit record of one action, oldest first."""
    records: list[AuditRecordView] = []
    cursor: int | None = None
    with read_transaction(store.sessions) as session:
        while True:
            page = query_audit(session, AuditQuery(entity_type="action", entity_id=action_id, limit=MAX_LIMIT,
                                                   after_sequence=cursor))
            records.extend(page.records)
            cursor = page.next_cursor
            if cursor is None:
                return records


def cmd_audit_query(store: Store, args: argparse.Namespace, io: _Io) -> int:
    cursor = args.cursor
    query = AuditQuery(
        start=args.since, end=args.until, entity_id=args.action, entity_type="action" if args.action else None,
        action_type=args.type, target=args.target, actor=args.actor, tenant=args.tenant, event=args.event,
        limit=args.limit, descending=args.newest_first,
        after_sequence=None if args.newest_first else cursor, before_sequence=cursor if args.newest_first else None,
    )
    with read_transaction(store.sessions) as session:
        page = query_audit(session, query)
    records = page.records

    def text(stream: TextIO) -> None:
        out.render_table(out.AUDIT_COLUMNS, out.audit_rows(records), stream, empty="(no audit records)")
        if page.next_cursor is not None:
            stream.write(f"more: --cursor {page.next_cursor}\n")

    io.result(page.to_dict(), text)
    return 0


def cmd_audit_verify(store: Store, args: argparse.Namespace, io: _Io) -> int:
    anchor = load_anchor(Path(args.anchor)) if args.anchor else None
    with read_transaction(store.sessions) as session:
        report = verify_chain(session, anchor=anchor)
    data = report.to_dict()

    if report.ok:
        io.result(data, lambda s: out.render_verify_report(report, s))
        return 0
    if not io.json:
        out.render_verify_report(report, io.stdout)
    return io.error(out.chain_broken(report))


def cmd_audit_export_head(store: Store, args: argparse.Namespace, io: _Io) -> int:
    path = Path(args.file)
    with read_transaction(store.sessions) as session:
        anchor = export_anchor(session, path, store.clock.now())
    io.result({"file": str(path), "anchor": anchor.to_dict()},
              lambda s: s.write(f"chain head #{anchor.sequence} {anchor.hash} written to {path}\n"))
    return 0


def cmd_policy_show(store: Store, args: argparse.Namespace, io: _Io) -> int:
    policy = store.policy
    text = policy_to_yaml(policy)
    data = {"version": policy.version, "fingerprint": policy.fingerprint,
            "source": str(store.settings.policy_path or "bundled default"), "policy": policy.model_dump(mode="json")}

    def render(stream: TextIO) -> None:
        stream.write(f"# version: {policy.version}\n# fingerprint: {policy.fingerprint}\n# source: {data['source']}\n")
        stream.write(text)

    io.result(data, render)
    return 0


def cmd_policy_check(store: Store, args: argparse.Namespace, io: _Io) -> int:
    decision: Decision = store.actions.check(_proposal(args))
    io.result(decision.to_dict() | {"explanation": decision.explanation},
              lambda s: s.write(decision.explanation + "\n"))
    return 0


def cmd_db_upgrade(store: Store, args: argparse.Namespace, io: _Io) -> int:
    # open_store already migrated to every head; report where the schema is now.
    with store.engine.connect() as conn:
        heads = sorted(str(r[0]) for r in conn.execute(sa.text("SELECT version_num FROM alembic_version")))
    url = store.engine.url.render_as_string(hide_password=True)
    io.result({"database": url, "revisions": heads},
              lambda s: s.write(f"{url}: schema at revision(s) {', '.join(heads)}\n"))
    return 0


# --- parser -----------------------------------------------------------------------------------------------------

Handler = Callable[[Store, argparse.Namespace, _Io], int]


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _proposal_args(p: argparse.ArgumentParser, *, full: bool) -> None:
    p.add_argument("type", help="action type, e.g. send_email")
    p.add_argument("--target", required=True)
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="one parameter; repeat (JSON if [..] {..})")
    p.add_argument("--params-json", metavar="JSON", help="all parameters as one JSON object")
    p.add_argument("--proposer", required=True)
    p.add_argument("--reason", default="")
    p.add_argument("--tenant", default="default")
    p.add_argument("--priority", type=int, default=5, help="1 (most urgent) .. 10")
    if full:
        p.add_argument("--scheduled-for", type=_iso, metavar="ISO", help="not before this time (with timezone)")
        p.add_argument("--idempotency-key")
    _json_flag(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="saferails", description="Safety rails for AI agents and automations.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, handler: Handler, help_text: str, into: Any = sub) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = into.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    _proposal_args(command("propose", cmd_propose, "propose an action; prints the policy's decision"), full=True)

    p = command("show", cmd_show, "an action, its approvals, the decision and its audit trail")
    p.add_argument("id")
    _json_flag(p)

    p = command("list", cmd_list, "list actions (most urgent first)")
    p.add_argument("--state", action="append", help="repeatable")
    p.add_argument("--pending", action="store_true", help="only actions waiting for approval")
    for flag in ("--type", "--target", "--proposer", "--tenant"):
        p.add_argument(flag)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    _json_flag(p)

    p = command("approve", cmd_approve, "approve a pending action")
    p.add_argument("id")
    p.add_argument("--approver", required=True)
    p.add_argument("--code", help="one-time approval code")
    p.add_argument("--reason", default="")
    _json_flag(p)

    p = command("reject", cmd_reject, "reject a pending action")
    p.add_argument("id")
    p.add_argument("--approver", required=True)
    p.add_argument("--reason", required=True)
    p.add_argument("--code", help="one-time approval code")
    _json_flag(p)

    p = command("cancel", cmd_cancel, "withdraw an action that has not started executing")
    p.add_argument("id")
    p.add_argument("--actor", required=True)
    p.add_argument("--reason", required=True)
    _json_flag(p)

    p = command("execute", cmd_execute, "execute an approved action now (in this process, through its handler)")
    p.add_argument("id")
    p.add_argument("--actor", default="cli:executor")
    _json_flag(p)

    p = command("rollback", cmd_rollback, "restore an action's captured pre-state through its handler")
    p.add_argument("id")
    p.add_argument("--actor", required=True)
    p.add_argument("--reason", required=True)
    _json_flag(p)

    principal = command("principal", _no_handler, "manage principals").add_subparsers(
        dest="principal_command", required=True, parser_class=_Parser)
    p = command("add", cmd_principal_add, "create or update a principal", principal)
    p.add_argument("id")
    p.add_argument("--group", action="append", help="repeatable")
    p.add_argument("--email")
    p.add_argument("--kyc", action="store_true", help="the principal's identity is verified (KYC)")
    p.add_argument("--actor", default="cli:admin")
    _json_flag(p)

    audit = command("audit", _no_handler, "query and verify the audit trail").add_subparsers(
        dest="audit_command", required=True, parser_class=_Parser)
    p = command("query", cmd_audit_query, "audit records, oldest first, paginated", audit)
    p.add_argument("--since", type=_iso, metavar="ISO")
    p.add_argument("--until", type=_iso, metavar="ISO")
    p.add_argument("--action", metavar="ID", help="records of this action")
    p.add_argument("--type", help="action type")
    for flag in ("--target", "--actor", "--tenant", "--event"):
        p.add_argument(flag)
    p.add_argument("--limit", type=int, default=50, help="1..1000")
    p.add_argument("--cursor", type=int, help="the 'more: --cursor N' of the previous page")
    p.add_argument("--newest-first", action="store_true")
    _json_flag(p)
    p = command("verify", cmd_audit_verify, "verify the hash chain (exit 3 naming the first broken record)", audit)
    p.add_argument("--anchor", metavar="FILE", help="a chain head exported earlier with export-head")
    _json_flag(p)
    p = command("export-head", cmd_audit_export_head, "write the chain head to FILE (keep it outside the db)", audit)
    p.add_argument("file")
    _json_flag(p)

    policy = command("policy", _no_handler, "show and try the policy").add_subparsers(
        dest="policy_command", required=True, parser_class=_Parser)
    p = command("show", cmd_policy_show, "the policy in force: YAML, version, fingerprint", policy)
    _json_flag(p)
    _proposal_args(command("check", cmd_policy_check, "what would this action get, and why (writes nothing)",
                           policy), full=False)

    db = command("db", _no_handler, "database maintenance").add_subparsers(
        dest="db_command", required=True, parser_class=_Parser)
    p = command("upgrade", cmd_db_upgrade, "migrate the schema to the latest revision", db)
    _json_flag(p)

    add_runbook_commands(sub)
    from saferails.workflow_cli import add_workflow_commands  # here, so hooking in stayed a one-line change

    add_workflow_commands(sub)
    from saferails.orggraph_cli import add_org_commands

    add_org_commands(sub)
    return parser


def _no_handler(store: Store, args: argparse.Namespace, io: _Io) -> int:
    raise InvalidInput("missing subcommand")  # unreachable: subparsers are required


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    io = _Io(sys.stdout, sys.stderr, as_json="--json" in argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except SaferailsError as exc:
        return io.error(exc)
    io.json = bool(getattr(args, "json", False))
    try:
        with open_store() as store:
            handler: Handler = args.handler
            return handler(store, args, io)
    except SaferailsError as exc:
        return io.error(exc)
    except OperationalError as exc:
        # A database that cannot be reached (or a locked/corrupt SQLite file) is an operational state, not a bug.
        return io.error(StoreUnavailable(f"database unavailable: {exc.orig or exc}"))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
