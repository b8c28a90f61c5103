"""Helpers the service-view routers share: JSON data of frozen views, and cursor pages over ordered lists.

The cursor is the action list's (``routes``): opaque, pass back ``next_cursor`` as ``?cursor=``.
"""

import dataclasses
import json
from collections.abc import Sequence
from typing import Any, TypeVar

from saferails.audit.chain import canonical_json
from saferails.http.routes import _decode_cursor, _encode_cursor

T = TypeVar("T")


def jsonable(value: Any) -> Any:
    """Plain JSON data of a view dataclass or a list of them (datetimes as ISO-8601 UTC)."""
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.loads(canonical_json(value))


def offset_of(cursor: str | None) -> int:
    """Where the page starting at ``cursor`` begins (``InvalidInput`` for a cursor we did not issue)."""
    return _decode_cursor(cursor)


def page(items: Sequence[T], limit: int, cursor: str | None) -> dict[str, Any]:
    """``{"items", "next_cursor"}``: one page of an already-ordered list."""
    offset = _decode_cursor(cursor)
    chunk = list(items[offset:offset + limit])
    more = _encode_cursor(offset + limit) if len(items) > offset + limit else None
    return {"items": jsonable(chunk), "next_cursor": more}
