"""The operational face of the MCP server over HTTP: probes, metrics and the drain on SIGTERM.

    GET /healthz   200 while the process serves HTTP                      no token, no Host check
    GET /readyz    200 when the store and the default cluster answer,     no token, no Host check
                   else 503 naming the component and a reason class (ops/health.py)
    GET /metrics   Prometheus text format (ops/metrics.py)                a token with read scope when bearer
                                                                          auth is on, unless server.metrics_public

Probes and scrapes arrive with the pod's IP as Host, so the Host/Origin allow-list (which guards /mcp against
DNS rebinding) does not apply to them; none of them changes anything or says anything sensitive.

Draining: uvicorn, on SIGTERM, stops accepting connections and waits for the open ones to close; sse-starlette
would by default end every open event stream at once, the POST stream that carries a running tool call's answer
included. `Operations.install(..., grace_seconds=…)` turns that off for this process and, on SIGTERM, waits for
the in-flight `POST /mcp` requests to finish (at most the grace period), then ends the remaining streams (the
clients' idle GET streams), so uvicorn can finish shutting down.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any

import anyio
from mcp.server.auth.middleware.bearer_auth import RequireAuthMiddleware
from mcp.server.auth.settings import AuthSettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ops.health import Readiness
from ops.metrics import CONTENT_TYPE, Metrics
from runtime import Runtime

logger = logging.getLogger("cloudpilot.ops")

NO_STORE = {"Cache-Control": "no-store"}
POLL_SECONDS = 0.1


class Operations:
    """Probes, metrics and draining for one MCP server."""

    def __init__(self, runtime: Runtime, metrics: Metrics) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.readiness = Readiness(runtime, metrics)
        self.in_flight = 0  # POST /mcp requests whose answer is not sent yet
        self.grace_seconds: float | None = None  # set by `arm`: drain on SIGTERM
        self.started = False  # the app's lifespan has started: uvicorn serves
        self._drain_asked = False

    def arm(self, grace_seconds: float) -> None:
        """Drain on SIGTERM (or SIGINT) for up to `grace_seconds`: for the server's own process only, since it
        changes process-wide state (signal handlers, sse-starlette's shutdown switch)."""
        self.grace_seconds = grace_seconds

    def drain(self) -> None:
        """Begin draining now, as SIGTERM does (safe to call from a signal handler: it only sets a flag)."""
        self._drain_asked = True

    # -- the app -------------------------------------------------------------------------------------------
    def install(self, app: Starlette, *, mcp_path: str, auth: AuthSettings | None) -> None:
        """Add the routes, the in-flight count and the drain to FastMCP's Starlette app; `auth` is the app's own
        bearer auth (None: off), which /metrics then asks for too, unless `server.metrics_public`."""
        metrics: ASGIApp = _MetricsApp(self.metrics)
        if auth is not None and not self.runtime.settings.server.metrics_public:
            metadata = None
            if auth.resource_server_url:
                from mcp.server.auth.routes import build_resource_metadata_url

                metadata = build_resource_metadata_url(auth.resource_server_url)
            metrics = RequireAuthMiddleware(metrics, list(auth.required_scopes or []), metadata)
        app.router.routes.extend(
            [
                Route("/healthz", self._healthz, methods=["GET"]),
                Route("/readyz", self._readyz, methods=["GET"]),
                Route("/metrics", metrics, methods=["GET"]),
            ]
        )
        app.add_middleware(_InFlight, ops=self, path=mcp_path)
        app.router.lifespan_context = self._lifespan(app.router.lifespan_context)

    async def _healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers=NO_STORE)

    async def _readyz(self, request: Request) -> Response:
        ready, body = await self.readiness.report()
        return JSONResponse(body, status_code=200 if ready else 503, headers=NO_STORE)

    # -- draining ------------------------------------------------------------------------------------------
    def _lifespan(
        self, inner: Callable[[Any], AbstractAsyncContextManager[Any]]
    ) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
        @asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[Any]:
            async with inner(app) as state:
                self.started = True
                if self.grace_seconds is None:
                    yield state
                    return
                restore = _on_signals((signal.SIGTERM, signal.SIGINT), self.drain)
                sse = _sse_status()
                if sse is not None:
                    sse.disable_automatic_graceful_drain()
                try:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._drain_when_asked, self.grace_seconds, sse)
                        try:
                            yield state
                        finally:
                            tg.cancel_scope.cancel()
                finally:
                    restore()
                    if sse is not None:  # the process is ending; leave sse-starlette as it was for any other server
                        sse.enable_automatic_graceful_drain_mode()
                        sse.should_exit = False

        return lifespan

    async def _drain_when_asked(self, grace: float, sse: Any) -> None:
        while not self._drain_asked:
            await anyio.sleep(POLL_SECONDS)
        self.readiness.draining = True
        deadline = time.monotonic() + grace
        if self.in_flight:
            logger.info("shutting down: finishing %d tool call(s) in flight (at most %gs)", self.in_flight, grace)
        while self.in_flight and time.monotonic() < deadline:
            await anyio.sleep(POLL_SECONDS)
        if self.in_flight:
            logger.warning("shutting down: grace period over, %d tool call(s) cut short", self.in_flight)
        else:
            logger.info("shutting down: no tool call in flight; closing the open streams")
        if sse is not None:
            sse.should_exit = True  # ends the open event streams (idle GET streams), so the connections close


class _MetricsApp:
    """GET /metrics as a plain ASGI app (so that the SDK's RequireAuthMiddleware can wrap it)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await anyio.to_thread.run_sync(self.metrics.exposition)
        await Response(body, media_type=CONTENT_TYPE, headers=NO_STORE)(scope, receive, send)


class _InFlight:
    """Counts the POST requests to the MCP endpoint whose answer is not fully sent (tool calls among them)."""

    def __init__(self, app: ASGIApp, ops: Operations, path: str) -> None:
        self.app = app
        self.ops = ops
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        self.ops.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.ops.in_flight -= 1


@contextmanager
def exit_normally_after_drain(ops: Operations) -> Iterator[None]:
    """Around the HTTP server's run in its own process: uvicorn handles SIGTERM while it serves and, once it has
    shut down, raises the signal again for the handler it found. That handler is this one: the process then ends
    normally (status 0) instead of dying of the signal. A SIGTERM before uvicorn serves ends it as by default."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if ops.started:  # drained and stopped: the caller returns and the process exits
            return
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _on_signals(signals: tuple[signal.Signals, ...], note: Callable[[], None]) -> Callable[[], None]:
    """Call `note` first when one of `signals` arrives, then the handler installed now (uvicorn's, which stops
    the server); returns how to put that handler back. Only in the main thread, where signal handlers live."""
    if threading.current_thread() is not threading.main_thread():
        logger.debug("not in the main thread: no drain on signals")
        return lambda: None
    installed: dict[signal.Signals, tuple[Any, Any]] = {}
    for sig in signals:
        previous = signal.getsignal(sig)
        if not callable(previous):  # the default or ignored: nobody stops gracefully, so nothing to chain to
            continue

        def handler(signum: int, frame: Any, previous: Callable[..., Any] = previous) -> None:
            note()
            previous(signum, frame)

        signal.signal(sig, handler)
        installed[sig] = (previous, handler)

    def restore() -> None:
        for sig, (previous, handler) in installed.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, previous)

    return restore


def _sse_status() -> Any:
    """sse-starlette's process-wide shutdown switch (the MCP SDK streams with it), if installed."""
    try:
        from sse_starlette.sse import AppStatus
    except ImportError:  # pragma: no cover - a dependency of mcp
        return None
    return AppStatus
