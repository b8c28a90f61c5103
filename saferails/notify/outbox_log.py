"""Notifiers for development and the demo: JSON lines in local files.

``InboxNotifier`` is the default local channel when no mail server is configured: each principal has its own
inbox file ``<dir>/<principal>.jsonl`` (mode 0600, directory 0700), so an approver's one-time code is readable
by the account running saferails and by nobody else, and never lands in a file shared by every recipient.
``JsonLinesNotifier`` writes everything to one file (also 0600) or to a stream: it carries codes in clear
text, so use it only where every reader may see every code (the demo, tests).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from pathlib import Path
from typing import TextIO

from saferails.errors import SaferailsError
from saferails.notify.base import Notification, NotificationFailed
from saferails.secrets import check_private_file, open_private_append

_KEEP = re.compile(r"[A-Za-z0-9_@-]")
UNADDRESSED = ".unaddressed"


def inbox_name(principal_id: str) -> str:
    """The file name of ``principal_id``'s inbox: letters, digits, ``_ @ -`` kept, every other character
    (``.``, ``/`` included) as ``%XX`` per UTF-8 byte, so names are distinct and stay inside the directory."""
    escaped = "".join(
        c if _KEEP.fullmatch(c) else "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in principal_id
    )
    return f"{escaped}.jsonl"


def _append_private(path: Path, line: str) -> None:
    try:
        fd = open_private_append(path)
    except (OSError, SaferailsError) as exc:
        raise NotificationFailed(f"cannot write notification file {path}: {exc}", path=str(path)) from exc
    try:
        os.write(fd, line.encode("utf-8"))
    except OSError as exc:
        raise NotificationFailed(f"cannot write notification file {path}: {exc}", path=str(path)) from exc
    finally:
        os.close(fd)


def _read_lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    check_private_file(path)
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


class InboxNotifier:
    """Appends each notification as one JSON line to the inbox of each of its recipients
    (``<directory>/<principal>.jsonl``, 0600; see ``inbox_name``); one without recipients goes to
    ``.unaddressed.jsonl``. A notification with several recipients is copied to each inbox."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()

    def inbox(self, principal_id: str) -> Path:
        return self.directory / inbox_name(principal_id)

    def send(self, notification: Notification) -> None:
        line = json.dumps(notification.to_dict(), sort_keys=True, default=str) + "\n"
        paths = [self.inbox(r.principal_id) for r in notification.recipients]
        with self._lock:
            for path in paths or [self.directory / f"{UNADDRESSED}.jsonl"]:
                _append_private(path, line)

    def read(self, principal_id: str) -> list[dict[str, object]]:
        """Every notification in ``principal_id``'s inbox so far, oldest first."""
        return _read_lines(self.inbox(principal_id))

    def latest_code(self, principal_id: str, action_id: str) -> str | None:
        """The newest one-time approval code ``principal_id`` received for ``action_id`` (None if none): what
        that approver would type. Reading another principal's inbox needs access to its 0600 file."""
        codes = [
            data.get("code")
            for note in self.read(principal_id)
            if note.get("entity_id") == action_id and isinstance(data := note.get("data"), dict)
        ]
        found = [c for c in codes if isinstance(c, str) and c]
        return found[-1] if found else None


class JsonLinesNotifier:
    """Appends ``notification.to_dict()`` as one JSON line to ``path`` (created 0600, its directory 0700) or,
    with no path, to ``stream`` (default stdout). Thread-safe within a process; each line is written whole."""

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
            _append_private(self.path, line)

    def read(self) -> list[dict[str, object]]:
        """Every notification logged to ``path`` so far (the demo prints the codes from here)."""
        return [] if self.path is None else _read_lines(self.path)
