"""``saferails init``, ``saferails principal add|set-roles|set-groups|list``, ``saferails credential
issue|revoke|list`` and ``saferails inbox``: who may call, with which roles, their credentials, and their own
notifications.

``init`` is the first run: it creates the first admin (``--admin``, default ``admin``) and its credential, saves
the credential to the 0600 file ``<data_dir>/credentials.json`` (profile ``SAFERAILS_PROFILE``, default
``default``) and prints the token once; it is refused (``PERMISSION_DENIED``, exit 7) once an admin exists.
Every other command here runs as the authenticated principal and, except the lists, needs the admin role;
each change is one audited transaction (``saferails.identity.IdentityService``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, TextIO

import sqlalchemy as sa
import typer

from saferails.api import Store
from saferails.cli.common import Io, JsonFlag, acting_as, duration, principal_of, run, run_unauthenticated
from saferails.errors import NotFound
from saferails.identity import (
    DEFAULT_CREDENTIAL_LIFETIME,
    Credential,
    IssuedCredential,
    Permission,
    Principal,
    credentials_path,
    save_credential,
)
from saferails.notify.outbox_log import InboxNotifier
from saferails.store.db import read_transaction

__all__ = ["register"]

app = typer.Typer(help="manage principals (admin)", no_args_is_help=False)
credential_app = typer.Typer(help="issue, revoke and list credentials (admin)", no_args_is_help=False)

Roles = Annotated[list[str] | None, typer.Option(
    "--role", metavar="ROLE", help="repeatable: agent (proposer), approver, operator, admin, auditor")]
Groups = Annotated[list[str] | None, typer.Option("--group", help="repeatable (policy approver groups)")]
ExpiresIn = Annotated[timedelta, typer.Option("--expires-in", parser=duration, metavar="DURATION",
                                              help="lifetime, e.g. 90d (at most 366d)")]
_DEFAULT_LIFETIME = f"{DEFAULT_CREDENTIAL_LIFETIME.days}d"


def _principal_dict(p: Principal) -> dict[str, Any]:
    return {"id": p.id, "roles": sorted(r.value for r in p.roles), "tenant": p.tenant, "groups": sorted(p.groups)}


def _issued(issued: IssuedCredential, io: Io, saved: str | None) -> int:
    data = {"credential_id": issued.credential_id, "principal_id": issued.principal_id,
            "expires_at": issued.expires_at.isoformat(), "token": issued.token, "saved_to": saved}

    def text(stream: TextIO) -> None:
        stream.write(f"credential {issued.credential_id} for {issued.principal_id}, expires "
                     f"{issued.expires_at.isoformat()}\n")
        if saved is not None:
            stream.write(f"saved to {saved}\n")
        stream.write(f"token (shown once): {issued.token}\n")

    io.result(data, text)
    return 0


def init(
    ctx: typer.Context,
    admin: Annotated[str, typer.Option("--admin", metavar="NAME", help="the first admin's principal id")] = "admin",
    as_json: JsonFlag = False,
) -> None:
    """first run: create the first admin and save its credential (0600)"""

    def command(store: Store, io: Io) -> int:
        issued = store.identity.bootstrap_admin(admin)
        path = credentials_path(store.settings.data_dir)
        save_credential(path, issued, profile=store.settings.profile)
        return _issued(issued, io, f"{path} (profile {store.settings.profile})")

    run_unauthenticated(ctx, as_json, command)


@app.command("add")
def add(
    ctx: typer.Context,
    principal_id: Annotated[str, typer.Argument(metavar="ID")],
    group: Groups = None,
    role: Roles = None,
    email: Annotated[str | None, typer.Option("--email")] = None,
    kyc: Annotated[bool, typer.Option("--kyc", help="the principal's identity is verified (KYC)")] = False,
    tenant: Annotated[str, typer.Option("--tenant")] = "default",
    as_json: JsonFlag = False,
) -> None:
    """create a principal (roles default: agent), or update an existing one's groups, email, KYC and roles"""
    groups = sorted(set(group or ()))

    def command(store: Store, io: Io) -> int:
        admin = principal_of(ctx)
        try:
            store.identity.get(principal_id)
        except NotFound:
            store.identity.add_principal(admin, principal_id, roles=role or ["agent"], tenant=tenant, email=email,
                                         groups=groups, kyc_verified=kyc)
        else:
            # An update: the caller holds manage_principals (checked by run); recorded with the admin as actor.
            store.actions.upsert_principal(principal_id, email=email, groups=groups, kyc_verified=kyc, actor=admin.id)
            if role:
                store.identity.set_roles(admin, principal_id, role)
        data = {"id": principal_id, "groups": groups, "email": email, "kyc_verified": kyc}
        io.result(data, lambda s: s.write(f"principal {principal_id}: groups {', '.join(groups) or '-'}, "
                                          f"kyc {'verified' if kyc else 'not verified'}\n"))
        return 0

    run(ctx, as_json, command, permission=Permission.MANAGE_PRINCIPALS)


@app.command("set-roles")
def set_roles(ctx: typer.Context, principal_id: Annotated[str, typer.Argument(metavar="ID")],
              role: Annotated[list[str], typer.Option("--role", metavar="ROLE", help="repeatable; replaces all")],
              as_json: JsonFlag = False) -> None:
    """replace a principal's roles"""

    def command(store: Store, io: Io) -> int:
        changed = store.identity.set_roles(principal_of(ctx), principal_id, role)
        data = _principal_dict(changed)
        io.result(data, lambda s: s.write(f"principal {changed.id}: roles {', '.join(data['roles']) or '-'}\n"))
        return 0

    run(ctx, as_json, command, permission=Permission.MANAGE_PRINCIPALS)


@app.command("set-groups")
def set_groups(ctx: typer.Context, principal_id: Annotated[str, typer.Argument(metavar="ID")], group: Groups = None,
               as_json: JsonFlag = False) -> None:
    """replace a principal's groups (joining an approver group makes it count as that group's approver)"""

    def command(store: Store, io: Io) -> int:
        changed = store.identity.set_groups(principal_of(ctx), principal_id, group or ())
        data = _principal_dict(changed)
        io.result(data, lambda s: s.write(f"principal {changed.id}: groups {', '.join(data['groups']) or '-'}\n"))
        return 0

    run(ctx, as_json, command, permission=Permission.MANAGE_PRINCIPALS)


@app.command("list")
def list_principals(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """every principal with its roles, tenant and groups"""

    def command(store: Store, io: Io) -> int:
        found = [_principal_dict(p) for p in store.identity.list_principals(principal_of(ctx))]
        rows = [[p["id"], ", ".join(p["roles"]), p["tenant"], ", ".join(p["groups"])] for p in found]
        return io.table(found, ("id", "roles", "tenant", "groups"), rows, empty="(no principals)")

    run(ctx, as_json, command)


@credential_app.command("issue")
def issue(
    ctx: typer.Context,
    principal_id: Annotated[str, typer.Argument(metavar="PRINCIPAL")],
    expires_in: ExpiresIn = DEFAULT_CREDENTIAL_LIFETIME,
    label: Annotated[str, typer.Option("--label")] = "",
    save: Annotated[str | None, typer.Option(
        "--save", metavar="PROFILE", help="also store it in the credentials file under PROFILE "
        "(use it with SAFERAILS_PROFILE=PROFILE)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """issue a credential for a principal; prints the token once"""

    def command(store: Store, io: Io) -> int:
        issued = store.identity.issue_credential(principal_of(ctx), principal_id, expires_in, label=label)
        saved = None
        if save is not None:
            path = credentials_path(store.settings.data_dir)
            save_credential(path, issued, profile=save, make_current=False)
            saved = f"{path} (profile {save})"
        return _issued(issued, io, saved)

    run(ctx, as_json, command, permission=Permission.MANAGE_CREDENTIALS)


@credential_app.command("revoke")
def revoke(ctx: typer.Context, credential_id: Annotated[str, typer.Argument(metavar="CREDENTIAL_ID")],
           as_json: JsonFlag = False) -> None:
    """revoke a credential at once"""

    def command(store: Store, io: Io) -> int:
        store.identity.revoke(principal_of(ctx), credential_id)
        io.result({"credential_id": credential_id, "revoked": True},
                  lambda s: s.write(f"credential {credential_id} revoked\n"))
        return 0

    run(ctx, as_json, command, permission=Permission.MANAGE_CREDENTIALS)


@credential_app.command("list")
def list_credentials(ctx: typer.Context,
                     principal_id: Annotated[str | None, typer.Option("--principal", metavar="ID")] = None,
                     as_json: JsonFlag = False) -> None:
    """credentials (never their secrets): id, principal, label, expiry, revocation"""

    def command(store: Store, io: Io) -> int:
        query = sa.select(Credential).order_by(Credential.created_at, Credential.id)
        if principal_id is not None:
            query = query.where(Credential.principal_id == principal_id)
        with read_transaction(store.sessions) as session:
            found = [{"credential_id": c.id, "principal_id": c.principal_id, "label": c.label,
                      "created_by": c.created_by, "created_at": c.created_at.isoformat(),
                      "expires_at": c.expires_at.isoformat(),
                      "revoked_at": None if c.revoked_at is None else c.revoked_at.isoformat()}
                     for c in session.scalars(query)]
        columns = ("credential_id", "principal_id", "label", "expires_at", "revoked_at")
        rows = [[c[k] or "-" for k in columns] for c in found]
        return io.table(found, columns, rows, empty="(no credentials)")

    run(ctx, as_json, command, permission=Permission.MANAGE_CREDENTIALS)


def _code(data: object) -> object:
    return data.get("code", "-") if isinstance(data, dict) else "-"


def inbox(ctx: typer.Context,
          principal_id: Annotated[str | None, typer.Option(
              "--principal", metavar="ID", help="must be the authenticated principal (the default)")] = None,
          as_json: JsonFlag = False) -> None:
    """your own notifications and one-time approval codes (the local 0600 inbox, when SMTP is not configured)"""

    def command(store: Store, io: Io) -> int:
        who = acting_as(principal_of(ctx), principal_id, "--principal")
        notes = InboxNotifier(store.settings.data_dir / "inbox").read(who)
        rows = [[n.get("kind"), n.get("entity_id") or "-", n.get("subject"), _code(n.get("data"))] for n in notes]
        return io.table(notes, ("kind", "entity", "subject", "code"), rows, empty="(inbox empty)")

    run(ctx, as_json, command)


def register(root: typer.Typer) -> None:
    root.command("init")(init)
    root.command("inbox")(inbox)
    root.add_typer(app, name="principal")
    root.add_typer(credential_app, name="credential")
