"""The load benchmark's own parts (benchmarks/balancer.py, benchmarks/http_load.py), end to end for a couple of
seconds: its clients through its balancer to two stateless replicas, a replica gone between two health checks
(its requests go to the other one), and a backend that fails a request it received (passed on, never retried).
Figures are the benchmark's business; this only checks that what it counts is true."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest

from benchmarks import http_load
from benchmarks.balancer import Balancer
from tests.cluster import states
from tests.security.test_http_auth import add_token
from tests.serving import free_port, uvicorn_serving
from tests.test_stateless import HANG_GUARD, serving, stateless

pytestmark = pytest.mark.timeout(180)


@asynccontextmanager
async def balancing(backends: list[str], check_seconds: float) -> AsyncIterator[tuple[str, Balancer]]:
    """The benchmark's balancer, served by uvicorn in this event loop; yields its URL and the app."""
    port = free_port()
    app = Balancer(backends, check_seconds=check_seconds)
    async with uvicorn_serving(app, port, HANG_GUARD):
        yield f"http://127.0.0.1:{port}", app


async def test_clients_through_the_balancer_lose_nothing_when_a_replica_goes_away(settings, cluster, namespace):
    for i in range(3):
        states.make_pod(cluster.core, namespace, f"web-{i}")
    shared = stateless(settings)
    token = add_token(shared, "load", "read")
    calls = [("pods_list", {"namespace": namespace}), ("cluster_overview", {})]
    async with serving(shared) as a, serving(shared) as b:
        gone_stop = anyio.Event()
        gone_url: list[str] = []

        async def short_lived() -> None:
            async with serving(shared) as c:
                gone_url.append(c)
                await gone_stop.wait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(short_lived)
            with anyio.fail_after(HANG_GUARD):
                while not gone_url:
                    await anyio.sleep(0.02)
            backends = [u.removesuffix("/mcp") for u in (a, b, gone_url[0])]
            # checks far apart: the balancer still counts the third replica as ready after it has gone
            async with balancing(backends, check_seconds=3600) as (url, app):
                assert [x.ready for x in app.backends] == [True, True, True]
                gone_stop.set()
                with anyio.fail_after(HANG_GUARD):
                    while True:  # until its port refuses connections
                        with socket.socket() as s:
                            if s.connect_ex(("127.0.0.1", int(backends[2].rsplit(":", 1)[1]))) != 0:
                                break
                        await anyio.sleep(0.05)
                tally = await http_load.load(f"{url}/mcp", token, calls, clients=2, seconds=2)
    assert tally.failures == []
    assert len(tally.latencies) >= 4  # it ran: each client made calls in the window
    assert app.stats["retried"] >= 1  # the first request sent to the gone replica was refused, then retried
    assert app.backends[2].ready is False and app.backends[2].forwarded == 0
    assert app.backends[0].forwarded > 0 and app.backends[1].forwarded > 0
    assert app.stats["backend_errors"] == app.stats["cut"] == app.stats["unavailable"] == 0


async def test_a_request_that_reached_a_backend_and_failed_there_is_not_retried():
    received: list[bytes] = []

    async def hang_up(stream: anyio.abc.SocketStream) -> None:  # reads a request, closes without an answer
        async with stream:
            data = await stream.receive()
            if not data.startswith(b"GET /readyz"):
                received.append(data)
            else:
                await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")

    async def fine(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")

    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1") as failing,
        await anyio.create_tcp_listener(local_host="127.0.0.1") as healthy,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(failing.serve, hang_up)
        tg.start_soon(healthy.serve, fine)
        ports = [s.extra(anyio.abc.SocketAttribute.local_port) for s in (failing, healthy)]
        async with (
            balancing([f"http://127.0.0.1:{p}" for p in ports], check_seconds=3600) as (url, app),
            httpx.AsyncClient(timeout=30) as http,
        ):
            first = await http.post(f"{url}/mcp", content=b"{}")  # the failing backend's turn
            second = await http.post(f"{url}/mcp", content=b"{}")  # the healthy one's
        tg.cancel_scope.cancel()
    assert first.status_code == 502 and second.status_code == 200 and second.text == "ok"
    assert len(received) == 1  # the failed request reached its backend once, and went nowhere else
    assert app.stats["retried"] == 0 and app.stats["backend_errors"] == 1
    assert [b.forwarded for b in app.backends] == [1, 1]


async def test_a_backend_whose_readyz_fails_gets_no_request_until_it_is_ready_again():
    ready = {"draining": True}
    served: list[int] = []

    def backend(index: int) -> Callable[[anyio.abc.SocketStream], Awaitable[None]]:
        async def answer(stream: anyio.abc.SocketStream) -> None:  # one request per connection
            async with stream:
                request = await stream.receive()
                if request.startswith(b"GET /readyz"):
                    status = b"503 Service Unavailable" if index == 0 and ready["draining"] else b"200 OK"
                    await stream.send(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    return
                served.append(index)
                await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")

        return answer

    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1") as draining,
        await anyio.create_tcp_listener(local_host="127.0.0.1") as healthy,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(draining.serve, backend(0))
        tg.start_soon(healthy.serve, backend(1))
        ports = [s.extra(anyio.abc.SocketAttribute.local_port) for s in (draining, healthy)]
        async with (
            balancing([f"http://127.0.0.1:{p}" for p in ports], check_seconds=3600) as (url, app),
            httpx.AsyncClient(timeout=30) as http,
        ):
            while_draining = [(await http.post(f"{url}/mcp", content=b"{}")).status_code for _ in range(4)]
            assert served == [1, 1, 1, 1]
            ready["draining"] = False  # the replacement answers /readyz: it joins at the next check
            await app.check()
            again = [(await http.post(f"{url}/mcp", content=b"{}")).status_code for _ in range(4)]
        tg.cancel_scope.cancel()
    assert while_draining == again == [200] * 4
    assert sorted(served[4:]) == [0, 0, 1, 1]  # round robin over both again
    assert app.stats["retried"] == app.stats["backend_errors"] == 0
