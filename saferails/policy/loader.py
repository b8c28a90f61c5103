"""Reading and writing policy documents (YAML). The only module of the policy package that touches files.

``load_policy`` / ``load_policy_text`` raise ``PolicyInvalid`` for every problem: unreadable file, YAML syntax,
duplicate mapping keys (YAML would silently keep the last one), wrong shape, semantic errors.
``policy_to_yaml`` writes a document that loads back to an equal policy with the same fingerprint.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from saferails.errors import PolicyInvalid
from saferails.policy.model import Policy, parse_policy

__all__ = ["DEFAULT_POLICY_RESOURCE", "default_policy", "load_policy", "load_policy_text", "policy_to_yaml"]

DEFAULT_POLICY_RESOURCE = "default_policy.yaml"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise PolicyInvalid(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_policy_text(text: str) -> Policy:
    """Parse and validate a policy from YAML text."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # _StrictLoader is a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        raise PolicyInvalid(f"policy is not valid YAML: {exc}") from exc
    return parse_policy(data)


def load_policy(path: str | Path) -> Policy:
    """Read, parse and validate the policy file at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyInvalid(f"cannot read policy file {str(path)!r}: {exc.strerror or exc}", path=str(path)) from exc
    return load_policy_text(text)


@lru_cache(maxsize=1)
def default_policy() -> Policy:
    """The packaged default policy (``saferails/policy/default_policy.yaml``), built from the seeds."""
    return load_policy_text(files("saferails.policy").joinpath(DEFAULT_POLICY_RESOURCE).read_text(encoding="utf-8"))


def policy_to_yaml(policy: Policy) -> str:
    """The policy as readable YAML (durations like ``24h``, omitted fields left out); loads back equal."""
    data = policy.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)
