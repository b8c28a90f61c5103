"""``saferails api serve --workers``: several uvicorn workers need PostgreSQL; on SQLite the command refuses with a
typed error before listening."""

from __future__ import annotations

from typing import Any

import pytest

from saferails.errors import ConfigurationError
from tests.support.cli import Cli, use_database


def test_several_workers_on_sqlite_are_refused(sqlite_db: Any, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    use_database(monkeypatch, sqlite_db.url)
    result = Cli(capsys).anonymous()("api", "serve", "--workers", "2", "--json")
    assert result.code == ConfigurationError.exit_code
    error = result.error()
    assert error["error_code"] == ConfigurationError.code and "PostgreSQL" in error["message"]

