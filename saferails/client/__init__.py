"""``saferails.client``: the HTTP API from Python, for agents, approvers and operators in other processes.

``Client`` (sync) and ``AsyncClient`` (asyncio) over httpx, with the same methods: ``propose``, ``check`` (policy
dry run), ``get``, ``list``, ``pending``, ``approve`` (with the one-time code), ``reject``, ``cancel``,
``rollback``, ``audit`` (the action's trail), ``wait`` (one long-poll), ``wait_for`` (long-polls until a state)
and ``follow`` (server-sent events until a final state). Answers are the wire models of ``saferails.models``,
the same classes the server validates against.

Contract:

- an error answer is raised as the library's typed error named by its ``code`` (``NotFound``,
  ``InsufficientPermissions``, ``Unauthenticated``, ``ActionBlocked``, ...; see ``saferails.client.errors``),
  otherwise as :class:`ClientError` with ``error_code``, ``status`` and ``detail``;
- every POST carries an ``Idempotency-Key`` (a UUID per call, the same on each retry), so a retry never
  proposes or approves twice;
- only connection errors, timeouts and 502/503/504 are retried (``retries`` times, exponential backoff with
  jitter); a 4xx or 500 is raised at once.

Importing this package imports httpx, pydantic and ``saferails.models`` / ``saferails.errors`` only: no FastAPI,
no SQLAlchemy, no store.
"""

from saferails.client.aio import AsyncClient
from saferails.client.errors import ApiUnreachable, ClientError, WaitTimedOut
from saferails.client.sync import Client
from saferails.models import FINAL_STATES, ActionEvent, ActionOut, ActionPage, AuditPageOut, DecisionOut

__all__ = ["FINAL_STATES", "ActionEvent", "ActionOut", "ActionPage", "ApiUnreachable", "AsyncClient", "AuditPageOut",
           "Client", "ClientError", "DecisionOut", "WaitTimedOut"]
