"""Principals, roles and credentials kept in the store: who is calling, and what they may do.

Every caller of the CLI or the Python API is an authenticated :class:`~saferails.identity.roles.Principal`:
``authenticate(token)`` turns an API token (``sr_<id>_<secret>``) into one. Only an admin adds principals,
changes roles or groups and manages other principals' credentials; the first admin is created by
``bootstrap_admin`` (the ``saferails init`` path), which refuses once any admin exists. Every change is one
transaction that also appends its audit record; tokens and their hashes never appear in the audit trail.

Tokens: ``sr_`` + 16 hex characters of public id + ``_`` + 43 characters of secret (256 random bits). The store
keeps SHA-256 of the secret only; with 256 bits of entropy a plain hash is as good as a slow one, and the
comparison is constant-time. A token is returned once, by the call that issues it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from saferails import audit
from saferails.clock import Clock, SystemClock, as_utc
from saferails.errors import InvalidInput, NotFound, PermissionDenied, PrincipalExists, Unauthenticated
from saferails.identity.roles import Permission, Principal, Role, parse_roles, require
from saferails.identity.tables import Credential
from saferails.store.db import read_transaction, transaction
from saferails.store.tables import AuditHead
from saferails.store.tables import Principal as PrincipalRow

__all__ = [
    "BOOTSTRAP_ACTOR",
    "DEFAULT_CREDENTIAL_LIFETIME",
    "MAX_CREDENTIAL_LIFETIME",
    "TOKEN_PREFIX",
    "CredentialInfo",
    "IdentityService",
    "IssuedCredential",
]

TOKEN_PREFIX = "sr"
DEFAULT_CREDENTIAL_LIFETIME = timedelta(days=90)
MAX_CREDENTIAL_LIFETIME = timedelta(days=366)
BOOTSTRAP_ACTOR = "system:bootstrap"
_PUBLIC_REASON = "invalid, expired or revoked credential"
# Compared against when the credential id is unknown, so a miss costs the same as a wrong secret.
_DUMMY_HASH = hashlib.sha256(b"saferails/no-such-credential").hexdigest()


@dataclass(frozen=True)
class IssuedCredential:
    """A freshly issued credential. ``token`` exists only here: show it once, store it 0600, forget it."""

    credential_id: str
    principal_id: str
    expires_at: datetime
    token: str = field(repr=False)


@dataclass(frozen=True)
class CredentialInfo:
    """A credential as listings show it: never the token or its hash."""

    credential_id: str
    principal_id: str
    label: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    def to_dict(self) -> dict[str, object]:
        return {"credential_id": self.credential_id, "principal_id": self.principal_id, "label": self.label,
                "created_by": self.created_by, "created_at": self.created_at.isoformat(),
                "expires_at": self.expires_at.isoformat(),
                "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat()}


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _split_token(token: str) -> tuple[str, str] | None:
    parts = token.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def _to_principal(row: PrincipalRow, credential_id: str | None = None) -> Principal:
    return Principal(
        id=row.id,
        roles=parse_roles(row.roles or []),
        tenant=row.tenant or "default",
        groups=frozenset(row.groups or []),
        credential_id=credential_id,
    )


class IdentityService:
    """Principals with roles and tenants, and their credentials. Each method is one transaction."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock | None = None) -> None:
        self.sessions = sessions
        self.clock: Clock = clock or SystemClock()

    # --- reading ------------------------------------------------------------------------------------------
    def get(self, principal_id: str) -> Principal:
        """The principal ``principal_id`` (``NotFound`` if unknown)."""
        with read_transaction(self.sessions) as session:
            return _to_principal(self._row(session, principal_id))

    def has_admin(self) -> bool:
        """True once an enabled principal holds the admin role."""
        with read_transaction(self.sessions) as session:
            return self._admins(session) != []

    def list_principals(self, actor: Principal) -> list[Principal]:
        """Every principal, sorted by id. Needs ``read``."""
        require(actor, Permission.READ)
        with read_transaction(self.sessions) as session:
            rows = session.scalars(sa.select(PrincipalRow).order_by(PrincipalRow.id)).all()
            return [_to_principal(r) for r in rows]

    def is_disabled(self, principal_id: str) -> bool:
        """True when ``principal_id`` was disabled (``NotFound`` if unknown): a bearer token from an identity
        provider for a principal disabled here is refused."""
        with read_transaction(self.sessions) as session:
            return self._row(session, principal_id).disabled_at is not None

    def list_credentials(self, actor: Principal, principal_id: str | None = None) -> list[CredentialInfo]:
        """Credentials (never their secrets), oldest first, optionally of one principal. An admin
        (``manage_credentials``) sees every credential; any principal may list its own."""
        if principal_id != actor.id:
            require(actor, Permission.MANAGE_CREDENTIALS)
        query = sa.select(Credential).order_by(Credential.created_at, Credential.id)
        if principal_id is not None:
            query = query.where(Credential.principal_id == principal_id)
        with read_transaction(self.sessions) as session:
            return [CredentialInfo(c.id, c.principal_id, c.label, c.created_by, as_utc(c.created_at),
                                   as_utc(c.expires_at), None if c.revoked_at is None else as_utc(c.revoked_at))
                    for c in session.scalars(query)]

    # --- authentication -----------------------------------------------------------------------------------
    def authenticate(self, token: str | None) -> Principal:
        """The principal ``token`` belongs to, or ``Unauthenticated`` (missing, malformed, unknown, wrong,
        expired or revoked token, or a disabled principal: one public message, the reason in
        ``details["internal_reason"]``)."""
        if not token:
            raise Unauthenticated("no credential given", internal_reason="missing")
        parsed = _split_token(token)
        if parsed is None:
            raise Unauthenticated(_PUBLIC_REASON, internal_reason="malformed")
        credential_id, secret = parsed
        now = self.clock.now()
        with read_transaction(self.sessions) as session:
            cred = session.get(Credential, credential_id)
            expected = cred.secret_hash if cred is not None else _DUMMY_HASH
            matches = hmac.compare_digest(expected.encode(), _hash_secret(secret).encode())
            reason = None
            if cred is None:
                reason = "unknown"
            elif not matches:
                reason = "mismatch"
            elif cred.revoked_at is not None:
                reason = "revoked"
            elif now >= as_utc(cred.expires_at):
                reason = "expired"
            row = None if cred is None else session.get(PrincipalRow, cred.principal_id)
            if reason is None and (row is None or row.disabled_at is not None):
                reason = "principal_disabled"
            if reason is not None or row is None or cred is None:
                raise Unauthenticated(_PUBLIC_REASON, internal_reason=reason or "unknown", credential_id=credential_id)
            return _to_principal(row, credential_id=cred.id)

    # --- first run ----------------------------------------------------------------------------------------
    def bootstrap_admin(
        self,
        principal_id: str,
        *,
        display_name: str = "",
        email: str | None = None,
        expires_in: timedelta = DEFAULT_CREDENTIAL_LIFETIME,
    ) -> IssuedCredential:
        """Create the first admin and its first credential (``saferails init``). Refuses with
        ``PermissionDenied`` once any enabled admin exists: later admins are added by an admin. An existing
        principal with this id is promoted to admin (audited with its previous roles)."""
        lifetime = self._lifetime(expires_in)
        now = self.clock.now()
        with transaction(self.sessions) as session:
            # Lock the audit head first: two concurrent first runs serialise here, and the second sees the admin.
            session.execute(sa.select(AuditHead).with_for_update()).all()
            if self._admins(session):
                raise PermissionDenied(
                    "an admin already exists; ask an admin to add principals", actor=BOOTSTRAP_ACTOR
                )
            row = session.get(PrincipalRow, principal_id)
            before = None if row is None else sorted(row.roles or [])
            if row is None:
                row = PrincipalRow(id=principal_id, created_at=now, groups=[], kyc_verified=False, tenant="default")
                session.add(row)
            row.display_name = display_name or row.display_name or principal_id
            row.email = email if email is not None else row.email
            row.roles = sorted({*(row.roles or []), Role.ADMIN.value})
            row.disabled_at = None
            session.flush()
            self._audit(session, BOOTSTRAP_ACTOR, "admin_bootstrapped", "principal", principal_id, row.tenant,
                        {"roles_before": before, "roles": row.roles}, now)
            return self._issue(session, BOOTSTRAP_ACTOR, row, lifetime, "bootstrap", now)

    # --- administration -----------------------------------------------------------------------------------
    def add_principal(
        self,
        actor: Principal,
        principal_id: str,
        *,
        roles: Iterable[str | Role],
        tenant: str = "default",
        display_name: str = "",
        email: str | None = None,
        groups: Iterable[str] = (),
        kyc_verified: bool = False,
    ) -> Principal:
        """Add a principal. Needs ``manage_principals`` (admin). Raises ``PrincipalExists`` for a taken id,
        ``InvalidInput`` for an unknown role or a malformed id."""
        require(actor, Permission.MANAGE_PRINCIPALS)
        role_set = parse_roles(str(r) for r in roles)
        _check_id(principal_id)
        now = self.clock.now()
        with transaction(self.sessions) as session:
            if session.get(PrincipalRow, principal_id) is not None:
                raise PrincipalExists(f"principal {principal_id!r} already exists", principal_id=principal_id)
            row = PrincipalRow(
                id=principal_id,
                display_name=display_name or principal_id,
                email=email,
                groups=sorted(set(groups)),
                kyc_verified=kyc_verified,
                roles=sorted(r.value for r in role_set),
                tenant=tenant,
                created_at=now,
            )
            session.add(row)
            session.flush()
            self._audit(session, actor.id, "principal_added", "principal", principal_id, tenant,
                        {"roles": row.roles, "groups": row.groups, "kyc_verified": kyc_verified, "email": email}, now)
            return _to_principal(row)

    def set_roles(self, actor: Principal, principal_id: str, roles: Iterable[str | Role]) -> Principal:
        """Replace ``principal_id``'s roles. Needs ``manage_principals``. Removing the admin role from the last
        enabled admin raises ``InvalidInput`` (nobody could administer the store any more)."""
        require(actor, Permission.MANAGE_PRINCIPALS)
        role_set = parse_roles(str(r) for r in roles)
        now = self.clock.now()
        with transaction(self.sessions) as session:
            session.execute(sa.select(AuditHead).with_for_update()).all()
            row = self._row(session, principal_id, lock=True)
            before = sorted(row.roles or [])
            after = sorted(r.value for r in role_set)
            if Role.ADMIN.value in before and Role.ADMIN.value not in after and self._admins(session) == [row.id]:
                raise InvalidInput(f"{principal_id!r} is the last admin; add another admin first",
                                   principal_id=principal_id)
            row.roles = after
            session.flush()
            self._audit(session, actor.id, "roles_changed", "principal", principal_id, row.tenant,
                        {"before": before, "after": after}, now)
            return _to_principal(row)

    def set_disabled(self, actor: Principal, principal_id: str, disabled: bool = True) -> Principal:
        """Disable (or enable again) ``principal_id``: a disabled principal's credentials stop authenticating at
        once. Needs ``manage_principals``. Disabling the last enabled admin, or oneself, raises ``InvalidInput``."""
        require(actor, Permission.MANAGE_PRINCIPALS)
        if disabled and principal_id == actor.id:
            raise InvalidInput("you cannot disable yourself; ask another admin", principal_id=principal_id)
        now = self.clock.now()
        with transaction(self.sessions) as session:
            session.execute(sa.select(AuditHead).with_for_update()).all()
            row = self._row(session, principal_id, lock=True)
            if disabled and self._admins(session) == [row.id]:
                raise InvalidInput(f"{principal_id!r} is the last admin; add another admin first",
                                   principal_id=principal_id)
            if (row.disabled_at is not None) == disabled:
                return _to_principal(row)
            row.disabled_at = now if disabled else None
            session.flush()
            self._audit(session, actor.id, "principal_disabled" if disabled else "principal_enabled", "principal",
                        principal_id, row.tenant, {}, now)
            return _to_principal(row)

    def set_groups(self, actor: Principal, principal_id: str, groups: Iterable[str]) -> Principal:
        """Replace ``principal_id``'s groups (policy approver groups). Needs ``manage_principals``: joining a
        group can make someone an approver."""
        require(actor, Permission.MANAGE_PRINCIPALS)
        now = self.clock.now()
        with transaction(self.sessions) as session:
            row = self._row(session, principal_id, lock=True)
            before = sorted(row.groups or [])
            row.groups = sorted(set(groups))
            session.flush()
            self._audit(session, actor.id, "groups_changed", "principal", principal_id, row.tenant,
                        {"before": before, "after": row.groups}, now)
            return _to_principal(row)

    def issue_credential(
        self,
        actor: Principal,
        principal_id: str,
        expires_in: timedelta = DEFAULT_CREDENTIAL_LIFETIME,
        *,
        label: str = "",
    ) -> IssuedCredential:
        """A new token for ``principal_id``, valid for ``expires_in`` (at most 366 days). An admin
        (``manage_credentials``) may issue for anyone; any principal may issue one for itself (rotation)."""
        if actor.id != principal_id:
            require(actor, Permission.MANAGE_CREDENTIALS)
        lifetime = self._lifetime(expires_in)
        now = self.clock.now()
        with transaction(self.sessions) as session:
            row = self._row(session, principal_id)
            if row.disabled_at is not None:
                raise InvalidInput(f"principal {principal_id!r} is disabled", principal_id=principal_id)
            return self._issue(session, actor.id, row, lifetime, label, now)

    def revoke(self, actor: Principal, credential_id: str) -> None:
        """Revoke a credential at once (idempotent). An admin may revoke any; a principal its own."""
        now = self.clock.now()
        with transaction(self.sessions) as session:
            cred = session.scalars(
                sa.select(Credential).where(Credential.id == credential_id).with_for_update()
            ).one_or_none()
            if cred is None:
                raise NotFound("credential", credential_id)
            if cred.principal_id != actor.id:
                require(actor, Permission.MANAGE_CREDENTIALS)
            if cred.revoked_at is not None:
                return
            cred.revoked_at = now
            owner = session.get(PrincipalRow, cred.principal_id)
            self._audit(session, actor.id, "credential_revoked", "credential", credential_id,
                        owner.tenant if owner is not None else "default", {"principal_id": cred.principal_id}, now)

    # --- helpers ------------------------------------------------------------------------------------------
    def _issue(self, session: Session, actor: str, row: PrincipalRow, lifetime: timedelta, label: str,
               now: datetime) -> IssuedCredential:
        credential_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        expires_at = now + lifetime
        session.add(Credential(id=credential_id, principal_id=row.id, secret_hash=_hash_secret(secret), label=label,
                               created_by=actor, created_at=now, expires_at=expires_at, revoked_at=None))
        session.flush()
        self._audit(session, actor, "credential_issued", "credential", credential_id, row.tenant,
                    {"principal_id": row.id, "expires_at": expires_at, "label": label}, now)
        return IssuedCredential(credential_id, row.id, expires_at, f"{TOKEN_PREFIX}_{credential_id}_{secret}")

    @staticmethod
    def _lifetime(expires_in: timedelta) -> timedelta:
        if expires_in <= timedelta(0) or expires_in > MAX_CREDENTIAL_LIFETIME:
            raise InvalidInput(
                f"a credential must expire within (0, {MAX_CREDENTIAL_LIFETIME.days} days], got {expires_in}",
                expires_in_seconds=expires_in.total_seconds(),
            )
        return expires_in

    @staticmethod
    def _row(session: Session, principal_id: str, *, lock: bool = False) -> PrincipalRow:
        query = sa.select(PrincipalRow).where(PrincipalRow.id == principal_id)
        row = session.scalars(query.with_for_update() if lock else query).one_or_none()
        if row is None:
            raise NotFound("principal", principal_id)
        return row

    @staticmethod
    def _admins(session: Session) -> list[str]:
        # Roles are a JSON list; filtering in Python keeps the query portable (principals are few).
        rows = session.scalars(sa.select(PrincipalRow).where(PrincipalRow.disabled_at.is_(None))).all()
        return sorted(r.id for r in rows if Role.ADMIN.value in (r.roles or []))

    @staticmethod
    def _audit(session: Session, actor: str, event: str, entity_type: str, entity_id: str, tenant: str,
               details: dict[str, object], now: datetime) -> None:
        audit.append(
            session,
            audit.AuditEntry(actor=actor, event=event, entity_type=entity_type, entity_id=entity_id, tenant=tenant,
                             details=dict(details)),
            now=now,
        )


def _check_id(principal_id: str) -> None:
    bad = not principal_id or len(principal_id) > 200 or principal_id != principal_id.strip()
    if bad or principal_id.startswith("system:"):
        raise InvalidInput(
            f"invalid principal id {principal_id!r}: 1-200 characters, no surrounding spaces, not system:*",
            principal_id=principal_id,
        )
