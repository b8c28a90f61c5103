"""``saferails.client`` against the API served by uvicorn on loopback: the sync and the async client, typed
errors from problem+json, Idempotency-Key on every POST, retries only where they are safe, and waiting for an
outcome (long-poll and server-sent events) while the test changes the action from another principal."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest

from saferails.actions.lifecycle import FINAL_STATES as LIFECYCLE_FINAL_STATES
from saferails.client import FINAL_STATES, ActionEvent, ApiUnreachable, AsyncClient, Client, ClientError, WaitTimedOut
from saferails.errors import (
    ActionBlocked,
    ApprovalCodeInvalid,
    InsufficientPermissions,
    InvalidTransition,
    NotFound,
    StoreUnavailable,
    Unauthenticated,
)
from tests.support import eventually
from tests.support.http_world import HttpWorld
from tests.support.uvicorn_server import running

HIGH: dict[str, Any] = {"action_type": "reassign_manager", "target": "emp_123", "params": {"new_manager_id": "mgr_456"}}


@pytest.fixture
def served(world: HttpWorld) -> Iterator[str]:
    with running(world.client.app) as url:  # type: ignore[arg-type]
        yield url


@pytest.fixture
def base(sqlite_world: HttpWorld) -> Iterator[str]:
    with running(sqlite_world.client.app) as url:  # type: ignore[arg-type]
        yield url


def client(url: str, w: HttpWorld, who: str, **kwargs: Any) -> Client:
    return Client(url, w.tokens[who], clock=w.clock, **kwargs)


def test_an_agent_proposes_an_approver_approves_and_the_agent_reads_the_outcome(world: HttpWorld,
                                                                                 served: str) -> None:
    with client(served, world, "agent-1") as agent, client(served, world, "bob") as bob:
        proposed = agent.propose(**HIGH, reason="Improve team dynamics")
        assert (proposed.state, proposed.proposer, proposed.impact) == ("pending_approval", "agent-1", "high")
        assert [a.id for a in bob.pending().items] == [proposed.id]
        approved = bob.approve(proposed.id, world.code(proposed.id, "bob"), reason="fine")
        assert approved.state == "approved" and approved.version > proposed.version
        assert agent.get(proposed.id).state == "approved"
        assert [a.id for a in agent.list(states=["approved"]).items] == [proposed.id]
        assert world.store.execution.execute(proposed.id).state == "completed"
        with client(served, world, "olga") as olga:
            assert olga.rollback(proposed.id, reason="wrong manager").state == "rolled_back"
        with client(served, world, "aude") as aude:
            events = [r["event"] for r in aude.audit(proposed.id).records]
        assert events[-2:] == ["rollback_started", "rolled_back"] and "approved" in events


def test_errors_come_back_as_the_librarys_typed_errors(sqlite_world: HttpWorld, base: str) -> None:
    w = sqlite_world
    with client(base, w, "agent-1") as agent, client(base, w, "bob") as bob:
        action = agent.propose(**HIGH)
        with pytest.raises(InsufficientPermissions) as denied:
            agent.approve(action.id, "0000-0000-0000")
        assert denied.value.details["status"] == 403
        assert denied.value.details["required_permission"] == "actions:decide"
        assert denied.value.details["request_id"]
        with pytest.raises(NotFound) as missing:
            bob.get("no-such-action")
        assert missing.value.details["status"] == 404
        with pytest.raises(ApprovalCodeInvalid):
            bob.approve(action.id, "0000-0000-0000")
        with pytest.raises(ActionBlocked) as blocked:
            agent.propose("make_payment", "acct_1", {"amount": "10.00", "currency": "EUR", "payee": "vendor"})
        assert w.store.actions.get(str(blocked.value.details["action_id"])).state == "blocked"
        agent.cancel(action.id, reason="changed my mind")
        with pytest.raises(InvalidTransition):
            agent.cancel(action.id)
        # A code the library has no class for is a ClientError carrying code, status and detail.
        with pytest.raises(ClientError) as invalid:
            agent.list(limit=100_000)
        assert (invalid.value.error_code, invalid.value.status) == ("REQUEST_INVALID", 422)
        assert "limit" in invalid.value.detail
    with Client(base, "sr_wrong") as stranger, pytest.raises(Unauthenticated):
        stranger.get(action.id)


def test_another_tenants_action_is_not_found_through_the_client(world: HttpWorld, served: str) -> None:
    with client(served, world, "agent-acme") as acme, client(served, world, "bob") as bob:
        theirs = acme.propose(**HIGH)
        with pytest.raises(NotFound):
            bob.get(theirs.id)
        with pytest.raises(NotFound):
            bob.wait(theirs.id, timeout=1)
        with pytest.raises(NotFound):
            next(iter(bob.follow(theirs.id)))


def test_the_policy_dry_run_writes_nothing(sqlite_world: HttpWorld, base: str) -> None:
    with client(base, sqlite_world, "agent-1") as agent:
        decision = agent.check(**HIGH)
        assert (decision.outcome, decision.impact) == ("needs_approval", "high")
        assert agent.list().items == []


# --- idempotency and retries -----------------------------------------------------------------------------------


class Flaky(httpx.BaseTransport):
    """A real transport to the server that fails the first ``failures`` attempts: by refusing to connect, or by
    answering ``status`` without reaching the server. Records each request's Idempotency-Key."""

    def __init__(self, failures: int, status: int | None = None, *, after_sending: bool = False) -> None:
        self.inner = httpx.HTTPTransport()
        self.failures = failures
        self.status = status
        self.after_sending = after_sending
        self.keys: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.keys.append(request.headers.get("Idempotency-Key"))
        if self.failures > 0:
            self.failures -= 1
            if self.after_sending:  # the server did the work, the answer was lost
                self.inner.handle_request(request).read()
                raise httpx.ReadError("connection reset", request=request)
            if self.status is None:
                raise httpx.ConnectError("connection refused", request=request)
            if self.status == 599:  # a proxy's own page
                return httpx.Response(502, text="<html>Bad Gateway</html>", request=request)
            return httpx.Response(self.status, json={"code": "STORE_UNAVAILABLE", "detail": "busy"},
                                  headers={"content-type": "application/problem+json"}, request=request)
        return self.inner.handle_request(request)


def test_a_lost_answer_is_retried_with_the_same_key_and_proposes_once(sqlite_world: HttpWorld, base: str) -> None:
    waits: list[float] = []
    transport = Flaky(failures=1, after_sending=True)
    with client(base, sqlite_world, "agent-1", transport=transport, sleep=waits.append) as agent:
        action = agent.propose(**HIGH)
        agent.get(action.id)
        assert [a.id for a in agent.list().items] == [action.id]
    assert transport.keys[0] is not None and transport.keys[0] == transport.keys[1]
    assert transport.keys[2] is None  # GETs carry no key
    assert len(waits) == 1


def test_every_post_gets_its_own_key(sqlite_world: HttpWorld, base: str) -> None:
    transport = Flaky(failures=0)
    with client(base, sqlite_world, "agent-1", transport=transport) as agent:
        first, second = agent.propose(**HIGH), agent.propose(**HIGH | {"target": "mgr_old"})
    assert first.id != second.id
    assert len(set(transport.keys)) == 2


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retried_with_backoff_then_raised_typed(sqlite_world: HttpWorld, base: str,
                                                                   status: int) -> None:
    waits: list[float] = []
    ok = Flaky(failures=2, status=status)
    with client(base, sqlite_world, "agent-1", transport=ok, sleep=waits.append, retries=2) as agent:
        assert agent.propose(**HIGH).state == "pending_approval"
    assert len(waits) == 2 and len(set(ok.keys)) == 1
    failing = Flaky(failures=10, status=status)
    with client(base, sqlite_world, "agent-1", transport=failing, sleep=waits.append, retries=2) as agent, \
            pytest.raises(StoreUnavailable):
        agent.get("x")
    assert len(failing.keys) == 3


def test_a_gateways_own_error_page_is_api_unreachable(sqlite_world: HttpWorld, base: str) -> None:
    transport = Flaky(failures=10, status=599)
    with client(base, sqlite_world, "agent-1", transport=transport, sleep=lambda _s: None, retries=1) as agent, \
            pytest.raises(ApiUnreachable) as unreachable:
        agent.get("x")
    assert unreachable.value.status == 502 and len(transport.keys) == 2


def test_a_refused_connection_is_retried_then_raises_api_unreachable(sqlite_world: HttpWorld, base: str) -> None:
    waits: list[float] = []
    transport = Flaky(failures=10)
    with client(base, sqlite_world, "agent-1", transport=transport, sleep=waits.append, retries=3) as agent, \
            pytest.raises(ApiUnreachable):
        agent.propose(**HIGH)
    assert len(transport.keys) == 4 and len(set(transport.keys)) == 1
    assert waits == sorted(waits) or len(waits) == 3  # backoff grows (with jitter)


def test_client_errors_are_not_retried(sqlite_world: HttpWorld, base: str) -> None:
    transport = Flaky(failures=0)
    with client(base, sqlite_world, "agent-1", transport=transport) as agent, pytest.raises(NotFound):
        agent.get("missing")
    assert len(transport.keys) == 1


# --- waiting: long-poll and server-sent events -----------------------------------------------------------------


def test_a_long_poll_returns_when_the_approver_decides(world: HttpWorld, served: str) -> None:
    with client(served, world, "agent-1") as agent, client(served, world, "bob") as bob, \
            ThreadPoolExecutor(1) as pool:
        action = agent.propose(**HIGH)
        waiting = pool.submit(agent.wait, action.id, after_version=action.version, timeout=60)
        bob.approve(action.id, world.code(action.id, "bob"))
        assert waiting.result(timeout=60).state == "approved"


def test_a_long_poll_answers_the_action_as_it_is_when_the_wait_times_out(sqlite_world: HttpWorld,
                                                                          base: str) -> None:
    w = sqlite_world
    with client(base, w, "agent-1") as agent, ThreadPoolExecutor(1) as pool:
        action = agent.propose(**HIGH)
        waiting = pool.submit(agent.wait, action.id, after_version=action.version, timeout=30)
        answer = _advance_until_done(w, waiting, timedelta(seconds=31))
        assert (answer.state, answer.version) == ("pending_approval", action.version)
        # Past the answer's version, or already final: no waiting at all.
        w.store.actions.cancel(action.id, "agent-1", reason="x")
        assert agent.wait(action.id, after_version=action.version, timeout=30).state == "cancelled"
        assert agent.wait(action.id, after_version=10_000, timeout=30).state == "cancelled"


def test_waiting_needs_what_reading_needs(sqlite_world: HttpWorld, base: str) -> None:
    w = sqlite_world
    with client(base, w, "agent-1") as agent, client(base, w, "agent-2") as other:
        action = agent.propose(**HIGH)
        with pytest.raises(NotFound):
            other.wait(action.id, timeout=1)
        with pytest.raises(NotFound):
            next(iter(other.follow(action.id)))
    response = httpx.get(f"{base}/api/v1/actions/{action.id}/wait", params={"timeout": 61},
                         headers=w.headers("agent-1"))
    assert response.status_code == 422  # bounded: 60 s at most
    assert httpx.get(f"{base}/api/v1/actions/{action.id}/events").status_code == 401


def test_wait_for_follows_the_action_to_a_final_state(world: HttpWorld, served: str) -> None:
    with client(served, world, "agent-1") as agent, client(served, world, "carol") as carol, \
            ThreadPoolExecutor(1) as pool:
        action = agent.propose(**HIGH)
        outcome = pool.submit(agent.wait_for, action.id, until={"approved"})
        carol.reject(action.id, world.code(action.id, "carol"), reason="not now")
        assert outcome.result(timeout=60).state == "rejected"  # final: it will never be approved


def test_wait_for_gives_up_on_the_clients_clock(sqlite_world: HttpWorld, base: str) -> None:
    w = sqlite_world
    with client(base, w, "agent-1") as agent, ThreadPoolExecutor(1) as pool:
        action = agent.propose(**HIGH)
        waiting = pool.submit(agent.wait_for, action.id, timeout=90)
        with pytest.raises(WaitTimedOut) as timed_out:
            _advance_until_done(w, waiting, timedelta(seconds=31))
    assert timed_out.value.details["state"] == "pending_approval"


def test_server_sent_events_carry_each_state_change_and_end_at_a_final_state(world: HttpWorld,
                                                                            served: str) -> None:
    with client(served, world, "agent-1") as agent, client(served, world, "bob") as bob:
        action = agent.propose(**HIGH)
        events: list[ActionEvent] = []
        got_first = threading.Event()

        def listen() -> None:
            for event in agent.follow(action.id):
                events.append(event)
                got_first.set()

        listener = threading.Thread(target=listen)
        listener.start()
        assert got_first.wait(60)
        bob.approve(action.id, world.code(action.id, "bob"))
        world.store.execution.execute(action.id)
        listener.join(60)
        assert not listener.is_alive()
    assert [(e.from_state, e.to_state) for e in events] == [
        ("proposed", "pending_approval"), ("pending_approval", "approved"), ("approved", "executing"),
        ("executing", "completed")]
    assert events[-1].action.state == "completed"
    assert [e.sequence for e in events] == sorted({e.sequence for e in events})


def test_events_resume_after_the_last_event_id(sqlite_world: HttpWorld, base: str) -> None:
    w = sqlite_world
    with client(base, w, "agent-1") as agent:
        action = agent.propose(**HIGH)
        w.store.actions.cancel(action.id, "agent-1", reason="x")
        first, second = list(agent.follow(action.id))
        assert (first.to_state, second.to_state) == ("pending_approval", "cancelled")
        assert [e.to_state for e in agent.follow(action.id, after=first.sequence)] == ["cancelled"]
    stream = httpx.get(f"{base}/api/v1/actions/{action.id}/events", headers=w.headers(
        "agent-1", **{"Last-Event-ID": str(second.sequence)}))
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert "event: state" not in stream.text and '"reason":"final"' in stream.text


def test_an_event_stream_times_out_on_the_servers_clock_and_the_client_reconnects(sqlite_world: HttpWorld,
                                                                                  base: str) -> None:
    w = sqlite_world
    with client(base, w, "agent-1") as agent, ThreadPoolExecutor(1) as pool:
        action = agent.propose(**HIGH)
        raw = pool.submit(httpx.get, f"{base}/api/v1/actions/{action.id}/events",
                          params={"timeout": 5}, headers=w.headers("agent-1"), timeout=60)
        text = _advance_until_done(w, raw, timedelta(seconds=6)).text
        assert '"reason":"timeout"' in text and text.count("event: state") == 1
    streams = Counting()
    with client(base, w, "agent-1", transport=streams) as agent, ThreadPoolExecutor(1) as pool:
        followed = pool.submit(lambda: [e.to_state for e in agent.follow(action.id, timeout=10**7)])
        eventually(lambda: (w.clock.advance(timedelta(seconds=61)), streams.count("/events") >= 2)[1])
        w.store.actions.cancel(action.id, "agent-1", reason="x")
        # Resumed after the last event id: the first state change is not sent twice.
        assert followed.result(timeout=60) == ["pending_approval", "cancelled"]


class Counting(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return super().handle_request(request)

    def count(self, suffix: str) -> int:
        return sum(path.endswith(suffix) for path in list(self.paths))


# --- the async client ------------------------------------------------------------------------------------------


def test_the_async_client_proposes_waits_and_reads_the_outcome(world: HttpWorld, served: str) -> None:
    async def scenario() -> tuple[str, str, list[str], str]:
        async with AsyncClient(served, world.tokens["agent-1"], clock=world.clock) as agent, \
                AsyncClient(served, world.tokens["bob"], clock=world.clock) as bob:
            action = await agent.propose(**HIGH)
            waiting = asyncio.create_task(agent.wait_for(action.id, until={"approved"}))
            following = asyncio.create_task(_collect(agent, action.id))
            await bob.approve(action.id, world.code(action.id, "bob"))
            approved = await waiting
            world.store.actions.cancel(action.id, "olga", reason="not needed")
            states = await following
            with pytest.raises(InsufficientPermissions):
                await agent.approve(action.id, "0000-0000-0000")
            with pytest.raises(NotFound):
                await bob.get("missing")
            pending = await bob.pending()
            return approved.state, (await agent.get(action.id)).state, states, str(len(pending.items))

    approved, final, states, pending = asyncio.run(scenario())
    assert (approved, final, pending) == ("approved", "cancelled", "0")
    assert states == ["pending_approval", "approved", "cancelled"]


async def _collect(agent: AsyncClient, action_id: str) -> list[str]:
    return [event.to_state async for event in agent.follow(action_id)]


def test_the_async_client_retries_with_the_same_key(sqlite_world: HttpWorld, base: str) -> None:
    keys: list[str | None] = []

    class Once(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.AsyncHTTPTransport()
            self.failed = False

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            keys.append(request.headers.get("Idempotency-Key"))
            if not self.failed:
                self.failed = True
                raise httpx.ConnectError("refused", request=request)
            return await self.inner.handle_async_request(request)

    async def no_sleep(_seconds: float) -> None:
        return None

    async def scenario() -> str:
        async with AsyncClient(base, sqlite_world.tokens["agent-1"], transport=Once(), sleep=no_sleep) as agent:
            return (await agent.propose(**HIGH)).state

    assert asyncio.run(scenario()) == "pending_approval"
    assert len(keys) == 2 and keys[0] == keys[1] is not None


# --- the package -----------------------------------------------------------------------------------------------


def test_the_client_shares_the_servers_models_and_imports_no_server_code() -> None:
    assert frozenset(LIFECYCLE_FINAL_STATES) == FINAL_STATES
    out = subprocess.run([sys.executable, "-c", "import sys, saferails.client; print(sorted(m for m in sys.modules "
                          "if m.split('.')[0] in {'fastapi', 'starlette', 'sqlalchemy', 'uvicorn', 'prefect'}))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    from saferails.http import schemas
    from saferails.models import ActionOut, ProposalIn
    assert schemas.ActionOut is ActionOut and schemas.ProposalIn is ProposalIn


def _advance_until_done(w: HttpWorld, future: Future[Any], step: timedelta) -> Any:
    """Move the clock by ``step`` until ``future`` is done (the request may not have started waiting before the
    first move), and return its result. No sleeping for time to pass: only waiting for the other thread."""
    eventually(lambda: (w.clock.advance(step), future.done())[1])
    return future.result()

