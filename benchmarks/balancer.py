"""A small round-robin HTTP load balancer for the load benchmark (benchmarks/http_load.py): what a Kubernetes
Service does in front of a Deployment's pods, at the level of single requests.

- Each request goes to the next *serving* backend: ready on its last `/readyz` check and not taken out.
- Every backend's `/readyz` is checked every `check_seconds`: a replica that stops, or drains (its /readyz says
  503), leaves the rotation; one that answers again joins it.
- A request is retried on the next backend only when no connection could be made (it never reached a backend).
  A request that reached a backend and failed there (an error status, a reset, an answer cut short) is passed on
  to the client as it is and never retried: retrying would hide exactly the failures the benchmark counts.
- `POST /-/backends/<i>/out` takes backend i out of the rotation (with `?busy=1`: at a moment when it has
  requests in flight) and `.../in` lets it back (as the endpoints of a
  pod marked for deletion, and of its replacement), answering the backend's state (its requests in flight
  included); `GET /-/stats` counts what happened.

It runs as a process of its own, so that its CPU is not the clients':

    python -m benchmarks.balancer --port 9000 http://127.0.0.1:8001 http://127.0.0.1:8002
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import uvicorn
from starlette.types import Message, Receive, Scope, Send

logger = logging.getLogger("balancer")

HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"content-length",
}
MAX_BODY = 4 << 20  # the MCP SDK's own request limit
CONNECT_FAILURES = (httpx.ConnectError, httpx.ConnectTimeout)  # nothing reached the backend: safe to retry


@dataclass
class Backend:
    url: str
    ready: bool = False  # its last /readyz answered 200
    out: bool = False  # taken out of the rotation (a pod marked for deletion)
    forwarded: int = 0  # requests it received
    in_flight: int = 0  # requests it received whose answer has not been passed on in full yet

    @property
    def serving(self) -> bool:
        return self.ready and not self.out


class Balancer:
    """The ASGI app: proxy, health checks and the admin paths under /-/."""

    def __init__(self, backends: list[str], check_seconds: float = 0.5, read_timeout: float = 120.0) -> None:
        self.backends = [Backend(url.rstrip("/")) for url in backends]
        self.check_seconds = check_seconds
        self.read_timeout = read_timeout
        self.stats = {"requests": 0, "retried": 0, "backend_errors": 0, "cut": 0, "unavailable": 0}
        self.errors: list[str] = []  # the first few backend errors, for the report: which backend, what
        self._turn = 0
        self._http: httpx.AsyncClient | None = None

    # -- ASGI ----------------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http" and scope["path"].startswith("/-/"):
            await self._admin(scope, send)
        elif scope["type"] == "http":
            await self._proxy(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=128)
        timeout = httpx.Timeout(self.read_timeout, connect=2.0)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as http, anyio.create_task_group() as tg:
            self._http = http
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self.check()
                    tg.start_soon(self._checks)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    tg.cancel_scope.cancel()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    # -- health ----------------------------------------------------------------------------------------------
    async def check(self) -> None:
        """One /readyz round over every backend, concurrently."""

        async def one(backend: Backend) -> None:
            try:
                assert self._http is not None
                answer = await self._http.get(backend.url + "/readyz", timeout=2.0)
                backend.ready = answer.status_code == 200
            except httpx.HTTPError:
                backend.ready = False

        async with anyio.create_task_group() as tg:
            for backend in self.backends:
                tg.start_soon(one, backend)

    async def _checks(self) -> None:
        while True:
            await anyio.sleep(self.check_seconds)
            await self.check()

    # -- proxy -----------------------------------------------------------------------------------------------
    def order(self) -> list[Backend]:
        """The serving backends, starting with the next one's turn (round robin), the others as fallbacks."""
        serving = [b for b in self.backends if b.serving]
        if not serving:
            return []
        start = self._turn % len(serving)
        self._turn += 1
        return serving[start:] + serving[:start]

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.stats["requests"] += 1
        body = await _body(receive)
        if body is None:
            await _plain(send, 413, b"request body too large\n")
            return
        path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        target = path.decode("latin-1") + (("?" + query.decode("latin-1")) if query else "")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
        assert self._http is not None
        for backend in self.order():
            request = self._http.build_request(scope["method"], backend.url + target, headers=headers, content=body)
            backend.in_flight += 1
            try:
                try:
                    response = await self._http.send(request, stream=True)
                except CONNECT_FAILURES:
                    backend.ready = False  # refused: out of the rotation until a check finds it ready again
                    self.stats["retried"] += 1
                    continue
                except httpx.HTTPError as e:  # it reached the backend, which failed to answer: the client sees a 502
                    backend.forwarded += 1
                    self.stats["backend_errors"] += 1
                    self._note(backend, f"{type(e).__name__}: {e}")
                    await _plain(send, 502, b"the backend failed to answer\n")
                    return
                backend.forwarded += 1
                await self._relay(response, send, backend)
                return
            finally:
                backend.in_flight -= 1
        self.stats["unavailable"] += 1
        await _plain(send, 503, b"no backend is serving\n")

    def _note(self, backend: Backend, what: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(f"backend {self.backends.index(backend)}: {what}"[:300])

    async def _relay(self, response: httpx.Response, send: Send, backend: Backend) -> None:
        """Stream the backend's answer (an SSE stream included) to the client; an answer cut short by the backend
        is cut short for the client too (the connection closes without the end of the body)."""
        if response.status_code >= 500:
            self.stats["backend_errors"] += 1
            self._note(backend, f"status {response.status_code}")
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]
        try:
            await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except httpx.HTTPError as e:
            self.stats["cut"] += 1  # returning without the end of the body makes uvicorn drop the connection
            self._note(backend, f"answer cut: {type(e).__name__}: {e}")
        finally:
            await response.aclose()

    # -- admin -----------------------------------------------------------------------------------------------
    async def _admin(self, scope: Scope, send: Send) -> None:
        parts = scope["path"].strip("/").split("/")  # -, backends, <i>, out|in
        if scope["method"] == "GET" and parts == ["-", "stats"]:
            body = {**self.stats, "errors": self.errors, "backends": [vars(b) for b in self.backends]}
            await _plain(send, 200, json.dumps(body).encode(), b"application/json")
            return
        if scope["method"] == "POST" and len(parts) == 4 and parts[1] == "backends" and parts[3] in ("out", "in"):
            try:
                backend = self.backends[int(parts[2])]
            except (ValueError, IndexError):
                await _plain(send, 404, b"no such backend\n")
                return
            if parts[3] == "out" and b"busy=1" in scope.get("query_string", b""):
                with anyio.move_on_after(10):  # a moment when it has requests in flight (the drain's worst case)
                    while backend.in_flight == 0:
                        await anyio.sleep(0.001)
            backend.out = parts[3] == "out"
            await _plain(send, 200, json.dumps(vars(backend)).encode(), b"application/json")
            return
        await _plain(send, 404, b"unknown admin path\n")


async def _body(receive: Receive) -> bytes | None:
    """The whole request body, or None past MAX_BODY (MCP requests are small JSON documents)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _plain(send: Send, status: int, body: bytes, content_type: bytes = b"text/plain") -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--check-seconds", type=float, default=0.5, help="time between /readyz checks of a backend")
    p.add_argument("backends", nargs="+", help="base URLs of the replicas, e.g. http://127.0.0.1:8001")
    args = p.parse_args(argv)
    app: Any = Balancer(args.backends, check_seconds=args.check_seconds)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
