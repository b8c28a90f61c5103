"""``Idempotency-Key`` for POST requests: a retry of the same request gets the first response back.

Scope of a key: the caller (principal id) and the key. The first successful (2xx) response is kept with a
fingerprint of the request (method, path, body bytes). The same key with the same request replays it (header
``Idempotent-Replayed: true``) without running the operation again; the same key with another request is refused
with ``IdempotencyKeyReused`` (422). Failures are not kept: a failed operation wrote nothing, so a retry simply
runs again. Concurrent requests with one key run one at a time, so the second sees the first's response.

This cache lives in the process (bounded, entries expire after ``ttl``). Proposals are also idempotent in the
store itself (the key becomes the proposal's ``idempotency_key``), which holds across processes and restarts;
for the other POSTs a retry landing on another worker runs the operation again, which the service makes safe
(a repeated decision counts once; a spent approval code or a finished action is refused, never applied twice).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from saferails.clock import Clock
from saferails.errors import IdempotencyKeyReused, InvalidInput

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class StoredResponse:
    fingerprint: str
    status: int
    body: Any
    stored_at: datetime


def fingerprint(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable characters", header=HEADER)
    return key


class IdempotencyCache:
    """In-process store of first responses, keyed by (principal, key). Thread-safe."""

    def __init__(self, clock: Clock, *, ttl: timedelta = timedelta(hours=24), max_entries: int = 10_000) -> None:
        self.clock = clock
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], StoredResponse] = OrderedDict()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, principal_id: str, key: str) -> threading.Lock:
        """The lock that serialises requests with this key (hold it across lookup, operation and ``store``)."""
        with self._guard:
            if len(self._locks) > 2 * self.max_entries:
                # Keys whose requests failed keep a lock but no entry: drop the idle ones so the table stays bounded.
                for idle in [k for k, lk in self._locks.items() if k not in self._entries and not lk.locked()]:
                    del self._locks[idle]
            return self._locks.setdefault((principal_id, key), threading.Lock())

    def lookup(self, principal_id: str, key: str, print_: str) -> StoredResponse | None:
        """The stored response for this key, None if there is none, or ``IdempotencyKeyReused`` when the key
        was used for a different request."""
        now = self.clock.now()
        with self._guard:
            entry = self._entries.get((principal_id, key))
            if entry is not None and now - entry.stored_at >= self.ttl:
                del self._entries[(principal_id, key)]
                entry = None
        if entry is None:
            return None
        if entry.fingerprint != print_:
            raise IdempotencyKeyReused(
                f"{HEADER} {key!r} was already used for a different request", idempotency_key=key
            )
        return entry

    def store(self, principal_id: str, key: str, print_: str, status: int, body: Any) -> None:
        with self._guard:
            self._entries[(principal_id, key)] = StoredResponse(print_, status, body, self.clock.now())
            self._entries.move_to_end((principal_id, key))
            while len(self._entries) > self.max_entries:
                old, _ = self._entries.popitem(last=False)
                self._locks.pop(old, None)
