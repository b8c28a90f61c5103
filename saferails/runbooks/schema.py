"""The JSON Schema of runbook documents, for editors (YAML language servers) and external validators."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from saferails.runbooks.definition import RunbookDefinition


def runbook_json_schema() -> dict[str, Any]:
    """The pydantic JSON schema of ``RunbookDefinition`` with a ``$schema`` and title."""
    schema = RunbookDefinition.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "saferails runbook", **schema}


def write_schema(path: str | Path) -> Path:
    target = Path(path)
    target.write_text(json.dumps(runbook_json_schema(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target
