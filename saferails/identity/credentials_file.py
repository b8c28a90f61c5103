"""The local credentials file: how the CLI and the Python API find the caller's token, as ``kubectl`` and
``prefect`` profiles do.

A mode-0600 JSON file (default ``<data_dir>/credentials.json``) holds named profiles
``{"current": "default", "profiles": {"default": {"token": ..., "principal_id": ..., "expires_at": ...}}}``.
Resolution order: the ``SAFERAILS_TOKEN`` value (passed in by the edge; this module reads no environment) >
the file's named or current profile > nothing (the edge then raises ``Unauthenticated``). A file readable by
group or others is refused (``SecretFileInsecure``), never used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from saferails.errors import ConfigurationError
from saferails.identity.service import IssuedCredential
from saferails.secrets import check_private_file, write_private_file

__all__ = ["CREDENTIALS_FILE", "credentials_path", "read_token", "resolve_token", "save_credential"]

CREDENTIALS_FILE = "credentials.json"
DEFAULT_PROFILE = "default"


def credentials_path(data_dir: Path) -> Path:
    """``<data_dir>/credentials.json``."""
    return Path(data_dir) / CREDENTIALS_FILE


def _load(path: Path) -> dict[str, Any]:
    check_private_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read credentials file {path}: {exc}", path=str(path)) from exc
    if not isinstance(data, dict) or not isinstance(data.get("profiles"), dict):
        raise ConfigurationError(f"credentials file {path} is malformed (no profiles)", path=str(path))
    return data


def save_credential(path: Path, credential: IssuedCredential, *, profile: str = DEFAULT_PROFILE,
                    make_current: bool = True) -> None:
    """Store ``credential`` under ``profile`` in the 0600 file ``path`` (created, or updated keeping other
    profiles), atomically."""
    path = Path(path)
    data: dict[str, Any] = _load(path) if path.exists() else {"current": profile, "profiles": {}}
    profiles: dict[str, Any] = data["profiles"]
    profiles[profile] = {
        "token": credential.token,
        "principal_id": credential.principal_id,
        "credential_id": credential.credential_id,
        "expires_at": credential.expires_at.isoformat(),
    }
    if make_current:
        data["current"] = profile
    write_private_file(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_token(path: Path, profile: str | None = None) -> str | None:
    """The token of ``profile`` (default: the file's current profile) in ``path``; None when the file or the
    profile does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    data = _load(path)
    entry = data["profiles"].get(profile or data.get("current") or DEFAULT_PROFILE)
    token = entry.get("token") if isinstance(entry, dict) else None
    return token if isinstance(token, str) and token else None


def resolve_token(env_token: str | None, path: Path | None, profile: str | None = None) -> str | None:
    """The caller's token: ``env_token`` (the value of ``SAFERAILS_TOKEN``) if non-empty, else the file's."""
    if env_token and env_token.strip():
        return env_token.strip()
    return None if path is None else read_token(path, profile)
