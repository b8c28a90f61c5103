"""OIDC / JWT bearer tokens: tokens signed in the test with keys generated in the test, the JWKS served by a real
loopback HTTP server (through the egress guard) or read from a file, and the attacks a verifier must refuse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from saferails.clock import ManualClock
from saferails.errors import ConfigurationError
from saferails.http import create_app, server
from saferails.http.oidc import BearerAuthenticator, OidcAuthenticator, OidcConfig, egress_fetcher
from saferails.net.egress import EgressPolicy
from saferails.settings import load_settings
from tests.support import QuietHandler, http_server
from tests.support.cli import Cli, use_database
from tests.support.http_world import HttpWorld

ISSUER = "https://idp.example.com/realms/acme"
AUDIENCE = "saferails-api"
HIGH = {"action_type": "reassign_manager", "target": "emp_123", "params": {"new_manager_id": "mgr_456"},
        "reason": "Improve team dynamics"}
LOOPBACK = EgressPolicy(allowed_hosts=frozenset({"127.0.0.1"}))


@dataclass
class Signer:
    """One key pair of the test's identity provider."""

    kid: str
    alg: str
    private: Any

    @property
    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if self.alg == "RS256":
            text = RSAAlgorithm.to_jwk(public)
        elif self.alg == "ES256":
            text = ECAlgorithm.to_jwk(public)
        else:
            text = OKPAlgorithm.to_jwk(public)
        data: dict[str, Any] = json.loads(text)
        return data | {"kid": self.kid, "use": "sig"}

    def public_pem(self) -> bytes:
        return bytes(self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo))

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid} | header)


def rsa_signer(kid: str = "rsa-1") -> Signer:
    return Signer(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@dataclass
class Idp:
    """The JWKS a loopback server publishes (swap ``keys`` to rotate) and how often it was fetched."""

    keys: list[Signer]
    hits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def document(self) -> bytes:
        return json.dumps({"keys": [k.jwk for k in self.keys]}).encode()


@pytest.fixture
def idp() -> Iterator[tuple[Idp, str]]:
    state = Idp([rsa_signer()])

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.hits += 1
                body = state.document()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with http_server(Handler) as base:
        yield state, f"{base}/realms/acme/protocol/openid-connect/certs"


def claims(clock: ManualClock, **overrides: Any) -> dict[str, Any]:
    now = int(clock.now().timestamp())
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "agent-1", "iat": now, "nbf": now, "exp": now + 300,
            "roles": ["agent"], "tenant": "default"}
    return {k: v for k, v in (base | overrides).items() if v is not None}


def oidc_client(world: HttpWorld, jwks: str, **config: Any) -> tuple[TestClient, OidcAuthenticator]:
    oidc = OidcAuthenticator(OidcConfig(ISSUER, AUDIENCE, jwks, **config), world.clock,
                             fetch=egress_fetcher(LOOPBACK), identity=world.store.identity)
    app = create_app(world.store, BearerAuthenticator(world.keys, oidc))
    return TestClient(app, base_url="http://testserver", raise_server_exceptions=False), oidc


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_token_from_the_idp_proposes_as_its_subject_and_api_keys_still_work(
    sqlite_world: HttpWorld, idp: tuple[Idp, str]
) -> None:
    state, url = idp
    client, _ = oidc_client(sqlite_world, url)
    token = state.keys[0].sign(claims(sqlite_world.clock))
    created = client.post("/api/v1/actions", json=HIGH, headers=bearer(token))
    assert created.status_code == 201, created.text
    assert created.json()["proposer"] == "agent-1" and created.json()["tenant"] == "default"
    # The API keys of the same deployment keep working beside the tokens.
    assert client.get("/api/v1/actions", headers=sqlite_world.headers("bob")).status_code == 200
    assert state.hits == 1


@pytest.mark.parametrize("make", [
    lambda: Signer("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1())),
    lambda: Signer("ed-1", "EdDSA", ed25519.Ed25519PrivateKey.generate()),
], ids=["ES256", "EdDSA"])
def test_es256_and_eddsa_keys_from_a_jwks_file(sqlite_world: HttpWorld, tmp_path: Path, make: Any) -> None:
    signer: Signer = make()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [signer.jwk]}))
    client, _ = oidc_client(sqlite_world, str(jwks))
    token = signer.sign(claims(sqlite_world.clock, sub="bob", roles="approver"))
    listed = client.get("/api/v1/actions", headers=bearer(token))
    assert listed.status_code == 200, listed.text


def _none_token(signer: Signer, body: dict[str, Any]) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": signer.kid}
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}."


def _hs256_with_public_key(signer: Signer, body: dict[str, Any]) -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": signer.kid}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    mac = hmac.new(signer.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def _tampered(signer: Signer, body: dict[str, Any]) -> str:
    head, _, sig = signer.sign(body).split(".")
    return f"{head}.{b64(json.dumps(body | {'roles': ['admin'], 'tenant': '*'}).encode())}.{sig}"


ATTACKS: dict[str, Any] = {
    "alg_none": lambda s, c: _none_token(s, claims(c)),
    "hs256_signed_with_the_public_key": lambda s, c: _hs256_with_public_key(s, claims(c)),
    "wrong_issuer": lambda s, c: s.sign(claims(c, iss="https://evil.example.com")),
    "wrong_audience": lambda s, c: s.sign(claims(c, aud="another-api")),
    "expired": lambda s, c: s.sign(claims(c, exp=int(c.now().timestamp()) - 31)),
    "not_yet_valid": lambda s, c: s.sign(claims(c, nbf=int(c.now().timestamp()) + 3600)),
    "unknown_kid": lambda s, c: jwt.encode(claims(c), rsa_signer().private, algorithm="RS256",
                                           headers={"kid": "rotated-out"}),
    "no_kid": lambda s, c: jwt.encode(claims(c), s.private, algorithm="RS256"),
    "signed_by_another_key_same_kid": lambda s, c: jwt.encode(claims(c), rsa_signer().private, algorithm="RS256",
                                                             headers={"kid": s.kid}),
    "tampered_payload": lambda s, c: _tampered(s, claims(c)),
    "tenant_claim_missing": lambda s, c: s.sign(claims(c, tenant=None)),
    "no_subject": lambda s, c: s.sign(claims(c, sub=None)),
    "subject_with_nul": lambda s, c: s.sign(claims(c, sub="agent-1\u0000")),
    "no_expiry": lambda s, c: s.sign(claims(c, exp=None)),
    "all_tenants_for_an_agent": lambda s, c: s.sign(claims(c, tenant="*")),
    "not_a_jwt": lambda s, c: "a.b.c",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_forged_or_invalid_tokens_are_401_invalid_token(sqlite_world: HttpWorld, idp: tuple[Idp, str],
                                                        attack: str) -> None:
    state, url = idp
    client, _ = oidc_client(sqlite_world, url)
    token = ATTACKS[attack](state.keys[0], sqlite_world.clock)
    response = client.post("/api/v1/actions", json=HIGH, headers=bearer(token))
    assert response.status_code == 401, response.text
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    body = response.json()
    assert body["code"] == "UNAUTHENTICATED" and body["message"] == "invalid bearer token"
    assert "internal_reason" not in body
    assert sqlite_world.store.actions.list() == []


def test_the_clock_decides_expiry_with_the_configured_leeway(sqlite_world: HttpWorld, idp: tuple[Idp, str]) -> None:
    state, url = idp
    client, _ = oidc_client(sqlite_world, url, leeway=timedelta(seconds=30))
    token = state.keys[0].sign(claims(sqlite_world.clock, exp=int(sqlite_world.clock.now().timestamp()) + 60))
    assert client.get("/api/v1/actions", headers=bearer(token)).status_code == 200
    sqlite_world.clock.advance(timedelta(seconds=89))
    assert client.get("/api/v1/actions", headers=bearer(token)).status_code == 200
    sqlite_world.clock.advance(timedelta(seconds=1))
    assert client.get("/api/v1/actions", headers=bearer(token)).status_code == 401


def test_an_unknown_role_grants_nothing_and_the_403_names_it(sqlite_world: HttpWorld, idp: tuple[Idp, str]) -> None:
    state, url = idp
    client, _ = oidc_client(sqlite_world, url)
    token = state.keys[0].sign(claims(sqlite_world.clock, roles=["superuser"]))
    response = client.post("/api/v1/actions", json=HIGH, headers=bearer(token))
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["code"] == "INSUFFICIENT_PERMISSIONS"
    assert body["required_permission"] == "actions:propose" and body["user_role"] == "superuser"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="saferails", error="insufficient_scope"'


def test_an_agent_token_cannot_approve_and_gets_the_playbook_403(sqlite_world: HttpWorld,
                                                                 idp: tuple[Idp, str]) -> None:
    state, url = idp
    client, _ = oidc_client(sqlite_world, url)
    action = sqlite_world.propose()
    token = state.keys[0].sign(claims(sqlite_world.clock, sub="agent-2"))
    response = client.post(f"/api/v1/actions/{action['id']}/approve", json={"code": "x"}, headers=bearer(token))
    assert response.status_code == 403
    assert response.json()["required_permission"] == "actions:decide"
    assert response.json()["user_role"] == "agent"


def test_nested_role_claims_and_another_tenant_is_404(sqlite_world: HttpWorld, idp: tuple[Idp, str]) -> None:
    state, url = idp
    client, _ = oidc_client(sqlite_world, url, role_claim="realm_access.roles", tenant_claim="org")
    action = sqlite_world.propose()
    token = state.keys[0].sign(claims(sqlite_world.clock, sub="bob-acme", roles=None, tenant=None,
                                      realm_access={"roles": ["approver"]}, org="acme"))
    assert client.get(f"/api/v1/actions/{action['id']}", headers=bearer(token)).status_code == 404
    same_tenant = state.keys[0].sign(claims(sqlite_world.clock, sub="bob", roles=None, tenant=None,
                                            realm_access={"roles": ["approver"]}, org="default"))
    assert client.get(f"/api/v1/actions/{action['id']}", headers=bearer(same_tenant)).status_code == 200


def test_key_rotation_refreshes_the_jwks_once_per_interval(sqlite_world: HttpWorld, idp: tuple[Idp, str]) -> None:
    state, url = idp
    client, oidc = oidc_client(sqlite_world, url, min_refresh=timedelta(seconds=30))
    old = state.keys[0]
    assert client.get("/api/v1/actions", headers=bearer(old.sign(claims(sqlite_world.clock)))).status_code == 200
    new = rsa_signer("rsa-2")
    state.keys = [new]
    new_token = new.sign(claims(sqlite_world.clock))
    # Within the refresh interval an unknown kid does not make us fetch again (no fetch loop for random kids).
    assert client.get("/api/v1/actions", headers=bearer(new_token)).status_code == 401
    assert state.hits == 1
    sqlite_world.clock.advance(timedelta(seconds=31))
    assert client.get("/api/v1/actions", headers=bearer(new_token)).status_code == 200
    assert state.hits == 2 and oidc.keys.fetches == 2
    # The provider dropped the old key: its tokens stop working.
    assert client.get("/api/v1/actions", headers=bearer(old.sign(claims(sqlite_world.clock)))).status_code == 401


def test_the_jwks_is_cached_for_its_ttl(sqlite_world: HttpWorld, idp: tuple[Idp, str]) -> None:
    state, url = idp
    client, _ = oidc_client(sqlite_world, url, jwks_ttl=timedelta(minutes=5))
    for _ in range(3):
        token = state.keys[0].sign(claims(sqlite_world.clock))
        assert client.get("/api/v1/actions", headers=bearer(token)).status_code == 200
    assert state.hits == 1
    sqlite_world.clock.advance(timedelta(minutes=5))
    assert client.get("/api/v1/actions", headers=bearer(state.keys[0].sign(claims(sqlite_world.clock)))).status_code \
        == 200
    assert state.hits == 2


def test_the_jwks_goes_through_the_egress_guard(sqlite_world: HttpWorld, idp: tuple[Idp, str]) -> None:
    state, url = idp
    oidc = OidcAuthenticator(OidcConfig(ISSUER, AUDIENCE, url), sqlite_world.clock,
                             fetch=egress_fetcher(EgressPolicy()))
    client = TestClient(create_app(sqlite_world.store, BearerAuthenticator(sqlite_world.keys, oidc)),
                        raise_server_exceptions=False)
    response = client.get("/api/v1/actions", headers=bearer(state.keys[0].sign(claims(sqlite_world.clock))))
    assert response.status_code == 503
    assert response.json()["code"] == "OIDC_KEYS_UNAVAILABLE"
    assert state.hits == 0


def test_symmetric_and_unlisted_algorithm_keys_in_the_jwks_are_ignored(sqlite_world: HttpWorld,
                                                                        tmp_path: Path) -> None:
    secret = b"s" * 32
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{"kty": "oct", "kid": "hmac", "k": b64(secret), "alg": "HS256"}]}))
    client, _ = oidc_client(sqlite_world, str(jwks))
    token = jwt.encode(claims(sqlite_world.clock), secret, algorithm="HS256", headers={"kid": "hmac"})
    assert client.get("/api/v1/actions", headers=bearer(token)).status_code == 401


def test_a_principal_disabled_in_the_store_is_refused(sqlite_world: HttpWorld, idp: tuple[Idp, str]) -> None:
    state, url = idp
    client, _ = oidc_client(sqlite_world, url)
    store = sqlite_world.store
    admin = store.identity.bootstrap_admin("root-admin")
    actor = store.identity.authenticate(admin.token)
    store.identity.set_disabled(actor, "agent-1")
    token = state.keys[0].sign(claims(sqlite_world.clock))
    assert client.get("/api/v1/actions", headers=bearer(token)).status_code == 401


def test_a_missing_token_gets_a_bearer_challenge_without_an_error_code(sqlite_world: HttpWorld,
                                                                       idp: tuple[Idp, str]) -> None:
    _, url = idp
    client, _ = oidc_client(sqlite_world, url)
    response = client.get("/api/v1/actions")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="saferails"'


@pytest.mark.parametrize(("env", "needle"), [
    ({"SAFERAILS_OIDC_ISSUER": ISSUER}, "together"),
    ({"SAFERAILS_OIDC_ALGORITHMS": "RS256,HS256"}, "HS256"),
    ({"SAFERAILS_OIDC_ALGORITHMS": "none"}, "none"),
    ({"SAFERAILS_OIDC_ISSUER": ISSUER, "SAFERAILS_OIDC_AUDIENCE": AUDIENCE,
      "SAFERAILS_OIDC_JWKS": "http://idp.example.com/certs"}, "https"),
    ({"SAFERAILS_OIDC_ISSUER": ISSUER, "SAFERAILS_OIDC_AUDIENCE": AUDIENCE,
      "SAFERAILS_OIDC_JWKS": "/no/such/jwks.json"}, "neither"),
])
def test_unsafe_oidc_settings_are_refused(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        load_settings(env)


def test_the_served_app_accepts_oidc_tokens_and_cli_keys(sqlite_db: Any, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    signer = rsa_signer()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [signer.jwk]}))
    use_database(monkeypatch, sqlite_db.url)
    monkeypatch.delenv(server.AUTHENTICATOR_ENV, raising=False)
    for name, value in (("ISSUER", ISSUER), ("AUDIENCE", AUDIENCE), ("JWKS", str(jwks))):
        monkeypatch.setenv(f"SAFERAILS_OIDC_{name}", value)
    cli = Cli(capsys).anonymous()
    assert cli("init", "--admin", "root").code == 0
    assert cli("principal", "add", "alice", "--role", "approver").code == 0
    issued = cli("credential", "issue", "alice", "--json")
    key = str(issued.json()["token"])
    with TestClient(server.build_app(), raise_server_exceptions=False) as client:
        # The served app runs on the system clock.
        token = signer.sign(claims(ManualClock(datetime.now(UTC))))
        created = client.post("/api/v1/actions", json=HIGH, headers=bearer(token))
        assert created.status_code == 201, created.text
        assert client.get(f"/api/v1/actions/{created.json()['id']}", headers=bearer(key)).status_code == 200


def test_an_approver_token_approves_with_its_code_as_its_subject(world: HttpWorld, idp: tuple[Idp, str]) -> None:
    state, url = idp
    client, _ = oidc_client(world, url)
    proposed = client.post("/api/v1/actions", json=HIGH,
                           headers=bearer(state.keys[0].sign(claims(world.clock, sub="agent-1"))))
    assert proposed.status_code == 201, proposed.text
    action_id = proposed.json()["id"]
    carol = bearer(state.keys[0].sign(claims(world.clock, sub="carol", roles="approver")))
    approved = client.post(f"/api/v1/actions/{action_id}/approve", headers=carol,
                           json={"code": world.code(action_id, "carol"), "reason": "checked"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "approved"
    assert [a["approver"] for a in approved.json()["approvals"]] == ["carol"]
    trail = client.get(f"/api/v1/actions/{action_id}/audit",
                       headers=bearer(state.keys[0].sign(claims(world.clock, sub="aude", roles=["auditor"]))))
    assert trail.status_code == 200
    assert {"agent-1", "carol"} <= {r["actor"] for r in trail.json()["records"]}
