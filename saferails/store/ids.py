"""Short id prefixes: what a person copies from a listing (``5e2c550c``) resolved to the one full id.

One resolver for every entity whose id is a UUID (actions, tasks, action plans, runbook executions), so every
edge (CLI, scripts) accepts the same forms: the full id, or a prefix of at least :data:`MIN_PREFIX` hex
characters (dashes allowed) that starts exactly one id.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from saferails.errors import AmbiguousId, InvalidInput, NotFound

MIN_PREFIX = 4
MAX_CANDIDATES = 10
_PREFIX = re.compile(r"[0-9a-f-]+")


def resolve_id(session: Session, model: Any, value: str, entity_type: str) -> str:
    """The full id of the one ``model`` row whose id is ``value`` or starts with it.

    ``model`` is a mapped class with a string ``id`` column. Raises ``NotFound`` when nothing matches,
    ``AmbiguousId`` (listing up to :data:`MAX_CANDIDATES` candidates) when several do, and ``InvalidInput`` for
    a prefix shorter than :data:`MIN_PREFIX` characters or with characters an id never has (so no prefix can
    carry a LIKE wildcard)."""
    column = model.id
    if session.execute(sa.select(column).where(column == value)).scalar_one_or_none() is not None:
        return value
    prefix = value.strip().lower()
    if not _PREFIX.fullmatch(prefix):
        raise NotFound(entity_type, value)
    if len(prefix.replace("-", "")) < MIN_PREFIX:
        raise InvalidInput(f"{entity_type} id {value!r} is too short: give at least {MIN_PREFIX} hex characters",
                           entity_type=entity_type, prefix=value)
    stmt = sa.select(column).where(column.like(f"{prefix}%")).order_by(column).limit(MAX_CANDIDATES + 1)
    found = [str(i) for i in session.execute(stmt).scalars()]
    if not found:
        raise NotFound(entity_type, value)
    if len(found) > 1:
        raise AmbiguousId(entity_type, value, found[:MAX_CANDIDATES])
    return found[0]
