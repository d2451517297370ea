"""Cluster access: list the clusters CloudPilot can reach, register new ones, and show one cluster's basics."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from connections.kube import IN_CLUSTER, Connection, in_pod
from errors import CloudPilotError, InvalidInput, NotFound
from guard import validate
from runtime import attempt, current
from store import ClusterRecord
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

    def render(self) -> str:
        rows = [
            [("* " if c.default else "  ") + c.name, c.source, c.server, c.auth, c.description] for c in self.clusters
        ]
        return table(["NAME", "SOURCE", "SERVER", "AUTH", "DESCRIPTION"], rows)


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
    the in-cluster service account. The default cluster is marked. Credentials are never shown."""
    rt = current()
    entries = [
        ClusterEntry(name=r.name, source="registry", server=r.server, auth=r.auth, description=r.description)
        for r in rt.store.list_clusters()
    ]
    taken = {e.name for e in entries}
    contexts, _ = rt.clusters.contexts()
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
    if in_pod():
        entries.append(ClusterEntry(name=IN_CLUSTER, source="in-cluster", auth="service account"))
    try:
        default = rt.clusters.default_name()
    except NotFound:
        default = None
    for e in entries:
        e.default = e.name == default
    return ClusterList(clusters=entries)


@tool("core", access="write", idempotent=False, title="Register a cluster")
async def clusters_add(
    name: Annotated[str, Field(description="A short unique name for the cluster (DNS label).")],
    server: Annotated[str | None, Field(description="API server URL, e.g. https://10.0.0.1:6443.")] = None,
    token: Annotated[str | None, Field(description="Bearer token (service account or user).")] = None,
    kubeconfig: Annotated[
        str | None, Field(description="A whole kubeconfig, as text (instead of server+token).")
    ] = None,
    context: Annotated[str | None, Field(description="Context inside `kubeconfig`; default its current.")] = None,
    ca_cert: Annotated[str | None, Field(description="PEM CA certificate for `server`.")] = None,
    insecure_skip_tls_verify: bool = False,
    description: str = "",
    verify: Annotated[bool, Field(description="Connect once before saving (recommended).")] = True,
) -> ClusterInfo:
    """Register a cluster by API server URL + token, or by kubeconfig text. The credentials are stored in
    CloudPilot's private SQLite store and never returned. With verify (default) the cluster must answer first,
    so nothing unusable is saved."""
    rt = current()
    validate.namespace(name)  # a DNS label, like a namespace
    if bool(kubeconfig) == bool(server):
        raise InvalidInput("Give either `server` (with `token`) or `kubeconfig`, not both and not neither.")
    if server and not server.startswith(("https://", "http://")):
        raise InvalidInput(f"server {server!r} must be a URL such as https://10.0.0.1:6443.")
    contexts, _ = rt.clusters.contexts()
    if name == IN_CLUSTER or any(c["name"] == name for c in contexts) or rt.store.get_cluster(name):
        raise InvalidInput(f"A cluster named {name!r} already exists.", hint="Pick another name, or remove it first.")
    record = ClusterRecord(
        name=name,
        server=server or "(from kubeconfig)",
        token=token,
        kubeconfig=kubeconfig,
        context=context,
        ca_cert=ca_cert,
        insecure_skip_tls_verify=insecure_skip_tls_verify,
        description=description,
    )
    info = None
    if verify:  # the record is saved only once the cluster has answered
        probe = rt.clusters.connect_record(record)
        try:
            info = await _info(probe)
        except CloudPilotError as e:
            raise InvalidInput(f"Cluster {name!r} was not saved: {e}") from e
        finally:
            probe.api.close()
        if kubeconfig:
            record = ClusterRecord(**{**record.__dict__, "server": info.server})
    rt.store.add_cluster(record)
    rt.clusters.forget(name)
    return info or ClusterInfo(name=name, server=record.server, identity="(not verified)")


@tool("core", access="write", idempotent=True, title="Remove a registered cluster")
async def clusters_remove(name: Annotated[str, Field(description="Registered cluster name.")]) -> ClusterList:
    """Remove a registered cluster and its stored credentials. kubeconfig contexts are not affected."""
    rt = current()
    if not rt.store.remove_cluster(name):
        known = ", ".join(r.name for r in rt.store.list_clusters()) or "none"
        raise NotFound(f"No registered cluster named {name!r}.", hint=f"Registered clusters: {known}.")
    rt.clusters.forget(name)
    rt.cache.drop(name)
    return await clusters_list()


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


def node_ready(node: dict) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )
