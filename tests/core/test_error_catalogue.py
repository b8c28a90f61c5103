"""One error catalogue: every ``SaferailsError`` subclass, wherever it is defined, has its own stable code, and
every code and exit code is the one the README's "Error codes and exit codes" section documents.

Scripts match on codes and exit codes, so a code shared by two classes, a class that silently inherits its
parent's code, or an exit code the README puts under another meaning are all bugs a user would hit.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections import defaultdict
from pathlib import Path

import pytest

import saferails
from saferails.errors import SaferailsError

README = Path(__file__).resolve().parents[2] / "README.md"
CODE = re.compile(r"`([A-Z][A-Z0-9_]+)`")


def _import_every_library_module() -> None:
    for module in pkgutil.walk_packages(saferails.__path__, "saferails."):
        if ".migrations" not in module.name and not module.name.endswith("__main__"):
            importlib.import_module(module.name)


def _every_error_class() -> list[type[SaferailsError]]:
    _import_every_library_module()
    found: list[type[SaferailsError]] = [SaferailsError]
    pending = [SaferailsError]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub not in found and sub.__module__.startswith("saferails"):
                found.append(sub)
                pending.append(sub)
    return found


def _readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Error codes and exit codes")
    end = text.find("\n## ", start + 1)
    return text[start: end if end != -1 else None]


def documented_exits(section: str) -> dict[int, str]:
    """Exit code -> meaning, from the table rows ``| exit | codes | meaning |``."""
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].isdigit():
            rows[int(cells[0])] = cells[2]
    return rows


def documented_codes(section: str) -> dict[str, int]:
    """Code -> exit code: from the table's code column and from the ``(exit)`` groups of the paragraph on feature
    areas (``... `A`, `B` (2); `C` (7) ...``)."""
    codes: dict[str, int] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].isdigit():
            codes.update(dict.fromkeys(CODE.findall(cells[1]), int(cells[0])))
    paragraph = section[section.index("Feature areas add their own codes"):]
    paragraph = " ".join(paragraph.split("\n\n", 1)[0].split())
    for group, exit_code in re.findall(r"((?:`[A-Z][A-Z0-9_]+`(?:,\s*|\s+)?)+)\((\d+)\)", paragraph):
        codes.update(dict.fromkeys(CODE.findall(group), int(exit_code)))
    return codes


ERRORS = _every_error_class()


def test_the_walk_finds_error_classes_defined_outside_errors_py() -> None:
    modules = {cls.__module__ for cls in ERRORS}
    assert "saferails.errors" in modules and len(modules) > 5


def test_every_error_class_declares_its_own_code() -> None:
    inherited = [f"{c.__module__}.{c.__qualname__} inherits {c.code}" for c in ERRORS if "code" not in vars(c)]
    assert inherited == []


def test_no_two_error_classes_share_a_code() -> None:
    owners: dict[str, list[str]] = defaultdict(list)
    for cls in ERRORS:
        owners[cls.code].append(f"{cls.__module__}.{cls.__qualname__}")
    assert {code: names for code, names in owners.items() if len(names) > 1} == {}


def test_codes_are_stable_identifiers_and_statuses_are_http_errors() -> None:
    bad = [c.__qualname__ for c in ERRORS
           if not re.fullmatch(r"[A-Z][A-Z0-9_]+", c.code) or not 400 <= c.http_status <= 599]
    assert bad == []


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.code)
def test_the_readme_documents_the_code_under_the_same_exit_code(cls: type[SaferailsError]) -> None:
    section = _readme_section()
    assert cls.exit_code in documented_exits(section), f"exit {cls.exit_code} is not a row of the README's table"
    assert documented_codes(section).get(cls.code) == cls.exit_code, (
        f"README does not list {cls.code} under exit {cls.exit_code} ({documented_exits(section)[cls.exit_code]})"
    )


def test_every_code_the_readme_names_exists_with_that_exit_code() -> None:
    actual = {cls.code: cls.exit_code for cls in ERRORS}
    stale = {code: exit_code for code, exit_code in documented_codes(_readme_section()).items()
             if actual.get(code) != exit_code}
    assert stale == {}


def test_the_readme_parser_reads_rows_and_the_feature_paragraph() -> None:
    section = (
        "| exit | codes | meaning |\n| --- | --- | --- |\n| 2 | `BAD_A`, `BAD_B` | bad input |\n"
        "| 8 | `BOOM` | failed |\n\nFeature areas add their own codes under the same exit classes, e.g. `X_ONE`,\n"
        "`X_TWO` (2); `Y_CODE` (8). The code is stable.\n\n## Next"
    )
    assert documented_exits(section) == {2: "bad input", 8: "failed"}
    assert documented_codes(section) == {"BAD_A": 2, "BAD_B": 2, "BOOM": 8, "X_ONE": 2, "X_TWO": 2, "Y_CODE": 8}
