"""The CLI's one extension point (``saferails.cli.extensions``): ``--prefect`` uses the runbook runner an
extension registers (through ``SAFERAILS_CLI_EXTENSIONS`` or the ``saferails.cli`` entry-point group), and
without one it is a typed error that says how to enable it and changes nothing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import cli_extension
from tests.support.cli import Cli, use_database

RUNBOOK = """\
id: two-notes
name: Two notes
version: "1"
description: decide twice
inputs:
  go: {type: string}
steps:
  - id: first
    type: conditional
    config: {condition: {field: inputs.go, operator: eq, value: "yes"}}
  - id: second
    type: conditional
    depends_on: [first]
    config: {condition: {field: inputs.go, operator: eq, value: "no"}}
"""


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    use_database(monkeypatch, f"sqlite:///{tmp_path / 'saferails.db'}")
    monkeypatch.delenv("SAFERAILS_CLI_EXTENSIONS", raising=False)
    cli_extension.RUNS.clear()
    yield Cli(capsys)
    cli_extension.RUNS.clear()


@pytest.fixture
def runbook(tmp_path: Path) -> str:
    path = tmp_path / "two-notes.yaml"
    path.write_text(RUNBOOK)
    return str(path)


def test_prefect_without_an_extension_is_a_typed_error_naming_the_setting_and_starts_nothing(
    cli: Cli, runbook: str,
) -> None:
    text = cli("runbook", "start", runbook, "--prefect", "--input", "go=yes")
    assert text.code == 2
    assert text.err.startswith("error[EXTENSION_MISSING]: --prefect needs a CLI extension")
    assert "SAFERAILS_CLI_EXTENSIONS=flows.cli_extension:register" in text.err
    as_json = cli("runbook", "start", runbook, "--prefect", "--input", "go=yes", "--json")
    assert as_json.code == 2
    assert as_json.error()["details"]["setting"] == "SAFERAILS_CLI_EXTENSIONS"
    assert cli.ok("runbook", "executions") == []
    assert cli.ok("runbook", "list") == []


def test_an_extension_named_in_the_setting_carries_the_execution(
    cli: Cli, runbook: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SAFERAILS_CLI_EXTENSIONS", " tests.support.cli_extension:register , ")
    done = cli.ok("runbook", "start", runbook, "--prefect", "--input", "go=yes")
    assert done["state"] == "completed"
    assert done["flow_run_id"] == f"in-process:{done['id']}"
    assert [done["id"]] == cli_extension.RUNS


def test_an_installed_package_registers_through_the_entry_point_group(
    cli: Cli, runbook: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    dist = tmp_path / "site" / "saferails_test_extension-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: saferails-test-extension\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[saferails.cli]\nin-process = tests.support.cli_extension:register\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    started = cli.ok("runbook", "start", runbook, "--prefect", "--input", "go=yes")
    assert started["state"] == "completed"
    assert [started["id"]] == cli_extension.RUNS
    again = cli.ok("runbook", "replay", started["id"], "--actor", "ops", "--prefect")
    assert [started["id"], again["id"]] == cli_extension.RUNS


@pytest.mark.parametrize("setting", ["tests.support.no_such_module:register", "tests.support.cli_extension:nothing",
                                     "just-a-name"])
def test_a_setting_that_names_no_register_function_is_a_configuration_error(
    cli: Cli, runbook: str, monkeypatch: pytest.MonkeyPatch, setting: str,
) -> None:
    monkeypatch.setenv("SAFERAILS_CLI_EXTENSIONS", setting)
    result = cli("runbook", "start", runbook, "--prefect", "--input", "go=yes")
    assert result.code == 2
    assert result.err.startswith("error[CONFIGURATION_INVALID]: SAFERAILS_CLI_EXTENSIONS")
    assert cli.ok("runbook", "executions") == []


def test_two_extensions_providing_the_same_capability_are_refused(
    cli: Cli, runbook: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SAFERAILS_CLI_EXTENSIONS",
                       "tests.support.cli_extension:register,tests.support.cli_extension:register")
    result = cli("runbook", "start", runbook, "--prefect", "--input", "go=yes")
    assert result.code == 2 and "two CLI extensions provide a runbook runner" in result.err


def test_without_prefect_no_extension_is_loaded(cli: Cli, runbook: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFERAILS_CLI_EXTENSIONS", "tests.support.no_such_module:register")
    assert cli.ok("runbook", "start", runbook, "--input", "go=yes")["state"] == "completed"


def test_the_cli_imports_neither_prefect_nor_the_prefect_project() -> None:
    probe = ("import sys\nfrom saferails.cli import main\nmain(['--help'])\n"
             "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'flows', 'tasks', 'blocks'))\n"
             "sys.stderr.write(repr(loaded))\nsys.exit(1 if loaded else 0)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
