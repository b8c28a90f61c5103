"""call-service: one HTTP request through httpx, retried with exponential backoff.

Method, URL, body and headers are rendered from the template context. Context headers ``X-Tenant-Id``,
``X-User-Id``, ``X-Execution-Id`` and ``Idempotency-Key`` (template, default ``{execution.id}-{step.id}``) are
always sent; every attempt of one step sends the same key, so a service that deduplicates by key answers a
retry with the first result. 5xx answers and connection errors are retried per the step's retry policy (delays
go through the injected sleeper and are logged); 4xx fails at once. Output: the JSON body (a non-object body
is wrapped as ``{"body": ...}``); the status goes to the log and the evidence.

Every request goes through the egress guard (:mod:`saferails.net.egress`) with the service's policy: a URL that
resolves to a private, loopback or link-local address (or redirects to one) fails the step at once with
``EGRESS_REFUSED``, and no more than the policy's ``max_response_bytes`` of an answer is read. An answer cut at
that cap fails the step (a half-read body is no result), and neither output nor evidence holds more than the cap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from saferails.errors import EgressRefused, SaferailsError
from saferails.net.egress import EgressResponse, send
from saferails.runbooks.definition import CallServiceConfig, parse_duration
from saferails.runbooks.lifecycle import COMPLETED, FAILED
from saferails.runbooks.steps.base import StepResult, StepRun
from saferails.runbooks.templating import render

DEFAULT_KEY = "{execution.id}-{step.id}"


def start(run: StepRun) -> StepResult:
    config = run.step.config
    assert isinstance(config, CallServiceConfig)
    return call(run, config, run.context)


def call(
    run: StepRun, config: CallServiceConfig, context: Mapping[str, Any], key_template: str = DEFAULT_KEY
) -> StepResult:
    """Perform the request with retries; never raises for a failed call (the result says ``failed``)."""
    result = StepResult(state=FAILED)
    try:
        url = str(render(config.url, context))
        body = render(config.body, context)
        headers = {str(k): str(v) for k, v in render(config.headers, context).items()}
        key = str(render(config.idempotency_key or key_template, context))
    except SaferailsError as exc:
        result.error = f"{exc.code}: {exc.message}"
        return result.log(result.error, "error")
    headers.update(
        {
            "X-Tenant-Id": run.tenant,
            "X-User-Id": run.initiated_by,
            "X-Execution-Id": run.execution_id,
            "Idempotency-Key": key,
        }
    )
    policy = run.retry
    timeout = parse_duration(config.timeout).total_seconds()
    for attempt in range(1, policy.max_attempts + 1):
        if attempt > 1:
            delay = policy.delay_before(attempt)
            result.log(f"retrying in {delay:g}s (attempt {attempt} of {policy.max_attempts})", delay=delay)
            run.services.sleeper(delay)
        try:
            response = send(run.services.http, config.method, url, policy=run.services.egress, json_body=body,
                            headers=headers, timeout=timeout)
        except EgressRefused as exc:
            result.error = f"{exc.code}: {exc.message}"
            return result.log(f"{config.method} {url} refused: {exc.message}", "error", reason=exc.details["reason"])
        except httpx.HTTPError as exc:
            result.error = f"connection error: {type(exc).__name__}: {exc}"
            result.log(f"{config.method} {url} attempt {attempt} failed: {result.error}", "warning", attempt=attempt)
            continue
        status = response.status_code
        result.log(f"{config.method} {url} -> {status} (attempt {attempt})", attempt=attempt, status=status)
        if status >= 500:
            result.error = f"HTTP {status} from {url}"
            continue
        if status >= 400:
            result.error = f"HTTP {status} from {url}: {response.text[:500]}"
            return result.log("client error: not retried", "error", status=status)
        if response.truncated:
            cap = run.services.egress.max_response_bytes
            result.error = f"the answer from {url} exceeds {cap} bytes"
            return result.log(f"{result.error}: not read further", "error", status=status, limit_bytes=cap)
        output = _parse(response)
        result.state, result.output, result.error = COMPLETED, output, None
        result.evidence.append(
            (
                "http_call",
                {
                    "method": config.method,
                    "url": url,
                    "status": status,
                    "idempotency_key": key,
                    "attempts": attempt,
                    "response": output,
                },
            )
        )
        return result
    result.log(f"giving up after {policy.max_attempts} attempt(s)", "error")
    return result


def _parse(response: EgressResponse) -> Any:
    if not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {"body": response.text}
    return body if isinstance(body, dict) else {"body": body}
