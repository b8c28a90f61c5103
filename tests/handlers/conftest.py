"""Fixtures for handler tests: a real SMTP server on 127.0.0.1, a file root, a seeded org, and the services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from handlerkit import SENDER, Mailbox, World, free_port, make_world

from saferails.clock import ManualClock
from saferails.handlers import HandlerSettings


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    mailbox = Mailbox("127.0.0.1", free_port())
    controller = Controller(mailbox, hostname=mailbox.host, port=mailbox.port)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


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
