"""OIDC / JWT bearer tokens: a company's identity provider signs access tokens, this edge verifies them.

:class:`OidcAuthenticator` turns a JWT into a :class:`~saferails.http.auth.Principal`:

- the signature must verify against a key of the configured JWKS (a file, or a URL fetched through the egress
  guard ``saferails.net.egress``; cached for ``jwks_ttl``, fetched again when a token names an unknown ``kid``,
  at most once per ``min_refresh`` so random ``kid`` values cannot turn us into a fetch loop);
- the algorithm is the KEY's: each JWK is bound to one algorithm (its ``alg``, else what its ``kty``/``crv``
  imply) and only RS256, ES256 and EdDSA are ever accepted. ``alg: none``, HS256 "signed" with the public key
  (algorithm confusion), symmetric (``oct``) JWKs and a token without ``kid`` are refused;
- ``iss`` must equal the issuer, ``aud`` must contain the audience, ``exp`` and ``sub`` are required, ``exp``,
  ``nbf`` and ``iat`` are checked against the injectable clock with ``leeway`` seconds of skew;
- claims map to a principal: ``sub`` -> the principal id; the role claim (a list, or a space/comma-separated
  string; a dotted path such as ``realm_access.roles`` reaches nested claims) -> roles, where a name that is not
  one of our roles grants nothing (fail closed, the 403 names it); the tenant claim (string or list) -> tenants,
  and a token without it is refused (no default tenant). ``"*"`` (every tenant) is honoured only for the admin
  and auditor roles, as for API keys. A principal the store knows and has disabled is refused.

Every refusal is ``Unauthenticated`` with ``invalid_token`` set (HTTP 401 with ``WWW-Authenticate: Bearer
error="invalid_token"``) and one public message; the precise reason is in ``details["internal_reason"]``.
A JWKS that cannot be fetched once the cache has expired is ``OidcKeysUnavailable`` (503): no key, no entry.

:class:`BearerAuthenticator` routes a bearer token to the API-key authenticator (``sr_...`` tokens) or to the
OIDC one (anything shaped like a JWT), so both kinds of token work on every endpoint.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt

from saferails.boundary import identifier_problem
from saferails.clock import Clock
from saferails.errors import NotFound, SaferailsError, Unauthenticated
from saferails.http.auth import ALL_TENANTS, Authenticator, Principal
from saferails.identity import IdentityService, Role
from saferails.net.egress import EgressPolicy, send
from saferails.settings import OIDC_ALGORITHMS, Settings

ALLOWED_ALGORITHMS = OIDC_ALGORITHMS
PUBLIC_REASON = "invalid bearer token"
OVERSEERS = frozenset({Role.ADMIN.value, Role.AUDITOR.value})
MAX_JWKS_BYTES = 256 * 1024


class OidcKeysUnavailable(SaferailsError):
    """The identity provider's keys (JWKS) could not be loaded and no unexpired copy is cached: tokens cannot be
    checked, so none is accepted (HTTP 503)."""

    code = "OIDC_KEYS_UNAVAILABLE"
    http_status = 503


def _refused(reason: str, **details: Any) -> Unauthenticated:
    return Unauthenticated(PUBLIC_REASON, invalid_token=True, internal_reason=reason, **details)


@dataclass(frozen=True)
class OidcConfig:
    """What a token must satisfy. ``jwks`` is a file path or an ``https://`` URL (``http://`` only to
    loopback); ``algorithms`` a non-empty subset of :data:`ALLOWED_ALGORITHMS`."""

    issuer: str
    audience: str
    jwks: str
    role_claim: str = "roles"
    tenant_claim: str = "tenant"
    algorithms: tuple[str, ...] = ALLOWED_ALGORITHMS
    jwks_ttl: timedelta = timedelta(minutes=5)
    min_refresh: timedelta = timedelta(seconds=30)
    leeway: timedelta = timedelta(seconds=30)

    def __post_init__(self) -> None:
        bad = [a for a in self.algorithms if a not in ALLOWED_ALGORITHMS]
        if bad or not self.algorithms:
            raise ValueError(f"OIDC algorithms must be a non-empty subset of {ALLOWED_ALGORITHMS}, got {bad}")

    @property
    def is_url(self) -> bool:
        return self.jwks.startswith(("https://", "http://"))


Fetcher = Callable[[str], bytes]


def egress_fetcher(policy: EgressPolicy, timeout: float = 10.0) -> Fetcher:
    """Fetch a JWKS URL through the egress guard (address checks, no blind redirects, capped body)."""
    capped = EgressPolicy(allowed_hosts=policy.allowed_hosts, allow_private=policy.allow_private,
                          max_response_bytes=MAX_JWKS_BYTES, max_redirects=policy.max_redirects,
                          resolver=policy.resolver)

    def fetch(url: str) -> bytes:
        with httpx.Client(timeout=timeout) as client:
            response = send(client, "GET", url, policy=capped, headers={"Accept": "application/json"})
        if not response.is_success or response.truncated:
            raise OidcKeysUnavailable(f"the JWKS at {url} answered {response.status_code}", url=url,
                                      status=response.status_code, truncated=response.truncated)
        return response.content

    return fetch


class JwksCache:
    """The identity provider's public keys by ``kid``, loaded lazily, kept for ``ttl``, refreshed early when a
    token names a ``kid`` we do not hold (key rotation) but not more often than ``min_refresh``. Thread-safe."""

    def __init__(self, config: OidcConfig, clock: Clock, fetch: Fetcher) -> None:
        self.config = config
        self.clock = clock
        self._fetch = fetch
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at: datetime | None = None
        self.fetches = 0

    def key(self, kid: str) -> jwt.PyJWK:
        """The key ``kid``, or ``Unauthenticated`` when the provider does not publish it."""
        with self._lock:
            now = self.clock.now()
            age = None if self._loaded_at is None else now - self._loaded_at
            stale = age is None or age >= self.config.jwks_ttl
            if stale or (kid not in self._keys and age is not None and age >= self.config.min_refresh):
                self._load(now)
            found = self._keys.get(kid)
        if found is None:
            raise _refused("unknown_kid", kid=kid)
        return found

    def _load(self, now: datetime) -> None:
        source = self.config.jwks
        try:
            raw = self._fetch(source) if self.config.is_url else Path(source).read_bytes()
            keys = parse_jwks(json.loads(raw), self.config.algorithms)
        except OidcKeysUnavailable:
            raise
        except (OSError, ValueError, httpx.HTTPError, SaferailsError) as exc:
            raise OidcKeysUnavailable(f"cannot load the OIDC keys from {source}: {exc}", source=source) from exc
        self._keys, self._loaded_at = keys, now
        self.fetches += 1


def parse_jwks(document: Any, algorithms: Sequence[str]) -> dict[str, jwt.PyJWK]:
    """The usable signing keys of a JWKS document by ``kid``. Keys without ``kid``, for encryption only,
    symmetric, or bound to an algorithm outside ``algorithms`` are left out; a document that is not a JWKS
    raises ``ValueError``."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    keys: dict[str, jwt.PyJWK] = {}
    for data in document["keys"]:
        if not isinstance(data, dict) or not isinstance(data.get("kid"), str) or data.get("kty") == "oct":
            continue
        if data.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(data)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
        if key.algorithm_name in algorithms:
            keys[data["kid"]] = key
    return keys


def _claim(payload: Mapping[str, Any], path: str) -> Any:
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _names(value: Any) -> list[str] | None:
    """A claim as a list of names: a list of strings, or one string split on spaces and commas."""
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    return None


class OidcAuthenticator:
    """An :class:`~saferails.http.auth.Authenticator` for JWT access tokens (see the module docstring).
    ``identity`` (optional) lets a principal the store has disabled be refused."""

    def __init__(self, config: OidcConfig, clock: Clock, *, fetch: Fetcher | None = None,
                 identity: IdentityService | None = None) -> None:
        self.config = config
        self.clock = clock
        self.keys = JwksCache(config, clock, fetch or egress_fetcher(EgressPolicy()))
        self.identity = identity

    def authenticate(self, token: str) -> Principal:
        claims = self._verified_claims(token)
        subject = claims.get("sub")
        # The subject becomes the proposer / approver id: the same identifier rules as every principal id.
        if not isinstance(subject, str) or identifier_problem(subject) or subject.startswith("system:"):
            raise _refused("bad_subject")
        roles = _names(_claim(claims, self.config.role_claim))
        if roles is None:
            raise _refused("bad_roles_claim", claim=self.config.role_claim)
        role_names = frozenset(Role.AGENT.value if r.lower() == "proposer" else r.lower() for r in roles)
        tenants = _names(_claim(claims, self.config.tenant_claim))
        if not tenants or any(t != ALL_TENANTS and identifier_problem(t) for t in tenants):
            raise _refused("missing_tenant", claim=self.config.tenant_claim)
        if ALL_TENANTS in tenants and not role_names & OVERSEERS:
            raise _refused("all_tenants_not_allowed")
        self._not_disabled(subject)
        return Principal(subject, role_names, frozenset(tenants))

    def _verified_claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _refused("malformed") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.config.algorithms:
            raise _refused("algorithm_not_allowed", alg=str(alg))
        if not isinstance(kid, str) or not kid:
            raise _refused("no_kid")
        key = self.keys.key(kid)
        if key.algorithm_name != alg:
            raise _refused("algorithm_does_not_match_key", alg=alg, kid=kid)
        try:
            # Time claims are checked below against the injectable clock, not PyJWT's time.time().
            claims: dict[str, Any] = jwt.decode(
                token, key=key, algorithms=[key.algorithm_name], audience=self.config.audience,
                issuer=self.config.issuer,
                options={"require": ["exp", "iss", "aud", "sub"], "verify_exp": False, "verify_nbf": False,
                         "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise _refused(type(exc).__name__) from exc
        self._check_times(claims)
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self.clock.now().timestamp()
        leeway = self.config.leeway.total_seconds()
        for name in ("exp", "nbf", "iat"):
            value = claims.get(name)
            if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise _refused(f"bad_{name}")
        if now >= float(claims["exp"]) + leeway:
            raise _refused("expired")
        if "nbf" in claims and now + leeway < float(claims["nbf"]):
            raise _refused("not_yet_valid")
        if "iat" in claims and now + leeway < float(claims["iat"]):
            raise _refused("issued_in_the_future")

    def _not_disabled(self, subject: str) -> None:
        if self.identity is None:
            return
        try:
            known = self.identity.is_disabled(subject)
        except NotFound:
            return
        if known:
            raise _refused("principal_disabled")


def from_settings(settings: Settings, clock: Clock,
                  identity: IdentityService | None = None) -> OidcAuthenticator | None:
    """The OIDC authenticator the settings describe (``SAFERAILS_OIDC_*``), or None when OIDC is not configured.
    The JWKS URL is fetched through the settings' egress policy."""
    if settings.oidc_issuer is None or settings.oidc_audience is None or settings.oidc_jwks is None:
        return None
    config = OidcConfig(
        issuer=settings.oidc_issuer, audience=settings.oidc_audience, jwks=settings.oidc_jwks,
        role_claim=settings.oidc_role_claim, tenant_claim=settings.oidc_tenant_claim,
        algorithms=tuple(settings.oidc_algorithms), jwks_ttl=timedelta(seconds=settings.oidc_jwks_ttl),
        leeway=timedelta(seconds=settings.oidc_leeway),
    )
    return OidcAuthenticator(config, clock, fetch=egress_fetcher(settings.egress), identity=identity)


class BearerAuthenticator:
    """API keys (``sr_...``) to ``api_keys``, JWTs (three dot-separated parts) to ``oidc``; anything else is an
    invalid token. Routing by shape keeps each authenticator's refusal precise."""

    def __init__(self, api_keys: Authenticator, oidc: Authenticator | None) -> None:
        self.api_keys = api_keys
        self.oidc = oidc

    def authenticate(self, token: str) -> Principal:
        if token.count(".") == 2:
            if self.oidc is None:
                raise _refused("oidc_not_configured")
            return self.oidc.authenticate(token)
        return self.api_keys.authenticate(token)


__all__ = ["ALLOWED_ALGORITHMS", "BearerAuthenticator", "JwksCache", "OidcAuthenticator", "OidcConfig",
           "OidcKeysUnavailable", "egress_fetcher", "from_settings", "parse_jwks"]
