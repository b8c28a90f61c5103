"""Serve every saferails deployment from one process.

Without ``PREFECT_API_URL`` a local Prefect server is started first (``prefect server start`` on
``SAFERAILS_SERVE_HOST``:``SAFERAILS_SERVE_PORT``, default 127.0.0.1:4200, its SQLite data under
``.saferails/prefect``) and awaited until healthy; the UI's API URL (``PREFECT_UI_API_URL``) is set to match, so
the UI works on any port. A paused run holds a runner slot, so the runner limit is sized for pending approvals
(``SAFERAILS_RUNNER_LIMIT``, default 50). Our settings (hosts, ports, limit, data directory, store) come from
``saferails.settings.load_settings`` once.
Every scheduled sweep in :data:`SCHEDULED` is served with its schedule; the consumers of :data:`CONSUMERS` run
as one long-lived run an hour each. Ctrl-C or SIGTERM stops the runner
(schedules paused), then the local server.
"""

from __future__ import annotations

import gc
import importlib
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from saferails.settings import Settings, load_settings


def _healthy(url: str, path: str = "/health") -> bool:
    try:
        return httpx.get(f"{url}{path}", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def server_urls(host: str, port: int) -> tuple[str, str]:
    """(the URL this process calls the API on, the API URL the UI in a browser is given). A server bound to all
    interfaces is called on loopback; the browser is given the host it was told (behind a proxy, set
    ``PREFECT_UI_API_URL`` yourself: it is kept)."""
    local = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else _bracketed(host)
    api = f"http://{local}:{port}/api"
    return api, os.environ.get("PREFECT_UI_API_URL") or api


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def start_local_server(data_dir: Path, host: str, port: int) -> tuple[subprocess.Popen[bytes], str]:
    url, ui_api_url = server_urls(host, port)
    if _healthy(url):
        # Without this check the new server dies on the busy port and we would silently serve into whatever
        # server (another checkout, another store) already answers there.
        raise SystemExit(f"something already answers on {host}:{port}; stop it, pick another port "
                         f"(make serve PORT=4300), or use it with PREFECT_API_URL={url} make serve")
    data_dir.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"PREFECT_HOME": str(data_dir), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                        # Without it the UI calls the API on the default port 4200, whatever port it runs on.
                        "PREFECT_UI_API_URL": ui_api_url}
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)],
                            env=env, stdout=(data_dir / "server.log").open("ab"), stderr=subprocess.STDOUT,
                            # Own session: Ctrl-C reaches the runner alone, which stops cleanly while the API is
                            # still up; then main() stops the server. (Killed together, the runner hangs.)
                            start_new_session=True)
    for _ in range(240):
        if proc.poll() is not None:
            raise SystemExit(f"prefect server exited ({proc.returncode}); see {data_dir / 'server.log'}")
        if _healthy(url):
            return proc, url
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"prefect server not healthy after 120 s; see {data_dir / 'server.log'}")


# (deployment name, "module:flow", schedule) for every scheduled sweep. A schedule is a cron string or an
# interval in seconds. An entry whose module does not exist yet (an issue still in progress) is skipped with a
# line on stdout, so `make serve` works at every stage of the tree.
SCHEDULED: tuple[tuple[str, str, str | int], ...] = (
    ("expire-approvals", "flows.sweeps:expire_approvals", "0 * * * *"),
    ("recover-actions", "flows.sweeps:recover_actions", 600),
    ("sla-breach-sweep", "flows.workflow:sla_breach_sweep", 300),
    ("monitor-outcomes", "flows.outcomes:monitor_outcomes", 3600),  # issue 4's outcome monitor
)


# The continuously running consumers: (deployment name, "module:flow"). Each is scheduled every
# ``PERIOD_SECONDS`` and its run loops for that long (flows/housekeeping.py), one running run at a time.
CONSUMERS: tuple[tuple[str, str], ...] = (
    ("relay", "flows.events:relay_audit_events"),
    ("dispatch-outbox", "flows.workflow:dispatch_outbox"),
)


def consumer_deployments() -> list[Any]:
    """``RunnerDeployment`` objects for the consumers of :data:`CONSUMERS`: hourly from one period after now (the
    first run is started by :func:`start_consumers`), looping for the hour, tagged ``housekeeping``, at most one
    running (a run that starts before the last one ended waits for it)."""
    from prefect.schedules import Interval

    from flows.housekeeping import PERIOD_SECONDS, TAGS

    # Anchored one period ahead: the schedule's first run is the second; start_consumers starts the first now.
    first = datetime.now(UTC) + timedelta(seconds=PERIOD_SECONDS)
    deployments = []
    for name, ref in CONSUMERS:
        module_name, attr = ref.split(":")
        flow = getattr(importlib.import_module(module_name), attr)
        schedule = Interval(PERIOD_SECONDS, anchor_date=first)
        deployments.append(flow.to_deployment(name=name, tags=TAGS, schedule=schedule, concurrency_limit=1,
                                              parameters={"period_seconds": PERIOD_SECONDS}))
    return deployments


def start_consumers() -> None:
    """One run of each consumer now (the deployments must exist): without it nothing would dispatch or relay
    during the first hour of `make serve`. A schedule anchored just ahead of now is not enough: registering the
    deployments can take longer than the margin on a busy machine, and the first slot is then skipped."""
    from prefect.deployments import run_deployment

    for name, ref in CONSUMERS:
        module_name, attr = ref.split(":")
        flow = getattr(importlib.import_module(module_name), attr)
        run_deployment(f"{flow.name}/{name}", timeout=0)


def scheduled_deployments() -> list[Any]:
    """``RunnerDeployment`` objects for every entry of :data:`SCHEDULED` whose flow can be imported."""
    deployments = []
    for name, ref, schedule in SCHEDULED:
        module_name, attr = ref.split(":")
        try:
            flow = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError):
            print(f"skipping deployment {name}: {ref} does not exist yet", flush=True)
            continue
        timing = {"cron": schedule} if isinstance(schedule, str) else {"interval": schedule}
        deployments.append(flow.to_deployment(name=name, tags=["saferails", "sweep"], **timing))
    return deployments


def serve_all(runner_limit: int = 50) -> None:
    """Serve every deployment until Ctrl-C or SIGTERM (both stop the runner, which pauses the schedules)."""
    import asyncio

    from prefect.runner import Runner

    from flows.action_flow import action_flow
    from flows.fleet_controls import OPERATOR_FLOWS
    from flows.runbook_flow import runbook_flow

    class StoppableRunner(Runner):
        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            # Prefect 3.8.8's handler calls the async ``stop`` without awaiting it and the process never exits.
            raise KeyboardInterrupt

    deployments = [
        action_flow.to_deployment(name="action", tags=["saferails", "action"]),
        runbook_flow.to_deployment(name="runbook", tags=["saferails", "runbook"]),
        *consumer_deployments(),
        # Seed 003's operator buttons: Run > Custom run is the confirmation dialog.
        *(f.to_deployment(name=name, tags=["saferails", "fleet"]) for name, f in OPERATOR_FLOWS),
        *scheduled_deployments(),
    ]
    runner = StoppableRunner(pause_on_shutdown=True, limit=runner_limit)
    for deployment in deployments:
        runner.add_deployment(deployment)
    start_consumers()
    print("Serving:", flush=True)
    for deployment in deployments:
        schedules = ", ".join(_describe(s.schedule) for s in deployment.schedules or []) or "run on demand"
        print(f"  {deployment.flow_name}/{deployment.name}: {schedules}", flush=True)
    async def run() -> None:
        asyncio.get_running_loop().set_exception_handler(quiet_cancelled)
        await runner.start()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        print("stopped", flush=True)


def quiet_cancelled(loop: Any, context: dict[str, Any]) -> None:
    """The event loop's exception handler while serving: a callback that failed only because its task was
    cancelled (Prefect's runner cancels the control-channel connections of its flow runs when Ctrl-C or SIGTERM
    stops it) is the shutdown itself, not an error, so it is dropped; anything else goes to asyncio's default
    handler (logged with its traceback)."""
    import asyncio

    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


def _describe(schedule: Any) -> str:
    if getattr(schedule, "cron", None):
        return f"cron {schedule.cron} ({schedule.timezone or 'UTC'})"
    interval = getattr(schedule, "interval", None)
    return f"every {interval}" if interval is not None else str(schedule)


def _settle_heap() -> None:
    """Start-up is over: move what it built (Prefect, pydantic, SQLAlchemy) out of the collector's sight, so a
    full collection during a proposal walks only what was made since, not the whole heap (CPython's advice
    for long-running servers). Garbage is collected first so that none of it is kept forever."""
    gc.collect()
    gc.freeze()


def main() -> None:
    settings = load_settings()
    proc = None
    if not os.environ.get("PREFECT_API_URL"):
        proc, url = start_local_server(settings.data_dir / "prefect", settings.serve_host, settings.serve_port)
        os.environ["PREFECT_API_URL"] = url
    print(f"Prefect UI: {os.environ['PREFECT_API_URL'].removesuffix('/api')}", flush=True)
    metrics = start_metrics(settings)
    api_proc = start_api(settings)
    try:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: os.environ["PREFECT_API_URL"]}):
            _settle_heap()
            serve_all(settings.runner_limit)
    finally:
        metrics.close()
        api_proc.terminate()
        api_proc.wait(timeout=30)
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)


def start_api(settings: Settings) -> subprocess.Popen[bytes]:
    """The HTTP API (``saferails api serve``) on ``SAFERAILS_API_HOST``:``SAFERAILS_API_PORT``, awaited until live.

    Unless ``SAFERAILS_PUBLIC_URL`` is set, the API's own address becomes the public URL, in this process (whose
    flow runs notify approvers) and in the API's, so approval e-mails carry a link the approver can open.
    """
    local = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::") else settings.api_host
    origin = f"http://{_bracketed(local)}:{settings.api_port}"
    os.environ.setdefault("SAFERAILS_PUBLIC_URL", origin)
    proc = subprocess.Popen([sys.executable, "-m", "saferails.cli", "api", "serve", "--host", settings.api_host,
                             "--port", str(settings.api_port)])
    deadline = time.monotonic() + 60
    while not _healthy(origin, "/health/live"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the HTTP API did not start on {origin} (is the port taken? SAFERAILS_API_PORT)")
        time.sleep(0.2)
    print(f"HTTP API: {origin}/api/v1 (docs: {origin}/docs, agents page: {origin}/agents)", flush=True)
    return proc


def start_metrics(settings: Settings) -> Any:
    """Prometheus metrics (seed 004's names plus action and approval counts) and health endpoints."""
    from saferails.api import open_store
    from saferails.workflow.server import serve_metrics

    store = open_store(settings)
    server = serve_metrics(settings.metrics_host, settings.metrics_port, store.sessions)
    print(f"Metrics: {server.url}/metrics (health: /health/live, /health/ready)", flush=True)
    return server


if __name__ == "__main__":
    main()
