"""`cloudpilot watch`: the Kubernetes watches of the configured clusters and the HTTP receivers, feeding one
pipeline, with a ticker that resolves what went quiet or was fixed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

import anyio
import uvicorn

from engines.incidents import Signal
from runtime import Runtime
from watch.kube import Watch
from watch.pipeline import Pipeline
from watch.receivers import receivers
from watch.signals import from_kube_event

logger = logging.getLogger(__name__)

QUEUE = 100_000  # signals waiting for the pipeline; beyond this they are dropped and counted (memory stays flat)
TICK_SECONDS = 5.0


class Service:
    def __init__(self, runtime: Runtime, pipeline: Pipeline) -> None:
        self.runtime, self.pipeline = runtime, pipeline
        self.watches: list[Watch] = []
        self.dropped = 0

    async def run(self, *, http: bool = True) -> None:
        """Watch, receive and tick until cancelled."""
        settings = self.runtime.settings
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Signal] = asyncio.Queue(QUEUE)
        stop = threading.Event()

        def offer(s: Signal) -> None:
            try:
                queue.put_nowait(s)
            except asyncio.QueueFull:
                self.dropped += 1

        def deliver_for(cluster: str) -> Any:
            def deliver(kind: str, obj: dict[str, Any]) -> None:
                if kind == "DELETED":
                    return
                signal = from_kube_event(obj, cluster, settings.watch)
                if signal is not None:
                    loop.call_soon_threadsafe(offer, signal)

            return deliver

        threads = []
        for name in settings.watch.clusters or [self.runtime.clusters.default_name()]:
            conn = self.runtime.clusters.get(name)
            paths = [f"/api/v1/namespaces/{ns}/events" for ns in settings.watch.namespaces] or ["/api/v1/events"]
            for path in paths:
                watch = Watch(conn, path)
                self.watches.append(watch)
                thread = threading.Thread(target=watch.run, args=(deliver_for(conn.name), stop), daemon=True)
                thread.start()
                threads.append(thread)

        async def consume() -> None:
            while True:
                await self.pipeline.take(await queue.get())

        async def tick() -> None:
            while True:
                await anyio.sleep(TICK_SECONDS)
                await self.pipeline.tick()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                tg.start_soon(tick)
                token = settings.watch.token.get_secret_value() if settings.watch.token else ""
                if http and token:
                    default = (
                        settings.watch.clusters[0] if settings.watch.clusters else self.runtime.clusters.default_name()
                    )
                    app = receivers(self.pipeline, default, token, settings.watch.max_body_bytes)
                    config = uvicorn.Config(
                        app, host=settings.watch.host, port=settings.watch.port, log_level="warning"
                    )
                    tg.start_soon(uvicorn.Server(config).serve)
                elif http:
                    logger.warning("watch.token is not set: the Alertmanager and /events receivers are off")
        finally:
            stop.set()
            for thread in threads:
                with contextlib.suppress(RuntimeError):
                    thread.join(1)
