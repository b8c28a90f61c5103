"""The synchronous client (httpx): ``Client(base_url, token)``. See ``saferails.client`` for the contract."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import httpx

from saferails.client import _calls as calls
from saferails.client.errors import ApiUnreachable, WaitTimedOut
from saferails.clock import Clock, SystemClock
from saferails.models import FINAL_STATES, ActionEvent, ActionOut, ActionPage, AuditPageOut, DecisionOut

DEFAULT_TIMEOUT = httpx.Timeout(10.0)


class Client:
    """The API as one agent, approver or operator (the principal ``token`` belongs to).

    ``retries`` extra attempts are made on connection errors, timeouts and 502/503/504, ``backoff`` seconds
    doubling (with jitter) in between, through ``sleep``; every POST sends an ``Idempotency-Key`` (one UUID per
    call, the same on each retry). ``clock`` bounds ``wait_for`` and ``follow`` (tests pass a ``ManualClock``).
    ``transport`` is httpx's (tests, proxies). Use as a context manager or call :meth:`close`.
    """

    def __init__(self, base_url: str, token: str, *, timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
                 retries: int = 3, backoff: float = 0.2, sleep: Callable[[float], None] = time.sleep,
                 clock: Clock | None = None, transport: httpx.BaseTransport | None = None) -> None:
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._http = httpx.Client(base_url=base_url.rstrip("/"), transport=transport, timeout=self._timeout,
                                  headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self.clock: Clock = clock or SystemClock()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- transport ----------------------------------------------------------------------------------------------
    def _send(self, call: calls.Call) -> Any:
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._http.request(call.method, call.path, params=call.params, json=call.body,
                                              headers=call.headers(), timeout=call.timeout(self._timeout))
            except calls.RETRY_EXCEPTIONS as exc:
                if last:
                    raise ApiUnreachable(f"{call.method} {call.path}: {type(exc).__name__}: {exc}") from exc
            else:
                if not (calls.should_retry(response) and not last):
                    return calls.parse(response)
            self._sleep(calls.backoff(attempt, self.backoff))
        raise AssertionError("unreachable: the last attempt returns or raises")

    # --- actions ------------------------------------------------------------------------------------------------
    def propose(self, action_type: str, target: str, params: dict[str, Any] | None = None, *, reason: str = "",
                tenant: str | None = None, priority: int = 5, scheduled_for: datetime | None = None,
                idempotency_key: str | None = None) -> ActionOut:
        """Propose as this principal. A policy refusal raises its typed error (``ActionBlocked``,
        ``RateLimited`` ...) naming the recorded action. Pass ``idempotency_key`` to make a retried proposal
        after a crash of the agent itself find the first one."""
        return ActionOut.model_validate(self._send(calls.propose(
            action_type, target, params, reason=reason, tenant=tenant, priority=priority,
            scheduled_for=scheduled_for, idempotency_key=idempotency_key)))

    def check(self, action_type: str, target: str, params: dict[str, Any] | None = None, *, reason: str = "",
              tenant: str | None = None, priority: int = 5) -> DecisionOut:
        """Policy dry run: what would be decided for this proposal now. Writes nothing."""
        return DecisionOut.model_validate(self._send(calls.check(
            action_type, target, params, reason=reason, tenant=tenant, priority=priority)))

    def get(self, action_id: str) -> ActionOut:
        return ActionOut.model_validate(self._send(calls.get(action_id)))

    def list(self, *, states: Iterable[str] = (), action_type: str | None = None, target: str | None = None,
             proposer: str | None = None, tenant: str | None = None, limit: int = 50,
             cursor: str | None = None) -> ActionPage:
        """One page of the actions this principal may see; pass ``next_cursor`` back for the next."""
        return ActionPage.model_validate(self._send(calls.list_actions(
            states=states, action_type=action_type, target=target, proposer=proposer, tenant=tenant, limit=limit,
            cursor=cursor)))

    def pending(self, *, tenant: str | None = None, limit: int = 50, cursor: str | None = None) -> ActionPage:
        """The approval queue."""
        return ActionPage.model_validate(self._send(calls.pending(tenant=tenant, limit=limit, cursor=cursor)))

    def approve(self, action_id: str, code: str | None, *, reason: str = "",
                action_hash: str | None = None) -> ActionOut:
        """Approve as this principal with its one-time ``code``; ``action_hash`` binds it to what was read."""
        return ActionOut.model_validate(self._send(calls.decide(
            action_id, "approve", code=code, reason=reason, action_hash=action_hash)))

    def reject(self, action_id: str, code: str | None = None, *, reason: str = "",
               action_hash: str | None = None) -> ActionOut:
        return ActionOut.model_validate(self._send(calls.decide(
            action_id, "reject", code=code, reason=reason, action_hash=action_hash)))

    def cancel(self, action_id: str, *, reason: str = "") -> ActionOut:
        return ActionOut.model_validate(self._send(calls.with_reason(action_id, "cancel", reason)))

    def rollback(self, action_id: str, *, reason: str = "") -> ActionOut:
        return ActionOut.model_validate(self._send(calls.with_reason(action_id, "rollback", reason)))

    def audit(self, action_id: str, *, limit: int = 100, cursor: int | None = None) -> AuditPageOut:
        """One page of the action's audit trail, oldest first."""
        return AuditPageOut.model_validate(self._send(calls.audit(action_id, limit=limit, cursor=cursor)))

    # --- waiting ------------------------------------------------------------------------------------------------
    def wait(self, action_id: str, *, after_version: int | None = None, timeout: float = 30.0) -> ActionOut:
        """One long-poll (at most 60 s): the action once its version passes ``after_version`` or it is final, or
        as it is when the server's wait ended."""
        return ActionOut.model_validate(self._send(calls.wait(action_id, after_version=after_version,
                                                              timeout=timeout)))

    def wait_for(self, action_id: str, *, until: Iterable[str] | None = None, timeout: float = 300.0) -> ActionOut:
        """Long-poll until the action is in one of ``until`` or in a final state (default: a final state);
        ``WaitTimedOut`` after ``timeout`` seconds on ``clock``."""
        stop = calls.stop_states(until)
        deadline = self.clock.now() + timedelta(seconds=timeout)
        action = self.get(action_id)
        while action.state not in stop:
            remaining = (deadline - self.clock.now()).total_seconds()
            if remaining <= 0:
                raise WaitTimedOut(action_id, action.state, sorted(stop))
            action = self.wait(action_id, after_version=action.version, timeout=remaining)
        return action

    def follow(self, action_id: str, *, after: int | None = None, timeout: float = 300.0) -> Iterator[ActionEvent]:
        """The action's state changes as server-sent events, reconnecting (with the last event id) until a final
        state; ``WaitTimedOut`` after ``timeout`` seconds on ``clock``."""
        deadline = self.clock.now() + timedelta(seconds=timeout)
        failures = 0
        while True:
            remaining = (deadline - self.clock.now()).total_seconds()
            if remaining <= 0:
                raise WaitTimedOut(action_id, self.get(action_id).state, sorted(FINAL_STATES))
            call = calls.events(action_id, after=after, timeout=remaining)
            ended = None
            try:
                with self._http.stream("GET", call.path, params=call.params, timeout=call.timeout(self._timeout),
                                       headers={"Accept": "text/event-stream"}) as response:
                    if response.status_code >= 400:
                        response.read()
                        calls.parse(response)
                    parser = calls.SseParser()
                    for line in response.iter_lines():
                        message = parser.feed(line)
                        if message is None:
                            continue
                        kind, event_id, data = message
                        if kind == "state":
                            event = calls.state_event(data)
                            after = event.sequence if event_id is None else int(event_id)
                            failures = 0
                            yield event
                        elif kind == "end":
                            ended = calls.end_reason(data)
                            break
            except calls.RETRY_EXCEPTIONS as exc:
                failures += 1
                if failures > self.retries:
                    raise ApiUnreachable(f"GET {call.path}: {type(exc).__name__}: {exc}") from exc
                self._sleep(calls.backoff(failures - 1, self.backoff))
            if ended == "final":
                return
