"""The library (``saferails/``) never imports Prefect nor the Prefect project (``flows``, ``tasks``, ``blocks``,
``deployments``) nor the demo, by any means; and it never evaluates code.

Three independent checks: import statements, dynamic imports naming those packages in string literals
(``importlib.import_module``, ``__import__``, ``importlib.util.find_spec``, ``pkgutil.resolve_name``), and at run
time, importing every library module in a fresh interpreter started in the project directory (where the Prefect
project IS importable) leaves none of them in ``sys.modules``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # seconds each (a demo run, a subprocess, a wheel build, a fuzz run)

PROJECT = Path(__file__).resolve().parents[2]
CORE = PROJECT / "saferails"
FORBIDDEN = frozenset({"prefect", "flows", "tasks", "blocks", "deployments", "demo"})
DYNAMIC_IMPORTERS = frozenset({"import_module", "__import__", "find_spec", "resolve_name", "load_module"})


def _top(name: str) -> str:
    return name.split(":", 1)[0].split(".", 1)[0].strip()


def _call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def boundary_violations(source: str, where: str) -> list[str]:
    """Every way ``source`` imports a forbidden package: ``where:line: what``."""
    found = []
    for node in ast.walk(ast.parse(source, filename=where)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Call) and _call_name(node.func) in DYNAMIC_IMPORTERS:
            args = [*node.args, *(k.value for k in node.keywords)]
            names = [a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            names += [
                part.value
                for a in args
                if isinstance(a, ast.JoinedStr)
                for part in a.values[:1]
                if isinstance(part, ast.Constant) and isinstance(part.value, str)
            ]
        found += [f"{where}:{getattr(node, 'lineno', 0)}: {n}" for n in names if _top(n) in FORBIDDEN]
    return found


def _core_files() -> list[Path]:
    return sorted(p for p in CORE.rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize(
    "snippet",
    [
        "import prefect",
        "from flows.api import submit_action",
        "import blocks.settings as b",
        "def f():\n    from deployments import serve",
        "import importlib\nimportlib.import_module('flows.runbook_api')",
        "from importlib import import_module\nimport_module(name='tasks.actions')",
        "__import__('prefect.flows')",
        "import importlib.util\nimportlib.util.find_spec('blocks')",
        "import pkgutil\npkgutil.resolve_name('flows.api:approve')",
        "import importlib\nimportlib.import_module(f'flows.{name}')",
        "from demo.run import main",
    ],
    ids=["import", "from-import", "import-as", "lazy import in a function", "import_module", "import_module keyword",
         "__import__", "find_spec", "resolve_name", "f-string module name", "the demo"],
)
def test_the_scanner_catches_every_spelling_of_a_forbidden_import(snippet: str) -> None:
    assert boundary_violations(snippet, "snippet.py") != []


def test_the_scanner_leaves_look_alikes_alone() -> None:
    source = "\n".join(["import saferails.flows_helper", "from saferails.tasks import x",
                         "import_module('saferails.demo2')", "print('flows.api')"])
    assert boundary_violations(source, "snippet.py") == []


def test_no_library_module_imports_prefect_the_prefect_project_or_the_demo() -> None:
    offenders = []
    for path in _core_files():
        offenders += boundary_violations(path.read_text(encoding="utf-8"), str(path.relative_to(PROJECT)))
    assert offenders == []


def test_importing_every_library_module_loads_none_of_them() -> None:
    modules = sorted(
        ".".join(p.relative_to(PROJECT).with_suffix("").parts).removesuffix(".__init__")
        for p in _core_files()
        if p.name != "__main__.py"
    )
    code = (
        "import json, sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r})))"
    )
    # Run from the project directory, where flows/ tasks/ blocks/ deployments/ demo/ are importable: a library
    # module importing one of them would succeed here and show up in sys.modules.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_core_never_calls_eval_exec_or_compile() -> None:
    calls = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"eval", "exec"}:
                calls.append(f"{path.name}:{node.lineno}")
    assert calls == []
