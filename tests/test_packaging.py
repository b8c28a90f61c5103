"""The wheel holds the library and nothing else: ``saferails`` (every module, its policy, migrations and
``py.typed``) and the ``saferails`` script. The Prefect project (``flows``, ``tasks``, ``blocks``, ``deployments``,
``prefect.yaml``) and the demo stay in the project directory: other distributions already install top-level
``flows`` and ``tasks`` packages, and ours would clash with them.

The wheel is built once per session (``pip wheel --no-deps``, a few seconds) from a copy of the project, so the
checkout gains no ``build/`` directory.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # seconds each (a demo run, a subprocess, a wheel build, a fuzz run)

PROJECT = Path(__file__).resolve().parents[1]
COPIED = ("pyproject.toml", "README.md", "prefect.yaml", "saferails", "flows", "tasks", "blocks", "deployments", "demo")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    source = tmp_path_factory.mktemp("project")
    for name in COPIED:
        path = PROJECT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
                           capture_output=True, text=True, timeout=280)
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("saferails-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_installs_only_the_saferails_package(wheel: zipfile.ZipFile) -> None:
    top_level = {name.split("/", 1)[0] for name in wheel.namelist()}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"saferails"}


def test_every_library_module_and_data_file_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    modules = {p.relative_to(PROJECT).as_posix() for p in (PROJECT / "saferails").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert modules - names == set()
    assert {"saferails/py.typed", "saferails/policy/default_policy.yaml"} <= names
    assert any(n.startswith("saferails/store/migrations/versions/") for n in names)


def test_the_wheel_installs_the_saferails_script_and_nothing_else(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser()
    parser.read_string(wheel.read(entry_points).decode())
    assert {section: dict(parser[section]) for section in parser.sections()} == {
        "console_scripts": {"saferails": "saferails.cli:main"}
    }
