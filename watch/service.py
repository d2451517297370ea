"""`cloudpilot watch` (and the server, with `watch.in_server`): the Kubernetes watches of the configured clusters and
the HTTP receivers, feeding one pipeline, with a ticker that resolves what went quiet or was fixed.

Per cluster it watches Events (the critical reasons), Pods, Nodes and workloads (states that are broken: a pod in
ImagePullBackOff, a node not Ready, a rollout past its deadline) and workloads, ConfigMaps, Secrets and Istio config
(the change history: what changed before it broke). Each watch resumes from where it was and relists on 410 Gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import uvicorn

import notifiers
from agents.api import Team
from connections.kube import Connection, ResourceInfo
from engines.incidents import Signal
from engines.incidents.policy import Policy
from errors import PermanentError
from runtime import Runtime
from watch.kube import Watch
from watch.pipeline import Pipeline
from watch.receivers import receivers
from watch.signals import States, from_kube_event

logger = logging.getLogger(__name__)

QUEUE = 100_000  # signals waiting for the pipeline; beyond this they are dropped and counted (memory stays flat)
TICK_SECONDS = 5.0


@dataclass(frozen=True)
class Source:
    kind: str
    group: str  # the API group ("" for the core group); the version is the one the cluster prefers
    resource: str
    switch: str  # the `watch.sources` entry that switches it on
    states: bool = False  # broken states become signals
    history: bool = False  # versions go into the change history


SOURCES = (
    Source("Event", "", "events", "events"),
    Source("Pod", "", "pods", "pods", states=True),
    Source("Node", "", "nodes", "nodes", states=True),
    Source("Deployment", "apps", "deployments", "workloads", states=True, history=True),
    Source("StatefulSet", "apps", "statefulsets", "workloads", states=True, history=True),
    Source("DaemonSet", "apps", "daemonsets", "workloads", states=True, history=True),
    Source("ConfigMap", "", "configmaps", "configmaps", history=True),
    Source("Secret", "", "secrets", "secrets", history=True),
    *(
        Source(kind, group, resource, "istio", history=True)
        for group, kinds in {
            "networking.istio.io": (("VirtualService", "virtualservices"), ("DestinationRule", "destinationrules"),
                                    ("Gateway", "gateways"), ("ServiceEntry", "serviceentries"),
                                    ("Sidecar", "sidecars")),
            "security.istio.io": (("PeerAuthentication", "peerauthentications"),
                                  ("AuthorizationPolicy", "authorizationpolicies")),
        }.items()
        for kind, resource in kinds
    ),
)  # fmt: skip


async def serve(runtime: Runtime, policy: Policy | None = None) -> None:
    """The whole event pipeline until cancelled: watches and receivers, the team that investigates, and one outbox
    shared by the team, the pipeline and its worker. `cloudpilot watch` runs it; so does the server with
    `watch.in_server`, passing the `policy` it checked before starting (None: read `watch.policy_file`)."""
    outbox = notifiers.outbox_from_settings(runtime.settings, runtime.store)
    sinks = notifiers.from_settings(runtime.settings, runtime.store, outbox)
    async with Team.open(runtime, sinks=sinks) as team, anyio.create_task_group() as tg:
        tg.start_soon(Service(runtime, Pipeline(runtime, team=team, sinks=sinks, policy=policy)).run)
        if outbox is not None:
            tg.start_soon(outbox.run)


class Service:
    def __init__(self, runtime: Runtime, pipeline: Pipeline) -> None:
        self.runtime, self.pipeline = runtime, pipeline
        self.states = States(runtime.settings.watch)
        self.watches: list[Watch] = []
        self.dropped = 0
        self.started = False  # every watch has been started (each lists first, then watches)

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

        def observe(cluster: str, source: Source, event: str, obj: dict[str, Any]) -> None:  # on the loop
            at = self.pipeline.clock()
            if source.history:
                self.pipeline.history.observe(cluster, source.kind, obj, at, event)
            if source.states:
                for s in self.states.take(cluster, source.kind, event, obj, at):
                    offer(s)

        def deliver_for(cluster: str, source: Source) -> Callable[[str, dict[str, Any]], None]:
            def deliver(event: str, obj: dict[str, Any]) -> None:  # on the watch's thread
                if stop.is_set():
                    return
                with contextlib.suppress(RuntimeError):  # the loop closed while this thread held an event
                    if source.kind != "Event":
                        loop.call_soon_threadsafe(observe, cluster, source, event, obj)
                    elif event != "DELETED" and (signal := from_kube_event(obj, cluster, settings.watch)):
                        loop.call_soon_threadsafe(offer, signal)

            return deliver

        threads = []
        for name in settings.watch.clusters or [self.runtime.clusters.default_name()]:
            conn = self.runtime.clusters.get(name)
            wanted = [s for s in SOURCES if s.switch in settings.watch.sources]
            for source, info in await anyio.to_thread.run_sync(served, conn, wanted):
                for path in self._paths(info):
                    watch = Watch(conn, path)
                    self.watches.append(watch)
                    thread = threading.Thread(
                        target=_run, args=(watch, deliver_for(conn.name, source), stop), daemon=True
                    )
                    thread.start()
                    threads.append(thread)
        self.started = True

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
            for watch in self.watches:
                watch.close()
            for thread in threads:
                with contextlib.suppress(RuntimeError):
                    thread.join(1)

    @property
    def listening(self) -> bool:
        """Every watch has listed its collection and is watching from there."""
        return self.started and all(w.resource_version or w.stopped for w in self.watches)

    def _paths(self, info: ResourceInfo) -> list[str]:
        namespaces = self.runtime.settings.watch.namespaces
        if not info.namespaced or not namespaces:
            return [info.path()]
        return [info.path(ns) for ns in namespaces]


def served(conn: Connection, sources: list[Source]) -> list[tuple[Source, ResourceInfo]]:
    """The sources this cluster serves, through its (cached) discovery: Istio's only where Istio is installed."""
    infos = {(r.group, r.resource): r for r in conn.resources()}
    found = []
    for source in sources:
        info = infos.get((source.group, source.resource))
        if info is None:
            logger.info("watch: cluster %s does not serve %s; not watched", conn.name, source.kind)
        else:
            found.append((source, info))
    return found


def _run(watch: Watch, deliver: Callable[[str, dict[str, Any]], None], stop: threading.Event) -> None:
    """A watch's thread: a watch the server refuses (403: no RBAC for it, 404: the kind is not served) is switched
    off with a warning; the others go on."""
    started = time.monotonic()
    try:
        watch.run(deliver, stop)
    except PermanentError as exc:
        watch.stopped = exc.message
        logger.warning("watch %s is off after %.0f s: %s", watch.path, time.monotonic() - started, exc.message)
    except Exception as exc:
        watch.stopped = type(exc).__name__
        logger.exception("watch %s stopped", watch.path)
