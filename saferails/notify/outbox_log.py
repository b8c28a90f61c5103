"""A notifier for the demo and for development: one JSON object per line, to a file or to stdout.

It writes approval codes in clear text (that is its point in the demo): never configure it in production.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import TextIO

from saferails.notify.base import Notification, NotificationFailed


class JsonLinesNotifier:
    """Appends ``notification.to_dict()`` as one JSON line to ``path`` (created with its parents) or, with no
    path, to ``stream`` (default stdout). Thread-safe within a process; each line is written whole."""

    def __init__(self, path: Path | str | None = None, *, stream: TextIO | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, notification: Notification) -> None:
        line = json.dumps(notification.to_dict(), sort_keys=True, default=str) + "\n"
        with self._lock:
            if self.path is None:
                stream = self._stream or sys.stdout
                stream.write(line)
                stream.flush()
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(line)
            except OSError as exc:
                raise NotificationFailed(f"cannot write notification log {self.path}: {exc}",
                                         path=str(self.path)) from exc

    def read(self) -> list[dict[str, object]]:
        """Every notification logged to ``path`` so far (the demo prints the codes from here)."""
        if self.path is None or not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
