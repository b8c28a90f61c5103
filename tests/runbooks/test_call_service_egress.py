"""call-service steps go through the egress guard: a loopback service is refused unless allowed by name, and an
answer over the size cap fails the step without landing in output, logs or evidence."""

from __future__ import annotations

from typing import Any

import httpx

from saferails.net.egress import EgressPolicy
from saferails.runbooks import RunbookService, load_runbook_text

ONE_CALL = (
    "id: one\nname: One\nversion: '1'\ninputs: {url: {type: string}}\nsteps:\n"
    "  - id: call\n    type: call-service\n    retry_policy: {max_attempts: 3, initial_delay: 1s, max_delay: 10s}\n"
    "    config: {url: '{inputs.url}/x'}\n"
)


def _run(db: Any, kit: Any, service: Any, egress: EgressPolicy | None) -> Any:
    with httpx.Client(timeout=5.0) as http:
        runbooks = RunbookService(db.sessions, kit.clock, kit.actions, http=http, sleeper=kit.delays.append,
                                  egress=egress)
        runbooks.register(load_runbook_text(ONE_CALL), "admin")
        exe = runbooks.run(runbooks.start("one", {"url": service.url}, context=kit.ctx).id)
        return exe, runbooks


def test_a_call_to_a_loopback_service_is_refused_by_default_and_not_retried(db: Any, kit: Any, service: Any) -> None:
    exe, runbooks = _run(db, kit, service, None)
    [step] = exe.steps
    assert exe.state == "failed" and step.state == "failed"
    assert step.error is not None and step.error.startswith("EGRESS_REFUSED")
    assert service.calls["/x"] == 0 and kit.delays == []
    assert runbooks.evidence(exe.id) == []


def test_an_answer_over_the_size_cap_fails_the_step_and_is_kept_nowhere(db: Any, kit: Any, service: Any) -> None:
    service.answers["/x"] = {"blob": "S" * 5000}
    capped = EgressPolicy(allowed_hosts=frozenset({"127.0.0.1"}), max_response_bytes=1000)
    exe, runbooks = _run(db, kit, service, capped)
    [step] = exe.steps
    assert step.state == "failed" and "exceeds 1000 bytes" in (step.error or "")
    assert step.output is None
    assert runbooks.evidence(exe.id) == []
    assert not any("SSSS" in line.message or "SSSS" in str(line) for line in runbooks.logs(exe.id))
