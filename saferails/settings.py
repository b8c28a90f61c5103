"""The one settings model, validated once. Unsafe values are refused rather than patched up.

Environment variables are read here and nowhere else: :func:`load_settings` turns ``SAFERAILS_*`` variables (or a
mapping a test passes) into a :class:`Settings`; every other module takes its values from that object (the
composition root in ``saferails.api``, the Prefect Blocks, ``deployments.serve``). ``Settings(...)`` built
directly takes only the values passed (tests, the Blocks): nothing leaks in from the environment.

Variables (all optional; an empty value counts as unset):

- ``SAFERAILS_DATA_DIR``: where the default SQLite file, the generated keys (``keys/``) and the local approval
  inboxes (``inbox/``) live (``./.saferails``).
- ``SAFERAILS_DATABASE_URL``: SQLAlchemy URL; default an SQLite file under the data directory. ``postgresql://``
  URLs are mapped to the psycopg 3 driver; other schemes are refused.
- ``SAFERAILS_POLICY``: path to a policy YAML (must be a file); default the bundled policy.
- ``SAFERAILS_APPROVAL_SECRET``: key for one-time approval codes, at least 32 bytes, no default.
- ``SAFERAILS_WEBHOOK_SECRET``: HMAC key signing workflow webhook calls, at least 32 bytes, no default.
- ``SAFERAILS_FILE_ROOT``: directory file actions are confined to (must exist); unset disables them.
- ``SAFERAILS_SMTP_HOST`` / ``_PORT`` / ``_SENDER`` / ``_USERNAME`` / ``_PASSWORD`` / ``_STARTTLS`` / ``_TIMEOUT``:
  the SMTP server of ``send_email`` and of approval-code notifications (the latter only when the host is set).
- ``SAFERAILS_LEDGER_ACCOUNT``: the account payments and purchases are booked against (``operating``).
- ``SAFERAILS_RUNNER_LIMIT`` (50) and ``SAFERAILS_METRICS_PORT`` (9464): ``deployments.serve``.
- ``SAFERAILS_CLI_EXTENSIONS``: comma-separated CLI extension references, read by the CLI's extension registry.
- ``SAFERAILS_OIDC_ISSUER`` / ``_AUDIENCE`` / ``_JWKS`` (a file path, or an ``https://`` URL; ``http://`` only to
  loopback): the HTTP API also accepts JWT bearer tokens from this identity provider (all three or none).
  ``_ROLE_CLAIM`` (``roles``; dotted paths reach nested claims), ``_TENANT_CLAIM`` (``tenant``), ``_ALGORITHMS``
  (comma-separated subset of RS256, ES256, EdDSA; the default is all three), ``_JWKS_TTL`` (300 s) and
  ``_LEEWAY`` (30 s of clock skew).
- ``SAFERAILS_TOKEN``: the CLI's credential (``sr_...``); unset, the CLI reads the ``SAFERAILS_PROFILE`` profile
  (default ``default``) of ``<data_dir>/credentials.json``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from saferails.errors import ConfigurationError
from saferails.net.egress import EgressPolicy

if TYPE_CHECKING:
    from saferails.handlers.base import HandlerSettings
    from saferails.notify.smtp import SmtpSettings

DEFAULT_DATA_DIR = ".saferails"
# Asymmetric only: with HS256 a verifier holding the public key would accept tokens "signed" with it.
OIDC_ALGORITHMS = ("RS256", "ES256", "EdDSA")
MIN_SECRET_BYTES = 32
ENV_PREFIX = "SAFERAILS_"

# The policy's variable is SAFERAILS_POLICY (documented, used by operators) while the field is ``policy_path``.
_ENV_RENAMES = {"saferails_policy": "saferails_policy_path"}

# The environment ``load_settings`` is reading; None outside it, so ``Settings(...)`` reads no environment.
_ENV: ContextVar[Mapping[str, str] | None] = ContextVar("saferails_settings_env", default=None)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._mapping = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        loaded: dict[str, str | None] = {
            key.lower(): value for key, value in self._mapping.items() if key.lower() != "saferails_policy_path"
        }
        for old, new in _ENV_RENAMES.items():
            if old in loaded:
                loaded[new] = loaded.pop(old)
        return {k: v for k, v in loaded.items() if v is None or v.strip() != ""}


class Settings(BaseSettings):
    """Every setting saferails reads. Frozen; build with :func:`load_settings` (from the environment or a mapping)
    or directly with keyword arguments. Refused values raise ``ConfigurationError`` naming the variable."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid", case_sensitive=False)

    data_dir: Path = Path(DEFAULT_DATA_DIR)
    database_url: str = ""
    policy_path: Path | None = None
    approval_secret: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    file_root: Path | None = None
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_sender: str | None = None
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool | None = None
    smtp_timeout: float = 10.0
    ledger_account: str = "operating"
    runner_limit: int = 50
    metrics_port: int = 9464
    metrics_host: str = "127.0.0.1"
    serve_host: str = "127.0.0.1"
    serve_port: int = 4200
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    cli_extensions: Annotated[list[str], NoDecode] = []
    egress_allowed_hosts: Annotated[list[str], NoDecode] = []
    egress_allow_private: bool = False
    audit_key_file: Path | None = None
    http_authenticator: str | None = None
    public_url: str | None = None
    audit_checkpoints_file: Path | None = None
    # PostgreSQL: writers append audit records unchained and the sequencer chains them (saferails.audit.sequencer);
    # verify fails when one is older than audit_unchained_max_age_seconds. Every process of a store must agree.
    audit_sequencer: bool = False
    audit_unchained_max_age_seconds: Annotated[float, Field(gt=0)] = 300.0
    token: SecretStr | None = None
    profile: str = "default"
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks: str | None = None
    oidc_role_claim: str = "roles"
    oidc_tenant_claim: str = "tenant"
    oidc_algorithms: Annotated[list[str], NoDecode] = ["RS256", "ES256", "EdDSA"]
    oidc_jwks_ttl: float = 300.0
    oidc_leeway: float = 30.0

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError(_describe(exc), fields=[_variable(e["loc"]) for e in exc.errors()]) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        env = _ENV.get()
        if env is None:
            return (init_settings,)
        return (init_settings, _MappingEnvSource(settings_cls, env))

    # --- validation -------------------------------------------------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _defaults_from_data_dir(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = {k: v for k, v in data.items() if not (isinstance(v, str) and v.strip() == "")}
        for key in ("approval_secret", "webhook_secret", "smtp_password"):
            if isinstance(data.get(key), bytes):
                data[key] = data[key].decode()
        if not data.get("database_url"):
            data_dir = Path(str(data.get("data_dir", DEFAULT_DATA_DIR))).expanduser()
            data["database_url"] = f"sqlite:///{data_dir / 'saferails.db'}"
        return data

    @field_validator("data_dir", "policy_path", "file_root", "audit_key_file", "audit_checkpoints_file", mode="after")
    @classmethod
    def _expand_user(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()

    @field_validator("database_url", mode="after")
    @classmethod
    def _known_database(cls, value: str) -> str:
        return normalise_database_url(value.strip())

    @field_validator("policy_path", mode="after")
    @classmethod
    def _policy_is_a_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ConfigurationError(f"SAFERAILS_POLICY points to {value}, which is not a file", path=str(value))
        return value

    @field_validator("file_root", mode="after")
    @classmethod
    def _root_is_a_directory(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if not value.is_dir():
            raise ConfigurationError(f"SAFERAILS_FILE_ROOT {value} is not a directory", path=str(value))
        return value.resolve()

    @field_validator("approval_secret", mode="after")
    @classmethod
    def _long_enough(cls, value: SecretStr | None, info: Any) -> SecretStr | None:
        if value is not None:
            size = len(value.get_secret_value().encode())
            if size < MIN_SECRET_BYTES:
                name = f"{ENV_PREFIX}{info.field_name.upper()}"
                raise ConfigurationError(f"{name} must be at least {MIN_SECRET_BYTES} bytes (got {size})")
        return value

    @field_validator("webhook_secret", mode="after")
    @classmethod
    def _standard_webhooks_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            # Late: the notify package's modules read settings-adjacent files (secrets), which import this module.
            from saferails.notify.signing import webhook_key

            try:
                webhook_key(value.get_secret_value())
            except ConfigurationError as exc:
                raise ConfigurationError(f"SAFERAILS_WEBHOOK_SECRET: {exc.message}") from None
        return value

    @field_validator("cli_extensions", "egress_allowed_hosts", "oidc_algorithms", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.smtp_port is not None and not 0 < self.smtp_port < 65536:
            raise ConfigurationError(f"SAFERAILS_SMTP_PORT must be 1-65535, got {self.smtp_port}")
        if self.smtp_timeout <= 0:
            raise ConfigurationError(f"SAFERAILS_SMTP_TIMEOUT must be positive, got {self.smtp_timeout}")
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise ConfigurationError("set both SAFERAILS_SMTP_USERNAME and SAFERAILS_SMTP_PASSWORD, or neither")
        if self.smtp_username is not None and self.smtp_starttls is False and not _is_loopback(self.smtp_host):
            raise ConfigurationError(
                f"refusing to send SMTP credentials in clear text to {self.smtp_host}: enable SAFERAILS_SMTP_STARTTLS"
            )
        if self.runner_limit < 1:
            raise ConfigurationError(f"SAFERAILS_RUNNER_LIMIT must be at least 1, got {self.runner_limit}")
        if not 0 < self.metrics_port < 65536:
            raise ConfigurationError(f"SAFERAILS_METRICS_PORT must be 1-65535, got {self.metrics_port}")
        if not 0 < self.serve_port < 65536:
            raise ConfigurationError(f"SAFERAILS_SERVE_PORT must be 1-65535, got {self.serve_port}")
        if not 0 < self.api_port < 65536:
            raise ConfigurationError(f"SAFERAILS_API_PORT must be 1-65535, got {self.api_port}")
        for name, host in (("SERVE_HOST", self.serve_host), ("METRICS_HOST", self.metrics_host),
                           ("API_HOST", self.api_host)):
            if not host or any(c.isspace() for c in host):
                raise ConfigurationError(f"SAFERAILS_{name} must be a host name or address, got {host!r}")
        ports = {"SAFERAILS_SERVE_PORT": self.serve_port, "SAFERAILS_METRICS_PORT": self.metrics_port,
                 "SAFERAILS_API_PORT": self.api_port}
        if len(set(ports.values())) < len(ports):
            raise ConfigurationError(
                "the Prefect server, the metrics endpoint and the HTTP API need a port each: "
                + ", ".join(f"{name}={port}" for name, port in ports.items()))
        if any(not ref or any(c.isspace() for c in ref) for ref in self.cli_extensions):
            raise ConfigurationError("SAFERAILS_CLI_EXTENSIONS must be comma-separated references without spaces")
        if self.public_url is not None and not self.public_url.startswith(("https://", "http://")):
            raise ConfigurationError(f"SAFERAILS_PUBLIC_URL must be the API's http(s) origin, got {self.public_url!r}")
        self._check_oidc()
        return self

    def _check_oidc(self) -> None:
        """All three of issuer, audience and JWKS or none; only asymmetric algorithms (never ``none`` or HS*,
        which a public key would "verify"); the JWKS over https (plain http only to this machine) or a file."""
        given = [self.oidc_issuer, self.oidc_audience, self.oidc_jwks]
        if any(v is not None for v in given) and not all(v is not None for v in given):
            raise ConfigurationError("set SAFERAILS_OIDC_ISSUER, SAFERAILS_OIDC_AUDIENCE and SAFERAILS_OIDC_JWKS "
                                     "together, or none of them")
        bad = [a for a in self.oidc_algorithms if a not in OIDC_ALGORITHMS]
        if bad or not self.oidc_algorithms:
            raise ConfigurationError(f"SAFERAILS_OIDC_ALGORITHMS must be a subset of {', '.join(OIDC_ALGORITHMS)}, "
                                     f"got {', '.join(bad) or 'nothing'}", refused=bad)
        if self.oidc_jwks_ttl <= 0 or self.oidc_leeway < 0 or self.oidc_leeway > 300:
            raise ConfigurationError("SAFERAILS_OIDC_JWKS_TTL must be positive and SAFERAILS_OIDC_LEEWAY 0-300 s")
        for name in ("oidc_role_claim", "oidc_tenant_claim"):
            if not getattr(self, name).strip():
                raise ConfigurationError(f"SAFERAILS_{name.upper()} must name a claim")
        jwks = self.oidc_jwks
        if jwks is None:
            return
        if jwks.startswith("http://"):
            host = jwks[len("http://"):].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
            if not _is_loopback(host):
                raise ConfigurationError("SAFERAILS_OIDC_JWKS must be an https:// URL (plain http only to this "
                                         "machine): keys fetched in clear text can be replaced", url=jwks)
        elif not jwks.startswith("https://") and not Path(jwks).expanduser().is_file():
            raise ConfigurationError(f"SAFERAILS_OIDC_JWKS {jwks} is neither an https:// URL nor a file", path=jwks)

    @property
    def oidc_configured(self) -> bool:
        """True when the HTTP API accepts OIDC bearer tokens (``SAFERAILS_OIDC_ISSUER`` and friends set)."""
        return self.oidc_jwks is not None

    # --- derived views ----------------------------------------------------------------------------------------
    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def approval_key(self) -> bytes | None:
        """The approval secret as the bytes ``ApprovalCodes`` signs with (None: codes are not checked)."""
        return None if self.approval_secret is None else self.approval_secret.get_secret_value().encode()

    @property
    def webhook_key(self) -> str | None:
        """The webhook signing secret as the dispatcher takes it (None: webhook triggers fail)."""
        return None if self.webhook_secret is None else self.webhook_secret.get_secret_value()

    @property
    def audit_key_path(self) -> Path:
        """The Ed25519 key that signs audit checkpoints (``SAFERAILS_AUDIT_KEY_FILE``; default
        ``<data_dir>/keys/audit-signing.key``, created 0600 on first use; the public half is ``<path>.pub``)."""
        from saferails.audit.signing import audit_key_path  # late: the audit package imports the store

        return self.audit_key_file or audit_key_path(self.data_dir)

    @property
    def audit_published_path(self) -> Path:
        """Where signed checkpoints are published outside the database (``SAFERAILS_AUDIT_CHECKPOINTS_FILE``;
        default ``<data_dir>/audit-checkpoints.jsonl``)."""
        from saferails.audit.checkpoints import default_published_path

        return self.audit_checkpoints_file or default_published_path(self.data_dir)

    @property
    def egress(self) -> EgressPolicy:
        """Where outgoing requests (webhooks, runbook call-service steps) may go: public addresses, plus
        ``SAFERAILS_EGRESS_ALLOWED_HOSTS``; private ranges only with ``SAFERAILS_EGRESS_ALLOW_PRIVATE``."""
        return EgressPolicy(allowed_hosts=frozenset(self.egress_allowed_hosts), allow_private=self.egress_allow_private)

    @property
    def smtp_configured(self) -> bool:
        """True when ``SAFERAILS_SMTP_HOST`` is set: approval codes then go out by mail."""
        return self.smtp_host is not None

    def with_changes(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and validated again (``model_copy`` would skip validation)."""
        values: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            values[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
        return type(self)(**(values | changes))

    def handler_settings(self) -> HandlerSettings:
        """What the built-in handlers use: SMTP defaults 127.0.0.1:25 without STARTTLS. Credentials over plain
        SMTP to a host other than this machine are refused."""
        from saferails.handlers.base import HandlerSettings

        host = self.smtp_host or "127.0.0.1"
        starttls = bool(self.smtp_starttls)
        if self.smtp_username is not None and not starttls and not _is_loopback(host):
            raise ConfigurationError(f"refusing to send SMTP credentials in clear text to {host}: enable STARTTLS")
        return HandlerSettings(
            file_root=self.file_root,
            smtp_host=host,
            smtp_port=self.smtp_port or 25,
            smtp_sender=self.smtp_sender,
            smtp_username=self.smtp_username,
            smtp_password=None if self.smtp_password is None else self.smtp_password.get_secret_value(),
            smtp_starttls=starttls,
            smtp_timeout=self.smtp_timeout,
            ledger_account=self.ledger_account.strip() or "operating",
        )

    def smtp_settings(self) -> SmtpSettings:
        """What the mail notifier uses: port 587 and STARTTLS unless set otherwise. Refused: no host, a sender
        that is not an address, a password sent without STARTTLS to anything but this machine."""
        from saferails.notify.smtp import SmtpSettings

        if self.smtp_host is None:
            raise ConfigurationError("SAFERAILS_SMTP_HOST is not set")
        sender = (self.smtp_sender or "").strip()
        if "@" not in sender:
            raise ConfigurationError("SAFERAILS_SMTP_SENDER must be an email address", sender=sender)
        starttls = self.smtp_starttls is not False
        if self.smtp_password is not None and not starttls and not _is_loopback(self.smtp_host):
            raise ConfigurationError("refusing to send SMTP credentials in clear text: enable SAFERAILS_SMTP_STARTTLS")
        return SmtpSettings(
            host=self.smtp_host,
            port=self.smtp_port or 587,
            sender=sender,
            username=self.smtp_username,
            password=None if self.smtp_password is None else self.smtp_password.get_secret_value(),
            starttls=starttls,
        )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The settings from ``SAFERAILS_*`` variables of ``env`` (default: the process environment), validated once.

    This is the one place the environment is read. Raises ``ConfigurationError`` for unsafe or malformed values.
    """
    with _reading(os.environ if env is None else env):
        return Settings()


@contextmanager
def _reading(env: Mapping[str, str]) -> Iterator[None]:
    token = _ENV.set(env)
    try:
        yield
    finally:
        _ENV.reset(token)


def normalise_database_url(url: str) -> str:
    """Accept the usual spellings and pin the drivers we test: psycopg 3 for PostgreSQL, pysqlite for SQLite."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith(("postgresql+psycopg://", "sqlite:///", "sqlite+pysqlite:///")):
        return url
    raise ConfigurationError(
        f"unsupported database URL scheme in {url.split('://', 1)[0]!r}: use sqlite:/// or postgresql://"
    )


def _is_loopback(host: str | None) -> bool:
    if host is None or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _variable(loc: tuple[int | str, ...]) -> str:
    name = str(loc[0]) if loc else "settings"
    return f"{ENV_PREFIX}{'POLICY' if name == 'policy_path' else name.upper()}"


def _describe(exc: ValidationError) -> str:
    return "invalid settings: " + "; ".join(f"{_variable(e['loc'])}: {e['msg']}" for e in exc.errors())
