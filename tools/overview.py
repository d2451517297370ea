"""Cluster overview, namespaces and nodes: the seeds' cluster monitor, fetched concurrently and cached."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from connections.kube import Connection
from errors import CloudPilotError, NotFound
from kube.quantity import GIB, cores, gib
from runtime import attempt, current, validate_limit
from tools import snapshot
from tools.catalogue import tool
from tools.clusters import ClusterArg, node_ready
from tools.results import Page, Result, age, paginate, table

Refresh = Annotated[bool, Field(description="Ignore the cache and fetch fresh data.")]
ContinueToken = Annotated[str | None, Field(description="continue_token from the previous page.")]


class NodeCounts(BaseModel):
    total: int = 0
    ready: int = 0
    not_ready: int = 0


class PodCounts(BaseModel):
    total: int = 0
    running: int = 0
    pending: int = 0
    failed: int = 0
    succeeded: int = 0
    unknown: int = 0
    unhealthy: int = Field(0, description="Pods not Running+ready and not Completed (CrashLoopBackOff, ...).")


class ResourceTotals(BaseModel):
    """Sums over pods that are not finished; allocatable over ready nodes."""

    cpu_requests: float = Field(0, description="cores")
    cpu_limits: float = Field(0, description="cores")
    memory_requests: float = Field(0, description="GiB")
    memory_limits: float = Field(0, description="GiB")
    cpu_allocatable: float = Field(0, description="cores")
    memory_allocatable: float = Field(0, description="GiB")


class Overview(Result):
    cluster: str
    nodes: NodeCounts = NodeCounts()
    pods: PodCounts = PodCounts()
    deployments: int | None = None
    services: int | None = None
    configmaps: int | None = None
    secrets: int | None = None
    namespaces: int | None = None
    resources: ResourceTotals = ResourceTotals()
    last_updated: str
    from_cache: bool = False
    errors: dict[str, str] = Field(default_factory=dict, description="Kinds that could not be read: partial.")

    def render(self) -> str:
        n, p, r = self.nodes, self.pods, self.resources
        lines = [
            f"cluster {self.cluster} (updated {self.last_updated}{', cached' if self.from_cache else ''})",
            f"nodes: {n.total} total, {n.ready} ready, {n.not_ready} not ready",
            f"pods: {p.total} total, {p.running} running, {p.pending} pending, {p.failed} failed, "
            f"{p.succeeded} succeeded, {p.unknown} unknown; {p.unhealthy} unhealthy",
            f"deployments {_n(self.deployments)}, services {_n(self.services)}, configmaps {_n(self.configmaps)}, "
            f"secrets {_n(self.secrets)}, namespaces {_n(self.namespaces)}",
            f"cpu: requests {r.cpu_requests:.2f} / limits {r.cpu_limits:.2f} of {r.cpu_allocatable:.2f} cores; "
            f"memory: requests {r.memory_requests:.2f} / limits {r.memory_limits:.2f} of "
            f"{r.memory_allocatable:.2f} GiB",
        ]
        lines += [f"PARTIAL — could not read {k}: {v}" for k, v in self.errors.items()]
        return "\n".join(lines)


def _n(v: int | None) -> str:
    return "?" if v is None else str(v)


@tool("core", title="Cluster overview")
async def cluster_overview(cluster: ClusterArg = None, force_refresh: Refresh = False) -> Overview:
    """Counts and capacity of a cluster at a glance: nodes (ready/not ready), pods by phase and unhealthy,
    deployments, services, configmaps, secrets, namespaces, CPU/memory requests and limits against allocatable.
    Cached briefly; if one kind cannot be read the result is partial and `errors` says which."""
    return await overview(await current().connect(cluster), force_refresh)


async def overview(conn: Connection, refresh: bool = False) -> Overview:
    """One cluster's overview through the shared cache (cluster_overview, and fleet_overview per cluster)."""
    rt = current()

    async def load() -> Overview:
        return await _overview(conn.name, refresh)

    # a partial result is answered but not cached: the next call tries the failed kinds again
    result, age_s = await rt.cache.get(
        (conn.name, "overview"), rt.settings.k8s.cache_ttl_seconds, load, refresh, keep=lambda o: not o.errors
    )
    return result.model_copy(update={"from_cache": age_s > 0})


async def _overview(name: str, refresh: bool) -> Overview:
    rt = current()
    conn = rt.connection(name)
    paths = {
        "deployments": "/apis/apps/v1/deployments",
        "services": "/api/v1/services",
        "configmaps": "/api/v1/configmaps",
        "secrets": "/api/v1/secrets",
        "namespaces": "/api/v1/namespaces",
    }
    pods, nodes, counts = await asyncio.gather(
        attempt(snapshot.pods(rt, conn, refresh)),
        attempt(rt.call(conn.list_items, "/api/v1/nodes")),
        asyncio.gather(*(attempt(snapshot.count(rt, conn, p)) for p in paths.values())),
    )
    failures = [v for v in (pods, nodes, *counts) if isinstance(v, CloudPilotError)]
    if len(failures) == 2 + len(paths):
        raise failures[0]  # nothing answered: an error, never a cluster of zeros
    out = Overview(cluster=name, last_updated=datetime.now(UTC).isoformat(timespec="seconds"))
    for kind, value in zip(paths, counts, strict=True):
        if isinstance(value, CloudPilotError):
            out.errors[kind] = str(value)
        else:
            setattr(out, kind, value)
    if isinstance(nodes, CloudPilotError):
        out.errors["nodes"] = str(nodes)
    else:
        ready = [n for n in nodes[0] if node_ready(n)]
        out.nodes = NodeCounts(total=len(nodes[0]), ready=len(ready), not_ready=len(nodes[0]) - len(ready))
        out.resources.cpu_allocatable = round(float(sum(cores(_alloc(n, "cpu")) for n in ready)), 3)
        out.resources.memory_allocatable = round(float(sum(gib(_alloc(n, "memory")) for n in ready)), 3)
    if isinstance(pods, CloudPilotError):
        out.errors["pods"] = str(pods)
    else:
        phases = Counter(p.phase for p in pods)
        out.pods = PodCounts(
            total=len(pods),
            running=phases["Running"],
            pending=phases["Pending"],
            failed=phases["Failed"],
            succeeded=phases["Succeeded"],
            unknown=phases["Unknown"],
            unhealthy=sum(1 for p in pods if not p.healthy),
        )
        live = [p for p in pods if p.phase not in snapshot.TERMINAL_PHASES]
        r = out.resources
        r.cpu_requests = round(sum(p.cpu_requests for p in live), 3)
        r.cpu_limits = round(sum(p.cpu_limits for p in live), 3)
        r.memory_requests = round(sum(p.memory_requests for p in live) / float(GIB), 3)
        r.memory_limits = round(sum(p.memory_limits for p in live) / float(GIB), 3)
    return out


def _alloc(node: dict[str, Any], resource: str) -> str | None:
    return ((node.get("status") or {}).get("allocatable") or {}).get(resource)


class NamespaceRow(BaseModel):
    name: str
    status: str
    age: str
    pods: int
    unhealthy_pods: int
    deployments: int
    services: int


class Namespaces(Result):
    cluster: str
    namespaces: list[NamespaceRow]
    page: Page

    def render(self) -> str:
        rows = [[n.name, n.status, n.age, n.pods, n.unhealthy_pods, n.deployments, n.services] for n in self.namespaces]
        return "\n".join(
            filter(
                None,
                [
                    table(["NAMESPACE", "STATUS", "AGE", "PODS", "UNHEALTHY", "DEPLOYMENTS", "SERVICES"], rows),
                    self.page.footer(),
                ],
            )
        )


@tool("core", title="Namespaces")
async def namespaces_detail(
    cluster: ClusterArg = None,
    limit: int | None = None,
    continue_token: ContinueToken = None,
    force_refresh: Refresh = False,
) -> Namespaces:
    """Each namespace with its status, age, and counts of pods (and unhealthy pods), deployments, services."""
    rt = current()
    conn = await rt.connect(cluster)
    limit = validate_limit(limit, rt.settings.output.default_limit)
    nss, pods, deps, svcs = await asyncio.gather(
        snapshot.metadata(rt, conn, "/api/v1/namespaces"),
        snapshot.pods(rt, conn, force_refresh),
        snapshot.metadata(rt, conn, "/apis/apps/v1/deployments"),
        snapshot.metadata(rt, conn, "/api/v1/services"),
    )
    status = {
        i["metadata"]["name"]: (i.get("status") or {}).get("phase", "")
        for i in (await rt.call(conn.list_items, "/api/v1/namespaces"))[0]
    }
    pod_n, bad_n = Counter(p.namespace for p in pods), Counter(p.namespace for p in pods if not p.healthy)
    dep_n, svc_n = Counter(d.get("namespace") for d in deps), Counter(s.get("namespace") for s in svcs)
    rows = [
        NamespaceRow(
            name=m["name"],
            status=status.get(m["name"], "?"),
            age=age(m.get("creationTimestamp")),
            pods=pod_n[m["name"]],
            unhealthy_pods=bad_n[m["name"]],
            deployments=dep_n[m["name"]],
            services=svc_n[m["name"]],
        )
        for m in sorted(nss, key=lambda m: m["name"])
        if rt.namespace_visible(m["name"])
    ]
    shown, page = paginate(rows, limit, continue_token)
    return Namespaces(cluster=conn.name, namespaces=shown, page=page)


class NodeRow(BaseModel):
    name: str
    ready: bool
    roles: list[str]
    conditions: list[str] = Field(description="Pressure and other abnormal conditions that are True.")
    unschedulable: bool
    kubelet: str | None
    os_image: str | None
    kernel: str | None
    runtime: str | None
    cpu_capacity: float
    cpu_allocatable: float
    memory_capacity_gib: float
    memory_allocatable_gib: float
    pods_capacity: int
    pods: int
    cpu_requested: float
    memory_requested_gib: float
    taints: list[str]
    age: str


class Nodes(Result):
    cluster: str
    nodes: list[NodeRow]
    page: Page

    def render(self) -> str:
        rows = [
            [
                n.name,
                "Ready" if n.ready else "NotReady",
                ",".join(n.roles) or "<none>",
                ",".join(n.conditions) + (",SchedulingDisabled" if n.unschedulable else ""),
                f"{n.cpu_requested:.2f}/{n.cpu_allocatable:g}",
                f"{n.memory_requested_gib:.1f}/{n.memory_allocatable_gib:.1f}Gi",
                f"{n.pods}/{n.pods_capacity}",
                n.kubelet,
                ";".join(n.taints),
                n.age,
            ]
            for n in self.nodes
        ]
        head = ["NAME", "STATUS", "ROLES", "CONDITIONS", "CPU REQ", "MEM REQ", "PODS", "KUBELET", "TAINTS", "AGE"]
        detail = ""
        if len(self.nodes) == 1:
            n = self.nodes[0]
            detail = (
                f"\nos {n.os_image}, kernel {n.kernel}, runtime {n.runtime}, capacity cpu {n.cpu_capacity:g} "
                f"memory {n.memory_capacity_gib:.1f}Gi"
            )
        return "\n".join(filter(None, [table(head, rows) + detail, self.page.footer()]))


@tool("core", title="Nodes")
async def nodes_detail(
    cluster: ClusterArg = None,
    name: str | None = None,
    limit: int | None = None,
    continue_token: ContinueToken = None,
    force_refresh: Refresh = False,
) -> Nodes:
    """Nodes with readiness, pressure conditions, roles, kubelet/OS/kernel/runtime, capacity and allocatable,
    CPU/memory requested by the pods placed there, pod count, and taints. Not-ready nodes come first."""
    rt = current()
    conn = await rt.connect(cluster)
    limit = validate_limit(limit, rt.settings.output.default_limit)
    (nodes, _), pods = await asyncio.gather(
        rt.call(conn.list_items, "/api/v1/nodes"), snapshot.pods(rt, conn, force_refresh)
    )
    placed: dict[str, list[snapshot.PodRow]] = defaultdict(list)
    for p in pods:
        if p.node and p.phase not in snapshot.TERMINAL_PHASES:
            placed[p.node].append(p)
    rows = [_node_row(n, placed[n["metadata"]["name"]]) for n in nodes if not name or n["metadata"]["name"] == name]
    if name and not rows:
        raise NotFound(f'Node "{name}" not found in cluster {conn.name!r}.', hint="Call nodes_detail without name.")
    rows.sort(key=lambda r: (r.ready and not r.conditions, r.name))
    shown, page = paginate(rows, limit, continue_token)
    return Nodes(cluster=conn.name, nodes=shown, page=page)


def _node_row(node: dict[str, Any], pods: list[snapshot.PodRow]) -> NodeRow:
    meta, spec, status = node["metadata"], node.get("spec") or {}, node.get("status") or {}
    info, cap, alloc = status.get("nodeInfo") or {}, status.get("capacity") or {}, status.get("allocatable") or {}
    conds = status.get("conditions") or []
    abnormal = [c["type"] for c in conds if c.get("type") != "Ready" and c.get("status") == "True"]
    roles = sorted(k.split("/", 1)[1] for k in meta.get("labels") or {} if k.startswith("node-role.kubernetes.io/"))
    taints = [f"{t['key']}{'=' + t['value'] if t.get('value') else ''}:{t['effect']}" for t in spec.get("taints") or []]
    return NodeRow(
        name=meta["name"],
        ready=node_ready(node),
        roles=roles,
        conditions=abnormal,
        unschedulable=bool(spec.get("unschedulable")),
        kubelet=info.get("kubeletVersion"),
        os_image=info.get("osImage"),
        kernel=info.get("kernelVersion"),
        runtime=info.get("containerRuntimeVersion"),
        cpu_capacity=float(cores(cap.get("cpu"))),
        cpu_allocatable=float(cores(alloc.get("cpu"))),
        memory_capacity_gib=round(float(gib(cap.get("memory"))), 3),
        memory_allocatable_gib=round(float(gib(alloc.get("memory"))), 3),
        pods_capacity=int(cap.get("pods") or 0),
        pods=len(pods),
        cpu_requested=round(sum(p.cpu_requests for p in pods), 3),
        memory_requested_gib=round(sum(p.memory_requests for p in pods) / float(GIB), 3),
        taints=taints,
        age=age(meta.get("creationTimestamp")),
    )
