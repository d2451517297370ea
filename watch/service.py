"""`cloudpilot watch` (and the server, with `watch.in_server`): the Kubernetes watches of the configured clusters and
the HTTP receivers, feeding one pipeline, with a ticker that resolves what went quiet or was fixed.

Per cluster it watches Events (the critical reasons), Pods, Nodes and workloads (states that are broken: a pod in
ImagePullBackOff, a node not Ready, a rollout past its deadline) and workloads, ConfigMaps, Secrets and Istio config
(the change history: what changed before it broke). Each watch resumes from where it was and relists on 410 Gone.

With `watch.leader_election` several processes share the work: each cluster is watched only by the holder of its
Lease (`watch.leader`), which stores how far the pipeline got (`watch.takeover`); when the holder stops, another
takes over from there — no event lost, none handled twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn

import notifiers
from agents.api import Team
from connections.kube import Connection, ResourceInfo
from engines.incidents import Signal
from engines.incidents.policy import Policy
from errors import PermanentError, TemporaryError
from runtime import Runtime
from watch.kube import Checkpoint, Deliver, Watch
from watch.leader import Elector, identity
from watch.pipeline import Pipeline
from watch.receivers import receivers
from watch.signals import States, from_kube_event
from watch.takeover import Cursors, adopt, forget, remember

logger = logging.getLogger(__name__)

QUEUE = 100_000  # signals waiting for the pipeline; beyond this they are dropped and counted (memory stays flat)
TICK_SECONDS = 5.0
FLUSH_SECONDS = 1.0  # cursors are stored this often (a new leader re-reads at most about this much)
JOIN_SECONDS = 5.0  # a stopped watch's thread is waited for this long (a large list may still be arriving)


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


@dataclass(frozen=True)
class Mark:
    """A watch got this far: once the pipeline has taken everything queued before this, `version` is its cursor."""

    path: str
    version: str


class Term:
    """One stretch of leading a cluster (watch.leader_election). What was queued in it is dropped once it ends: the
    next leader starts from the stored cursors. `pending`: cursors the pipeline has reached, not yet stored."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self.live = True
        self.pending: dict[str, str] = {}


@dataclass
class Running:
    """A cluster's watches and their threads, stopped together."""

    stop: threading.Event = field(default_factory=threading.Event)
    watches: list[Watch] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def halt(self) -> None:
        """Stop at once: nothing more is delivered, and the requests in flight are ended."""
        self.stop.set()
        for watch in self.watches:
            watch.close()

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            with contextlib.suppress(RuntimeError):
                thread.join(timeout)


class Service:
    def __init__(self, runtime: Runtime, pipeline: Pipeline) -> None:
        self.runtime, self.pipeline = runtime, pipeline
        self.states = States(runtime.settings.watch)
        self.running: dict[str, Running] = {}  # cluster → its watches, while this process watches it
        self.electors: dict[str, Elector] = {}  # cluster → its Lease (watch.leader_election)
        self.terms: dict[str, Term] = {}  # cluster → the term this process leads it in
        self.cursors: Cursors | None = None  # with watch.leader_election
        self.identity = identity(runtime.settings)
        self.dropped = 0
        self.started = False  # every watch has been started (each lists first, then watches)
        self._queue: asyncio.Queue[tuple[Term | None, Signal | Mark]] = asyncio.Queue(QUEUE)
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def watches(self) -> list[Watch]:
        return [w for running in self.running.values() for w in running.watches]

    async def run(self, *, http: bool = True) -> None:
        """Watch, receive and tick until cancelled. With watch.leader_election a cluster is watched only while this
        process holds its Lease; the receivers serve either way."""
        settings = self.runtime.settings
        self._loop = asyncio.get_running_loop()
        names = settings.watch.clusters or [self.runtime.clusters.default_name()]
        elect = settings.watch.leader_election
        try:
            if elect:
                self.cursors = Cursors(self.runtime.store)
                home = self.runtime.clusters.get()  # the Leases live in the default (home) cluster
            else:
                for name in names:
                    await self._open(name, None, {})
            self.started = True
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._consume)
                tg.start_soon(self._tick)
                if elect:
                    tg.start_soon(self._store_cursors)
                    for name in names:
                        tg.start_soon(self._lead, name, home)
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
            for running in self.running.values():
                running.halt()
            for running in self.running.values():
                running.join(1)

    @property
    def listening(self) -> bool:
        """Every watch this process runs has listed its collection and is watching from there."""
        return self.started and all(w.resource_version or w.stopped for w in self.watches)

    # -- leading a cluster (watch.leader_election) ---------------------------------------------------------------
    async def _lead(self, name: str, home: Connection) -> None:
        """Watch cluster `name` whenever this process holds its Lease; release the Lease when cancelled."""
        elector = Elector.from_settings(home, name, self.runtime.settings, self.identity)
        self.electors[name] = elector
        logger.info("watch: cluster %s is watched by the holder of %s; %s waits for it", name, elector, self.identity)
        try:
            while True:
                await elector.acquire()
                try:
                    await self._term(name, elector)
                except TemporaryError as exc:  # the cluster did not answer discovery: another replica may do better
                    logger.warning("watch: cluster %s: %s; giving its lease up for now", name, exc.message)
                    await anyio.to_thread.run_sync(elector.release)
                    await anyio.sleep(elector.duration)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(elector.renew_deadline):
                await anyio.to_thread.run_sync(elector.release, abandon_on_cancel=True)

    async def _term(self, name: str, elector: Elector) -> None:
        """Lead `name` until the Lease is lost (or cancelled): take over from the store, watch from the cursors,
        and stop the watches at once when it ends. The Lease is renewed from the first moment, setup included."""
        assert self.cursors is not None
        term = Term(name)
        self.terms[name] = term
        problem: TemporaryError | None = None
        try:
            async with anyio.create_task_group() as tg:

                async def renew() -> None:
                    await elector.hold()
                    logger.warning("watch: %s lost %s; the watches of cluster %s stop", self.identity, elector, name)
                    tg.cancel_scope.cancel()

                tg.start_soon(renew)
                adopted = adopt(self.pipeline, name)
                cursors = self.cursors.load(name)
                logger.info(
                    "watch: %s leads cluster %s: %d open incidents taken over, %d watches resume from their cursors",
                    self.identity, name, adopted, len(cursors),
                )  # fmt: skip
                try:
                    await self._open(name, term, cursors)
                except TemporaryError as exc:
                    problem = exc
                    tg.cancel_scope.cancel()
                else:
                    await anyio.sleep_forever()
        finally:
            term.live = False
            self.terms.pop(name, None)
            running = self.running.pop(name, None)
            if running is not None:
                running.halt()
            forget(self.pipeline, self.states, name)
            self._save(term)  # what the pipeline did take before the end
            if running is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(running.join, JOIN_SECONDS)
        if problem is not None:
            raise problem

    # -- watches -------------------------------------------------------------------------------------------------
    async def _open(self, name: str, term: Term | None, cursors: dict[str, str]) -> Running:
        """Start the cluster's watches, each in its thread: from the stored cursor when there is one (a takeover),
        else listing first. They are in `running` from the start, so whoever stops the cluster stops them all."""
        conn = self.runtime.clusters.get(name)
        wanted = [s for s in SOURCES if s.switch in self.runtime.settings.watch.sources]
        running = self.running[name] = Running()
        for source, info in await anyio.to_thread.run_sync(served, conn, wanted, abandon_on_cancel=True):
            for path in self._paths(info):
                watch = Watch(conn, path)
                deliver, prime, checkpoint = self._hooks(conn.name, source, term, path, running.stop)
                thread = threading.Thread(
                    target=_run, args=(watch, deliver, running.stop, cursors.get(path), prime, checkpoint), daemon=True
                )
                running.watches.append(watch)
                running.threads.append(thread)
                thread.start()
        return running

    def _hooks(
        self, cluster: str, source: Source, term: Term | None, path: str, stop: threading.Event
    ) -> tuple[Deliver, Deliver | None, Checkpoint | None]:
        """A watch's callbacks, called on its thread: they hand over to the loop, in order."""
        loop, settings = self._loop, self.runtime.settings.watch
        assert loop is not None

        def deliver(event: str, obj: dict[str, Any]) -> None:
            if stop.is_set():
                return
            with contextlib.suppress(RuntimeError):  # the loop closed while this thread held an event
                if source.kind != "Event":
                    loop.call_soon_threadsafe(self._observe, cluster, source, term, event, obj)
                elif event != "DELETED" and (signal := from_kube_event(obj, cluster, settings)):
                    loop.call_soon_threadsafe(self._offer, term, signal)

        if term is None:
            return deliver, None, None

        def prime(_event: str, obj: dict[str, Any]) -> None:
            if not stop.is_set():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._prime, cluster, source, term, obj)

        def checkpoint(version: str) -> None:
            if not stop.is_set():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._offer, term, Mark(path, version))

        return deliver, prime, checkpoint

    def _offer(self, term: Term | None, item: Signal | Mark) -> None:
        if term is not None and not term.live:
            return
        try:
            self._queue.put_nowait((term, item))
        except asyncio.QueueFull:
            self.dropped += 1

    def _observe(self, cluster: str, source: Source, term: Term | None, event: str, obj: dict[str, Any]) -> None:
        """An object version (on the loop): into the change history, and its broken states as signals."""
        if term is not None and not term.live:
            return
        at = self.pipeline.clock()
        if source.history:
            self.pipeline.history.observe(cluster, source.kind, obj, at, event)
        if source.states:
            for s in self.states.take(cluster, source.kind, event, obj, at):
                self._offer(term, s)

    def _prime(self, cluster: str, source: Source, term: Term, obj: dict[str, Any]) -> None:
        """An object as it was at the cursor (on the loop): what the last leader knew, remembered, not acted on."""
        if not term.live:
            return
        at = self.pipeline.clock()
        if source.history:
            self.pipeline.history.observe(cluster, source.kind, obj, at, "ADDED")
        known = self.states.take(cluster, source.kind, "ADDED", obj, at) if source.states else []
        if source.kind == "Event" and (signal := from_kube_event(obj, cluster, self.runtime.settings.watch)):
            known.append(signal)
        for s in known:
            remember(self.pipeline, s)

    # -- the pipeline --------------------------------------------------------------------------------------------
    async def _consume(self) -> None:
        """Signals into the pipeline, in order; a watch's cursor advances once everything before it was taken."""
        while True:
            term, item = await self._queue.get()
            if term is not None and not term.live:
                continue  # queued in a term that ended: the next leader handles it
            if isinstance(item, Mark):
                assert term is not None
                term.pending[item.path] = item.version
            else:
                await self.pipeline.take(item)

    async def _store_cursors(self) -> None:
        """Every FLUSH_SECONDS, the cursors the pipeline has reached: at most one write a second per watch however
        busy it is. A leader that dies in between costs its successor a re-read of that second, whose signals the
        incidents taken over absorb (an update, never a second incident or message)."""
        while True:
            await anyio.sleep(FLUSH_SECONDS)
            for term in list(self.terms.values()):
                self._save(term)

    def _save(self, term: Term) -> None:
        if term.pending and self.cursors is not None:
            pending, term.pending = term.pending, {}
            self.cursors.save(term.cluster, pending)

    async def _tick(self) -> None:
        while True:
            await anyio.sleep(TICK_SECONDS)
            await self.pipeline.tick()

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


def _run(
    watch: Watch,
    deliver: Deliver,
    stop: threading.Event,
    cursor: str | None = None,
    prime: Deliver | None = None,
    checkpoint: Checkpoint | None = None,
) -> None:
    """A watch's thread: a watch the server refuses (403: no RBAC for it, 404: the kind is not served) is switched
    off with a warning; the others go on."""
    started = time.monotonic()
    try:
        watch.run(deliver, stop, cursor if prime is not None else None, prime=prime, checkpoint=checkpoint)
    except PermanentError as exc:
        watch.stopped = exc.message
        logger.warning("watch %s is off after %.0f s: %s", watch.path, time.monotonic() - started, exc.message)
    except Exception as exc:
        watch.stopped = type(exc).__name__
        logger.exception("watch %s stopped", watch.path)
