"""Heavy answers must not starve other callers: 30 token-authenticated clients read over streamable HTTP while
another reads a 1 MB ConfigMap and a hostile 1 MB container log, again and again.

The only latency bound the suite asserts (the issue demands it): the 30 readers' p99 stays under 2 s. The server
runs in its own process and the readers pause briefly between calls, as a model does, so what is measured is
whether a heavy answer blocks the server's event loop (a 1.5 s stall per heavy call takes p99 past 10 s), not
how fast one process can fire 30 back-to-back loops. Everything is on 127.0.0.1, bounded in calls and in time."""

from __future__ import annotations

import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from settings import Settings
from tests.cluster import states
from tests.security.test_http_auth import INITIALIZE, MCP_HEADERS, add_token
from tests.serving import free_port

REPO = Path(__file__).resolve().parents[2]

READERS = 30
CALLS_EACH = 6
HEAVY_ROUNDS = 40  # upper bound; the heavy client stops as soon as the readers are done
P99_LIMIT_SECONDS = 2.0
THINK_SECONDS = 0.25  # a reader's pause between calls (a model reads each answer before the next call)


def hostile_log(size: int = 1 << 20) -> str:
    """Lines of long hex runs and credential-looking fragments: the masker's worst food."""
    lines: list[str] = []
    total = 0
    i = 0
    while total < size:
        if i % 3 == 0:
            line = f"{i} token={secrets.token_hex(1024)} password=hunter{i} api_key=" + "a1" * 300
        elif i % 3 == 1:
            line = f"{i} " + " ".join(secrets.token_hex(64) for _ in range(30))
        else:
            line = f"{i} " + "password=" * 200 + "0" * 1500
        lines.append(line)
        total += len(line) + 1
        i += 1
    return "\n".join(lines) + "\n"


class Client:
    """A bare MCP client over streamable HTTP (JSON-RPC posts, SSE answers): the SDK client spends ~30 ms of CPU
    per call validating and modelling, which 30 of them in one test process would measure instead of the server."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(timeout=120, headers={"Authorization": f"Bearer {token}", **MCP_HEADERS})
        self.ids = 0

    async def __aenter__(self) -> Client:
        opened = await self.http.post(self.url, json=INITIALIZE)
        opened.raise_for_status()
        version = self._answer(opened.text, 1)["result"]["protocolVersion"]
        self.http.headers.update({"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": version})
        ready = await self.http.post(self.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert ready.status_code == 202, ready.text
        self.ids = 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.http.delete(self.url)
        finally:
            await self.http.aclose()

    async def call(self, tool: str, arguments: dict[str, Any]) -> tuple[str, bool]:
        """(the answer's text, whether it is an error)."""
        self.ids += 1
        body = {
            "jsonrpc": "2.0",
            "id": self.ids,
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments},
        }
        answer = await self.http.post(self.url, json=body)
        answer.raise_for_status()
        result = self._answer(answer.text, self.ids)["result"]
        return "".join(c.get("text", "") for c in result["content"]), bool(result.get("isError"))

    @staticmethod
    def _answer(stream: str, request_id: int) -> dict[str, Any]:
        for line in stream.splitlines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("id") == request_id:
                    return dict(message)
        raise AssertionError(f"no answer to request {request_id} in {stream[:300]!r}")


@pytest.mark.timeout(400)
async def test_thirty_readers_keep_p99_under_two_seconds_beside_megabyte_answers(settings, cluster, namespace):
    cp = cluster.require_control_plane()
    core = cluster.core
    chunk = secrets.token_hex(125_000)  # 250 kB of hex per key, ~1 MB in all (a ConfigMap's limit is 1 MiB)
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "big"}, "data": {f"blob{i}": chunk for i in range(4)}}
    )
    states.make_pod(core, namespace, "noisy")
    cp.kubelet.set_log(namespace, "noisy", "main", hostile_log())
    for i in range(5):
        states.make_pod(core, namespace, f"web-{i}")
    http_settings = settings.model_copy(update={"server": settings.server.model_copy(update={"transport": "http"})})
    token = add_token(http_settings, "load", "read")

    latencies: list[float] = []
    heavy_calls = 0
    heavy_running = anyio.Event()
    readers_done = anyio.Event()

    async with server_process(http_settings) as url:
        async with Client(url, token) as warm:  # first connection and caches, outside the measurement
            for tool, args in reads(namespace, 0)[:2]:
                text, failed = await warm.call(tool, args)
                assert not failed, text

        async def heavy() -> None:
            nonlocal heavy_calls
            big = {"kind": "ConfigMap", "name": "big", "namespace": namespace}
            log = {"name": "noisy", "namespace": namespace, "tail_lines": 10000}
            async with Client(url, token) as client:
                for n in range(HEAVY_ROUNDS):
                    if readers_done.is_set():
                        break
                    text, failed = await client.call(*(("resource_get", big) if n % 2 == 0 else ("pod_logs", log)))
                    assert not failed and len(text) > 20_000, text[:500]
                    assert "hunter" not in text
                    heavy_calls += 1
                    heavy_running.set()

        async def reader(i: int) -> None:
            async with Client(url, token) as client:
                await heavy_running.wait()
                await anyio.sleep(random.uniform(0, THINK_SECONDS))  # clients arrive spread out, not in lockstep
                for tool, args in reads(namespace, i):
                    await anyio.sleep(THINK_SECONDS)
                    started = time.perf_counter()
                    text, failed = await client.call(tool, args)
                    latencies.append(time.perf_counter() - started)
                    assert not failed, text

        with anyio.fail_after(300):
            async with anyio.create_task_group() as outer:
                outer.start_soon(heavy)
                async with anyio.create_task_group() as tg:
                    for i in range(READERS):
                        tg.start_soon(reader, i)
                readers_done.set()

    assert len(latencies) == READERS * CALLS_EACH and heavy_calls >= 2
    p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98]
    summary = f"p50 {statistics.median(latencies):.3f}s p99 {p99:.3f}s max {max(latencies):.3f}s, heavy {heavy_calls}"
    print(summary)
    assert p99 < P99_LIMIT_SECONDS, summary


@asynccontextmanager
async def server_process(settings: Settings) -> AsyncIterator[str]:
    """`server.py --transport http` in its own process (as deployed), so the clients' work is not measured."""
    port = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(settings.k8s.kubeconfig),
        "CLOUDPILOT_STORE__PATH": str(settings.store.path),
        "CLOUDPILOT_LOG_LEVEL": "WARNING",
    }
    argv = [sys.executable, str(REPO / "server.py"), "--transport", "http", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with anyio.fail_after(60):
            while not accepts(port):
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                await anyio.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def reads(namespace: str, i: int) -> list[tuple[str, dict[str, Any]]]:
    """A reader's calls: pods_list and cluster_overview, alternating (starting with either)."""
    calls = [("pods_list", {"namespace": namespace}), ("cluster_overview", {})]
    return [calls[(i + n) % 2] for n in range(CALLS_EACH)]
