"""Liveness and readiness: what `/healthz` and `/readyz` answer.

Live: the process serves HTTP (nothing else is asked: a liveness probe that calls the cluster would restart a
healthy server whenever the cluster has a bad minute). Ready: the store answers a query and the default cluster's
API server answers `GET /version`, each within `server.readiness_timeout_seconds`. A result is kept for
`server.readiness_cache_seconds` and one check runs at a time, so a storm of probes costs one API call per period.

An answer names components and a short reason class only (`unreachable`, `timeout`, `unauthorized`, …): never a
host name, URL, path, token or error text, since probes need no token.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import anyio

from errors import CloudPilotError, Forbidden, InvalidInput, NotFound, TemporaryError, Unreachable
from ops.metrics import Metrics
from runtime import Runtime

logger = logging.getLogger("cloudpilot.health")


@dataclass(frozen=True)
class Check:
    component: str
    ok: bool
    reason: str | None = None  # a short class of failure, never a message

    def body(self) -> dict[str, str]:
        return {"status": "ok"} if self.ok else {"status": "failed", "reason": self.reason or "error"}


@dataclass
class Readiness:
    """The checks behind `/readyz` of one server."""

    runtime: Runtime
    metrics: Metrics
    draining: bool = False  # set on SIGTERM: a draining server takes no new work
    _last: tuple[float, list[Check]] | None = field(default=None, repr=False)
    _lock: anyio.Lock = field(default_factory=anyio.Lock, repr=False)

    async def report(self) -> tuple[bool, dict[str, Any]]:
        """(ready, the JSON body to answer)."""
        if self.draining:
            return False, {"status": "draining"}
        checks = await self._checks()
        ready = all(c.ok for c in checks)
        return ready, {"status": "ok" if ready else "failed", "checks": {c.component: c.body() for c in checks}}

    async def _checks(self) -> list[Check]:
        ttl = self.runtime.settings.server.readiness_cache_seconds
        async with self._lock:  # one check at a time; probes arriving meanwhile take its result
            if self._last is not None and time.monotonic() - self._last[0] < ttl:
                return self._last[1]
            checks = [await self._store(), await self._cluster()]
            for c in checks:
                self.metrics.readiness.labels(component=c.component, status="ok" if c.ok else "failed").inc()
            self._last = (time.monotonic(), checks)
            return checks

    async def _store(self) -> Check:
        def query() -> None:
            self.runtime.store.execute("SELECT 1")

        return await self._timed("store", query)

    async def _cluster(self) -> Check:
        timeout = self.runtime.settings.server.readiness_timeout_seconds

        def version() -> None:
            conn = self.runtime.connection(None)  # the default cluster (reads kubeconfig the first time)
            status, _, _ = conn.send("GET", "/version", timeout=timeout)
            if status in (401, 403):
                raise Forbidden(f"HTTP {status}")
            if status != 200:
                raise _BadStatus(f"HTTP {status}")

        return await self._timed("cluster", version)

    async def _timed(self, component: str, work: Any) -> Check:
        timeout = self.runtime.settings.server.readiness_timeout_seconds
        try:
            with anyio.fail_after(timeout):
                # abandon_on_cancel: a check that outlives its timeout finishes in its thread, unwaited for
                await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except TimeoutError:
            return self._failed(component, "timeout")
        except Exception as e:
            return self._failed(component, _reason(e), e)
        return Check(component, True)

    def _failed(self, component: str, reason: str, error: BaseException | None = None) -> Check:
        # the log (masked, for the operator) may say more than the probe's answer
        logger.warning("readiness: %s failed (%s)%s", component, reason, f": {error}" if error else "")
        return Check(component, False, reason)


class _BadStatus(Exception):
    """The API server answered /version with neither 200 nor 401/403."""


def _reason(error: BaseException) -> str:
    if isinstance(error, Forbidden):
        return "unauthorized"
    if isinstance(error, _BadStatus):
        return "bad_status"
    if isinstance(error, Unreachable):
        return "timeout" if "timed out" in str(error).lower() else "unreachable"
    if isinstance(error, NotFound | InvalidInput):  # no default cluster, a kubeconfig that cannot be used
        return "not_configured"
    if isinstance(error, TemporaryError):
        return "unavailable"
    if isinstance(error, CloudPilotError):
        return "refused"
    return "error"
