"""One writer at a time, in the order they arrived, for a store that admits only one (SQLite).

SQLite takes one writer lock for the whole database; a transaction that finds it taken sleeps in SQLite's busy
handler and retries (1, 2, 5 ... 100 ms naps). With many concurrent requests in the threadpool that turns into
seconds-long tails and lost throughput: the lock is often free while every waiter naps. Queueing the writing
requests of this process on one FIFO lock in the event loop hands the writer lock over without a nap, and lets
reads (WAL snapshots, never blocked) go by. Other processes sharing the file still meet the busy handler.

A request's body is read in full (the edge already bounds its size) before it queues, so a slow sender never
holds the queue. PostgreSQL has row locks and a fair lock queue: the middleware is not installed for it.
"""

from __future__ import annotations

import asyncio
import weakref

from starlette.types import ASGIApp, Message, Receive, Scope, Send

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SerialWrites:
    """ASGI middleware: requests with a writing method run one at a time per event loop, first come first
    served."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # One lock per event loop: an asyncio.Lock belongs to the loop it first waited on.
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary())

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in READ_METHODS:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        async with self._lock():
            await self.app(scope, replay, send)
