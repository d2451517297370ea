"""Slim, cached views of the objects several tools need (pods, above all), decoded once from raw JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from connections.kube import METADATA_LIST, Connection
from kube import podstatus
from kube.quantity import parse_quantity
from runtime import Runtime
from tools.podschema import decode_pods

TERMINAL_PHASES = ("Succeeded", "Failed")
T = TypeVar("T")


@dataclass(slots=True)
class PodRow:
    """What triage needs of one pod."""

    namespace: str
    name: str
    phase: str
    reason: str
    ready: int
    total: int
    restarts: int
    node: str | None
    created: str | None
    last_termination: str | None
    cpu_requests: float
    memory_requests: float
    cpu_limits: float
    memory_limits: float

    @property
    def healthy(self) -> bool:
        return podstatus.is_healthy(self.reason, self.ready, self.total)


def pod_row(pod: dict[str, Any]) -> PodRow:
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    ready, total = podstatus.ready_counts(pod)
    req, lim = pod_resources(spec)
    return PodRow(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        phase=status.get("phase") or "Unknown",
        reason=podstatus.pod_reason(pod),
        ready=ready,
        total=total,
        restarts=podstatus.restarts(pod),
        node=spec.get("nodeName"),
        created=meta.get("creationTimestamp"),
        last_termination=podstatus.last_termination(pod),
        cpu_requests=req[0],
        memory_requests=req[1],
        cpu_limits=lim[0],
        memory_limits=lim[1],
    )


def pod_resources(spec: dict[str, Any]) -> tuple[tuple[float, float], tuple[float, float]]:
    """((cpu cores, memory bytes) requested, (…) limits): containers summed, init containers at their max,
    as the scheduler counts them."""
    out = []
    for kind in ("requests", "limits"):
        cpu = mem = 0.0
        for c in spec.get("containers") or []:
            r = (c.get("resources") or {}).get(kind) or {}
            cpu += float(parse_quantity(r["cpu"])) if "cpu" in r else 0.0
            mem += float(parse_quantity(r["memory"])) if "memory" in r else 0.0
        for c in spec.get("initContainers") or []:
            r = (c.get("resources") or {}).get(kind) or {}
            cpu = max(cpu, float(parse_quantity(r["cpu"])) if "cpu" in r else 0.0)
            mem = max(mem, float(parse_quantity(r["memory"])) if "memory" in r else 0.0)
        for name, value in (spec.get("overhead") or {}).items():
            if name == "cpu":
                cpu += float(parse_quantity(value))
            elif name == "memory":
                mem += float(parse_quantity(value))
        out.append((cpu, mem))
    return out[0], out[1]


def list_pods(
    conn: Connection, path: str = "/api/v1/pods", query: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Slim pod dicts (see tools.podschema) of a pod list path, all pages. Blocking."""
    query = dict(query or {})
    out: list[dict[str, Any]] = []
    while True:
        items, cont = decode_pods(conn.request("GET", path, query=query, raw=True))
        out.extend(items)
        if not cont:
            return out
        query["continue"] = cont


async def pods(rt: Runtime, conn: Connection, refresh: bool = False) -> list[PodRow]:
    """Every visible pod of the cluster, cached for `k8s.cache_ttl_seconds`."""

    def load_rows() -> list[PodRow]:
        return [pod_row(p) for p in list_pods(conn) if rt.namespace_visible(p["metadata"].get("namespace", ""))]

    async def load() -> list[PodRow]:
        return await rt.call(load_rows)

    rows, _ = await rt.cache.get((conn.name, "pods"), rt.settings.k8s.cache_ttl_seconds, load, refresh)
    return rows


async def count(rt: Runtime, conn: Connection, path: str) -> int:
    """How many objects a list path holds, honouring the namespace allow/deny lists."""
    s = rt.settings.safety
    if not (s.namespace_allow or s.namespace_deny):
        return await rt.call(conn.count, path)
    items, _ = await rt.call(conn.list_items, path, None, METADATA_LIST)
    field = "name" if path.endswith("/namespaces") else "namespace"
    return sum(1 for i in items if rt.namespace_visible((i.get("metadata") or {}).get(field, "")))


async def metadata(rt: Runtime, conn: Connection, path: str) -> list[dict[str, Any]]:
    """Metadata only (names, namespaces, labels, owners) of a list path, visible namespaces only."""
    items, _ = await rt.call(conn.list_items, path, None, METADATA_LIST)
    return [
        i.get("metadata") or {}
        for i in items
        if rt.namespace_visible((i.get("metadata") or {}).get("namespace", "") or "")
    ]
