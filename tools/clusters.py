"""Cluster access: list the clusters CloudPilot can reach and show one cluster's basics.

Registering and removing clusters changes what the server can reach, so it is an operator command on the
server's machine (`cloudpilot clusters add|list|remove`, in cli/clusters.py), not a tool.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from connections.kube import IN_CLUSTER, Connection
from errors import CloudPilotError
from runtime import attempt, current
from tools.catalogue import tool
from tools.results import Result, table

ClusterArg = Annotated[str | None, Field(description="Registry name or kubeconfig context; default: current.")]


class ClusterEntry(BaseModel):
    name: str
    source: Literal["registry", "kubeconfig", "in-cluster"]
    server: str | None = None
    auth: str | None = None
    description: str = ""
    default: bool = False


class ClusterList(Result):
    clusters: list[ClusterEntry]
    kubeconfig_error: str | None = None

    def render(self) -> str:
        rows = [
            [("* " if c.default else "  ") + c.name, c.source, c.server, c.auth, c.description] for c in self.clusters
        ]
        text = table(["NAME", "SOURCE", "SERVER", "AUTH", "DESCRIPTION"], rows)
        return f"{text}\nNote: {self.kubeconfig_error}" if self.kubeconfig_error else text


class ClusterInfo(Result):
    name: str
    server: str
    identity: str
    version: str | None = None
    platform: str | None = None
    nodes_total: int | None = None
    nodes_ready: int | None = None
    nodes_not_ready: list[str] = []
    errors: dict[str, str] = {}

    def render(self) -> str:
        lines = [
            f"cluster {self.name} at {self.server} as {self.identity}",
            f"version {self.version or '?'} ({self.platform or '?'})",
            f"nodes {self.nodes_ready}/{self.nodes_total} ready",
        ]
        if self.nodes_not_ready:
            lines.append("not ready: " + ", ".join(self.nodes_not_ready))
        lines += [f"error ({k}): {v}" for k, v in self.errors.items()]
        return "\n".join(lines)


@tool("core", title="List clusters")
async def clusters_list() -> ClusterList:
    """List every cluster CloudPilot can reach: registered clusters, kubeconfig contexts and, inside a pod,
    the in-cluster service account. The default cluster is marked. Credentials are never shown. A kubeconfig
    that cannot be read is named in kubeconfig_error; registered clusters are listed all the same."""
    rt = current()
    entries = [
        ClusterEntry(name=r.name, source="registry", server=r.server, auth=r.auth, description=r.description)
        for r in rt.store.list_clusters()
    ]
    taken = {e.name for e in entries}
    contexts, _, trouble = rt.clusters.kubeconfig_state()
    servers = rt.clusters.kubeconfig_servers()
    for c in contexts:
        if c["name"] not in taken:
            ctx = c.get("context") or {}
            entries.append(
                ClusterEntry(
                    name=c["name"],
                    source="kubeconfig",
                    server=servers.get(str(ctx.get("cluster"))),
                    auth=f"user {ctx.get('user')}",
                )
            )
    if rt.clusters.in_pod():
        entries.append(ClusterEntry(name=IN_CLUSTER, source="in-cluster", auth="service account"))
    try:
        default = rt.clusters.default_name()
    except CloudPilotError:
        default = None
    for e in entries:
        e.default = e.name == default
    return ClusterList(clusters=entries, kubeconfig_error=_sentence(trouble) if trouble else None)


@tool("core", title="Cluster info")
async def cluster_info(cluster: ClusterArg = None) -> ClusterInfo:
    """Server version, endpoint, the identity used, and node count/readiness of one cluster."""
    rt = current()
    return await _info(await rt.connect(cluster))


async def _info(conn: Connection) -> ClusterInfo:
    rt = current()
    version, nodes = await asyncio.gather(
        attempt(rt.call(conn.get, "/version")), attempt(rt.call(conn.list_items, "/api/v1/nodes"))
    )
    info = ClusterInfo(name=conn.name, server=conn.server, identity=conn.identity)
    if isinstance(version, CloudPilotError) and isinstance(nodes, CloudPilotError):
        raise version  # nothing answered: an error, not a partial result
    if isinstance(version, CloudPilotError):
        info.errors["version"] = str(version)
    else:
        info.version, info.platform = version.get("gitVersion"), version.get("platform")
    if isinstance(nodes, CloudPilotError):
        info.errors["nodes"] = str(nodes)
    else:
        items = nodes[0]
        info.nodes_total = len(items)
        info.nodes_not_ready = [n["metadata"]["name"] for n in items if not node_ready(n)]
        info.nodes_ready = info.nodes_total - len(info.nodes_not_ready)
    return info


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def node_ready(node: dict) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )
