"""Authenticated streamable HTTP: bearer tokens, scopes, Host/Origin checks and the bind policy.

Servers are started in the test's event loop on a free 127.0.0.1 port; no traffic goes anywhere else (a
server *configured* for 0.0.0.0 is still served on 127.0.0.1, with the Host header set by the test)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

import server
from cli import tokens as tokens_cli
from guard import auth
from runtime import Principal
from settings import Settings
from store import Store, open_store
from tests.serving import free_port, uvicorn_serving

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}
CALL_SCALE = {
    "jsonrpc": "2.0",
    "id": 2,
    "method": "tools/call",
    "params": {"name": "scale", "arguments": {"kind": "Deployment", "name": "web", "namespace": "a", "replicas": 9}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def make_settings(tmp_path: Path, store: dict[str, Any] | None = None, **server_fields: Any) -> Settings:
    """Writes on, no cluster needed: every call these tests make is refused or answered before any API call. The
    tokens live in `store` (the `store_settings` of the test's backend), else in a SQLite file."""
    return Settings(
        k8s={"kubeconfig": tmp_path / "no-kubeconfig", "context": None},
        store=store or {"path": tmp_path / "cloudpilot.db"},
        safety={"allow_write": True},
        server={"transport": "http", **server_fields},
    )


def add_token(settings: Settings, name: str, scope: str) -> str:
    store = open_store(settings)
    try:
        return auth.Tokens(store).create(name, scope)[0]
    finally:
        store.close()


@dataclass
class Served:
    url: str
    mcp: Any
    calls: list[tuple[str, Principal]] = field(default_factory=list)  # (tool, principal) reaching the pipeline


@asynccontextmanager
async def serving(settings: Settings, runtime: Any = None) -> AsyncIterator[Served]:
    """`server.build_server(settings)` served by uvicorn on 127.0.0.1 in this event loop."""
    port = free_port()
    settings = settings.model_copy(update={"server": settings.server.model_copy(update={"port": port})})
    mcp: Any = server.build_server(settings, runtime)
    served = Served("", mcp)
    original = mcp.pipeline.call

    async def recorded(name: str, arguments: Any, **kwargs: Any) -> Any:
        served.calls.append((name, kwargs["principal"]))
        return await original(name, arguments, **kwargs)

    mcp.pipeline.call = recorded
    async with uvicorn_serving(mcp.streamable_http_app(), port, 30):
        served.url = f"http://127.0.0.1:{port}/mcp"
        yield served


@asynccontextmanager
async def session(url: str, token: str | None) -> AsyncIterator[ClientSession]:
    """An initialized SDK client session, sending `token` as a bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(url, http_client=http) as (read, write, _),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        yield client


async def post(url: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(url, json=body, headers={**MCP_HEADERS, **headers})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- tokens ---------------------------------------------------------------------------------------------------


@pytest.mark.stores  # the tokens: SQLite, then PostgreSQL
async def test_no_token_gets_401_with_www_authenticate_and_runs_nothing(tmp_path, store_settings):
    settings = make_settings(tmp_path, store_settings)  # bound to loopback: a configured token turns auth on there too
    add_token(settings, "ops", "write")
    async with serving(settings) as srv:
        for body in (INITIALIZE, CALL_SCALE):
            answer = await post(srv.url, body)
            assert answer.status_code == 401, answer.text
            challenge = answer.headers["www-authenticate"]
            assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
            assert "resource_metadata=" in challenge
        async with httpx.AsyncClient(timeout=30) as http:
            metadata = await http.get(challenge.split('resource_metadata="')[1].rstrip('"'))
    assert srv.calls == []
    assert metadata.status_code == 200 and metadata.json()["resource"].endswith("/mcp")


@pytest.mark.stores
@pytest.mark.parametrize("which", ["wrong", "expired", "revoked", "not bearer"])
async def test_a_wrong_expired_or_revoked_token_gets_401(tmp_path, which, store_settings):
    settings = make_settings(tmp_path, store_settings)
    good = add_token(settings, "ops", "write")
    store = open_store(settings)
    tokens = auth.Tokens(store)
    sent = {"Authorization": f"Bearer {good}"}
    async with serving(settings) as srv:
        assert (await post(srv.url, INITIALIZE, **sent)).status_code == 200  # works until changed below
        if which == "wrong":
            sent = bearer(good[:-2] + ("AA" if not good.endswith("AA") else "BB"))
        elif which == "expired":
            past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
            store.execute("UPDATE api_tokens SET expires_at = ? WHERE name = 'ops'", (past,))
        elif which == "revoked":
            assert tokens.revoke("ops")
        else:
            sent = {"Authorization": f"Basic {good}"}
        for body in (INITIALIZE, CALL_SCALE):
            answer = await post(srv.url, body, **sent)
            assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer ")
    store.close()
    assert srv.calls == []


@pytest.mark.stores  # the tokens: SQLite, then PostgreSQL
async def test_a_revoked_token_cannot_go_on_using_its_open_session(tmp_path, store_settings):
    settings = make_settings(tmp_path, store_settings)
    token = add_token(settings, "ops", "read")
    async with serving(settings) as srv:
        opened = await post(srv.url, INITIALIZE, **bearer(token))
        session_id = opened.headers["mcp-session-id"]
        store = open_store(settings)
        auth.Tokens(store).revoke("ops")
        store.close()
        listing = {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}
        again = await post(srv.url, listing, **bearer(token), **{"mcp-session-id": session_id})
    assert again.status_code == 401


@pytest.mark.stores  # the tokens: SQLite, then PostgreSQL
async def test_a_read_token_lists_no_write_tool_and_cannot_call_one(tmp_path, store_settings):
    settings = make_settings(tmp_path, store_settings)
    token = add_token(settings, "viewer", "read")
    async with serving(settings) as srv, session(srv.url, token) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        scaled = await client.call_tool("scale", {"kind": "Deployment", "name": "w", "namespace": "a", "replicas": 2})
        applied = await client.call_tool("fix_apply", {"plan_id": "p-123"})
    specs = {s.name: s for s in srv.mcp.pipeline.specs}
    assert names and all(specs[n].access == "read" for n in names)
    assert not names & {"scale", "fix_apply", "fix_plan", "clusters_add", "resource_apply"}
    for answer, tool in ((scaled, "scale"), (applied, "fix_apply")):
        text = str(getattr(answer.content[0], "text", ""))
        assert answer.isError and f"{tool} needs 'write' access" in text and "has read" in text
    viewer = Principal("viewer (token)", frozenset({"read"}), "http")
    assert srv.calls == [("scale", viewer), ("fix_apply", viewer)]  # principal_of worked inside the tool call


@pytest.mark.stores  # the tokens: SQLite, then PostgreSQL
async def test_a_write_token_lists_the_write_tools(tmp_path, store_settings):
    settings = make_settings(tmp_path, store_settings)
    token = add_token(settings, "deployer", "write")
    async with serving(settings) as srv, session(srv.url, token) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        answer = await client.call_tool("fix_plan_show", {"plan_id": "p-nothere"})
    assert {"scale", "fix_apply", "fix_plan", "pods_list"} <= names
    assert "pod_delete" not in names  # destructive: neither the settings nor the token allow it
    assert answer.isError and "needs" not in str(getattr(answer.content[0], "text", ""))  # got past the scope check
    assert srv.calls == [("fix_plan_show", Principal("deployer (token)", frozenset({"read", "write"}), "http"))]


async def test_without_tokens_loopback_stays_open_for_a_local_developer(tmp_path):
    settings = make_settings(tmp_path)
    async with serving(settings) as srv, session(srv.url, None) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert "scale" in names and srv.mcp.settings.auth is None


def test_scopes_are_cumulative_and_visible_follows_them():
    assert auth.scopes_of("read") == {"read"}
    assert auth.scopes_of("write") == {"read", "write"}
    assert auth.scopes_of("destructive") == {"read", "write", "destructive"}
    writer = Principal("w (token)", auth.scopes_of("write"), "http")
    assert auth.visible("read", writer) and auth.visible("write", writer)
    assert not auth.visible("destructive", writer) and not auth.visible("admin", writer)


# -- Host and Origin ------------------------------------------------------------------------------------------


async def test_a_foreign_host_header_is_rejected_even_with_a_valid_token(tmp_path):
    settings = make_settings(tmp_path, host="0.0.0.0", allowed_hosts=["cloudpilot.ops.svc:*"])
    token = add_token(settings, "ops", "read")
    async with serving(settings) as srv:
        evil = await post(srv.url, INITIALIZE, Host="evil.example", **bearer(token))
        evil_port = await post(srv.url, INITIALIZE, Host="evil.example:8000", **bearer(token))
        allowed = await post(srv.url, INITIALIZE, Host="cloudpilot.ops.svc:8000", **bearer(token))
        loopback = await post(srv.url, INITIALIZE, Host="localhost", **bearer(token))
    assert evil.status_code == 421 and evil_port.status_code == 421
    assert allowed.status_code == 200 and loopback.status_code == 200
    assert srv.calls == []


async def test_an_origin_not_allowed_is_rejected(tmp_path):
    settings = make_settings(tmp_path, host="0.0.0.0", allowed_origins=["https://console.example"])
    token = add_token(settings, "ops", "read")
    async with serving(settings) as srv:
        evil = await post(srv.url, INITIALIZE, Origin="https://evil.example", **bearer(token))
        allowed = await post(srv.url, INITIALIZE, Origin="https://console.example", **bearer(token))
        local = await post(srv.url, INITIALIZE, Origin="http://localhost:6274", **bearer(token))
    assert evil.status_code == 403
    assert allowed.status_code == 200 and local.status_code == 200


# -- binding --------------------------------------------------------------------------------------------------


def _never_binds(ran: list[str]):
    async def serve(self) -> None:  # in place of binding the port: note the transport asked for
        ran.append("streamable-http")

    return serve


def test_binding_a_public_address_with_no_token_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDPILOT_STORE__PATH", str(tmp_path / "cloudpilot.db"))
    monkeypatch.setenv("CLOUDPILOT_K8S__KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    ran: list[str] = []
    monkeypatch.setattr(server.FastMCP, "run_streamable_http_async", _never_binds(ran))
    with pytest.raises(SystemExit) as refused:
        server.main(["--transport", "http", "--host", "0.0.0.0", "--port", str(free_port())])
    assert "refusing to serve HTTP on 0.0.0.0" in str(refused.value.code)
    assert "cloudpilot tokens create" in str(refused.value.code) and ran == []


def test_the_bind_policy(tmp_path, caplog):
    public = make_settings(tmp_path, host="0.0.0.0")
    with pytest.raises(auth.BindRefused, match="no bearer token is configured"):
        auth.check_binding(public, tokens_configured=False)
    assert auth.check_binding(public, tokens_configured=True) is None
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert auth.check_binding(make_settings(tmp_path, host=host), tokens_configured=False) is None
    with pytest.raises(auth.BindRefused):
        auth.check_binding(make_settings(tmp_path, host="cloudpilot.example"), tokens_configured=False)
    args = server.parse_args(["--transport", "http", "--host", "0.0.0.0", "--insecure-no-auth"])
    insecure = server.settings_from_args(args)
    assert insecure.server.insecure_no_auth is True
    warning = auth.check_binding(insecure, tokens_configured=False)
    assert warning and "WITHOUT authentication" in warning


def test_insecure_no_auth_starts_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CLOUDPILOT_STORE__PATH", str(tmp_path / "cloudpilot.db"))
    monkeypatch.setenv("CLOUDPILOT_K8S__KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    ran: list[str] = []
    monkeypatch.setattr(server.FastMCP, "run_streamable_http_async", _never_binds(ran))
    with caplog.at_level(logging.WARNING, logger="cloudpilot"):
        server.main(["--transport", "http", "--host", "0.0.0.0", "--insecure-no-auth"])
    assert ran == ["streamable-http"]
    assert any(r.levelno == logging.WARNING and "WITHOUT authentication" in r.getMessage() for r in caplog.records)


# -- the operator's command -----------------------------------------------------------------------------------


def test_tokens_cli_prints_once_stores_only_a_hash_and_revokes(tmp_path, capsys):
    config = tmp_path / "cloudpilot.yaml"
    db = tmp_path / "store" / "cloudpilot.db"
    config.write_text(json.dumps({"store": {"path": str(db)}}))
    assert tokens_cli.main(["create", "ci-bot", "--scope", "write", "--expires", "30d", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert out.count("\n") == 1 and token.startswith(auth.PREFIX) and len(token) >= 40 and token not in err
    assert tokens_cli.main(["create", "ci-bot", "--scope", "read", "--config", str(config)]) == 1
    assert tokens_cli.main(["list", "--config", str(config)]) == 0
    listed, err = capsys.readouterr()
    assert "ci-bot" in listed and "write" in listed and "active" in listed and token not in listed + err
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        if path.exists():
            data = path.read_bytes()
            assert token.encode() not in data and token[len(auth.PREFIX) :].encode() not in data, path
    store = Store(db)
    assert auth.Tokens(store).check(token) is not None
    assert tokens_cli.main(["revoke", "ci-bot", "--config", str(config)]) == 0
    assert auth.Tokens(store).check(token) is None
    store.close()
    assert tokens_cli.main(["revoke", "ci-bot", "--config", str(config)]) == 1
    assert tokens_cli.main(["revoke", "nobody", "--config", str(config)]) == 1
    capsys.readouterr()
    assert tokens_cli.main(["list", "--config", str(config)]) == 0
    assert "revoked" in capsys.readouterr().out
