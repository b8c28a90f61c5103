"""README's "Python client" example, run as written against the API served by uvicorn on loopback: the names it
leaves to the reader (``API``, ``AGENT_KEY``, ``BOB_KEY``, and bob typing his code at ``input``) are bound here."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.http_world import HttpWorld
from tests.support.uvicorn_server import running

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {section}")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.DOTALL)


def test_the_readme_python_client_example_runs(sqlite_world: HttpWorld) -> None:
    w = sqlite_world
    [example] = python_blocks("Python client")
    with running(w.client.app) as api:  # type: ignore[arg-type]
        def bob_types_his_code(_prompt: str) -> str:
            return w.code(_only_action(w), "bob")

        exec(compile(example, "README.md", "exec"),
             {"API": api, "AGENT_KEY": w.tokens["agent-1"], "BOB_KEY": w.tokens["bob"], "input": bob_types_his_code})
    events = [r["event"] for r in w.client.get(f"/api/v1/actions/{_only_action(w)}/audit",
                                               headers=w.headers("aude")).json()["records"]]
    assert "approved" in events and events[-1] == "cancelled"


def _only_action(w: HttpWorld) -> str:
    [action] = w.client.get("/api/v1/actions", headers=w.headers("aude")).json()["items"]
    return str(action["id"])
