"""One error shape for every HTTP failure: RFC 9457 problem details (``application/problem+json``).

Every body has ``type`` (``urn:saferails:error:<CODE>``), ``title``, ``status``, ``detail``, ``instance`` (the
path), our stable ``code``, ``message`` (= ``detail``, the field name the action playbook's clients read) and
``request_id``; the error's details follow as extension members (``required_permission``, ``user_role``,
``action_id``, ``retry_after`` ...). Details whose key starts with ``internal`` are never sent, and a 5xx says
nothing about internals: the request id is what to quote when asking an operator.

Also here: the edge middleware (request id, body size limit, the last-resort 500) that wraps the whole app.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from saferails.errors import PayloadTooLarge, SaferailsError

logger = logging.getLogger("saferails.http")
access_log = logging.getLogger("saferails.http.access")

PROBLEM_JSON = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_RESERVED = frozenset({"type", "title", "status", "detail", "instance", "code", "message", "request_id"})
_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}
INTERNAL_ERROR = "INTERNAL_ERROR"


def problem_type(code: str) -> str:
    return f"urn:saferails:error:{code}"


def title_for(code: str) -> str:
    return code.replace("_", " ").capitalize()


def problem_body(
    status: int, code: str, detail: str, *, instance: str, request_id: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": title_for(code),
        "status": status,
        "detail": detail,
        "instance": instance,
        "code": code,
        "message": detail,
        "request_id": request_id,
    }
    for key, value in (extra or {}).items():
        if key not in _RESERVED and not key.startswith("internal"):
            body[key] = value
    return body


def error_body(exc: SaferailsError, *, instance: str, request_id: str) -> dict[str, Any]:
    """The problem body for a typed error. A 5xx keeps only the code: its message may name internals."""
    status = exc.http_status
    if status >= 500:
        return problem_body(status, exc.code, "the server could not complete the request",
                            instance=instance, request_id=request_id)
    # Details are JSON-ready by contract; a round trip guarantees it (datetimes become strings).
    extra = json.loads(json.dumps(exc.details, default=str))
    return problem_body(status, exc.code, exc.message, instance=instance, request_id=request_id, extra=extra)


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "-")


def problem_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    all_headers = dict(headers or {})
    if status == 401:
        all_headers.setdefault("WWW-Authenticate", 'Bearer realm="saferails"')
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=all_headers)


def error_response(request: Request, exc: SaferailsError) -> JSONResponse:
    body = error_body(exc, instance=request.url.path, request_id=request_id_of(request))
    headers = {}
    retry_at = _http_date(exc.details.get("retry_after"))
    if exc.http_status == 429 and retry_at is not None:
        headers["Retry-After"] = retry_at
    if exc.http_status == 401 and exc.details.get("invalid_token"):
        headers["WWW-Authenticate"] = 'Bearer realm="saferails", error="invalid_token"'
    if exc.details.get("required_permission") is not None:
        # RFC 6750 section 3.1: a valid token without the needed permission.
        headers["WWW-Authenticate"] = 'Bearer realm="saferails", error="insufficient_scope"'
    return problem_response(exc.http_status, body, headers)


def _http_date(value: Any) -> str | None:
    """An ISO timestamp as an HTTP-date (what ``Retry-After`` takes), or None."""
    try:
        moment = datetime.fromisoformat(str(value)) if value is not None else None
    except ValueError:
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return format_datetime(moment.astimezone(UTC), usegmt=True)


class _BodyTooLarge(Exception):
    """Raised inside ``receive`` when the streamed body passes the limit (the route never sees the rest)."""


def install_error_handlers(app: FastAPI) -> None:
    """Map the typed hierarchy, request validation and framework HTTP errors to problem details."""

    async def on_saferails(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SaferailsError)
        if exc.http_status >= 500:
            logger.error("request %s failed: %s %s", request_id_of(request), exc.code, exc.message)
        return error_response(request, exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        summary = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
        body = problem_body(422, "REQUEST_INVALID", f"the request is invalid: {summary}",
                            instance=request.url.path, request_id=request_id_of(request), extra={"errors": errors})
        return problem_response(422, body)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc.__cause__, _BodyTooLarge):
            return error_response(request, _too_large())
        status = exc.status_code
        code = _HTTP_CODES.get(status, "HTTP_ERROR" if status < 500 else INTERNAL_ERROR)
        detail = str(exc.detail) if status < 500 else "the server could not complete the request"
        body = problem_body(status, code, detail, instance=request.url.path, request_id=request_id_of(request))
        return problem_response(status, body, dict(exc.headers or {}))

    app.add_exception_handler(SaferailsError, on_saferails)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


def _too_large(limit: int | None = None) -> PayloadTooLarge:
    return PayloadTooLarge("the request body is too large", max_bytes=limit)


class EdgeMiddleware:
    """Outermost layer: assigns the request id (a sane ``X-Request-ID`` from the client is kept, otherwise a new
    UUID) and echoes it on every response, refuses bodies over ``max_body_bytes`` with 413 (by
    ``Content-Length`` up front and by counting streamed chunks), and turns any exception that escaped the app
    into a problem+json 500 that names no internals (the traceback goes to the log with the request id)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        given = headers.get(REQUEST_ID_HEADER, "")
        request_id = given if _REQUEST_ID_OK.match(given) else str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        path = str(scope.get("path", ""))
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await self._send_problem(send, 413, _too_large(self.max_body_bytes), path, request_id)
            return
        received = 0
        started = False
        status = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge()
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal started
            nonlocal status
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except _BodyTooLarge:
            if not started:
                await self._send_problem(send, 413, _too_large(self.max_body_bytes), path, request_id)
                status = 413
        except Exception:  # the last resort: log everything, show nothing internal
            logger.exception("unhandled error in request %s %s", request_id, path)
            if not started:
                body = problem_body(500, INTERNAL_ERROR, "the server could not complete the request",
                                    instance=path, request_id=request_id)
                await self._send(send, 500, body, request_id)
                status = 500
        finally:
            # The access log carries the request id and the principal: the service's audit records do not take
            # a request id, so this is where a request is correlated with what it changed.
            access_log.info("%s %s %s principal=%s status=%s", request_id, scope.get("method"), path,
                            scope["state"].get("principal_id", "-"), status)

    async def _send_problem(self, send: Send, status: int, exc: SaferailsError, path: str, request_id: str) -> None:
        await self._send(send, status, error_body(exc, instance=path, request_id=request_id), request_id)

    @staticmethod
    async def _send(send: Send, status: int, body: dict[str, Any], request_id: str) -> None:
        payload = json.dumps(body).encode()
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(payload)).encode()),
                (REQUEST_ID_HEADER.lower().encode(), request_id.encode()),
            ],
        })
        await send({"type": "http.response.body", "body": payload})
