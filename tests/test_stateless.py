"""Stateless streamable HTTP (`server.stateless_http`), as several replicas behind a plain load balancer serve it:
two replicas sharing one store answer the requests of one client in turn with one bearer token, a replica
answers without having seen the client's initialize, the runtime outlives every request, and a plan never waits
for an approval the client can no longer be asked for.

The replicas are served by uvicorn in the test's event loop on 127.0.0.1, each with its own runtime and MCP
server, as separate processes would be (benchmarks/http_load.py runs real processes behind a balancer)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.context import RequestContext
from mcp.types import ElicitRequestParams, ElicitResult

import server
from ops.metrics import Metrics
from runtime import Runtime
from settings import Settings
from store import AuditLog, Store
from tests.cluster import states
from tests.fix.scenarios import deploy, deployment
from tests.security.test_http_auth import MCP_HEADERS, add_token
from tests.serving import free_port, uvicorn_serving

pytestmark = pytest.mark.timeout(180)
HANG_GUARD = 90  # seconds: a guard against a hang, not a measurement


def stateless(settings: Settings, **server_fields: Any) -> Settings:
    update = {"transport": "http", "stateless_http": True, **server_fields}
    return settings.model_copy(update={"server": settings.server.model_copy(update=update)})


@asynccontextmanager
async def serving(settings: Settings, runtime: Runtime | None = None) -> AsyncIterator[str]:
    """One replica: `server.build_server` served by uvicorn on a free loopback port; yields its /mcp URL."""
    port = free_port()
    mcp: Any = server.build_server(
        settings.model_copy(update={"server": settings.server.model_copy(update={"port": port})}),
        runtime,
        Metrics(process=False),
    )
    async with uvicorn_serving(mcp.streamable_http_app(), port, HANG_GUARD):
        yield f"http://127.0.0.1:{port}/mcp"


class RoundRobin(httpx.AsyncBaseTransport):
    """Sends each request to the next replica in turn, as a load balancer would, noting who got which method."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = [httpx.URL(u) for u in urls]
        self.inner = httpx.AsyncHTTPTransport()
        self.turn = 0
        self.seen: list[tuple[int, str]] = []  # (replica, JSON-RPC method or the HTTP method)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        replica = self.turn % len(self.urls)
        self.turn += 1
        target = self.urls[replica]
        request.url = request.url.copy_with(host=target.host, port=target.port)
        body = json.loads(request.content) if request.method == "POST" and request.content else {}
        self.seen.append((replica, body.get("method", "(response)") if isinstance(body, dict) else "(batch)"))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def post(method: str, params: dict[str, Any], request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def answer_of(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC answer in a plain JSON body or in an event stream's data lines."""
    if response.headers["content-type"].startswith("application/json"):
        return dict(response.json())
    for line in response.text.splitlines():
        if line.startswith("data:"):
            return dict(json.loads(line[5:]))
    raise AssertionError(f"no answer in {response.text[:300]!r}")


async def test_two_replicas_answer_one_client_in_turn_with_one_token(settings, cluster, namespace):
    states.make_pod(cluster.core, namespace, "web-0")
    shared = stateless(settings)
    token = add_token(shared, "team", "read")  # one store, one token, both replicas
    async with serving(shared) as a, serving(shared) as b:
        balancer = RoundRobin([a, b])
        http = httpx.AsyncClient(transport=balancer, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        with anyio.fail_after(HANG_GUARD):
            async with (
                http,
                streamable_http_client(a, http_client=http) as (read, write, _),
                ClientSession(read, write) as client,
            ):
                await client.initialize()
                listed = await client.list_tools()
                pods = await client.call_tool("pods_list", {"namespace": namespace})
                overview = await client.call_tool("cluster_overview", {})
                again = await client.call_tool("pods_list", {"namespace": namespace})
    assert {"pods_list", "cluster_overview", "diagnose"} <= {t.name for t in listed.tools}
    assert not pods.isError and not overview.isError and not again.isError, (pods.content, overview.content)
    assert "web-0" in pods.content[0].text and "web-0" in again.content[0].text  # type: ignore[union-attr]
    assert overview.structuredContent and overview.structuredContent["nodes"]["total"] >= 3
    by_replica = {r: [m for rr, m in balancer.seen if rr == r] for r in (0, 1)}
    assert "initialize" in by_replica[0] and "initialize" not in by_replica[1]
    assert "tools/call" in by_replica[1]  # replica B answered calls of a session it never saw begin


@pytest.mark.parametrize("json_response", [False, True])
async def test_a_replica_answers_a_call_without_the_clients_initialize(settings, cluster, namespace, json_response):
    states.make_pod(cluster.core, namespace, "web-0")
    shared = stateless(settings, json_response=json_response)
    token = add_token(shared, "team", "read")
    call = post("tools/call", {"name": "pods_list", "arguments": {"namespace": namespace}}, request_id=7)
    headers = {**MCP_HEADERS, "mcp-protocol-version": "2025-06-18"}
    async with serving(shared) as url, httpx.AsyncClient(timeout=60) as http:
        with anyio.fail_after(HANG_GUARD):
            anonymous = await http.post(url, json=call, headers=headers)
            answered = await http.post(url, json=call, headers={**headers, "Authorization": f"Bearer {token}"})
    assert anonymous.status_code == 401  # stateless or not, every request shows its token
    assert answered.status_code == 200, answered.text
    assert "mcp-session-id" not in answered.headers  # nothing to come back to
    expected = "application/json" if json_response else "text/event-stream"
    assert answered.headers["content-type"].startswith(expected)
    found = answer_of(answered)
    assert found["id"] == 7 and not found["result"].get("isError"), found
    assert "web-0" in found["result"]["content"][0]["text"]


async def test_the_runtime_outlives_every_request_and_closes_once_when_the_server_stops(settings, cluster):
    shared = stateless(settings)
    runtime = Runtime(shared)
    closed: list[int] = []
    close = runtime.close

    def counted_close() -> None:
        closed.append(1)
        close()

    runtime.close = counted_close  # type: ignore[method-assign]
    async with serving(shared, runtime) as url:
        with anyio.fail_after(HANG_GUARD):
            async with (
                httpx.AsyncClient(timeout=60) as http,
                streamable_http_client(url, http_client=http) as (read, write, _),
                ClientSession(read, write) as client,
            ):
                await client.initialize()
                for _ in range(3):
                    assert not (await client.call_tool("cluster_info", {})).isError
                during = len(closed)
                connection = runtime.clusters.cached(None)
                assert not (await client.call_tool("cluster_info", {})).isError
                assert runtime.clusters.cached(None) is connection  # the same open connection, not a new one
    # each stateless request runs the SDK's per-session lifespan; none of them may close the shared runtime
    assert during == 0
    assert len(closed) == 1  # when the server stopped


async def test_a_plan_is_refused_at_once_with_the_ways_to_approve_it_instead_of_asking(write_settings, api, namespace):
    deploy(api, namespace, ready=False)
    shared = stateless(write_settings)
    token = add_token(shared, "oncall", "write")
    asked: list[str] = []

    async def approve(context: RequestContext[Any, Any], params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)  # would approve, if a stateless server could ask
        return ElicitResult(action="accept", content={"approve": True})

    async with serving(shared) as url:
        with anyio.fail_after(HANG_GUARD):
            async with (
                httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
                streamable_http_client(url, http_client=http) as (read, write, _),
                ClientSession(read, write, elicitation_callback=approve) as client,
            ):
                await client.initialize()
                plan = await client.call_tool(
                    "scale", {"kind": "Deployment", "name": "web", "namespace": namespace, "replicas": 0}
                )
                assert not plan.isError, plan.content
                plan_id = plan.structuredContent["plan_id"]  # type: ignore[index]
                applied = await client.call_tool("fix_apply", {"plan_id": plan_id})
    text = applied.content[0].text  # type: ignore[union-attr]
    assert applied.isError and "server.stateless_http" in text and "elicitation" in text, text
    assert "fix.auto_approve" in text and "cloudpilot approvals approve" in text
    assert asked == []
    assert deployment(api, namespace)["spec"]["replicas"] == 2  # nothing applied
    store = Store(shared.store.path)
    try:
        planned = AuditLog(store).entries(plan_id=plan_id, event="planned")
    finally:
        store.close()
    assert planned and planned[0].principal == "oncall (token)"
    assert planned[0].client.startswith("http:python-httpx/")  # no initialize seen: the client's User-Agent
