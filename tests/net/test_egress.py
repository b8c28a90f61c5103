"""The egress guard against a real HTTP server on 127.0.0.1: what the default policy refuses, what an allowlist
lets through, redirects re-checked hop by hop, and answers cut at the size cap."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from saferails.errors import EgressRefused
from saferails.net.egress import MIB, EgressPolicy, check_url, send

CLOSED = EgressPolicy()


class Server(ThreadingHTTPServer):
    """``/ok`` answers ``{"ok": true}``; ``/big`` answers 2 MiB; ``/exact`` answers exactly 1 MiB;
    ``/redirect?to=URL`` answers 302 to URL. Keeps every path it was asked for."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.paths: list[str] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/redirect?to="))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = {"/big": b"x" * (2 * MIB), "/exact": b"y" * MIB}.get(self.path, b'{"ok": true}')
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as c:
        yield c


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("localhost", "loopback"),
        ("2130706433", "loopback"),
        ("0x7f.1", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback"),
    ],
    ids=["loopback IP", "a DNS name resolving to loopback", "decimal IP", "hex shorthand IP", "IPv4-mapped IPv6"],
)
def test_the_default_policy_refuses_our_own_machine_however_it_is_written_and_nothing_is_sent(
    server: Server, client: httpx.Client, host: str, reason: str
) -> None:
    with pytest.raises(EgressRefused) as excinfo:
        send(client, "POST", f"http://{host}:{server.port}/ok", policy=CLOSED, content=b"{}")
    assert excinfo.value.details["reason"] == reason
    assert excinfo.value.code == "EGRESS_REFUSED" and excinfo.value.exit_code == 2
    assert excinfo.value.http_status == 403
    assert server.paths == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/iam/", "link-local"),
        ("http://169.254.10.20/", "link-local"),
        ("http://[::1]/", "loopback"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fd12:3456::1]/", "unique-local"),
        ("http://10.0.0.5/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://100.64.0.1/", "shared"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
    ],
    ids=["cloud metadata", "link-local", "IPv6 loopback", "IPv6 link-local", "IPv6 unique-local", "10/8",
         "192.168/16", "172.16/12", "carrier-grade NAT", "unspecified", "multicast", "IPv6 multicast"],
)
def test_the_default_policy_refuses_internal_addresses(url: str, reason: str) -> None:
    with pytest.raises(EgressRefused) as excinfo:
        check_url(url, CLOSED)
    assert excinfo.value.details["reason"] == reason


def test_a_name_is_refused_when_any_of_its_addresses_is_internal() -> None:
    policy = EgressPolicy(resolver=lambda host, port: ["93.184.216.34", "10.1.2.3"])
    with pytest.raises(EgressRefused) as excinfo:
        check_url("https://partly-internal.example/hook", policy)
    assert excinfo.value.details["address"] == "10.1.2.3"


def test_a_public_address_passes_the_default_policy() -> None:
    policy = EgressPolicy(resolver=lambda host, port: ["93.184.216.34"])
    assert check_url("https://hooks.example.com/x", policy).host == "hooks.example.com"


def test_only_http_and_https_are_sent() -> None:
    for url in ("file:///etc/passwd", "ftp://example.com/x", "gopher://example.com/"):
        with pytest.raises(EgressRefused):
            check_url(url, CLOSED)


def test_allow_private_lets_private_networks_through_but_never_loopback_or_metadata() -> None:
    private = EgressPolicy(allow_private=True)
    assert check_url("http://10.0.0.5/", private).host == "10.0.0.5"
    assert check_url("http://[fd12:3456::1]/", private).host == "fd12:3456::1"
    for url in ("http://127.0.0.1/", "http://169.254.169.254/", "http://[::1]/"):
        with pytest.raises(EgressRefused):
            check_url(url, private)


def test_an_allowlisted_host_is_reached_and_only_that_name(server: Server, client: httpx.Client) -> None:
    allowed = EgressPolicy(allowed_hosts=frozenset({"127.0.0.1"}))
    response = send(client, "GET", f"http://127.0.0.1:{server.port}/ok", policy=allowed)
    assert response.status_code == 200 and response.json() == {"ok": True} and not response.truncated
    with pytest.raises(EgressRefused):
        send(client, "GET", f"http://localhost:{server.port}/ok", policy=allowed)
    by_name = EgressPolicy(allowed_hosts=frozenset({"LocalHost"}))
    assert send(client, "GET", f"http://localhost:{server.port}/ok", policy=by_name).status_code == 200
    assert server.paths == ["/ok", "/ok"]


def test_a_redirect_from_an_allowed_host_to_a_forbidden_one_is_refused(server: Server, client: httpx.Client) -> None:
    allowed = EgressPolicy(allowed_hosts=frozenset({"127.0.0.1"}))
    for target in (f"http://localhost:{server.port}/ok", "http://169.254.169.254/latest/meta-data/"):
        with pytest.raises(EgressRefused):
            send(client, "GET", f"http://127.0.0.1:{server.port}/redirect?to={target}", policy=allowed)
    assert server.paths == [f"/redirect?to=http://localhost:{server.port}/ok",
                            "/redirect?to=http://169.254.169.254/latest/meta-data/"]


def test_a_redirect_within_allowed_hosts_is_followed_up_to_the_limit(server: Server, client: httpx.Client) -> None:
    allowed = EgressPolicy(allowed_hosts=frozenset({"127.0.0.1"}))
    response = send(client, "POST", f"http://127.0.0.1:{server.port}/redirect?to=/ok", policy=allowed, content=b"x")
    assert response.status_code == 200 and response.url.endswith("/ok")
    no_redirects = EgressPolicy(allowed_hosts=frozenset({"127.0.0.1"}), max_redirects=0)
    response = send(client, "GET", f"http://127.0.0.1:{server.port}/redirect?to=/ok", policy=no_redirects)
    assert response.status_code == 302


def test_an_oversize_answer_is_cut_at_the_cap(server: Server, client: httpx.Client) -> None:
    allowed = EgressPolicy(allowed_hosts=frozenset({"127.0.0.1"}))
    big = send(client, "GET", f"http://127.0.0.1:{server.port}/big", policy=allowed)
    assert big.truncated and len(big.content) == MIB
    exact = send(client, "GET", f"http://127.0.0.1:{server.port}/exact", policy=allowed)
    assert not exact.truncated and len(exact.content) == MIB
    small_cap = EgressPolicy(allowed_hosts=frozenset({"127.0.0.1"}), max_response_bytes=5)
    cut = send(client, "GET", f"http://127.0.0.1:{server.port}/ok", policy=small_cap)
    assert cut.truncated and cut.content == b'{"ok"'


def test_a_name_that_rebinds_to_loopback_after_the_check_is_refused_before_its_answer_is_read(
    server: Server, client: httpx.Client
) -> None:
    # The lookup says "public", the connection lands on 127.0.0.1: what a DNS-rebinding attacker arranges.
    lying = EgressPolicy(resolver=lambda host, port: ["93.184.216.34"])
    with pytest.raises(EgressRefused) as excinfo:
        send(client, "GET", f"http://127.0.0.1:{server.port}/big", policy=lying)
    assert excinfo.value.details == {"url": f"http://127.0.0.1:{server.port}/big", "host": "127.0.0.1",
                                     "address": "127.0.0.1", "reason": "loopback"}
