"""OIDC access tokens on the HTTP transport: CloudPilot as an OAuth 2.0 resource server.

An access token is a JWT signed by the configured issuer. Its signature is checked against the issuer's keys
(the JWKS named by `<issuer>/.well-known/openid-configuration`), then `iss` (exactly the issuer), `aud` (it must
contain the configured audience, this server's resource URL by default), `exp` and `nbf`. Only RS256 and ES256
are accepted: never `none`, never an HMAC algorithm (a public key used as an HMAC secret is the classic
algorithm-confusion forgery), and a key is used only with the algorithm its type and curve allow. Keys named by
the token itself (`jku`, `x5u`, `jwk` headers) are never fetched or used.

The keys are cached. A token whose `kid` is not among them makes the cache fetch the JWKS again (the issuer
rotated its keys), but at most once per `server.oidc_jwks_refresh_seconds`, so a flood of made-up key ids costs
the issuer one request per interval; the keys are also fetched again after an hour, so a key the issuer drops
stops working. Every fetch is https (http only for a loopback issuer: tests, a local IdP), with timeouts, no
redirects and a size cap.

Scopes: `scope` (space-separated) or `scp` (a string or a list) entries `<prefix>read`, `<prefix>write`,
`<prefix>destructive` grant CloudPilot's scopes, cumulatively as for store tokens (write implies read). The
caller's name is the configured claim (`sub` by default, e.g. `email`); it shows as `alice@example.com (oidc)`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import jwt
from jwt import PyJWK
from mcp.server.auth.provider import AccessToken

from runtime import SCOPES

logger = logging.getLogger("cloudpilot.oidc")

ALGORITHMS = ("RS256", "ES256")
_KEY_TYPES = {"RS256": ("RSA", None), "ES256": ("EC", "P-256")}  # alg -> (kty, crv)
MAX_TOKEN_CHARS = 16_384
MAX_DOCUMENT_BYTES = 512_000  # a discovery document or a JWKS
MAX_KEYS = 100
LEEWAY_SECONDS = 30  # on nbf and iat (the SDK checks exp again with none)
KEYS_MAX_AGE_SECONDS = 3600.0
FETCH_TIMEOUT_SECONDS = 5.0
_NAME_CHARS = 200
MAX_GROUPS = 100  # a token listing more groups than this keeps the first ones (matching stays cheap)


class OidcAccessToken(AccessToken):
    """An access token verified here: `principal` is the caller's name from the configured claim."""

    principal: str
    groups: list[str] = []


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    audience: str
    scope_prefix: str = "cloudpilot:"
    principal_claim: str = "sub"
    jwks_refresh_seconds: float = 60.0
    groups_claim: str = "groups"


class FetchError(Exception):
    """The issuer's discovery document or keys could not be read."""


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str, allow_http: bool) -> str:
    """`url` if it is https (or http on a loopback host, when `allow_http`); else ValueError."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and allow_http and parts.hostname and _loopback(parts.hostname):
        return url
    raise ValueError(f"{what} must be an https URL (http only on a loopback address), got {url!r}")


def granted_scopes(claims: dict[str, Any], prefix: str) -> list[str]:
    """CloudPilot's scopes granted by the token's `scope`/`scp` claim, lowest first, cumulative."""
    names: list[str] = []
    for claim in ("scope", "scp"):
        value = claims.get(claim)
        if isinstance(value, str):
            names += value.split()
        elif isinstance(value, list):
            names += [v for v in value if isinstance(v, str)]
    levels = [SCOPES.index(n[len(prefix) :]) for n in names if n.startswith(prefix) and n[len(prefix) :] in SCOPES]
    return list(SCOPES[: max(levels) + 1]) if levels else []


def _groups(value: Any) -> list[str]:
    """The token's groups (a list of names, or one name), each a usable name; at most MAX_GROUPS."""
    names = value if isinstance(value, list) else [value]
    return [n for n in (_name(v) for v in names[:MAX_GROUPS]) if n is not None]


def _name(value: Any) -> str | None:
    if not isinstance(value, str) or not 0 < len(value) <= _NAME_CHARS or not value.isprintable():
        return None
    return value


class Keys:
    """The issuer's signing keys, fetched through its discovery document, cached, refetched sparingly."""

    def __init__(self, config: OidcConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.allow_http = _loopback(urlsplit(config.issuer).hostname or "")
        check_url(config.issuer, "the OIDC issuer", allow_http=True)
        self._jwks_uri: str | None = None
        self._keys: list[dict[str, Any]] = []
        self._fetched_at = -math.inf  # last successful fetch
        self._tried_at = -math.inf  # last attempt, successful or not
        self._lock = anyio.Lock()
        self.fetches = 0  # JWKS requests made (for the log and tests)

    async def key(self, kid: str | None, alg: str) -> PyJWK | None:
        """The key to check a token signed with `alg` by key `kid`; None when there is no such usable key."""
        found = self._find(kid, alg)
        if found is not None and self.clock() - self._fetched_at < KEYS_MAX_AGE_SECONDS:
            return found
        async with self._lock:
            found = self._find(kid, alg)
            now = self.clock()
            if found is not None and now - self._fetched_at < KEYS_MAX_AGE_SECONDS:
                return found  # another request fetched them meanwhile
            if now - self._tried_at < self.config.jwks_refresh_seconds:
                return found  # fetched recently: an unknown kid now is not a rotation (or the issuer is down)
            self._tried_at = now
            try:
                with anyio.fail_after(3 * FETCH_TIMEOUT_SECONDS):
                    await self._refresh()
            except (FetchError, httpx.HTTPError, TimeoutError, ValueError) as e:
                logger.warning("could not fetch the keys of OIDC issuer %s: %s", self.config.issuer, e)
                self._jwks_uri = None  # discover again next time
                return found  # keys kept from before, if any, until the next successful fetch
            return self._find(kid, alg)

    def _find(self, kid: str | None, alg: str) -> PyJWK | None:
        kty, crv = _KEY_TYPES[alg]
        usable = [
            k
            for k in self._keys
            if k.get("kty") == kty
            and (crv is None or k.get("crv") == crv)
            and k.get("alg") in (None, alg)
            and k.get("use") in (None, "sig")
        ]
        if kid is not None:
            usable = [k for k in usable if k.get("kid") == kid]
        elif len(usable) != 1:  # no kid: only when the issuer has one key that fits
            return None
        if not usable:
            return None
        try:
            return PyJWK(usable[0], algorithm=alg)
        except (jwt.PyJWTError, ValueError, TypeError):
            return None

    async def _refresh(self) -> None:
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False) as http:
            if self._jwks_uri is None:
                discovery = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
                document = await _get_json(http, discovery)
                if document.get("issuer") != self.config.issuer:
                    raise FetchError(f"the discovery document names issuer {document.get('issuer')!r}")
                uri = document.get("jwks_uri")
                if not isinstance(uri, str):
                    raise FetchError("the discovery document has no jwks_uri")
                self._jwks_uri = check_url(uri, "jwks_uri", self.allow_http)
            self.fetches += 1
            jwks = await _get_json(http, self._jwks_uri)
        keys = jwks.get("keys")
        if not isinstance(keys, list) or len(keys) > MAX_KEYS:
            raise FetchError("the JWKS has no key list, or too many keys")
        self._keys = [k for k in keys if isinstance(k, dict) and isinstance(k.get("kid", ""), str)]
        self._fetched_at = self.clock()
        logger.info("fetched %d keys of OIDC issuer %s", len(self._keys), self.config.issuer)


async def _get_json(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    async with http.stream("GET", url, headers={"Accept": "application/json"}) as response:
        if response.status_code != 200:
            raise FetchError(f"GET {url} answered {response.status_code}")
        if int(response.headers.get("content-length") or 0) > MAX_DOCUMENT_BYTES:
            raise FetchError(f"GET {url}: the document is larger than {MAX_DOCUMENT_BYTES} bytes")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                raise FetchError(f"GET {url}: the document is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        document = json.loads(bytes(body))
    except ValueError as e:
        raise FetchError(f"GET {url}: not JSON") from e
    if not isinstance(document, dict):
        raise FetchError(f"GET {url}: not a JSON object")
    return document


class OidcTokenVerifier:
    """The MCP SDK's `TokenVerifier` for JWT access tokens from one OIDC issuer."""

    def __init__(self, config: OidcConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.keys = Keys(config, clock)

    async def verify_token(self, token: str) -> AccessToken | None:
        if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            return None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS or not isinstance(kid, str | None) or "crit" in header or "b64" in header:
            return None
        key = await self.keys.key(kid, alg)
        if key is None:
            return None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as e:
            logger.info("OIDC token refused: %s", e)
            return None
        name = _name(claims.get(self.config.principal_claim))
        if name is None:
            logger.info("OIDC token refused: no usable %r claim", self.config.principal_claim)
            return None
        client = _name(claims.get("azp")) or _name(claims.get("client_id")) or name
        return OidcAccessToken(
            token=hashlib.sha256(token.encode()).hexdigest(),  # what the request state keeps: never the token
            client_id=client,
            subject=_name(claims.get("sub")),
            scopes=granted_scopes(claims, self.config.scope_prefix),
            expires_at=int(claims["exp"]),
            resource=self.config.audience,
            claims={"iss": claims["iss"]},
            principal=name,
            groups=_groups(claims.get(self.config.groups_claim)),
        )
