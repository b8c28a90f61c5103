"""The client's errors: the server's problem+json answer turned back into the library's typed errors.

A problem body whose ``code`` names a :class:`~saferails.errors.SaferailsError` subclass (``NOT_FOUND``,
``INSUFFICIENT_PERMISSIONS``, ``UNAUTHENTICATED``, ``ACTION_BLOCKED``, ``APPROVAL_CODE_INVALID`` ...) is raised as
that class, so ``except NotFound`` works the same in-process and over HTTP; its ``message`` is the server's
``detail`` and its ``details`` are the problem's extension members plus ``status`` and ``request_id``. Any other
answer (a framework code like ``REQUEST_INVALID``, a proxy's HTML page) is a :class:`ClientError` carrying the
code, status and detail.
"""

from __future__ import annotations

from typing import Any

from saferails.errors import SaferailsError

# RFC 9457 members and ours that are not extension members.
_RESERVED = frozenset({"type", "title", "status", "detail", "instance", "code", "message", "request_id"})


class ClientError(SaferailsError):
    """The API answered an error the library has no class for. ``error_code`` is the server's ``code`` (or
    ``HTTP_ERROR`` when the body was not problem+json), ``status`` the HTTP status, ``detail`` its text and
    ``problem`` the whole body."""

    code = "API_ERROR"
    exit_code = 1

    def __init__(self, detail: str, *, error_code: str, status: int | None,
                 problem: dict[str, Any] | None = None) -> None:
        super().__init__(detail, error_code=error_code, status=status, problem=problem or {})
        self.error_code = error_code
        self.status = status
        self.detail = detail
        self.problem: dict[str, Any] = problem or {}


class ApiUnreachable(ClientError):
    """No answer from the API after every retry (connection refused or dropped, timeouts, 502/503/504 without a
    problem body)."""

    code = "API_UNREACHABLE"
    http_status = 503

    def __init__(self, detail: str, *, status: int | None = None) -> None:
        super().__init__(detail, error_code=self.code, status=status)


class WaitTimedOut(ClientError):
    """``wait_for`` gave up: the action did not reach the awaited states in time. ``action`` is the last seen."""

    code = "WAIT_TIMED_OUT"
    http_status = 504

    def __init__(self, action_id: str, state: str, until: list[str]) -> None:
        super().__init__(f"action {action_id} is still {state!r}, not in {until}", error_code=self.code,
                         status=None)
        self.details.update(action_id=action_id, state=state, until=until)


def _error_classes() -> dict[str, type[SaferailsError]]:
    """Every loaded error class by code (walked at each call: feature modules imported later count too)."""
    found: dict[str, type[SaferailsError]] = {}
    pending: list[type[SaferailsError]] = [SaferailsError]
    while pending:
        cls = pending.pop()
        if not issubclass(cls, ClientError):
            found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


def error_from_response(status: int, body: Any, text: str) -> SaferailsError:
    """The exception for an error answer (``status`` >= 400) with parsed JSON ``body`` (or None) and raw
    ``text``. The typed class is built without its own constructor: the server already wrote the message."""
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        code = str(body["code"])
        detail = str(body.get("detail") or body.get("message") or f"HTTP {status}")
        cls = _error_classes().get(code)
        if cls is None:
            return ClientError(detail, error_code=code, status=status, problem=body)
        extras = {k: v for k, v in body.items() if k not in _RESERVED}
        exc = cls.__new__(cls)
        SaferailsError.__init__(exc, detail, **extras, status=status, request_id=body.get("request_id"))
        return exc
    snippet = " ".join(text.split())[:200]
    return ClientError(f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}", error_code="HTTP_ERROR",
                       status=status)
