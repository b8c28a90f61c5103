"""A small API-key table for the HTTP tests: the ``Authenticator`` seam implemented for real, with hashed keys.

Keys are random, shown once by ``issue`` and kept only as SHA-256 digests, as the identity service keeps them.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from typing import Any

from saferails.errors import Unauthenticated
from saferails.http.auth import Principal


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyTable:
    def __init__(self) -> None:
        self._by_digest: dict[str, Principal] = {}
        self._lock = threading.Lock()

    def issue(self, principal_id: str, roles: set[str], tenants: set[str] | None = None) -> str:
        key = "sr_" + secrets.token_urlsafe(32)
        self.add(key, principal_id, roles, tenants)
        return key

    def add(self, key: str, principal_id: str, roles: set[str], tenants: set[str] | None = None) -> None:
        principal = Principal(principal_id, frozenset(roles), frozenset(tenants or {"default"}))
        with self._lock:
            self._by_digest[_digest(key)] = principal

    def revoke(self, key: str) -> None:
        with self._lock:
            self._by_digest.pop(_digest(key), None)

    def authenticate(self, token: str) -> Principal:
        with self._lock:
            principal = self._by_digest.get(_digest(token))
        if principal is None:
            raise Unauthenticated("invalid credentials", invalid_token=True)
        return principal


KEYS_ENV = "SAFERAILS_TEST_HTTP_KEYS"


def from_environment(_store: Any) -> ApiKeyTable:
    """An authenticator factory for ``saferails.http.server`` in a test subprocess: keys from ``KEYS_ENV``
    (JSON ``{key: [principal id, [roles], [tenants]]}``)."""
    table = ApiKeyTable()
    for key, (principal_id, roles, tenants) in json.loads(os.environ[KEYS_ENV]).items():
        table.add(key, principal_id, set(roles), set(tenants))
    return table
