"""Long commands show a Rich progress bar on a terminal, and nothing of it with ``--json`` or in a pipe.

The terminal is a real pseudo-terminal (``pty``) around a ``python -m saferails.cli`` process."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import Cli, provision, use_database

pytestmark = pytest.mark.slow  # seconds each (a demo run, a subprocess, a wheel build, a fuzz run)


def on_a_terminal(argv: list[str], database_url: str) -> tuple[int, str]:
    """Run ``saferails argv`` with stdout on a pseudo-terminal; its exit code and everything it drew."""
    env = {**os.environ, "SAFERAILS_DATABASE_URL": database_url, "TERM": "xterm-256color", "COLUMNS": "120",
           "LINES": "40", "SAFERAILS_TOKEN": provision("cli", database_url=database_url)}
    env.pop("NO_COLOR", None)
    main, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "saferails.cli", *argv], stdin=subprocess.DEVNULL,
                            stdout=follower, stderr=subprocess.PIPE, env=env)
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    assert proc.stderr is not None
    proc.stderr.read()
    code = proc.wait(timeout=300)
    return code, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def test_org_generate_draws_a_progress_bar_on_a_terminal_but_not_with_json(tmp_path: Path) -> None:
    code, drawn = on_a_terminal(["org", "generate", "--size", "50", "--seed", "1"], f"sqlite:///{tmp_path / 'a.db'}")
    assert code == 0
    assert "generating a 50-person org" in drawn and "\x1b[" in drawn
    assert "sample org (seed 1): 50 people" in drawn

    code, printed = on_a_terminal(["org", "generate", "--size", "50", "--seed", "1", "--json"],
                                  f"sqlite:///{tmp_path / 'b.db'}")
    assert code == 0
    assert "\x1b" not in printed and "generating" not in printed
    assert json.loads(printed)["employees"] == 50


def test_in_a_pipe_long_commands_print_only_their_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    use_database(monkeypatch, f"sqlite:///{tmp_path / 'saferails.db'}")
    cli = Cli(capsys)
    for argv in (["db", "upgrade"], ["org", "generate", "--size", "50"], ["org", "metrics", "p00001", "--step", "7d"],
                 ["sweep", "run", "outcomes"]):
        result = cli(*argv)
        assert result.code == 0, result.err
        assert "\x1b" not in result.out + result.err
        assert result.err == ""
    assert cli("org", "metrics", "p00001", "--step", "7d").out.startswith("p00001: metrics over the 7d")
