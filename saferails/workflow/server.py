"""A tiny HTTP server for /metrics, /health/live and /health/ready (ready = the store answers ``SELECT 1``).

Standard library ``http.server`` in a daemon thread: nothing to install, nothing that imports Prefect.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.orm import Session, sessionmaker

from saferails.workflow.metrics import METRICS, WorkflowMetrics


class MetricsServer:
    """A running server; ``url`` is its base address, ``close()`` stops it."""

    def __init__(self, httpd: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self.httpd = httpd
        self.thread = thread
        host, port = httpd.server_address[:2]
        self.host, self.port = str(host), int(port)
        self.url = f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def serve_metrics(host: str, port: int, sessions: sessionmaker[Session],
                  metrics: WorkflowMetrics = METRICS) -> MetricsServer:
    """Start serving in a background thread and return at once; ``port=0`` picks a free port."""
    metrics.watch_store(sessions)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/health/live":
                self._send(200, b'{"status":"ok"}', "application/json")
            elif path == "/health/ready":
                ok = _store_ready(sessions)
                body = b'{"status":"ok"}' if ok else b'{"status":"store unavailable"}'
                self._send(200 if ok else 503, body, "application/json")
            else:
                self._send(404, b'{"status":"not found"}', "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # scrapes every few seconds would flood stderr

    httpd = ThreadingHTTPServer((host, port), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="saferails-metrics", daemon=True)
    thread.start()
    return MetricsServer(httpd, thread)


def _store_ready(sessions: sessionmaker[Session]) -> bool:
    try:
        with sessions() as session:
            session.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.SQLAlchemyError:
        return False
