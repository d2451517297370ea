"""Leader election per watched cluster with a Kubernetes Lease (coordination.k8s.io/v1), the way client-go's
`leaderelection` does it, so that of several watcher processes exactly one watches each cluster.

- A Lease is free when it has no holder (released) or has expired: its record has not changed for its
  `leaseDurationSeconds` by *this* process's clock, counted from when this process last saw the record change.
  renewTime is never compared with the local wall clock, so clock skew between machines does not matter.
- The leader renews every `retry` seconds. One that has not renewed for `renew_deadline` (shorter than the duration)
  stops leading — before any other process may consider the Lease expired.
- Every write is conditional on the resourceVersion read (optimistic concurrency): of two processes that saw the
  same free Lease, one wins and the other gets 409 Conflict and tries again later.
- On a clean stop the leader releases the Lease (no holder, duration 1 s), so another takes over at once.

The Leases live in the process's home cluster (the default one: in a pod, its own), one per watched cluster, named
`cloudpilot-watch-<cluster>`: remote clusters need no write access for the election.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio

from connections.kube import Connection, in_pod
from errors import Conflict, NotFound, TemporaryError
from settings import Settings

logger = logging.getLogger(__name__)

PREFIX = "cloudpilot-watch-"
NAME_CHARS = 63  # a DNS-1123 label
LABEL = "app.kubernetes.io/name"
JITTER = 0.2  # acquire tries are spread over retry × (1 … 1 + JITTER), so replicas do not try in lockstep
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def lease_name(cluster: str) -> str:
    """`cloudpilot-watch-<cluster>` as a DNS-1123 label. A name that had to be changed (upper case, `_`, `:`, too
    long) gets a short hash of the original, so two clusters never share a Lease."""
    base = re.sub(r"[^a-z0-9-]+", "-", cluster.lower()).strip("-")
    name = (PREFIX + base).rstrip("-")
    if base == cluster and len(name) <= NAME_CHARS:
        return name
    digest = hashlib.sha256(cluster.encode()).hexdigest()[:10]
    return f"{name[: NAME_CHARS - len(digest) - 1].rstrip('-')}-{digest}"


def lease_namespace(settings: Settings) -> str:
    """`watch.lease_namespace`, else the pod's own namespace (in a pod), else `default`."""
    if settings.watch.lease_namespace:
        return settings.watch.lease_namespace
    folder = settings.k8s.service_account_dir
    if in_pod(folder):
        try:
            own = (folder / "namespace").read_text(encoding="utf-8").strip()
        except OSError:
            own = ""
        if _LABEL.match(own):
            return own
    return "default"


def identity(settings: Settings) -> str:
    """`watch.lease_identity`, else hostname_pid_random: unique even for two processes on one host."""
    if settings.watch.lease_identity:
        return settings.watch.lease_identity
    host = re.sub(r"[^\x21-\x7e]", "", socket.gethostname())[:64] or "host"
    return f"{host}_{os.getpid()}_{secrets.token_hex(3)}"


def micro_time(when: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with microseconds, e.g. 2026-01-02T03:04:05.123456Z."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """One Lease, one identity. `try_acquire_or_renew` is one round (blocking: a worker thread calls it);
    `acquire`, `hold` and `release` are what a cluster's watch task uses.

    Args:
        conn: The cluster holding the Lease.
        duration: leaseDurationSeconds written into the Lease.
        renew_deadline: A leader unable to renew for this long stops leading (< duration).
        retry: Seconds between tries to acquire or renew (< renew_deadline).
        clock: Monotonic seconds, for expiry and deadlines; `wall` gives the times written into the Lease.
    """

    def __init__(
        self,
        conn: Connection,
        namespace: str,
        name: str,
        identity: str,
        *,
        duration: int = 15,
        renew_deadline: float = 10.0,
        retry: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not retry < renew_deadline < duration:
            raise ValueError("lease timings must satisfy retry < renew_deadline < duration")
        self.conn, self.namespace, self.name, self.identity = conn, namespace, name, identity
        self.duration, self.renew_deadline, self.retry = duration, renew_deadline, retry
        self.clock, self.wall = clock, wall
        self.collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.path = f"{self.collection}/{name}"
        self.leading = False
        self.observed: dict[str, Any] = {}  # the Lease as last read or written
        self.observed_at = 0.0  # when its record last changed, by `clock`
        self.renewed_at = 0.0  # when the last successful write was sent, by `clock`
        self._lock = threading.Lock()  # one round at a time (an abandoned round may still be finishing)

    @classmethod
    def from_settings(cls, conn: Connection, cluster: str, settings: Settings, who: str) -> Elector:
        w = settings.watch
        return cls(
            conn,
            lease_namespace(settings),
            lease_name(cluster),
            who,
            duration=w.lease_duration_seconds,
            renew_deadline=w.lease_renew_deadline_seconds,
            retry=w.lease_retry_seconds,
        )

    @property
    def holder(self) -> str:
        """The holder in the Lease as last seen ("" when free or not yet read)."""
        return str((self.observed.get("spec") or {}).get("holderIdentity") or "")

    def __str__(self) -> str:
        return f"lease {self.namespace}/{self.name}"

    # -- one round ---------------------------------------------------------------------------------------------
    def try_acquire_or_renew(self) -> bool:
        """Read the Lease; take it when it is free, expired or already ours. True when this process now holds it.

        Raises:
            TemporaryError: the API server did not answer (the caller tries again).
            PermanentError: no permission for Leases in the namespace, or no such namespace.
        """
        with self._lock:
            return self._round()

    def _round(self) -> bool:
        started, stamp = self.clock(), micro_time(self.wall())
        try:
            lease = self.conn.request("GET", self.path, timeout=self.renew_deadline)
        except NotFound:
            return self._create(started, stamp)
        spec = lease.get("spec") or {}
        if spec != (self.observed.get("spec") or {}):
            self.observed_at = started
        self.observed = lease
        holder = str(spec.get("holderIdentity") or "")
        if holder and holder != self.identity and not self._expired(spec, started):
            self.leading = False
            return False
        mine = holder == self.identity
        claim = {
            **spec,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "acquireTime": spec.get("acquireTime") if mine and spec.get("acquireTime") else stamp,
            "renewTime": stamp,
            "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if mine else 1),
        }
        return self._write(started, {**lease, "spec": claim}, was=holder)

    def _expired(self, spec: dict[str, Any], now: float) -> bool:
        duration = spec.get("leaseDurationSeconds")
        seconds = duration if isinstance(duration, int) and duration > 0 else self.duration
        return self.observed_at + seconds <= now

    def _create(self, started: float, stamp: str) -> bool:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": {LABEL: "cloudpilot"}},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.duration,
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            },
        }
        try:
            lease = self.conn.request("POST", self.collection, body=body, timeout=self.renew_deadline)
        except Conflict:  # another process created it first
            return False
        except NotFound as exc:
            raise NotFound(
                f"The namespace {self.namespace!r} for the watch Leases does not exist: {exc.message}",
                hint="Create it, or set watch.lease_namespace to an existing namespace.",
            ) from None
        self._won(started, lease, was="")
        return True

    def _write(self, started: float, lease: dict[str, Any], was: str) -> bool:
        try:  # metadata.resourceVersion is the one read: a write by anyone since then makes this a 409
            updated = self.conn.request("PUT", self.path, body=lease, timeout=self.renew_deadline)
        except (Conflict, NotFound):  # changed or deleted since it was read: the next round reads it again
            return False
        self._won(started, updated, was)
        return True

    def _won(self, started: float, lease: dict[str, Any], was: str) -> None:
        self.observed, self.observed_at, self.renewed_at = lease, started, started
        if not self.leading:
            logger.info("%s: %s leads now (was %s)", self, self.identity, was or "free")
        self.leading = True

    def release(self) -> bool:
        """Give the Lease up (a clean stop): no holder and a 1 s duration, so another process takes it at once.
        Conditional on the Lease being as this process last wrote it; False when it was not ours any more."""
        with self._lock:
            if not self.leading:
                return False
            self.leading = False
            spec = self.observed.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return False
            stamp = micro_time(self.wall())
            free = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1, "acquireTime": stamp, "renewTime": stamp}
            try:
                self.observed = self.conn.request(
                    "PUT", self.path, body={**self.observed, "spec": free}, timeout=self.renew_deadline
                )
            except Exception as exc:  # the Lease will expire by itself
                logger.warning("%s: could not release it (%s); it expires in %s s", self, exc, self.duration)
                return False
            logger.info("%s: released by %s", self, self.identity)
            return True

    # -- the loops ---------------------------------------------------------------------------------------------
    async def acquire(self) -> None:
        """Return once this process holds the Lease (cancel to give up). Temporary errors are retried; a
        permanent one (no permission for Leases) is raised."""
        while not await self._attempt(self.renew_deadline):
            await anyio.sleep(self.retry * (1 + JITTER * random.random()))  # nosec B311: spreading, not secrecy

    async def hold(self) -> None:
        """Renew every `retry` seconds; return as soon as leadership is lost: no renewal for `renew_deadline`, or
        another holder seen in the Lease."""
        while True:
            await anyio.sleep(self.retry)
            deadline = self.renewed_at + self.renew_deadline
            while not await self._attempt(deadline - self.clock()):
                if self.holder not in ("", self.identity):
                    logger.warning("%s: taken over by %s", self, self.holder)
                    self.leading = False
                    return
                if self.clock() >= deadline:
                    logger.warning(
                        "%s: not renewed for %g s: %s stops leading", self, self.renew_deadline, self.identity
                    )
                    self.leading = False
                    return
                await anyio.sleep(min(self.retry, max(deadline - self.clock(), 0.0)))

    async def _attempt(self, limit: float) -> bool:
        """One round in a worker thread, given up after `limit` seconds (the thread finishes on its own)."""
        if limit <= 0:
            return False
        with anyio.move_on_after(limit):
            try:
                return await anyio.to_thread.run_sync(self.try_acquire_or_renew, abandon_on_cancel=True)
            except TemporaryError as exc:
                logger.warning("%s: %s", self, exc.message)
        return False
