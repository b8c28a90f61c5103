"""A small local threat-intelligence service for the runbook demo and tests (stdlib only, 127.0.0.1).

- ``POST /enrich`` with ``{"indicator": "..."}`` (or ``{"indicators": [...]}``) answers ``{"riskScore": N,
  "indicators": [...]}``: 9 when any indicator contains "evil", else 3. Deterministic, so a demo shows the same
  branch every time.
- ``POST /isolate`` with ``{"host": "..."}`` or ``{"indicator": "..."}`` records a containment and answers
  ``{"isolated": <host or indicator>, "containmentId": "c-N"}``. A repeat with the same ``Idempotency-Key``
  header answers the first response again and records nothing new, so a retried step never isolates twice.
- ``POST /monitor`` with ``{"indicator": "..."}`` puts a low-risk indicator under watch: ``{"monitoring": ...}``.
- ``GET /containments`` / ``GET /monitored`` list what was recorded (with the context headers of each request).

Run it alone with ``python examples/threat_service.py --port 8765``; ``serve(port=0)`` starts it on a free port
in a daemon thread and returns the server (``server.url``, ``server.shutdown()``).
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HIGH_RISK = 9
LOW_RISK = 3
CONTEXT_HEADERS = ("X-Tenant-Id", "X-User-Id", "X-Execution-Id", "Idempotency-Key")


class ThreatService(ThreadingHTTPServer):
    """The HTTP server plus what it has recorded. ``calls`` counts requests per path."""

    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.lock = threading.Lock()
        self.containments: list[dict[str, Any]] = []
        self.monitored: list[dict[str, Any]] = []
        self.by_key: dict[str, dict[str, Any]] = {}
        self.calls: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def risk_score(indicators: list[str]) -> int:
    """9 when any indicator contains "evil" (case-insensitive), else 3."""
    return HIGH_RISK if any("evil" in i.lower() for i in indicators) else LOW_RISK


class _Handler(BaseHTTPRequestHandler):
    server: ThreatService

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the demo prints its own story; request lines would interleave with it

    def _reply(self, status: int, body: dict[str, Any] | list[Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            data = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            return None
        return data if isinstance(data, dict) else None

    def do_GET(self) -> None:
        if self.path in ("/containments", "/monitored"):
            with self.server.lock:
                self._reply(200, list(getattr(self.server, self.path[1:])))
        else:
            self._reply(404, {"error": f"no such path {self.path}"})

    def do_POST(self) -> None:
        with self.server.lock:
            self.server.calls[self.path] = self.server.calls.get(self.path, 0) + 1
        body = self._body()
        if body is None:
            self._reply(400, {"error": "the body must be a JSON object"})
        elif self.path == "/enrich":
            self._enrich(body)
        elif self.path == "/isolate":
            self._isolate(body)
        elif self.path == "/monitor":
            self._monitor(body)
        else:
            self._reply(404, {"error": f"no such path {self.path}"})

    def _enrich(self, body: dict[str, Any]) -> None:
        raw = body.get("indicators", body.get("indicator"))
        indicators = [str(i) for i in raw] if isinstance(raw, list) else [str(raw)] if raw else []
        if not indicators:
            self._reply(400, {"error": "give an indicator or a list of indicators"})
            return
        self._reply(200, {"riskScore": risk_score(indicators), "indicators": indicators})

    def _isolate(self, body: dict[str, Any]) -> None:
        host = str(body.get("host") or body.get("indicator") or "")
        if not host:
            self._reply(400, {"error": "give the host or indicator to isolate"})
            return
        key = self.headers.get("Idempotency-Key")
        with self.server.lock:
            if key and key in self.server.by_key:
                answer = self.server.by_key[key]
            else:
                answer = {"isolated": host, "containmentId": f"c-{len(self.server.containments) + 1}"}
                self.server.containments.append(answer | {"headers": self._context()})
                if key:
                    self.server.by_key[key] = answer
        self._reply(200, answer)


    def _monitor(self, body: dict[str, Any]) -> None:
        indicator = str(body.get("indicator") or "")
        if not indicator:
            self._reply(400, {"error": "give the indicator to monitor"})
            return
        with self.server.lock:
            self.server.monitored.append({"monitoring": indicator, "headers": self._context()})
        self._reply(200, {"monitoring": indicator})

    def _context(self) -> dict[str, str | None]:
        return {h: self.headers.get(h) for h in CONTEXT_HEADERS}


def serve(port: int = 0) -> ThreatService:
    """Start the service on 127.0.0.1:``port`` (0: a free port) in a daemon thread."""
    server = ThreatService(port)
    threading.Thread(target=server.serve_forever, name="threat-service", daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    server = ThreatService(args.port)
    print(f"threat service on {server.url}: POST /enrich /isolate /monitor, GET /containments /monitored", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
