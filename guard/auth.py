"""Who may use the HTTP transport: bearer tokens, checked here and nowhere else.

Tokens are made by the operator (`cloudpilot tokens create NAME --scope read|write|destructive`), shown once,
and kept only as a SHA-256 hash in the SQLite store (a token is 32 random bytes, so a plain hash is enough).
The MCP SDK's bearer middleware calls `TokenVerifier.verify_token`; a tool call then reads the verified token
back with `principal_of(ctx)`. Beside these store tokens (`cpt_…`, for small teams), `server.oidc_issuer` makes
the server accept JWT access tokens from an OIDC issuer too (guard/oidc.py); `BearerVerifier` sends each token to
the one that can check it.

When auth is on: an OIDC issuer, or a store with at least one unrevoked token, turns it on for every bind
address, loopback included. Without either, loopback binds stay open (a developer's machine) and other addresses
are refused unless `server.insecure_no_auth`. Host and Origin headers are checked on every bind.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings

from guard import access
from guard.oidc import OidcAccessToken, OidcConfig, OidcTokenVerifier
from runtime import SCOPES, Principal
from settings import ServerSettings, Settings
from store import Store
from store.migrations import migrate

PREFIX = "cpt_"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
"""
MIGRATIONS = (_SCHEMA,)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_DURATION = re.compile(r"^(\d{1,6})([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class BindRefused(Exception):
    """HTTP must not start on this address as configured."""


def scopes_of(scope: str) -> frozenset[str]:
    """Scopes are cumulative: write implies read; destructive implies write and read."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose from {', '.join(SCOPES)}")
    return frozenset(SCOPES[: SCOPES.index(scope) + 1])


def parse_duration(text: str) -> timedelta:
    """'30d', '12h', '90m', '2w', '45s'."""
    found = _DURATION.match(text.strip())
    if not found or int(found.group(1)) == 0:
        raise ValueError(f"invalid duration {text!r}: use a positive number and one of s, m, h, d, w (e.g. 30d)")
    return timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2)])


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: never the token itself."""

    name: str
    scope: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None

    @property
    def scopes(self) -> frozenset[str]:
        return scopes_of(self.scope)

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and datetime.fromisoformat(self.expires_at) <= (now or _now())

    @property
    def state(self) -> str:
        return "revoked" if self.revoked_at else ("expired" if self.expired() else "active")


class Tokens:
    """The token table in CloudPilot's store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        migrate(store, "api_tokens", MIGRATIONS)

    def create(self, name: str, scope: str, expires_in: timedelta | None = None) -> tuple[str, TokenInfo]:
        """Make a token; returns (the token, shown this once; its record). KeyError if the name is taken."""
        if not _NAME.match(name):
            raise ValueError(f"invalid token name {name!r}: 1-63 letters, digits, '.', '_' or '-'")
        scopes_of(scope)
        secret = PREFIX + secrets.token_urlsafe(32)
        now = _now().replace(microsecond=0)
        expires = (now + expires_in).isoformat() if expires_in else None
        created = self.store.execute(  # one statement: two replicas creating the same name cannot both win
            "INSERT INTO api_tokens (name, hash, scope, created_at, expires_at) VALUES (?,?,?,?,?) "
            "ON CONFLICT (name) DO NOTHING RETURNING name",
            (name, _digest(secret), scope, now.isoformat(), expires),
        )
        if not created:
            raise KeyError(name)
        return secret, TokenInfo(name, scope, now.isoformat(), expires, None)

    def list(self) -> list[TokenInfo]:
        rows = self.store.execute(
            "SELECT name, scope, created_at, expires_at, revoked_at FROM api_tokens ORDER BY name"
        )
        return [TokenInfo(**dict(r)) for r in rows]

    def revoke(self, name: str) -> bool:
        """True when an active token was revoked; False when it was already revoked. KeyError if unknown."""
        if not self.store.execute("SELECT 1 FROM api_tokens WHERE name = ?", (name,)):
            raise KeyError(name)
        revoked = self.store.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL RETURNING name",
            (_now().replace(microsecond=0).isoformat(), name),
        )
        return bool(revoked)

    def configured(self) -> bool:
        """Whether any unrevoked token exists (expired ones count: auth stays on until they are revoked)."""
        return bool(self.store.execute("SELECT 1 FROM api_tokens WHERE revoked_at IS NULL LIMIT 1"))

    def check(self, secret: str) -> TokenInfo | None:
        """The token's record if it is known, unrevoked and unexpired; else None."""
        if not secret.startswith(PREFIX) or len(secret) > 200:
            return None
        digest = _digest(secret)
        rows = self.store.execute(
            "SELECT hash, name, scope, created_at, expires_at, revoked_at FROM api_tokens WHERE hash = ?", (digest,)
        )
        if not rows or not hmac.compare_digest(rows[0]["hash"], digest):
            return None
        fields = dict(rows[0])
        fields.pop("hash")
        info = TokenInfo(**fields)
        return None if info.revoked_at or info.expired() else info


class StoreTokenVerifier:
    """The SDK's `TokenVerifier` for tokens kept in CloudPilot's store."""

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens

    async def verify_token(self, token: str) -> AccessToken | None:
        info = self.tokens.check(token)  # one indexed SELECT: cheaper than a hop to a worker thread
        if info is None:
            return None
        expires = int(datetime.fromisoformat(info.expires_at).timestamp()) if info.expires_at else None
        return AccessToken(
            token=_digest(token),  # what the request state keeps: the hash, never the token itself
            client_id=info.name,
            subject=info.name,
            scopes=sorted(info.scopes, key=SCOPES.index),
            expires_at=expires,
        )


class BearerVerifier:
    """Store tokens (`cpt_…`) checked against the store, every other token against the OIDC issuer.

    With an OIDC issuer, the SDK asks for `<prefix>read` (what the protected-resource metadata advertises), so each
    verified token carries its scopes under both names: `read` for CloudPilot, `cloudpilot:read` for the SDK."""

    def __init__(self, store: TokenVerifier | None, oidc: TokenVerifier | None, scope_prefix: str = "") -> None:
        self.store = store
        self.oidc = oidc
        self.scope_prefix = scope_prefix

    async def verify_token(self, token: str) -> AccessToken | None:
        checker = self.store if token.startswith(PREFIX) else self.oidc
        found = await checker.verify_token(token) if checker is not None else None
        if found is None or not self.scope_prefix:
            return found
        ours = [s for s in found.scopes if s in SCOPES]
        return found.model_copy(update={"scopes": [*ours, *(self.scope_prefix + s for s in ours)]})


def principal_of(ctx: Any, server: ServerSettings | None = None) -> Principal | None:
    """The authenticated caller of an MCP request over HTTP, from the token the SDK verified, narrowed by the
    per-identity policy of `server` (guard/access.py); None without a token.

    The tool handler may run in another task than the HTTP request, so the request's own scope (which the
    session keeps with each message) is read first, the SDK's context variable second."""
    token: AccessToken | None = None
    try:
        request = ctx.request_context.request
    except (AttributeError, ValueError, LookupError):
        request = None
    user = getattr(request, "scope", {}).get("user") if request is not None else None
    if isinstance(user, AuthenticatedUser):
        token = user.access_token
    if token is None:
        token = get_access_token()
    if token is None:
        return None
    if token.expires_at is not None and token.expires_at < time.time():
        return None
    if isinstance(token, OidcAccessToken):
        name, keys = f"{token.principal} (oidc)", [f"oidc:{token.principal}", *(f"group:{g}" for g in token.groups)]
    else:
        name, keys = f"{token.client_id} (token)", [f"token:{token.client_id}"]
    found = Principal(name=name, scopes=frozenset(s for s in token.scopes if s in SCOPES), transport="http")
    return access.apply(server, found, keys) if server is not None else found


def visible(access: str, principal: Principal) -> bool:
    """Whether a tool needing `access` (read, write, destructive) is shown to and callable by `principal`."""
    return access in SCOPES and access in principal.scopes


# -- serving over HTTP ---------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """Host and Origin allow-lists, on every bind: loopback names with any port plus the configured ones."""
    server = settings.server
    hosts = [h for name in LOOPBACK_HOSTS for h in (name, f"{name}:*")]
    origins = [
        o
        for name in LOOPBACK_HOSTS
        for scheme in ("http", "https")
        for o in (f"{scheme}://{name}", f"{scheme}://{name}:*")
    ]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts + list(server.allowed_hosts),
        allowed_origins=origins + list(server.allowed_origins),
    )


def resource_url(settings: Settings) -> str:
    """This server's MCP endpoint as clients name it (for the protected-resource metadata): the first of
    `server.allowed_hosts` when bound to a non-loopback address, else the bind address."""
    server = settings.server
    if not is_loopback(server.host) and server.allowed_hosts:
        name = server.allowed_hosts[0].removesuffix(":*")
    else:
        name = f"[{server.host}]" if ":" in server.host and not server.host.startswith("[") else server.host
    has_port = ":" in name.rsplit("]", 1)[-1]
    return f"http://{name}/mcp" if has_port else f"http://{name}:{server.port}/mcp"


def fastmcp_options(settings: Settings, store: Store | None) -> dict[str, Any]:
    """Keyword arguments for FastMCP: the Host/Origin checks always; bearer auth when a token or an OIDC issuer
    is configured."""
    options: dict[str, Any] = {"transport_security": transport_security(settings)}
    server = settings.server
    tokens = Tokens(store) if store is not None else None
    stored = StoreTokenVerifier(tokens) if tokens is not None else None
    url = resource_url(settings)
    if server.oidc_issuer:
        audience = server.oidc_audience or url
        config = OidcConfig(
            issuer=server.oidc_issuer,
            audience=audience,
            scope_prefix=server.oidc_scope_prefix,
            principal_claim=server.oidc_principal_claim,
            jwks_refresh_seconds=server.oidc_jwks_refresh_seconds,
            groups_claim=server.oidc_groups_claim,
        )
        verifier: TokenVerifier = BearerVerifier(stored, OidcTokenVerifier(config), server.oidc_scope_prefix)
        options["token_verifier"] = verifier
        options["auth"] = AuthSettings(
            issuer_url=server.oidc_issuer,  # the RFC 9728 metadata sends clients to the issuer for a token
            # the resource the issuer names in `aud` (RFC 8707); a non-URL audience (api://…) keeps this URL
            resource_server_url=audience if audience.startswith(("https://", "http://")) else url,
            required_scopes=[server.oidc_scope_prefix + "read"],
            validate_token_resource=False,  # guard/oidc.py checks `aud` itself
        )
    elif stored is not None and stored.tokens.configured():
        options["token_verifier"] = stored
        options["auth"] = AuthSettings(
            issuer_url=url.removesuffix("/mcp"),  # tokens are issued by this server's operator, not an OAuth server
            resource_server_url=url,
            required_scopes=["read"],
            validate_token_resource=False,  # our tokens are only valid here: there is no other audience to tell apart
        )
    return options


def check_binding(settings: Settings, tokens_configured: bool) -> str | None:
    """Whether HTTP may start: raises BindRefused, or returns a warning to log (None when all is well)."""
    server = settings.server
    if tokens_configured or is_loopback(server.host):
        return None
    if not server.insecure_no_auth:
        raise BindRefused(
            f"refusing to serve HTTP on {server.host}: no bearer token is configured, so anyone who can reach "
            "this address could use CloudPilot. Create one with `cloudpilot tokens create NAME --scope read` (or set "
            "server.oidc_issuer), bind 127.0.0.1, or pass --insecure-no-auth (never in production)."
        )
    return (
        f"serving HTTP on {server.host} WITHOUT authentication (--insecure-no-auth): anyone who can reach it can "
        "use every tool these settings allow."
    )
