"""Waiting for an action without tight polling: a long-poll and server-sent events.

- ``GET /api/v1/actions/{id}/wait?after_version=N&timeout=S`` answers the action (as ``GET`` does) as soon as its
  ``version`` is past ``N`` (every state change adds one) or it is in a final state, or when ``S`` seconds have
  passed (at most 60); ``X-Wait-Result`` says which (``changed``, ``final``, ``timeout``). Without
  ``after_version`` it waits for the next change after the request arrived.
- ``GET /api/v1/actions/{id}/events?timeout=S`` (``text/event-stream``) sends one ``state`` event per state
  change, read from the action's audit trail (the SSE ``id`` is the audit sequence: ``Last-Event-ID`` resumes
  after it), then an ``end`` event with ``{"reason": "final" | "timeout"}`` and closes, at the first final state
  or after ``S`` seconds (at most 60).

Who may wait is exactly who may ``GET`` the action (same permission, same tenant and ownership checks, 404 for
an action the caller cannot see), checked before the first byte is sent. Each waiting request reads the store
every ``poll_interval`` seconds (a one-row primary-key read; the audit range read only when the version moved),
on the threadpool, so the event loop is never blocked and a thousand waiters cost a thousand cheap reads per
interval, not a busy loop. Timeouts run on the store's clock (tests move a ``ManualClock``); a waiter also
gives up after ``MAX_WAIT_SECONDS`` of real time whatever that clock says, so no connection is held for ever.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from saferails.actions.lifecycle import FINAL_STATES
from saferails.actions.models import ActionView
from saferails.errors import NotFound
from saferails.http.auth import Principal
from saferails.http.routes import Api, action_json
from saferails.models import ActionOut
from saferails.store.db import read_transaction
from saferails.store.tables import Action, AuditRecord

MAX_WAIT_SECONDS = 60.0
DEFAULT_WAIT_SECONDS = 30.0
POLL_INTERVAL = 0.1
KEEPALIVE_SECONDS = 15.0
WAIT_RESULT_HEADER = "X-Wait-Result"
_EVENTS_PER_READ = 100


class Watch:
    """The waiting handlers over one :class:`~saferails.http.routes.Api` (its store, clock and checks)."""

    def __init__(self, api: Api, poll_interval: float = POLL_INTERVAL) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self.api = api
        self.poll_interval = poll_interval

    # --- store reads (run on the threadpool) ------------------------------------------------------------------
    def _version(self, action_id: str) -> tuple[int, str]:
        with read_transaction(self.api.store.sessions) as session:
            row = session.execute(
                sa.select(Action.version, Action.state).where(Action.id == action_id)
            ).one_or_none()
        if row is None:
            raise NotFound("action", action_id)
        return int(row[0]), str(row[1])

    def _changes(self, action_id: str, after: int) -> list[dict[str, Any]]:
        """State changes of the action recorded after audit sequence ``after``, oldest first."""
        with read_transaction(self.api.store.sessions) as session:
            rows = session.execute(
                sa.select(AuditRecord.sequence, AuditRecord.event, AuditRecord.details, AuditRecord.occurred_at)
                .where(AuditRecord.entity_type == "action", AuditRecord.entity_id == action_id,
                       AuditRecord.sequence > after)
                .order_by(AuditRecord.sequence)
                .limit(_EVENTS_PER_READ)
            ).all()
        changes = []
        for sequence, event, details, occurred_at in rows:
            data = json.loads(details)
            changes.append({"sequence": int(sequence), "event": str(event), "from_state": data.get("from_state"),
                            "to_state": data.get("to_state"), "occurred_at": occurred_at.isoformat()})
        return changes

    def _deadline(self, timeout: float) -> tuple[Any, float]:
        loop_deadline = asyncio.get_running_loop().time() + min(timeout, MAX_WAIT_SECONDS)
        return self.api.store.clock.now() + timedelta(seconds=timeout), loop_deadline

    def _expired(self, deadline: tuple[Any, float]) -> bool:
        return bool(self.api.store.clock.now() >= deadline[0] or asyncio.get_running_loop().time() >= deadline[1])

    # --- long-poll --------------------------------------------------------------------------------------------
    async def wait(
        self, request: Request, principal: Principal, action_id: str, after_version: int | None, timeout: float
    ) -> tuple[ActionView, str]:
        """The action once it moved past ``after_version`` or is final (``changed`` / ``final``), or as it is
        when ``timeout`` passed or the client went away (``timeout``)."""
        view = await run_in_threadpool(self.api.get, principal, action_id)
        baseline = view.version if after_version is None else after_version
        deadline = self._deadline(timeout)
        while True:
            if view.version > baseline:
                return view, "final" if view.state in FINAL_STATES else "changed"
            if view.state in FINAL_STATES:
                return view, "final"
            if self._expired(deadline) or await request.is_disconnected():
                return view, "timeout"
            await asyncio.sleep(self.poll_interval)
            version, _state = await run_in_threadpool(self._version, action_id)
            if version != view.version:
                view = await run_in_threadpool(self.api.get, principal, action_id)

    # --- server-sent events -----------------------------------------------------------------------------------
    async def events(
        self, request: Request, principal: Principal, action_id: str, after: int, timeout: float
    ) -> AsyncIterator[bytes]:
        """The event stream (see the module docstring). The caller checked visibility before streaming."""
        loop = asyncio.get_running_loop()
        deadline = self._deadline(timeout)
        last_sent = loop.time()
        yield b"retry: 1000\n\n"
        seen_version = -1
        while True:
            # The state first, then the audit records: both are written in one transaction, so a final state
            # read here has all its records visible to the read that follows.
            version, state = await run_in_threadpool(self._version, action_id)
            if version != seen_version:
                seen_version = version
                changes = await run_in_threadpool(self._changes, action_id, after)
                while changes:
                    view = await run_in_threadpool(self.api.get, principal, action_id)
                    for change in changes:
                        after = change["sequence"]
                        if change["to_state"] is not None:
                            yield _event("state", {**change, "action": action_json(view)}, after)
                            last_sent = loop.time()
                    changes = (await run_in_threadpool(self._changes, action_id, after)
                               if len(changes) == _EVENTS_PER_READ else [])
            if state in FINAL_STATES:
                yield _event("end", {"reason": "final", "state": state}, None)
                return
            if self._expired(deadline) or await request.is_disconnected():
                yield _event("end", {"reason": "timeout", "state": state}, None)
                return
            if loop.time() - last_sent >= KEEPALIVE_SECONDS:
                yield b": keep-alive\n\n"
                last_sent = loop.time()
            await asyncio.sleep(self.poll_interval)


def _event(kind: str, data: dict[str, Any], event_id: int | None) -> bytes:
    lines = [f"event: {kind}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


def _last_event_id(header: str | None, after: int | None) -> int:
    if after is not None:
        return after
    if header is not None and header.strip().isdigit():
        return int(header.strip())
    return 0


def build_router(watch: Watch) -> APIRouter:
    """The waiting routes, to include next to ``routes.build_router`` over the same ``Api``."""
    router = APIRouter()
    Caller = Annotated[Principal, Depends(watch.api.principal)]
    Timeout = Annotated[float, Query(gt=0, le=MAX_WAIT_SECONDS, description="seconds, at most 60")]

    @router.get("/api/v1/actions/{action_id}/wait", response_model=ActionOut, tags=["actions"], responses={
        200: {"headers": {WAIT_RESULT_HEADER: {"description": "changed, final or timeout",
                                               "schema": {"type": "string"}}}}})
    async def wait(
        request: Request,
        action_id: str,
        caller: Caller,
        after_version: Annotated[int | None, Query(ge=0)] = None,
        timeout: Timeout = DEFAULT_WAIT_SECONDS,
    ) -> JSONResponse:
        """Long-poll: the action as soon as its ``version`` passes ``after_version`` (default: its version when
        the request arrived) or it reaches a final state, else after ``timeout`` seconds as it is then."""
        view, result = await watch.wait(request, caller, action_id, after_version, timeout)
        return JSONResponse(action_json(view), headers={WAIT_RESULT_HEADER: result})

    @router.get("/api/v1/actions/{action_id}/events", tags=["actions"], response_class=StreamingResponse,
                responses={200: {"description": "one `state` event per state change, then one `end` event",
                                 "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
    async def events(
        request: Request,
        action_id: str,
        caller: Caller,
        after: Annotated[int | None, Query(ge=0, description="audit sequence to resume after")] = None,
        timeout: Timeout = MAX_WAIT_SECONDS,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        """Server-sent events: the action's state changes (from its audit trail), closing at a final state or
        after ``timeout`` seconds; reconnect with ``Last-Event-ID`` to resume."""
        await run_in_threadpool(watch.api.get, caller, action_id)
        stream = watch.events(request, caller, action_id, _last_event_id(last_event_id, after), timeout)
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router
