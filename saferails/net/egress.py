"""The egress guard: the one door for outgoing HTTP requests made on behalf of a proposal or a configuration
(the webhook notifier, the workflow dispatcher's trigger webhooks, runbook call-service steps).

Hazard: an agent or a trigger author names a URL that reaches inside our network - the cloud metadata service at
169.254.169.254, an admin port on 127.0.0.1, a database on 10.0.0.5 - and reads the answer back through evidence
or logs (server-side request forgery). :func:`send` therefore

* accepts only ``http``/``https`` URLs;
* resolves the host the way the connection will (``getaddrinfo``, so ``2130706433``, ``0x7f.1`` and a DNS name
  pointing at 127.0.0.1 are all seen as 127.0.0.1) and refuses when ANY address is loopback, link-local
  (169.254/16, fe80::/10), private (10/8, 172.16/12, 192.168/16, 100.64/10), unique-local IPv6 (fc00::/7),
  multicast, unspecified, reserved or otherwise not globally routable - unless the host is on the policy's
  ``allowed_hosts`` (``allow_private`` lets private and unique-local ranges through, never loopback, link-local,
  multicast or unspecified);
* checks the address it actually connected to (a name that re-binds between our lookup and the connection is
  refused before its answer is read);
* never follows redirects on its own: each hop (at most ``max_redirects``) is checked like the first URL;
* streams the answer and keeps at most ``max_response_bytes`` (``truncated`` says when it cut).

Refusals raise :class:`saferails.errors.EgressRefused` (code ``EGRESS_REFUSED``); transport failures stay
``httpx.HTTPError`` (an unresolvable name is an ``httpx.ConnectError``) so callers' retry rules apply unchanged.
The policy is a value the composition root builds from settings; this module reads no environment.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from saferails.errors import EgressRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
MIB = 1024 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, as the connection would resolve it. ``socket.gaierror`` if none."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


@dataclass(frozen=True)
class EgressPolicy:
    """Where outgoing requests may go. The default refuses every non-public address.

    ``allowed_hosts``: host names or IP literals (case-insensitive, exact match, no port) that may resolve to any
    address, e.g. ``{"127.0.0.1"}`` for a local test service. ``allow_private``: let RFC 1918, shared
    (100.64/10) and unique-local IPv6 addresses through for every host (loopback, link-local, multicast and
    unspecified stay refused). ``max_response_bytes``: the most of a response body ever read.
    ``max_redirects``: redirect hops followed, each one checked.
    """

    allowed_hosts: frozenset[str] = frozenset()
    allow_private: bool = False
    max_response_bytes: int = MIB
    max_redirects: int = 3
    resolver: Resolver = field(default=system_resolver, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_hosts", frozenset(_norm(h) for h in self.allowed_hosts))
        if self.max_response_bytes < 1 or self.max_redirects < 0:
            raise ValueError("max_response_bytes must be >= 1 and max_redirects >= 0")

    def allows_host(self, host: str) -> bool:
        return _norm(host) in self.allowed_hosts


@dataclass(frozen=True)
class EgressResponse:
    """A response read through the guard: at most the policy's ``max_response_bytes`` of body."""

    url: str
    status_code: int
    headers: Mapping[str, str]
    content: bytes
    truncated: bool

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; ``ValueError`` when it is not JSON (or was cut)."""
        return json.loads(self.content)


def _norm(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def forbidden_reason(address: IPAddress, policy: EgressPolicy) -> str | None:
    """Why ``address`` may not be reached under ``policy`` (``"loopback"``, ``"link-local"``, ...), or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "unspecified"
    private = None
    if isinstance(address, ipaddress.IPv6Address) and address in _UNIQUE_LOCAL:
        private = "unique-local"
    elif isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        private = "shared"
    elif address.is_private:
        private = "private"
    if private is not None:
        return None if policy.allow_private else private
    return None if address.is_global else "not globally routable"


def check_url(url: str, policy: EgressPolicy) -> httpx.URL:
    """The parsed ``url`` when ``policy`` lets a request go there; raises ``EgressRefused`` otherwise and
    ``httpx.ConnectError`` when the host does not resolve."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise EgressRefused(f"refused to send to {url!r}: not a valid URL ({exc})", url=url,
                            reason="invalid_url") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise EgressRefused(f"refused to send to {url!r}: only http(s) URLs with a host", url=url,
                            reason="scheme")
    host = parsed.raw_host.decode("ascii")
    if policy.allows_host(host):
        return parsed
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in policy.resolver(host, port)]
    except (OSError, UnicodeError) as exc:
        raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from exc
    if not addresses:
        raise httpx.ConnectError(f"cannot resolve {host}: no addresses")
    for address in addresses:
        reason = forbidden_reason(address, policy)
        if reason is not None:
            raise EgressRefused(
                f"refused to send to {host}: it resolves to {address} ({reason}), which is not on the egress "
                "allowlist",
                url=url, host=host, address=str(address), reason=reason,
            )
    return parsed


def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    policy: EgressPolicy,
    content: bytes | None = None,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> EgressResponse:
    """Send one request through the guard (see the module docstring); the final response, redirects followed.

    A 3xx beyond ``max_redirects`` is returned as it is. 301/302/303 continue as a body-less GET (as browsers
    do); 307/308 repeat the method and body. Raises ``EgressRefused`` for any forbidden hop.
    """
    body_kwargs: dict[str, Any] = {"content": content} if json_body is None else {"json": json_body}
    extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    for hop in range(policy.max_redirects + 1):
        target = check_url(url, policy)
        request = client.build_request(method, target, headers=dict(headers or {}), **body_kwargs, **extra)
        response = client.send(request, stream=True, follow_redirects=False)
        try:
            _check_peer(response, target, policy)
            location = response.headers.get("location")
            if response.status_code in _REDIRECTS and location and hop < policy.max_redirects:
                url = str(target.join(location))
                if response.status_code in (301, 302, 303) and method.upper() != "HEAD":
                    method, body_kwargs = "GET", {}
                continue
            body, truncated = _read_capped(response, policy.max_response_bytes)
            return EgressResponse(str(target), response.status_code, dict(response.headers), body, truncated)
        finally:
            response.close()
    raise AssertionError("unreachable: the last hop always returns")  # pragma: no cover


def _check_peer(response: httpx.Response, target: httpx.URL, policy: EgressPolicy) -> None:
    host = target.raw_host.decode("ascii")
    if policy.allows_host(host):
        return
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if not peer:
        return  # a transport without sockets (tests' MockTransport): nothing was reached
    address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    reason = forbidden_reason(address, policy)
    if reason is not None:
        raise EgressRefused(
            f"refused the answer from {host}: the connection went to {address} ({reason})",
            url=str(target), host=host, address=str(address), reason=reason,
        )


def _read_capped(response: httpx.Response, cap: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        room = cap - size
        if len(chunk) > room:
            chunks.append(chunk[:room])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


__all__ = [
    "EgressPolicy",
    "EgressResponse",
    "check_url",
    "forbidden_reason",
    "send",
    "system_resolver",
]
