"""OIDC/JWT access tokens on streamable HTTP (guard/oidc.py), against a real issuer served by the test.

The issuer is a tiny HTTP server on 127.0.0.1 serving a discovery document and a JWKS of keys made here; it counts
the requests it gets, so key rotation and refetch limits can be checked. CloudPilot is served as in
test_http_auth.py (uvicorn in the test's event loop, on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import ValidationError

from guard import auth, oidc
from runtime import Principal
from settings import Settings
from tests.security.test_http_auth import INITIALIZE, add_token, bearer, make_settings, post, serving, session

WRITE_TOOLS = {"scale", "fix_apply", "fix_plan", "clusters_add", "resource_apply"}


class Issuer:
    """An OIDC issuer on loopback: discovery at /.well-known/openid-configuration, keys at /jwks."""

    def __init__(self) -> None:
        self.private: dict[str, Any] = {}  # kid -> private key
        self.published: list[str] = []  # kids in the JWKS
        self.hits: Counter[str] = Counter()
        self.jwks_override: bytes | None = None
        self.discovery_issuer: str | None = None  # what discovery claims, when not the real URL
        self.add_key("k1")
        self.add_key("ec1", curve=True)
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.hits[self.path] += 1
                if self.path == "/.well-known/openid-configuration":
                    body = json.dumps(
                        {"issuer": issuer.discovery_issuer or issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
                    ).encode()
                elif self.path == "/jwks":
                    body = issuer.jwks_override or json.dumps(issuer.jwks()).encode()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def add_key(self, kid: str, curve: bool = False) -> None:
        self.private[kid] = (
            ec.generate_private_key(ec.SECP256R1())
            if curve
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )
        self.published.append(kid)

    def rotate(self) -> str:
        """A new RSA key replaces every published one."""
        kid = f"k{len(self.private) + 1}"
        self.published.clear()
        self.add_key(kid)
        return kid

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self.published:
            key = self.private[kid]
            if isinstance(key, rsa.RSAPrivateKey):
                keys.append({**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "alg": "RS256"})
            else:
                keys.append({**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"})
        return {"keys": keys}

    def token(self, aud: str | None, kid: str = "k1", key: Any = None, lifetime: int = 300, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": self.url,
            "aud": aud,
            "sub": "u-1234",
            "email": "alice@example.com",
            "azp": "claude-desktop",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "scope": "openid email cloudpilot:read",
            **claims,
        }
        payload = {k: v for k, v in payload.items() if v is not None}
        signer = key or self.private[kid]
        alg = "ES256" if isinstance(signer, ec.EllipticCurvePrivateKey) else "RS256"
        return jwt.encode(payload, signer, algorithm=alg, headers={"kid": kid})

    def public_pem(self, kid: str = "k1") -> bytes:
        return (
            self.private[kid]
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )


def oidc_settings(tmp_path: Any, issuer: Issuer, **fields: Any) -> Settings:
    return make_settings(tmp_path, oidc_issuer=issuer.url, oidc_principal_claim="email", **fields)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def _with_kid(token: str, kid: str) -> str:
    """`token` claiming another key id (its signature no longer matters: the key is never found)."""
    _, claims, signature = token.split(".")
    return f"{_b64(json.dumps({'alg': 'RS256', 'kid': kid}).encode())}.{claims}.{signature}"


# -- accepted ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kid", ["k1", "ec1"])
async def test_a_valid_token_calls_a_tool_as_its_principal(tmp_path, issuer, kid):
    settings = oidc_settings(tmp_path, issuer)
    async with serving(settings) as srv:
        token = issuer.token(srv.url, kid=kid, scope="openid cloudpilot:write")
        async with session(srv.url, token) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            answer = await client.call_tool("fix_plan_show", {"plan_id": "p-nothere"})
    assert {"scale", "fix_apply", "pods_list"} <= names and "pod_delete" not in names
    assert answer.isError and "needs" not in str(getattr(answer.content[0], "text", ""))  # past the scope check
    alice = Principal("alice@example.com (oidc)", frozenset({"read", "write"}), "http")
    assert srv.calls == [("fix_plan_show", alice)]
    assert issuer.hits == {"/.well-known/openid-configuration": 1, "/jwks": 1}  # cached across requests


async def test_the_principal_claim_defaults_to_sub_and_scp_lists_work(tmp_path, issuer):
    settings = make_settings(tmp_path, oidc_issuer=issuer.url)
    async with serving(settings) as srv:
        token = issuer.token(srv.url, scope=None, scp=["cloudpilot:read"])
        async with session(srv.url, token) as client:
            await client.call_tool("fix_plan_show", {"plan_id": "p-nothere"})
    assert srv.calls == [("fix_plan_show", Principal("u-1234 (oidc)", frozenset({"read"}), "http"))]


async def test_store_tokens_keep_working_beside_oidc(tmp_path, issuer):
    settings = oidc_settings(tmp_path, issuer)
    stored = add_token(settings, "ci-bot", "read")
    async with serving(settings) as srv, session(srv.url, stored) as client:
        await client.call_tool("fix_plan_show", {"plan_id": "p-nothere"})
    assert srv.calls == [("fix_plan_show", Principal("ci-bot (token)", frozenset({"read"}), "http"))]
    assert issuer.hits["/jwks"] == 0  # a cpt_ token never reaches the issuer


# -- refused ----------------------------------------------------------------------------------------------------


async def test_no_token_gets_401_with_the_protected_resource_metadata(tmp_path, issuer):
    settings = oidc_settings(tmp_path, issuer)
    async with serving(settings) as srv:
        answer = await post(srv.url, INITIALIZE)
        challenge = answer.headers["www-authenticate"]
        metadata_url = challenge.split('resource_metadata="')[1].split('"')[0]
        async with httpx.AsyncClient(timeout=30) as http:
            metadata = (await http.get(metadata_url)).json()
    assert answer.status_code == 401 and challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
    assert metadata_url.endswith("/.well-known/oauth-protected-resource/mcp")
    assert metadata["resource"] == srv.url
    assert [s.rstrip("/") for s in metadata["authorization_servers"]] == [issuer.url]
    assert metadata["scopes_supported"] == ["cloudpilot:read"]
    assert srv.calls == []


def _forge(issuer: Issuer, aud: str, how: str) -> str:
    now = int(time.time())
    good = issuer.token(aud)
    if how == "expired":
        return issuer.token(aud, iat=now - 3600, nbf=now - 3600, exp=now - 120)
    if how == "not yet valid":
        return issuer.token(aud, nbf=now + 600)
    if how == "wrong audience":
        return issuer.token("https://other-service.example/mcp")
    if how == "no audience":
        return issuer.token(None)
    if how == "wrong issuer":
        return issuer.token(aud, iss="https://evil.example")
    if how == "no expiry":
        return issuer.token(aud, exp=None)
    if how == "tampered claims":
        header, _, signature = good.split(".")
        claims = {**_claims(good), "email": "root@example.com", "scope": "cloudpilot:destructive"}
        return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    if how == "tampered signature":
        header, claims, signature = good.split(".")
        raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
        raw[10] ^= 0x01
        return f"{header}.{claims}.{_b64(bytes(raw))}"
    if how == "another key, same kid":
        return issuer.token(aud, key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    if how == "alg none":
        return _unsigned({"alg": "none", "kid": "k1"}, _claims(good)) + "."
    if how == "HS256 with the public key":
        signing_input = _unsigned({"alg": "HS256", "kid": "k1", "typ": "JWT"}, _claims(good))
        mac = hmac.new(issuer.public_pem(), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(mac)}"
    if how == "RS256 token claiming an EC key":
        return _with_kid(good, "ec1")
    if how == "no principal claim":
        return issuer.token(aud, email=None)
    if how == "control characters in the principal":
        return issuer.token(aud, email="alice\n2024 INFO approved by root")
    if how == "too large":
        return issuer.token(aud, padding="x" * 20_000)
    raise AssertionError(how)


FORGERIES = [
    "expired",
    "not yet valid",
    "wrong audience",
    "no audience",
    "wrong issuer",
    "no expiry",
    "tampered claims",
    "tampered signature",
    "another key, same kid",
    "alg none",
    "HS256 with the public key",
    "RS256 token claiming an EC key",
    "no principal claim",
    "control characters in the principal",
    "too large",
]


async def test_bad_tokens_get_401(tmp_path, issuer):
    settings = oidc_settings(tmp_path, issuer)
    async with serving(settings) as srv:
        assert (await post(srv.url, INITIALIZE, **bearer(issuer.token(srv.url)))).status_code == 200
        for how in FORGERIES:
            answer = await post(srv.url, INITIALIZE, **bearer(_forge(issuer, srv.url, how)))
            assert answer.status_code == 401, how
            assert answer.headers["www-authenticate"].startswith("Bearer "), how
    assert srv.calls == []
    assert issuer.hits["/jwks"] == 1  # none of them made the server fetch the keys again


async def test_a_token_without_a_cloudpilot_scope_gets_403(tmp_path, issuer):
    settings = oidc_settings(tmp_path, issuer)
    async with serving(settings) as srv:
        answer = await post(srv.url, INITIALIZE, **bearer(issuer.token(srv.url, scope="openid email profile")))
    assert answer.status_code == 403 and 'error="insufficient_scope"' in answer.headers["www-authenticate"]


async def test_a_read_token_lists_no_write_tool_and_cannot_call_one(tmp_path, issuer):
    settings = oidc_settings(tmp_path, issuer)
    async with serving(settings) as srv:
        token = issuer.token(srv.url, scope="cloudpilot:read")
        async with session(srv.url, token) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            scaled = await client.call_tool(
                "scale", {"kind": "Deployment", "name": "w", "namespace": "a", "replicas": 2}
            )
    specs = {s.name: s for s in srv.mcp.pipeline.specs}
    assert names and all(specs[n].access == "read" for n in names) and not names & WRITE_TOOLS
    text = str(getattr(scaled.content[0], "text", ""))
    assert scaled.isError and "scale needs 'write' access" in text and "alice@example.com (oidc) has read" in text


# -- keys: rotation and refetch limits --------------------------------------------------------------------------


async def test_a_rotated_key_is_fetched_and_the_dropped_one_stops_working(tmp_path, issuer):
    settings = oidc_settings(tmp_path, issuer, oidc_jwks_refresh_seconds=0.5)
    async with serving(settings) as srv:
        old = issuer.token(srv.url)
        assert (await post(srv.url, INITIALIZE, **bearer(old))).status_code == 200
        new = issuer.token(srv.url, kid=issuer.rotate())
        await asyncio.sleep(0.6)
        assert (await post(srv.url, INITIALIZE, **bearer(new))).status_code == 200  # unknown kid: fetched again
        assert issuer.hits["/jwks"] == 2
        assert (await post(srv.url, INITIALIZE, **bearer(old))).status_code == 401  # its key is gone
        assert (await post(srv.url, INITIALIZE, **bearer(new))).status_code == 200
    assert issuer.hits == {"/.well-known/openid-configuration": 1, "/jwks": 2}


async def test_a_flood_of_unknown_kids_fetches_the_keys_once(tmp_path, issuer):
    settings = oidc_settings(tmp_path, issuer)  # refetch at most once a minute
    async with serving(settings) as srv:
        good = issuer.token(srv.url)
        assert (await post(srv.url, INITIALIZE, **bearer(good))).status_code == 200
        forged = [_with_kid(good, secrets.token_hex(8)) for _ in range(40)]
        answers = await asyncio.gather(*(post(srv.url, INITIALIZE, **bearer(t)) for t in forged))
        assert (await post(srv.url, INITIALIZE, **bearer(good))).status_code == 200
    assert [a.status_code for a in answers] == [401] * 40
    assert issuer.hits["/jwks"] == 1 and issuer.hits["/.well-known/openid-configuration"] == 1


async def test_unknown_kids_refetch_at_most_once_per_interval(issuer):
    now = [1000.0]
    config = oidc.OidcConfig(issuer=issuer.url, audience="https://cp.example/mcp", jwks_refresh_seconds=60)
    verifier = oidc.OidcTokenVerifier(config, clock=lambda: now[0])
    good = issuer.token(config.audience)
    forged = [_with_kid(good, secrets.token_hex(8)) for _ in range(30)]
    assert await verifier.verify_token(good) is not None
    assert set(await asyncio.gather(*(verifier.verify_token(t) for t in forged))) == {None}
    assert issuer.hits["/jwks"] == 1
    now[0] += 59
    assert set(await asyncio.gather(*(verifier.verify_token(t) for t in forged))) == {None}
    assert issuer.hits["/jwks"] == 1
    now[0] += 2  # the interval has passed: the whole flood costs one fetch
    assert set(await asyncio.gather(*(verifier.verify_token(t) for t in forged))) == {None}
    assert issuer.hits["/jwks"] == 2
    now[0] += 3600  # keys older than an hour are fetched again, even for a known kid
    assert await verifier.verify_token(good) is not None
    assert issuer.hits["/jwks"] == 3 and issuer.hits["/.well-known/openid-configuration"] == 1


async def test_an_oversized_jwks_or_a_mismatched_discovery_document_is_not_used(issuer, caplog):
    config = oidc.OidcConfig(issuer=issuer.url, audience="https://cp.example/mcp", jwks_refresh_seconds=60)
    good = issuer.token(config.audience)
    issuer.jwks_override = b'{"keys": [], "padding": "' + b"x" * (oidc.MAX_DOCUMENT_BYTES + 1) + b'"}'
    assert await oidc.OidcTokenVerifier(config).verify_token(good) is None
    issuer.jwks_override = None
    issuer.discovery_issuer = "https://evil.example"
    assert await oidc.OidcTokenVerifier(config).verify_token(good) is None
    assert issuer.hits["/jwks"] == 1  # the second discovery document was refused before any key was fetched
    issuer.discovery_issuer = None
    assert await oidc.OidcTokenVerifier(config).verify_token(good) is not None
    messages = [r.getMessage() for r in caplog.records if r.name == "cloudpilot.oidc"]
    assert any("larger than" in m for m in messages) and any("names issuer" in m for m in messages)


# -- pieces -----------------------------------------------------------------------------------------------------


def test_scopes_are_mapped_by_prefix_and_cumulative():
    granted = oidc.granted_scopes
    assert granted({"scope": "openid cloudpilot:read"}, "cloudpilot:") == ["read"]
    assert granted({"scope": "cloudpilot:write"}, "cloudpilot:") == ["read", "write"]
    assert granted({"scp": ["cloudpilot:destructive"]}, "cloudpilot:") == ["read", "write", "destructive"]
    assert granted({"scp": "mcp.write"}, "mcp.") == ["read", "write"]
    assert granted({"scope": "read write cloudpilot:admin"}, "cloudpilot:") == []
    assert granted({"scope": "write"}, "") == ["read", "write"]
    assert granted({"scope": 7, "scp": [1, None]}, "cloudpilot:") == []


def test_issuers_must_be_https_except_on_loopback(tmp_path):
    for good in ("https://login.example.com/realms/ops", "http://127.0.0.1:8080", "http://localhost/x"):
        assert make_settings(tmp_path, oidc_issuer=good).server.oidc_issuer == good
    for bad in ("http://login.example.com", "ftp://x", "https://user@evil.example", "http://127.0.0.1.evil.example"):
        with pytest.raises(ValidationError):
            make_settings(tmp_path, oidc_issuer=bad)
    with pytest.raises(ValueError, match="https"):
        oidc.check_url("http://keys.example/jwks", "jwks_uri", allow_http=True)
    with pytest.raises(ValueError, match="https"):
        oidc.check_url("http://127.0.0.1/jwks", "jwks_uri", allow_http=False)


def test_an_issuer_turns_auth_on_with_the_issuer_in_the_metadata(tmp_path):
    settings = make_settings(
        tmp_path, oidc_issuer="https://login.example.com", oidc_audience="https://cloudpilot.example.com/mcp"
    )
    options = auth.fastmcp_options(settings, None)  # no store: OIDC alone
    assert str(options["auth"].issuer_url).rstrip("/") == "https://login.example.com"
    assert str(options["auth"].resource_server_url) == "https://cloudpilot.example.com/mcp"
    assert options["auth"].required_scopes == ["cloudpilot:read"]
    entra = make_settings(tmp_path, oidc_issuer="https://login.example.com", oidc_audience="api://cloudpilot")
    assert str(auth.fastmcp_options(entra, None)["auth"].resource_server_url).endswith(":8000/mcp")
    assert "auth" not in auth.fastmcp_options(make_settings(tmp_path), None)
