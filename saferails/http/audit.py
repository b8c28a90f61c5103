"""The audit endpoints and ``/metrics``.

- ``GET /api/v1/audit``: the hash-chained audit trail, filtered (time range, entity, action type, target, actor,
  tenant, event), oldest first or newest first, paged by sequence number (``next_cursor``: pass it back as
  ``?cursor=``; records appended meanwhile never shift a page). Permission ``audit:read`` (operator, auditor,
  admin). A caller bound to tenants sees only their records: the tenant filter is forced to theirs, and another
  tenant's records are an empty page, not a 403.
- ``GET /api/v1/audit/verify``: verify the whole chain, its signed checkpoints (against the store's public key
  when it exists) and the published checkpoint file, as ``saferails audit verify`` does. ``audit:verify``
  (auditor, admin). The answer is the report (200 either way: ``ok`` false names the first broken record).
- ``GET /api/v1/audit/checkpoints``: the signed checkpoints stored beside the chain, newest first, paged; plus
  the last one published outside the database. ``audit:read``.
- ``POST /api/v1/audit/checkpoints``: publish the newest checkpoint to the published file (what the sweeps do;
  idempotent). ``audit:publish`` (operator, auditor, admin).
- ``GET /metrics``: Prometheus text: the process's counters (``saferails.workflow.metrics.METRICS``) and the
  store's gauges read at scrape time. Authenticated like every route (``metrics:read``: operator, auditor,
  admin): it tells how many actions wait and in which states; give the scraper a key
  (Prometheus ``authorization: {credentials: ...}``).
"""


from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.registry import Collector
from pydantic import BaseModel

from saferails.audit import AuditQuery, AuditVerifierKey, query_audit
from saferails.audit.checkpoints import Checkpoint, last_published
from saferails.audit.query import MAX_LIMIT
from saferails.audit.signing import public_key_path_for
from saferails.boundary import typed_errors
from saferails.errors import InvalidInput
from saferails.http import auth
from saferails.http.auth import Principal, require
from saferails.http.routes import Api
from saferails.store.db import read_transaction
from saferails.store.tables import AuditCheckpoint
from saferails.workflow.metrics import METRICS, StoreCollector

# The largest sequence number a store holds (a signed 64-bit integer in both databases).
MAX_SEQUENCE = 2**63 - 1
_STORE_GAUGES = frozenset({"active_tasks_total", "saferails_actions_total", "saferails_pending_approvals"})


class AuditRecordsOut(BaseModel):
    records: list[dict[str, Any]]
    next_cursor: int | None


class VerifyOut(BaseModel):
    ok: bool
    records_checked: int
    first_broken_sequence: int | None
    problem: str | None
    head_sequence: int
    head_hash: str
    anchor_checked: bool
    signatures_checked: bool
    checkpoints_checked: int
    signed_through: int
    unsigned_records: int
    published_checked: int


class CheckpointsOut(BaseModel):
    checkpoints: list[dict[str, Any]]
    next_cursor: int | None
    last_published: dict[str, Any] | None


class PublishOut(BaseModel):
    file: str
    published: dict[str, Any] | None


def _tenant_filter(principal: Principal, tenant: str | None) -> tuple[str | None, bool]:
    """The tenant to filter on, and whether the caller may see anything at all."""
    if auth.ALL_TENANTS in principal.tenants:
        return tenant, True
    if tenant is not None:
        return tenant, principal.sees_tenant(tenant)
    if len(principal.tenants) != 1:
        raise InvalidInput("you belong to several tenants: pass ?tenant=")
    return next(iter(principal.tenants)), True


class _ProcessCounters(Collector):
    """The process-wide counters of ``METRICS`` without its store gauges (this app reports its own store)."""

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        for family in METRICS.registry.collect():
            if family.name not in _STORE_GAUGES:
                yield family


class AuditApi:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.store = api.store
        self.registry = CollectorRegistry()
        self.registry.register(_ProcessCounters())
        self.registry.register(StoreCollector(api.store.sessions))

    @typed_errors
    def query(self, principal: Principal, spec: dict[str, Any]) -> dict[str, Any]:
        require(principal, auth.AUDIT_READ)
        tenant, visible = _tenant_filter(principal, spec.pop("tenant"))
        if not visible:
            return {"records": [], "next_cursor": None}
        newest_first = bool(spec.pop("newest_first"))
        cursor = spec.pop("cursor")
        query = AuditQuery(tenant=tenant, descending=newest_first,
                           after_sequence=None if newest_first else cursor,
                           before_sequence=cursor if newest_first else None, **spec)
        with read_transaction(self.store.sessions) as session:
            return query_audit(session, query).to_dict()

    def verify(self, principal: Principal) -> dict[str, Any]:
        require(principal, auth.AUDIT_VERIFY)
        settings = self.store.settings
        key_file = public_key_path_for(settings.audit_key_path)
        key = AuditVerifierKey.from_file(key_file) if key_file.exists() else None
        published = settings.audit_published_path
        report = self.store.verify_audit(key=key, published=published if published.exists() else None)
        return report.to_dict()

    @typed_errors
    def checkpoints(self, principal: Principal, limit: int, cursor: int | None) -> dict[str, Any]:
        require(principal, auth.AUDIT_READ)
        stmt = sa.select(AuditCheckpoint).order_by(AuditCheckpoint.sequence.desc())
        if cursor is not None:
            stmt = stmt.where(AuditCheckpoint.sequence < cursor)
        with read_transaction(self.store.sessions) as session:
            rows = [Checkpoint.from_row(r) for r in session.scalars(stmt.limit(limit + 1))]
        page = rows[:limit]
        published = last_published(self.store.settings.audit_published_path)
        return {"checkpoints": [c.to_dict() for c in page],
                "next_cursor": page[-1].sequence if len(rows) > limit else None,
                "last_published": None if published is None else published.to_dict()}

    def publish(self, principal: Principal) -> dict[str, Any]:
        require(principal, auth.AUDIT_PUBLISH)
        checkpoint = self.store.publish_audit_checkpoint()
        return {"file": str(self.store.settings.audit_published_path),
                "published": None if checkpoint is None else checkpoint.to_dict()}

    def metrics(self, principal: Principal) -> bytes:
        require(principal, auth.METRICS_READ)
        return bytes(generate_latest(self.registry))


def build_router(api: Api) -> APIRouter:
    audit = AuditApi(api)
    router = APIRouter(tags=["audit"])
    Caller = Annotated[Principal, Depends(api.principal)]

    @router.get("/api/v1/audit", response_model=AuditRecordsOut)
    def query(
        caller: Caller,
        start: datetime | None = None,
        end: datetime | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        action_type: str | None = None,
        target: str | None = None,
        actor: str | None = None,
        tenant: str | None = None,
        event: str | None = None,
        newest_first: bool = False,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        cursor: Annotated[int | None, Query(ge=0, le=MAX_SEQUENCE,
                                            description="the next_cursor of the previous page")] = None,
    ) -> dict[str, Any]:
        """Audit records (hash-chained, append-only), oldest first unless ``newest_first``; every filter given
        must match. ``start`` (inclusive) and ``end`` (exclusive) need a timezone."""
        return audit.query(caller, {
            "start": start, "end": end, "entity_type": entity_type or None, "entity_id": entity_id or None,
            "action_type": action_type or None, "target": target or None, "actor": actor or None,
            "tenant": tenant or None, "event": event or None, "limit": limit, "cursor": cursor,
            "newest_first": newest_first,
        })

    @router.get("/api/v1/audit/verify", response_model=VerifyOut)
    def verify(caller: Caller) -> dict[str, Any]:
        """Verify the chain, its signed checkpoints and the published checkpoint file. ``ok`` false names the
        first record that cannot be trusted (``first_broken_sequence``) and why (``problem``)."""
        return audit.verify(caller)

    @router.get("/api/v1/audit/checkpoints", response_model=CheckpointsOut)
    def checkpoints(
        caller: Caller,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        cursor: Annotated[int | None, Query(ge=0, le=MAX_SEQUENCE)] = None,
    ) -> dict[str, Any]:
        """Signed checkpoints, newest first, and the last one published outside the database."""
        return audit.checkpoints(caller, limit, cursor)

    @router.post("/api/v1/audit/checkpoints", response_model=PublishOut)
    def publish(request: Request, caller: Caller) -> JSONResponse:
        """Publish the newest signed checkpoint outside the database (``published`` null when the file already
        holds it)."""
        return api.idempotent(request, caller, None, 200, lambda: audit.publish(caller))

    @router.get("/metrics", tags=["metrics"], response_class=Response,
                responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
    def metrics(caller: Caller) -> Response:
        """Prometheus metrics: workflow counters and the store's action / approval gauges."""
        return Response(audit.metrics(caller), media_type=CONTENT_TYPE_LATEST)

    return router
