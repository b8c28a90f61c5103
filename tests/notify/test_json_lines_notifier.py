"""The demo notifier: JSON lines to a file or a stream."""

from __future__ import annotations

import io
import json
from pathlib import Path

from saferails.notify import JsonLinesNotifier, Notification, Recipient

NOTE = Notification(kind="approval_outcome", subject="approved", text="action A-1 was approved",
                    recipients=(Recipient("agent-1"),), entity_id="A-1", data={"state": "approved"})


def test_notifications_are_appended_one_json_object_per_line(tmp_path: Path) -> None:
    log = JsonLinesNotifier(tmp_path / "logs" / "notifications.jsonl")
    log.send(NOTE)
    log.send(NOTE)
    records = log.read()
    assert len(records) == 2
    assert records[0]["entity_id"] == "A-1" and records[0]["data"] == {"state": "approved"}


def test_without_a_path_notifications_go_to_the_stream() -> None:
    out = io.StringIO()
    JsonLinesNotifier(stream=out).send(NOTE)
    assert json.loads(out.getvalue())["subject"] == "approved"
