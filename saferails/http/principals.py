"""Principals and credentials over HTTP (admin only): the same ``IdentityService`` calls as ``saferails principal``
and ``saferails credential``.

- ``POST /api/v1/principals`` (201), ``GET /api/v1/principals`` (paged by id), ``GET /api/v1/principals/{id}``,
  ``POST /api/v1/principals/{id}/disable`` and ``/enable``: permission ``principals:manage``.
- ``POST /api/v1/principals/{id}/credentials`` (201): a new API key, shown in this answer ONCE (the store keeps
  only its SHA-256); it expires (``expires_in_days``, at most 366). Not replayable: an ``Idempotency-Key`` is
  refused here, because replaying the answer would show the key again (revoke a key whose answer was lost and
  issue another). ``GET /api/v1/principals/{id}/credentials``, ``GET /api/v1/credentials`` (never a secret),
  ``POST /api/v1/credentials/{credential_id}/revoke``: permission ``credentials:manage``.

Tenants: an admin bound to tenants (an OIDC token's tenant claim) sees and manages only the principals of those
tenants; another tenant's principal or credential is a 404. Every change is audited by the identity service with
the caller as actor.
"""


from datetime import timedelta
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from saferails.boundary import identifier_problem, text_problem, typed_errors
from saferails.errors import InsufficientPermissions, InvalidInput, NotFound
from saferails.http import auth
from saferails.http.auth import Principal, require
from saferails.http.idempotency import HEADER
from saferails.http.routes import Api
from saferails.identity import CredentialInfo, Role
from saferails.identity import Principal as IdentityPrincipal
from saferails.identity.service import MAX_CREDENTIAL_LIFETIME
from saferails.identity.tables import Credential
from saferails.store.db import read_transaction
from saferails.store.tables import Principal as PrincipalRow

MAX_PAGE = 200
_NO_STORE = {"Cache-Control": "no-store"}


class PrincipalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    roles: list[str] = Field(default_factory=lambda: ["agent"], max_length=10)
    tenant: str = Field(default="default", min_length=1, max_length=100)
    display_name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=320)
    groups: list[str] = Field(default_factory=list, max_length=50)
    kyc_verified: bool = False


class PrincipalOut(BaseModel):
    id: str
    display_name: str
    email: str | None
    roles: list[str]
    tenant: str
    groups: list[str]
    kyc_verified: bool
    created_at: str
    disabled_at: str | None


class PrincipalPage(BaseModel):
    items: list[PrincipalOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


class CredentialIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires_in_days: int = Field(default=90, ge=1, le=MAX_CREDENTIAL_LIFETIME.days)
    label: str = Field(default="", max_length=200)


class CredentialOut(BaseModel):
    credential_id: str
    principal_id: str
    label: str
    created_by: str
    created_at: str
    expires_at: str
    revoked_at: str | None


class IssuedOut(BaseModel):
    credential_id: str
    principal_id: str
    expires_at: str
    token: str = Field(description="the API key: shown once, never again")


class CredentialList(BaseModel):
    items: list[CredentialOut]


def _row_json(row: PrincipalRow) -> dict[str, Any]:
    return {"id": row.id, "display_name": row.display_name, "email": row.email, "roles": sorted(row.roles or []),
            "tenant": row.tenant, "groups": sorted(row.groups or []), "kyc_verified": bool(row.kyc_verified),
            "created_at": row.created_at.isoformat(),
            "disabled_at": None if row.disabled_at is None else row.disabled_at.isoformat()}


def identity_actor(principal: Principal) -> IdentityPrincipal:
    """The caller as the identity service's actor: its roles that are ours (an unknown name grants nothing)."""
    known = {r.value for r in Role}
    tenants = sorted(principal.tenants - {auth.ALL_TENANTS})
    return IdentityPrincipal(id=principal.id, roles=frozenset(Role(r) for r in principal.roles if r in known),
                             tenant=tenants[0] if len(tenants) == 1 else "default")


class PrincipalsApi:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.identity = api.store.identity
        self.sessions = api.store.sessions

    def _row(self, principal: Principal, principal_id: str) -> PrincipalRow:
        with read_transaction(self.sessions) as session:
            row = session.get(PrincipalRow, principal_id)
            if row is None or not principal.sees_tenant(row.tenant or "default"):
                raise NotFound("principal", principal_id)
            session.expunge(row)
            return row

    @typed_errors
    def create(self, principal: Principal, body: PrincipalIn) -> dict[str, Any]:
        require(principal, auth.PRINCIPALS_MANAGE)
        for field, value in (("id", body.id), ("tenant", body.tenant), *(("groups", g) for g in body.groups)):
            problem = identifier_problem(value)
            if problem is not None:
                raise InvalidInput(f"{field} {value!r} {problem}", field=field)
        for field, text in (("display_name", body.display_name), ("email", body.email or "")):
            problem = text_problem(text)
            if problem is not None:
                raise InvalidInput(f"{field} {problem}", field=field)
        if not principal.sees_tenant(body.tenant):
            raise InsufficientPermissions(principal.id, sorted(principal.roles), f"tenant:{body.tenant}")
        self.identity.add_principal(identity_actor(principal), body.id, roles=body.roles, tenant=body.tenant,
                                    display_name=body.display_name, email=body.email, groups=body.groups,
                                    kyc_verified=body.kyc_verified)
        return _row_json(self._row(principal, body.id))

    @typed_errors
    def list(self, principal: Principal, limit: int, cursor: str | None) -> dict[str, Any]:
        require(principal, auth.PRINCIPALS_MANAGE)
        stmt = sa.select(PrincipalRow).order_by(PrincipalRow.id)
        if cursor:
            stmt = stmt.where(PrincipalRow.id > cursor)
        if auth.ALL_TENANTS not in principal.tenants:
            stmt = stmt.where(PrincipalRow.tenant.in_(sorted(principal.tenants)))
        with read_transaction(self.sessions) as session:
            rows = [_row_json(r) for r in session.scalars(stmt.limit(limit + 1))]
        page = rows[:limit]
        return {"items": page, "next_cursor": page[-1]["id"] if len(rows) > limit else None}

    @typed_errors
    def get(self, principal: Principal, principal_id: str) -> dict[str, Any]:
        require(principal, auth.PRINCIPALS_MANAGE)
        return _row_json(self._row(principal, principal_id))

    @typed_errors
    def set_disabled(self, principal: Principal, principal_id: str, disabled: bool) -> dict[str, Any]:
        require(principal, auth.PRINCIPALS_MANAGE)
        self._row(principal, principal_id)
        self.identity.set_disabled(identity_actor(principal), principal_id, disabled)
        return _row_json(self._row(principal, principal_id))

    @typed_errors
    def issue(self, principal: Principal, principal_id: str, body: CredentialIn) -> dict[str, Any]:
        require(principal, auth.CREDENTIALS_MANAGE)
        self._row(principal, principal_id)
        issued = self.identity.issue_credential(identity_actor(principal), principal_id,
                                                timedelta(days=body.expires_in_days), label=body.label)
        return {"credential_id": issued.credential_id, "principal_id": issued.principal_id,
                "expires_at": issued.expires_at.isoformat(), "token": issued.token}

    @typed_errors
    def credentials(self, principal: Principal, principal_id: str | None) -> dict[str, Any]:
        require(principal, auth.CREDENTIALS_MANAGE)
        if principal_id is not None:
            self._row(principal, principal_id)
        found: list[CredentialInfo] = self.identity.list_credentials(identity_actor(principal), principal_id)
        if principal_id is None and auth.ALL_TENANTS not in principal.tenants:
            with read_transaction(self.sessions) as session:
                visible = set(session.scalars(sa.select(PrincipalRow.id).where(
                    PrincipalRow.tenant.in_(sorted(principal.tenants)))))
            found = [c for c in found if c.principal_id in visible]
        return {"items": [c.to_dict() for c in found]}

    @typed_errors
    def revoke(self, principal: Principal, credential_id: str) -> dict[str, Any]:
        require(principal, auth.CREDENTIALS_MANAGE)
        with read_transaction(self.sessions) as session:
            owner = session.scalar(sa.select(Credential.principal_id).where(Credential.id == credential_id))
        if owner is None:
            raise NotFound("credential", credential_id)
        try:
            self._row(principal, owner)
        except NotFound:
            raise NotFound("credential", credential_id) from None
        self.identity.revoke(identity_actor(principal), credential_id)
        info = [c for c in self.identity.list_credentials(identity_actor(principal), owner)
                if c.credential_id == credential_id]
        return info[0].to_dict()


def build_router(api: Api) -> APIRouter:
    ops = PrincipalsApi(api)
    router = APIRouter(tags=["principals"])
    Caller = Annotated[Principal, Depends(api.principal)]

    @router.post("/api/v1/principals", status_code=201, response_model=PrincipalOut)
    def create(request: Request, body: PrincipalIn, caller: Caller) -> JSONResponse:
        """Add a principal (an agent, an approver, ...) with its roles, tenant and approver groups."""
        return api.idempotent(request, caller, body, 201, lambda: ops.create(caller, body))

    @router.get("/api/v1/principals", response_model=PrincipalPage)
    def list_principals(
        caller: Caller,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Principals by id."""
        return ops.list(caller, limit, cursor)

    @router.get("/api/v1/principals/{principal_id}", response_model=PrincipalOut)
    def get_principal(principal_id: str, caller: Caller) -> dict[str, Any]:
        return ops.get(caller, principal_id)

    @router.post("/api/v1/principals/{principal_id}/disable", response_model=PrincipalOut)
    def disable(request: Request, principal_id: str, caller: Caller) -> JSONResponse:
        """Disable a principal: its keys and tokens stop working at once (not yourself, not the last admin)."""
        return api.idempotent(request, caller, None, 200, lambda: ops.set_disabled(caller, principal_id, True))

    @router.post("/api/v1/principals/{principal_id}/enable", response_model=PrincipalOut)
    def enable(request: Request, principal_id: str, caller: Caller) -> JSONResponse:
        return api.idempotent(request, caller, None, 200, lambda: ops.set_disabled(caller, principal_id, False))

    @router.post("/api/v1/principals/{principal_id}/credentials", status_code=201, response_model=IssuedOut)
    def issue(request: Request, principal_id: str, caller: Caller, body: CredentialIn | None = None) -> JSONResponse:
        """Issue an API key for the principal. The key is in this answer only; it is never shown again."""
        if request.headers.get(HEADER) is not None:
            raise InvalidInput(f"{HEADER} is refused here: replaying the answer would show the key again; "
                               "revoke a key whose answer was lost and issue another")
        return JSONResponse(ops.issue(caller, principal_id, body or CredentialIn()), status_code=201,
                            headers=_NO_STORE)

    @router.get("/api/v1/principals/{principal_id}/credentials", response_model=CredentialList)
    def principal_credentials(principal_id: str, caller: Caller) -> dict[str, Any]:
        """The principal's credentials (never their secrets)."""
        return ops.credentials(caller, principal_id)

    @router.get("/api/v1/credentials", response_model=CredentialList)
    def all_credentials(caller: Caller, principal_id: str | None = None) -> dict[str, Any]:
        """Credentials (never their secrets), oldest first."""
        return ops.credentials(caller, principal_id)

    @router.post("/api/v1/credentials/{credential_id}/revoke", response_model=CredentialOut)
    def revoke(request: Request, credential_id: str, caller: Caller) -> JSONResponse:
        """Revoke a credential at once (idempotent)."""
        return api.idempotent(request, caller, None, 200, lambda: ops.revoke(caller, credential_id))

    return router
