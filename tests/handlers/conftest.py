"""Fixtures for handler tests: a file root, a seeded org, and the services (``smtp_server``, a real SMTP server on
127.0.0.1, comes from tests/support)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from saferails.clock import ManualClock
from saferails.handlers import HandlerSettings
from tests.support import Mailbox
from tests.support.handlerkit import SENDER, World, make_world


@pytest.fixture
def file_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "inbox").mkdir(parents=True)
    (root / "archive").mkdir()
    (root / "inbox" / "report.txt").write_text("quarterly numbers\n", encoding="utf-8")
    return root.resolve()


@pytest.fixture
def settings(smtp_server: Mailbox, file_root: Path) -> HandlerSettings:
    return HandlerSettings(
        file_root=file_root, smtp_host=smtp_server.host, smtp_port=smtp_server.port, smtp_sender=SENDER
    )


@pytest.fixture
def world(db: Any, clock: ManualClock, settings: HandlerSettings) -> World:
    return make_world(db, clock, settings)
