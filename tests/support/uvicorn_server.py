"""Run an ASGI app with uvicorn on a free loopback port in a thread (for curl and the browser).

The socket is bound and listening before the thread starts, so a client may connect at once: the connection
waits in the backlog until the server accepts it. No readiness polling, no sleeps.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI


def listening_socket() -> socket.socket:
    """A loopback socket bound to a free port and listening: its port is known before the app is built (an app
    whose own links must carry its address), and nobody can take the port in between."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit TCP_NODELAY from the listening socket. Without it a socket handed to uvicorn
    # (it sets the option only on sockets it binds itself) answers each request ~40 ms late: Nagle's algorithm
    # holding the response's second write until the client's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@contextmanager
def running(app: FastAPI, sock: socket.socket | None = None) -> Iterator[str]:
    """Serve ``app`` (on ``sock`` from :func:`listening_socket`, else a fresh one); yields its base URL
    (``http://127.0.0.1:PORT``); stops it on exit."""
    sock = sock if sock is not None else listening_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
