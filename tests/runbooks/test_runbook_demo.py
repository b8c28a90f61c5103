"""The runbook part of ``make demo`` on SQLite and PostgreSQL: both risk branches, then logs and evidence."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from demo.runbooks import runbook_demo
from saferails.api import open_store
from saferails.clock import ManualClock
from saferails.policy import default_policy
from saferails.settings import Settings


def test_the_runbook_demo_contains_the_high_risk_threat_after_approval_and_monitors_the_low_risk_one(
    db: Any, clock: ManualClock, tmp_path: Path,
) -> None:
    settings = Settings(database_url=db.url, policy_path=None, approval_secret=None, data_dir=tmp_path)
    out = io.StringIO()
    with open_store(settings, clock=clock, policy=default_policy()) as store:
        outcomes = runbook_demo(store, out)
    assert outcomes == {"runbook_high": "completed", "runbook_low": "completed",
                        "runbook_containments": "evil-c2.example.net", "runbook_monitored": "newsletter.example.org"}
    text = out.getvalue()
    high, low = text.split("== High risk", 1)[1].split("== Low risk", 1)
    assert "awaiting_approval" in high and "soc-manager-1 approves step require-approval" in high
    assert "skipped: branch not taken" in low
    assert "execute-containment  info   POST" in text and "http_call" in text
    assert "audit chain OK with the runbook records" in text
