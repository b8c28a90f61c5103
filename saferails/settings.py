"""Settings, validated once, in one function. Unsafe values are refused rather than patched up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from saferails.errors import ConfigurationError

DEFAULT_DATA_DIR = ".saferails"
MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class Settings:
    database_url: str
    policy_path: Path | None
    approval_secret: bytes | None
    data_dir: Path

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read ``SAFERAILS_*`` variables.

    - ``SAFERAILS_DATABASE_URL``: SQLAlchemy URL; default an SQLite file under ``SAFERAILS_DATA_DIR``
      (``./.saferails``). ``postgresql://`` URLs are mapped to the psycopg 3 driver.
    - ``SAFERAILS_POLICY``: path to a policy YAML; default the bundled policy.
    - ``SAFERAILS_APPROVAL_SECRET``: key for one-time approval codes; at least 32 bytes, no default (features
      that need it refuse to run without it).
    """
    env = os.environ if env is None else env
    data_dir = Path(env.get("SAFERAILS_DATA_DIR", DEFAULT_DATA_DIR)).expanduser()
    url = env.get("SAFERAILS_DATABASE_URL", "").strip() or f"sqlite:///{data_dir / 'saferails.db'}"
    url = normalise_database_url(url)
    policy = env.get("SAFERAILS_POLICY", "").strip()
    policy_path = Path(policy).expanduser() if policy else None
    if policy_path is not None and not policy_path.is_file():
        raise ConfigurationError(
            f"SAFERAILS_POLICY points to {policy_path}, which is not a file", path=str(policy_path)
        )
    secret_text = env.get("SAFERAILS_APPROVAL_SECRET", "")
    secret = secret_text.encode() if secret_text else None
    if secret is not None and len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"SAFERAILS_APPROVAL_SECRET must be at least {MIN_SECRET_BYTES} bytes (got {len(secret)})"
        )
    return Settings(database_url=url, policy_path=policy_path, approval_secret=secret, data_dir=data_dir)


def normalise_database_url(url: str) -> str:
    """Accept the usual spellings and pin the drivers we test: psycopg 3 for PostgreSQL, pysqlite for SQLite."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith(("postgresql+psycopg://", "sqlite:///", "sqlite+pysqlite:///")):
        return url
    raise ConfigurationError(
        f"unsupported database URL scheme in {url.split('://', 1)[0]!r}: use sqlite:/// or postgresql://"
    )
