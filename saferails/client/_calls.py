"""What the sync and async clients share: the requests each method sends, the retry policy, answer parsing and
the server-sent events parser. No I/O here."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from saferails.client.errors import ApiUnreachable, error_from_response
from saferails.models import FINAL_STATES, ActionEvent, DecisionIn, ProposalIn, ReasonIn

V1 = "/api/v1"
IDEMPOTENCY_HEADER = "Idempotency-Key"
RETRY_STATUSES = frozenset({502, 503, 504})
# Connection refused or dropped, and timeouts: worth retrying. A POST is safe to retry because its
# Idempotency-Key is the same on every attempt (the server replays its first answer).
RETRY_EXCEPTIONS = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)
MAX_SERVER_WAIT = 60.0
# How much longer than the server's wait the client's read timeout is (the answer must have time to arrive).
WAIT_SLACK = 10.0


@dataclass(frozen=True)
class Call:
    """One logical API call. A POST carries ``idempotency_key`` (a fresh UUID unless the caller chose one) and
    sends it on every retry."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    body: dict[str, Any] | None = None
    read_timeout: float | None = None
    idempotency_key: str = field(default_factory=lambda: str(uuid.uuid4()))

    def headers(self) -> dict[str, str]:
        return {IDEMPOTENCY_HEADER: self.idempotency_key} if self.method == "POST" else {}

    def timeout(self, default: httpx.Timeout) -> httpx.Timeout:
        if self.read_timeout is None:
            return default
        return httpx.Timeout(default.connect, read=self.read_timeout, write=default.write, pool=default.pool)


def backoff(attempt: int, base: float, cap: float = 5.0) -> float:
    """Seconds before retry ``attempt`` (0-based): exponential, capped, with jitter so clients spread out."""
    return float(min(cap, base * 2.0 ** attempt) * (0.5 + random.random() / 2))


def should_retry(response: httpx.Response) -> bool:
    return response.status_code in RETRY_STATUSES


def parse(response: httpx.Response) -> Any:
    """The JSON body of a 2xx answer; the typed error for anything else."""
    try:
        body = response.json() if response.content else None
    except ValueError:
        body = None
    status = response.status_code
    if status in RETRY_STATUSES and not (isinstance(body, dict) and isinstance(body.get("code"), str)):
        # A gateway's own page, not the API's answer: the API was not reached.
        raise ApiUnreachable(f"HTTP {status} from {response.request.url.path} (not the API's answer)", status=status)
    if status >= 400:
        raise error_from_response(status, body, response.text)
    return body


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None and v != ()}


# --- the calls ------------------------------------------------------------------------------------------------
def propose(action_type: str, target: str, params: dict[str, Any] | None, *, reason: str, tenant: str | None,
            priority: int, scheduled_for: datetime | None, idempotency_key: str | None) -> Call:
    body = ProposalIn(action_type=action_type, target=target, params=params or {}, reason=reason, tenant=tenant,
                      priority=priority, scheduled_for=scheduled_for)
    call = Call("POST", f"{V1}/actions", body=body.model_dump(mode="json", exclude_none=True))
    return call if idempotency_key is None else Call(call.method, call.path, body=call.body,
                                                     idempotency_key=idempotency_key)


def check(action_type: str, target: str, params: dict[str, Any] | None, *, reason: str, tenant: str | None,
          priority: int) -> Call:
    body = ProposalIn(action_type=action_type, target=target, params=params or {}, reason=reason, tenant=tenant,
                      priority=priority)
    return Call("POST", f"{V1}/policy/check", body=body.model_dump(mode="json", exclude_none=True))


def get(action_id: str) -> Call:
    return Call("GET", f"{V1}/actions/{action_id}")


def list_actions(*, states: Iterable[str], action_type: str | None, target: str | None, proposer: str | None,
                 tenant: str | None, limit: int, cursor: str | None) -> Call:
    return Call("GET", f"{V1}/actions", params=_clean({
        "state": list(states) or None, "action_type": action_type, "target": target, "proposer": proposer,
        "tenant": tenant, "limit": limit, "cursor": cursor}))


def pending(*, tenant: str | None, limit: int, cursor: str | None) -> Call:
    return Call("GET", f"{V1}/actions/pending", params=_clean({"tenant": tenant, "limit": limit, "cursor": cursor}))


def decide(action_id: str, decision: str, *, code: str | None, reason: str, action_hash: str | None) -> Call:
    body = DecisionIn(code=code, reason=reason, action_hash=action_hash)
    return Call("POST", f"{V1}/actions/{action_id}/{decision}", body=body.model_dump(mode="json", exclude_none=True))


def with_reason(action_id: str, verb: str, reason: str) -> Call:
    return Call("POST", f"{V1}/actions/{action_id}/{verb}", body=ReasonIn(reason=reason).model_dump(mode="json"))


def audit(action_id: str, *, limit: int, cursor: int | None) -> Call:
    return Call("GET", f"{V1}/actions/{action_id}/audit", params=_clean({"limit": limit, "cursor": cursor}))


def wait(action_id: str, *, after_version: int | None, timeout: float) -> Call:
    seconds = min(max(timeout, 0.001), MAX_SERVER_WAIT)
    return Call("GET", f"{V1}/actions/{action_id}/wait",
                params=_clean({"after_version": after_version, "timeout": seconds}),
                read_timeout=seconds + WAIT_SLACK)


def events(action_id: str, *, after: int | None, timeout: float) -> Call:
    seconds = min(max(timeout, 0.001), MAX_SERVER_WAIT)
    return Call("GET", f"{V1}/actions/{action_id}/events",
                params=_clean({"after": after, "timeout": seconds}), read_timeout=seconds + WAIT_SLACK)


def stop_states(until: Iterable[str] | None) -> frozenset[str]:
    """Where ``wait_for`` stops: the states asked for, and every final state (an action rejected while the
    caller waits for ``approved`` will never get there)."""
    return frozenset(until or ()) | FINAL_STATES


# --- server-sent events ---------------------------------------------------------------------------------------
@dataclass
class SseParser:
    """Feed lines of a ``text/event-stream``; ``feed`` returns ``(event, id, data)`` at each blank line."""

    event: str = "message"
    event_id: str | None = None
    data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> tuple[str, str | None, str] | None:
        if line == "":
            if not self.data:
                self.event = "message"
                return None
            out = (self.event, self.event_id, "\n".join(self.data))
            self.event, self.data = "message", []
            return out
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        elif name == "id":
            self.event_id = value
        return None


def state_event(data: str) -> ActionEvent:
    return ActionEvent.model_validate(json.loads(data))


def end_reason(data: str) -> str:
    return str(json.loads(data).get("reason", ""))
