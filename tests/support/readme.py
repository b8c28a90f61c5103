"""The README's console examples, run as written.

:func:`console_blocks` extracts the ```` ```console ```` blocks of a README section; :class:`Session` runs their
commands in order, as a shell would for the small subset of shell they use, and fails on anything else:

- ``$ `` starts a command, a trailing ``\\`` continues it on the next line; the lines up to the next ``$ `` are
  its expected output (compared with doctest's ``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``: ``...`` stands for
  anything, e.g. an id);
- a comment starting ``# exit N`` is the exit code it must give (otherwise 0);
- ``NAME=VALUE`` and ``export NAME=VALUE`` set an environment variable; ``$NAME`` and ``$(command)`` are expanded;
- ``. .venv/bin/activate`` is taken as done (the caller puts the virtualenv first on PATH);
- ``a | b`` pipes; ``saferails ...`` runs in-process (``saferails.cli.main``, stdout and stderr both compared),
  any other program (``jq``, ``python3``, ``cut``) as a subprocess with the session's environment.
"""

from __future__ import annotations

import doctest
import os
import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ASSIGNMENT = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
EXIT = re.compile(r"#\s*exit (\d+)")
CHECKER = doctest.OutputChecker()
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@dataclass(frozen=True)
class Example:
    """One ``$`` command of the README, the output shown under it (may be empty) and its exit code."""

    command: str
    want: str
    code: int
    line: int


def section(readme: str, heading: str) -> tuple[str, int]:
    """The text of the ``## heading`` section (up to the next ``## ``) and the line number it starts on."""
    start = readme.index(f"\n## {heading}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start:end if end >= 0 else len(readme)], readme.count("\n", 0, start) + 1


def console_blocks(text: str, first: int = 1) -> list[list[Example]]:
    """The ``console`` blocks of ``text`` (whose first line is line ``first`` of its file), each as its examples
    in order."""
    blocks = []
    for match in re.finditer(r"```console\n(.*?)```", text, re.S):
        first_line = first + text.count("\n", 0, match.start(1))
        blocks.append(_examples(match.group(1), first_line))
    return blocks


def _examples(block: str, first_line: int) -> list[Example]:
    examples: list[Example] = []
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            raise AssertionError(f"README line {first_line + i}: output without a command: {lines[i]!r}")
        start = i
        command = lines[i][2:]
        while command.rstrip().endswith("\\"):
            i += 1
            command = command.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        want = []
        while i < len(lines) and not lines[i].startswith("$ "):
            want.append(lines[i])
            i += 1
        exit_code = EXIT.search(command)
        examples.append(Example(command, "\n".join(want).strip("\n"), int(exit_code[1]) if exit_code else 0,
                                first_line + start))
    return examples


class Session:
    """Runs examples in one environment (``os.environ``, which the caller restores) and working directory.
    ``run_cli(argv) -> (code, stdout, stderr)`` runs one ``saferails`` command."""

    def __init__(self, run_cli: Callable[[list[str]], tuple[int, str, str]]) -> None:
        self.run_cli = run_cli

    def check(self, example: Example) -> str:
        """Run ``example``; raises ``AssertionError`` naming its README line when the code or output differ."""
        code, output = self.execute(example.command)
        where = f"README line {example.line}: $ {example.command}"
        assert code == example.code, f"{where}\nexit {code}, README says {example.code}\n{output}"
        if example.want and not CHECKER.check_output(example.want + "\n", output, OPTIONS):
            raise AssertionError(f"{where}\nREADME shows:\n{example.want}\ngot:\n{output}")
        return output

    def execute(self, command: str) -> tuple[int, str]:
        words = shlex.split(command, comments=True)
        if words[:1] in (["."], ["source"]) and words[1:] == [".venv/bin/activate"]:
            return 0, ""  # the caller put the virtualenv's bin first on PATH, as activating does
        assignment = ASSIGNMENT.match(command.strip())
        if assignment:
            words = shlex.split(self._expand(assignment[2]), comments=True)
            os.environ[assignment[1]] = " ".join(words)
            return 0, ""
        return self._pipeline(self._expand(command))

    def _expand(self, text: str) -> str:
        """``$(...)`` and ``$NAME`` expanded, except inside single quotes (a jq filter's ``$id``), as a shell does."""
        out, i, quoted = [], 0, False
        while i < len(text):
            char = text[i]
            if char == "'":
                quoted = not quoted
            elif not quoted and text.startswith("$(", i):
                end = _closing(text, i + 2)
                out.append(self._substitute(text[i + 2:end]))
                i = end + 1
                continue
            elif not quoted and (name := VARIABLE.match(text, i)):
                out.append(os.environ.get(name[1], ""))
                i = name.end()
                continue
            out.append(char)
            i += 1
        return "".join(out)

    def _substitute(self, command: str) -> str:
        code, output = self._pipeline(self._expand(command))
        assert code == 0, f"$({command}) exited {code}: {output}"
        return shlex.quote(output.rstrip("\n"))

    def _pipeline(self, command: str) -> tuple[int, str]:
        lexer = shlex.shlex(command, posix=True, punctuation_chars="|")
        lexer.whitespace_split = True
        stages: list[list[str]] = [[]]
        for token in lexer:
            if token == "|":
                stages.append([])
            else:
                stages[-1].append(token)
        feed: str | None = None
        code, output = 0, ""
        for argv in stages:
            if argv[0] == "saferails":
                code, out, err = self.run_cli(argv[1:])
                output, feed = out + err, out
            else:
                done = subprocess.run(argv, input=feed, capture_output=True, text=True, env=dict(os.environ),
                                      cwd=Path.cwd(), check=False, timeout=60)
                code, output, feed = done.returncode, done.stdout + done.stderr, done.stdout
        return code, output


def _closing(text: str, start: int) -> int:
    """The index of the ``)`` closing a ``$(`` whose content starts at ``start`` (parentheses in quotes ignored)."""
    depth, quote = 1, ""
    for i in range(start, len(text)):
        char = text[i]
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
    raise AssertionError(f"unclosed $( in {text!r}")
