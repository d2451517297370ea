"""Istio toolset: compact listings of Istio and Gateway API objects, one object in full, and a mesh overview.

Kinds are found through discovery at the version the cluster prefers (v1, v1beta1 or v1alpha3). When the
CRDs are absent the tools say that Istio (or the Gateway API) is not installed, as an `Unsupported` error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field

from connections import namespaces
from connections.kube import METADATA_LIST, Connection, ResourceInfo
from engines.diagnosis.istio import ROOT_NAMESPACE, injection
from errors import Unsupported
from guard import validate
from guard.mask import redact
from runtime import current, validate_limit
from tools.catalogue import tool
from tools.clusters import ClusterArg
from tools.results import Page, Result, age, table

logger = logging.getLogger(__name__)

IstioKind = Literal[
    "Gateway",
    "VirtualService",
    "DestinationRule",
    "ServiceEntry",
    "Sidecar",
    "PeerAuthentication",
    "AuthorizationPolicy",
    "KubernetesGateway",
    "HTTPRoute",
]
FULL_NAMES: dict[str, str] = {
    "Gateway": "gateways.networking.istio.io",
    "VirtualService": "virtualservices.networking.istio.io",
    "DestinationRule": "destinationrules.networking.istio.io",
    "ServiceEntry": "serviceentries.networking.istio.io",
    "Sidecar": "sidecars.networking.istio.io",
    "PeerAuthentication": "peerauthentications.security.istio.io",
    "AuthorizationPolicy": "authorizationpolicies.security.istio.io",
    "KubernetesGateway": "gateways.gateway.networking.k8s.io",
    "HTTPRoute": "httproutes.gateway.networking.k8s.io",
}
KIND_HELP = (
    "Gateway, VirtualService, DestinationRule, ServiceEntry, Sidecar, PeerAuthentication, "
    "AuthorizationPolicy (Istio) or KubernetesGateway, HTTPRoute (Gateway API)."
)


def resolve_kind(conn: Connection, kind: str) -> ResourceInfo:
    """The served resource of an Istio / Gateway API kind, or Unsupported saying what is not installed."""
    served = {r.full_name: r for r in conn.resources()}
    info = served.get(FULL_NAMES[kind])
    if info is not None:
        return info
    group = FULL_NAMES[kind].split(".", 1)[1]
    if group.startswith("gateway.networking.k8s.io"):
        raise Unsupported(
            f"The Kubernetes Gateway API is not installed in cluster {conn.name!r}: {FULL_NAMES[kind]} is not served.",
            hint="Install the Gateway API CRDs, or use the Istio Gateway kind.",
        )
    if not any(r.group == "networking.istio.io" for r in served.values()):
        raise Unsupported(
            f"Istio is not installed in cluster {conn.name!r}: the API group networking.istio.io is "
            "not served (no Istio CRDs).",
            hint="Install Istio, or pick the cluster that runs it.",
        )
    raise Unsupported(
        f"Cluster {conn.name!r} has Istio but does not serve {FULL_NAMES[kind]} (group {group}).",
        hint="The Istio installation may be partial or too old for this kind.",
    )


# -- summaries -----------------------------------------------------------------------------------------------
def _sel(selector: dict[str, Any] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in (selector or {}).items()) or "-"


def _dest(d: dict[str, Any]) -> str:
    port = (d.get("port") or {}).get("number")
    return d.get("host", "?") + (f":{port}" if port else "") + (f"/{d['subset']}" if d.get("subset") else "")


def summarize(kind: str, obj: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A one-line summary and the few structured fields behind it."""
    spec = obj.get("spec") or {}
    if kind == "Gateway":
        servers = []
        for s in spec.get("servers") or []:
            port, tls = s.get("port") or {}, s.get("tls") or {}
            servers.append(
                {
                    "port": port.get("number"),
                    "protocol": port.get("protocol"),
                    "hosts": s.get("hosts"),
                    "tls_mode": tls.get("mode"),
                    "credential": tls.get("credentialName"),
                }
            )
        text = "; ".join(
            f"{s['port']}/{s['protocol']} hosts={','.join(s['hosts'] or [])}"
            + (f" tls={s['tls_mode']}" if s["tls_mode"] else "")
            + (f" cred={s['credential']}" if s["credential"] else "")
            for s in servers
        )
        return f"selector {_sel(spec.get('selector'))}; {text or 'no servers'}", {
            "selector": spec.get("selector") or {},
            "servers": servers,
        }
    if kind == "VirtualService":
        routes = []
        for proto in ("http", "tcp", "tls"):
            for r in spec.get(proto) or []:
                dests = [
                    _dest(d.get("destination") or {}) + (f"({d['weight']}%)" if d.get("weight") is not None else "")
                    for d in r.get("route") or []
                ]
                routes.append(f"{proto}:{'+'.join(dests) or ('redirect' if r.get('redirect') else '-')}")
        gateways = spec.get("gateways") or ["mesh"]
        return (
            f"hosts {','.join(spec.get('hosts') or [])}; gateways {','.join(gateways)}; "
            f"routes {' '.join(routes[:6])}" + (f" (+{len(routes) - 6})" if len(routes) > 6 else ""),
            {"hosts": spec.get("hosts") or [], "gateways": gateways, "routes": len(routes)},
        )
    if kind == "DestinationRule":
        policy = spec.get("trafficPolicy") or {}
        subsets = {s.get("name"): _sel(s.get("labels")) for s in spec.get("subsets") or []}
        tls = (policy.get("tls") or {}).get("mode")
        lb = (policy.get("loadBalancer") or {}).get("simple")
        return (
            f"host {spec.get('host')}; subsets {', '.join(f'{k}({v})' for k, v in subsets.items()) or '-'}"
            + (f"; tls {tls}" if tls else "")
            + (f"; lb {lb}" if lb else ""),
            {"host": spec.get("host"), "subsets": subsets, "tls_mode": tls},
        )
    if kind == "ServiceEntry":
        ports = [f"{p.get('number')}/{p.get('protocol')}" for p in spec.get("ports") or []]
        return (
            f"hosts {','.join(spec.get('hosts') or [])}; {spec.get('location', 'MESH_EXTERNAL')}; "
            f"resolution {spec.get('resolution', 'NONE')}; ports {','.join(ports) or '-'}",
            {"hosts": spec.get("hosts") or [], "location": spec.get("location"), "ports": ports},
        )
    if kind == "Sidecar":
        egress = [h for e in spec.get("egress") or [] for h in e.get("hosts") or []]
        return (
            f"workloads {_sel((spec.get('workloadSelector') or {}).get('labels'))}; egress {','.join(egress) or '-'}",
            {"egress_hosts": egress},
        )
    if kind == "PeerAuthentication":
        mode = (spec.get("mtls") or {}).get("mode") or "UNSET"
        port_modes = {str(p): (v or {}).get("mode") for p, v in (spec.get("portLevelMtls") or {}).items()}
        return (
            f"workloads {_sel((spec.get('selector') or {}).get('matchLabels'))}; mtls {mode}"
            + (f"; ports {port_modes}" if port_modes else ""),
            {"mtls": mode, "port_level": port_modes},
        )
    if kind == "AuthorizationPolicy":
        action = spec.get("action", "ALLOW")
        rules = spec.get("rules")
        shape = "deny all" if rules is None and action == "ALLOW" else f"{len(rules or [])} rule(s)"
        return (
            f"workloads {_sel((spec.get('selector') or {}).get('matchLabels'))}; {action}; {shape}",
            {"action": action, "rules": len(rules or [])},
        )
    if kind == "KubernetesGateway":
        listeners = [
            f"{li.get('name')}:{li.get('port')}/{li.get('protocol')}"
            + (f" {li['hostname']}" if li.get("hostname") else "")
            for li in spec.get("listeners") or []
        ]
        programmed = next(
            (
                c.get("status")
                for c in (obj.get("status") or {}).get("conditions") or []
                if c.get("type") == "Programmed"
            ),
            None,
        )
        return (
            f"class {spec.get('gatewayClassName')}; listeners {', '.join(listeners) or '-'}; "
            f"programmed {programmed or 'unknown'}",
            {"class": spec.get("gatewayClassName"), "listeners": listeners, "programmed": programmed},
        )
    if kind == "HTTPRoute":
        parents = [
            (p.get("namespace") + "/" if p.get("namespace") else "") + p.get("name", "")
            for p in spec.get("parentRefs") or []
        ]
        backends = sorted(
            {f"{b.get('name')}:{b.get('port')}" for r in spec.get("rules") or [] for b in r.get("backendRefs") or []}
        )
        return (
            f"parents {','.join(parents) or '-'}; hostnames {','.join(spec.get('hostnames') or []) or '*'}; "
            f"backends {','.join(backends) or '-'}",
            {"parents": parents, "backends": backends},
        )
    return "", {}


# -- list and get ----------------------------------------------------------------------------------------
class IstioObject(BaseModel):
    kind: str
    namespace: str
    name: str
    summary: str
    details: dict[str, Any] = Field(default_factory=dict)
    age: str


class IstioList(Result):
    cluster: str
    kind: str
    api_version: str
    namespace: str | None
    items: list[IstioObject]
    page: Page

    def render(self) -> str:
        rows = [[o.namespace, o.name, o.summary, o.age] for o in self.items]
        head = f"{self.kind} ({self.api_version}) in {self.namespace or 'all namespaces'}:"
        return "\n".join(filter(None, [head, table(["NAMESPACE", "NAME", "SUMMARY", "AGE"], rows), self.page.footer()]))


@tool("istio", title="List Istio objects")
async def istio_list(
    kind: Annotated[IstioKind, Field(description=KIND_HELP)],
    namespace: Annotated[
        str | None,
        Field(description="Namespace; omit for all namespaces (Gateway: istio-system unless all_namespaces)."),
    ] = None,
    all_namespaces: bool = False,
    limit: Annotated[int | None, Field(description="Items per page (default 50).")] = None,
    continue_token: Annotated[str | None, Field(description="From the previous page.")] = None,
    cluster: ClusterArg = None,
) -> IstioList:
    """List Istio or Gateway API objects with a one-line summary each: Gateway servers (ports, protocols,
    hosts, TLS mode and credential) and selector; VirtualService hosts, gateways and routes; DestinationRule
    subsets and TLS; ServiceEntry hosts; PeerAuthentication mTLS mode; AuthorizationPolicy action; Gateway API
    listeners and HTTPRoute parents/backends."""
    rt = current()
    ns = validate.namespace(namespace)
    if ns is None and kind == "Gateway" and not all_namespaces:
        ns = ROOT_NAMESPACE
    if all_namespaces:
        ns = None
    rt.check_namespace(ns)
    limit = validate_limit(limit, rt.settings.output.default_limit, maximum=500)
    conn = await rt.connect(cluster)
    info = await rt.call(resolve_kind, conn, kind)
    doc = await rt.call(
        conn.get, info.path(ns), limit=limit, **({"continue": continue_token} if continue_token else {})
    )
    meta = doc.get("metadata") or {}
    items = [o for o in doc.get("items") or [] if rt.namespace_visible((o.get("metadata") or {}).get("namespace", ""))]
    rows = []
    for obj in items:
        m = obj.get("metadata") or {}
        text, details = summarize(kind, obj)
        rows.append(
            IstioObject(
                kind=kind,
                namespace=m.get("namespace", ""),
                name=m.get("name", ""),
                summary=text,
                details=details,
                age=age(m.get("creationTimestamp")),
            )
        )
    if not doc.get("items") and namespace and not continue_token:
        await namespaces.require(rt, conn, ns)
    total = len(rows) + int(meta.get("remainingItemCount") or 0)
    page = Page(total=total, returned=len(rows), continue_token=meta.get("continue") or None)
    return IstioList(cluster=conn.name, kind=kind, api_version=info.api_version, namespace=ns, items=rows, page=page)


class IstioDetail(Result):
    cluster: str
    kind: str
    api_version: str
    namespace: str
    name: str
    summary: str
    details: dict[str, Any]
    spec: dict[str, Any]
    conditions: list[str] = Field(default_factory=list)
    age: str

    def render(self) -> str:
        body = yaml.safe_dump(self.spec, sort_keys=False, default_flow_style=None, width=110).rstrip()
        lines = [
            f"{self.kind} {self.namespace}/{self.name} ({self.api_version}, age {self.age})",
            f"summary: {self.summary}",
            "spec:",
            "  " + body.replace("\n", "\n  "),
        ]
        lines += [f"condition: {c}" for c in self.conditions]
        return "\n".join(lines)  # the server clips to output.max_chars


@tool("istio", title="Get one Istio object")
async def istio_get(
    kind: Annotated[IstioKind, Field(description=KIND_HELP)],
    name: str,
    namespace: Annotated[str | None, Field(description="Default: istio-system.")] = None,
    cluster: ClusterArg = None,
) -> IstioDetail:
    """One Istio or Gateway API object: its summary, full spec and status conditions."""
    rt = current()
    ns = validate.namespace(namespace) or ROOT_NAMESPACE
    rt.check_namespace(ns)
    validate.object_name(name)
    conn = await rt.connect(cluster)
    info = await rt.call(resolve_kind, conn, kind)
    obj = await rt.call(conn.get, info.path(ns, name))
    text, details = summarize(kind, obj)
    m = obj.get("metadata") or {}
    conditions = [
        f"{c.get('type')}={c.get('status')}"
        + (f" ({c.get('reason')}: {c.get('message')})" if c.get("status") != "True" and c.get("message") else "")
        for c in (obj.get("status") or {}).get("conditions") or []
    ]
    return IstioDetail(
        cluster=conn.name,
        kind=kind,
        api_version=info.api_version,
        namespace=ns,
        name=name,
        summary=text,
        details=details,
        spec=redact(obj.get("spec") or {}),
        conditions=conditions,
        age=age(m.get("creationTimestamp")),
    )


# -- mesh overview -----------------------------------------------------------------------------------------
class MeshNamespace(BaseModel):
    name: str
    injection: str = Field(description="enabled, disabled, rev:<revision>, ambient or none")
    pods: int
    with_proxy: int
    without_proxy: int


class MeshDeployment(BaseModel):
    namespace: str
    name: str
    ready: str
    version: str | None = None
    role: str


class MeshOverview(Result):
    cluster: str
    apis: dict[str, str] = Field(description="API group → served version.")
    control_plane: list[MeshDeployment]
    gateways: list[MeshDeployment]
    namespaces: list[MeshNamespace]
    namespaces_total: int

    def render(self) -> str:
        apis = ", ".join(f"{g} {v}" for g, v in self.apis.items())
        deps = [[d.role, d.namespace, d.name, d.ready, d.version] for d in self.control_plane + self.gateways]
        ns_rows = [[n.name, n.injection, n.pods, n.with_proxy, n.without_proxy] for n in self.namespaces]
        parts = [
            f"cluster {self.cluster} · APIs: {apis}",
            table(["ROLE", "NAMESPACE", "NAME", "READY", "VERSION"], deps),
            table(["NAMESPACE", "INJECTION", "PODS", "WITH-PROXY", "WITHOUT-PROXY"], ns_rows),
        ]
        if self.namespaces_total > len(self.namespaces):
            parts.append(f"({len(self.namespaces)} of {self.namespaces_total} namespaces; raise limit for more)")
        if not self.control_plane:
            parts.append("No istiod deployment found (label app=istiod): the control plane may run elsewhere.")
        return "\n".join(parts)


@tool("istio", title="Mesh overview")
async def mesh_overview(
    limit: Annotated[int | None, Field(description="Most namespaces listed (default 50); meshed ones first.")] = None,
    cluster: ClusterArg = None,
) -> MeshOverview:
    """The state of the Istio mesh: served Istio/Gateway API versions, istiod and gateway deployments with
    readiness and version, and per namespace the sidecar injection setting and pods with/without a proxy."""
    rt = current()
    limit = validate_limit(limit, rt.settings.output.default_limit)
    conn = await rt.connect(cluster)
    resources = await rt.call(conn.resources)
    apis = {
        r.group: r.version
        for r in resources
        if r.group in ("networking.istio.io", "security.istio.io", "gateway.networking.k8s.io")
    }
    if "networking.istio.io" not in apis:
        await rt.call(resolve_kind, conn, "VirtualService")  # raises Unsupported with the explanation
    istiod, gateways, istio_labelled, namespaces, pods = await asyncio.gather(
        rt.call(conn.list_items, "/apis/apps/v1/deployments", {"labelSelector": "app=istiod"}),
        rt.call(
            conn.list_items, "/apis/apps/v1/deployments", {"labelSelector": "gateway.networking.k8s.io/gateway-name"}
        ),
        rt.call(conn.list_items, "/apis/apps/v1/deployments", {"labelSelector": "istio"}),
        rt.call(conn.list_items, "/api/v1/namespaces", None),
        rt.call(conn.list_items, "/api/v1/pods", None, METADATA_LIST),
    )
    visible = rt.namespace_visible
    control = [_deployment(d, "istiod") for d in istiod[0] if visible(_ns(d))]
    gw_deps = {(_ns(d), d["metadata"]["name"]): _deployment(d, "gateway-api") for d in gateways[0] if visible(_ns(d))}
    for d in istio_labelled[0]:
        role = ((d.get("metadata") or {}).get("labels") or {}).get("istio", "")
        if "gateway" in role and visible(_ns(d)):
            gw_deps.setdefault((_ns(d), d["metadata"]["name"]), _deployment(d, role))
    counts: dict[str, list[int]] = {}
    for m in pods[0]:
        pm = m.get("metadata") or {}
        c = counts.setdefault(pm.get("namespace", ""), [0, 0])
        c[0] += 1
        c[1] += "sidecar.istio.io/status" in (pm.get("annotations") or {})
    rows = []
    for ns in namespaces[0]:
        name = ns["metadata"]["name"]
        if not visible(name):
            continue
        total, meshed = counts.get(name, [0, 0])
        rows.append(
            MeshNamespace(
                name=name, injection=injection(ns), pods=total, with_proxy=meshed, without_proxy=total - meshed
            )
        )
    rows.sort(key=lambda n: (n.injection == "none" and not n.with_proxy, -n.pods, n.name))
    return MeshOverview(
        cluster=conn.name,
        apis=apis,
        control_plane=control,
        gateways=sorted(gw_deps.values(), key=lambda d: (d.namespace, d.name)),
        namespaces=rows[:limit],
        namespaces_total=len(rows),
    )


def _ns(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace", ""))


def _deployment(dep: dict[str, Any], role: str) -> MeshDeployment:
    spec, status, m = dep.get("spec") or {}, dep.get("status") or {}, dep.get("metadata") or {}
    images = [c.get("image", "") for c in ((spec.get("template") or {}).get("spec") or {}).get("containers") or []]
    version = next((i.rsplit(":", 1)[1] for i in images if ":" in i.rsplit("/", 1)[-1]), None)
    return MeshDeployment(
        namespace=m.get("namespace", ""),
        name=m.get("name", ""),
        role=role,
        version=version,
        ready=f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
    )
